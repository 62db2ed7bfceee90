"""Fixtures for the adapters tests: an X display for the napari tests (on request only).

``display`` (session) makes sure Qt can open windows:

- ``DISPLAY`` already set (a desktop, ``xvfb-run``): used as it is;
- otherwise, when ``Xvfb`` is installed, a private server ``Xvfb :N -screen 0
  1280x1024x24`` is started for the session and ``DISPLAY`` points at it (restored at
  the end of the session; the server gets SIGTERM when the test process exits, after
  Qt has let go of it), so a plain ``python -m pytest`` runs the viewer tests in CI;
- otherwise the requesting tests are skipped, saying what to install.

A Qt application is then started once in a subprocess: a missing system library of
the Qt xcb plugin (``libxcb-cursor0``...) makes Qt abort the process, which must not
take the test session down; it becomes a skip with Qt's message.

Only tests that request ``display`` (directly or through a fixture) are affected.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

_XVFB_DISPLAYS = range(91, 140)
_QT_PROBE = (
    "import sys; from qtpy.QtWidgets import QApplication; "
    "app = QApplication(sys.argv[:1]); "
    "print(app.platformName())"
)


def _die_with_parent() -> None:
    """In the Xvfb child: get SIGTERM when the test process exits (Linux prctl)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (
        OSError,
        AttributeError,
    ):  # pragma: no cover - Xvfb is started on Linux only
        pass


def _quiet_running_server(proc: subprocess.Popen[bytes]) -> None:
    """At exit the server is still running by design (see ``display``): Popen's
    finaliser (once ``proc`` is let go after this) must not warn about it."""
    warnings.filterwarnings(
        "ignore", message=r"subprocess \d+ is still running", category=ResourceWarning
    )


def _start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip(
            "no display: DISPLAY is not set and Xvfb is not installed "
            "(apt-get install xvfb, or run under xvfb-run -a)"
        )
    for n in _XVFB_DISPLAYS:
        if Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists():
            continue
        proc = subprocess.Popen(
            [xvfb, f":{n}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        sock = Path(f"/tmp/.X11-unix/X{n}")
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and proc.poll() is None and not sock.exists():
            time.sleep(0.05)
        if proc.poll() is None and sock.exists():
            return proc, f":{n}"
        proc.kill()
        proc.wait(5)
    pytest.skip(
        "no display: could not start Xvfb on displays "
        f":{_XVFB_DISPLAYS.start}..:{_XVFB_DISPLAYS.stop - 1}"
    )


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """An X display Qt can use (see the module docstring); yields ``DISPLAY``."""
    proc: subprocess.Popen[bytes] | None = None
    old = os.environ.get("DISPLAY")
    if old:
        disp = old
    elif not sys.platform.startswith("linux"):
        pytest.skip("no display: DISPLAY is not set")
    else:
        proc, disp = _start_xvfb()
        os.environ["DISPLAY"] = disp
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        pytest.skip(
            "QT_QPA_PLATFORM=offscreen gives napari no OpenGL context; unset it"
        )
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _QT_PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DISPLAY": disp},
        )
        if probe.returncode != 0:
            tail = " ".join((probe.stderr or "").strip().splitlines()[-3:])
            pytest.skip(
                f"Qt cannot open a window on DISPLAY={disp}: {tail} "
                "(Debian/Ubuntu: apt-get install libxcb-cursor0 libxcb-icccm4 "
                "libxcb-keysyms1)"
            )
        yield disp
    finally:
        if proc is not None:
            # The Qt application (pytest-qt's session ``qapp``) outlives this fixture
            # and Qt exits the process when its X server goes away, so on Linux the
            # server is stopped by the kernel when this process ends
            # (PR_SET_PDEATHSIG); DISPLAY is
            # restored now.
            if old is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = old
            atexit.register(_quiet_running_server, proc)  # holds proc until exit
