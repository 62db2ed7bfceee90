"""A Micro-Manager configuration file as a pipeline source (``livesr run --source mm``).

:func:`load_mm_config` loads a ``.cfg`` into a pymmcore-plus ``UniMMCore``: C++
device adapters (found in ``mm_path``, or by pymmcore-plus's discovery:
``mmcore install``, ``MICROMANAGER_PATH``) and Python devices (``#py`` lines)
load side by side. A configuration of Python devices only needs no
Micro-Manager installation; :data:`~livesr.adapters.sources.mm_devices.SIM_CFG`
is livesr's simulated microscope written that way.

:class:`MMConfigSession` owns that core for a run and makes
:class:`~livesr.adapters.sources.mmcore_push.MMCorePushSource` sources on it
(sequence acquisition pushed over the lossless link)::

    with MMConfigSession("scope.cfg") as mm:
        src = mm.source(pipe.endpoint, 500, ctx).start()

Errors are one line that names the file: :class:`MMConfigError` (missing file,
a configuration that does not load, no camera, no pixel size, pymmcore-plus not
installed).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

__all__ = [
    "PYMMCORE_MISSING",
    "MMConfigError",
    "MMConfigSession",
    "load_mm_config",
    "pymmcore_plus_missing",
]

logger = logging.getLogger(__name__)

#: What to tell a user without pymmcore-plus.
PYMMCORE_MISSING = (
    "pymmcore-plus is not installed; install the Micro-Manager extra: "
    'pip install "livesr[mm]" (from a checkout: pip install ".[mm]")'
)

_CPP_DEVICE = re.compile(r"^\s*Device\s*,\s*([^,]+),\s*([^,]+),")


class MMConfigError(ValueError):
    """A Micro-Manager configuration cannot be used (the message says why)."""


def pymmcore_plus_missing() -> str | None:
    """:data:`PYMMCORE_MISSING` if pymmcore-plus cannot be imported, else None."""
    try:
        import pymmcore_plus  # noqa: F401
    except ImportError:
        return PYMMCORE_MISSING
    return None


def _cpp_devices(text: str) -> list[str]:
    """``label (adapter)`` of every C++ ``Device`` line (``#py`` lines are comments)."""
    return [
        f"{m.group(1).strip()} ({m.group(2).strip()})"
        for line in text.splitlines()
        if (m := _CPP_DEVICE.match(line))
    ]


def load_mm_config(
    path: str | Path,
    *,
    mm_path: str | Path | None = None,
    buffer_mb: int | None = None,
) -> Any:
    """Load a Micro-Manager configuration into a new ``UniMMCore``.

    Parameters
    ----------
    path : path-like
        The ``.cfg`` file (Micro-Manager syntax; ``#py`` lines for Python devices).
    mm_path : path-like, optional
        Micro-Manager installation folder (its device adapters); default
        pymmcore-plus's discovery. Not needed when every device is a Python device.
    buffer_mb : int, optional
        Sequence (circular) buffer size, MiB; default pymmcore-plus's.

    Returns
    -------
    pymmcore_plus.experimental.unicore.UniMMCore
        The ready core (a camera is set and a pixel size is defined). Shut it down
        with :func:`livesr.sim.shutdown_core` (or use :class:`MMConfigSession`).

    Raises
    ------
    MMConfigError
        pymmcore-plus is missing, the file or ``mm_path`` does not exist, the
        configuration does not load, or it sets no camera or no pixel size.
    """
    cfg, text = _read_config(path, mm_path)
    cpp = _cpp_devices(text)

    from livesr.sim._core import shutdown_core

    core = _new_core(cfg, cpp, mm_path)
    try:
        px = _load_into(core, cfg, buffer_mb)
    except BaseException:
        shutdown_core(core)
        raise
    logger.info(
        "Micro-Manager configuration %s loaded: camera %s %dx%d, %.4g um/px, "
        "XY stage %r, focus %r",
        cfg,
        core.getCameraDevice(),
        core.getImageWidth(),
        core.getImageHeight(),
        px,
        core.getXYStageDevice(),
        core.getFocusDevice(),
    )
    return core


def _read_config(path: str | Path, mm_path: str | Path | None) -> tuple[Path, str]:
    """The configuration file and its text; pymmcore-plus and the paths checked."""
    if (missing := pymmcore_plus_missing()) is not None:
        raise MMConfigError(missing)
    cfg = Path(path).expanduser()
    if not str(path) or not cfg.is_file():
        raise MMConfigError(
            f"Micro-Manager configuration {str(path)!r} does not exist; expected a "
            ".cfg file (e.g. from Micro-Manager's Hardware Configuration Wizard)"
        )
    if mm_path is not None and not Path(mm_path).expanduser().is_dir():
        raise MMConfigError(
            f"--mm-path {str(mm_path)!r} is not a folder; expected a Micro-Manager "
            "installation (the folder holding its mmgr_dal_* device adapters)"
        )
    try:
        text = cfg.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MMConfigError(f"cannot read {str(cfg)!r}: {exc}") from exc
    return cfg, text


def _new_core(cfg: Path, cpp: list[str], mm_path: str | Path | None) -> Any:
    """A ``UniMMCore``; with C++ devices, a Micro-Manager installation is required."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    from livesr.sim._core import _no_mm_discovery_error

    mm_dir = str(Path(mm_path).expanduser().resolve()) if mm_path is not None else None
    if cpp and mm_dir is None:
        from pymmcore_plus import find_micromanager

        with _no_mm_discovery_error():
            found = find_micromanager()
        if not found:
            raise MMConfigError(
                f"{cfg.name} loads C++ device adapters ({', '.join(cpp[:3])}"
                f"{', ...' if len(cpp) > 3 else ''}) but no Micro-Manager "
                "installation was found; pass --mm-path DIR or run 'mmcore install'"
            )
    if cpp:
        return UniMMCore(mm_path=mm_dir)
    with _no_mm_discovery_error():  # Python devices only: no installation needed
        return UniMMCore(mm_path=mm_dir)


def _load_into(core: Any, cfg: Path, buffer_mb: int | None) -> float:
    """Load ``cfg`` into ``core``; checks a camera and a pixel size (returned, um)."""
    if buffer_mb is not None:
        core.setCircularBufferMemoryFootprint(int(buffer_mb))
    try:
        core.loadSystemConfiguration(str(cfg))
    except Exception as exc:  # pymmcore-plus wraps the failing line
        first = " ".join(str(exc).split())
        raise MMConfigError(
            f"could not load the Micro-Manager configuration {str(cfg)!r}: {first}"
        ) from exc
    if not core.getCameraDevice():
        raise MMConfigError(
            f"{cfg.name} sets no camera; expected a 'Property,Core,Camera,LABEL' "
            "line"
        )
    px = float(core.getPixelSizeUm() or 0.0)
    if not px > 0:
        raise MMConfigError(
            f"{cfg.name} defines no pixel size for the current state; expected "
            "'ConfigPixelSize' and 'PixelSize_um' lines"
        )
    return px


class MMConfigSession:
    """A core loaded from a configuration file, for one run (``--source mm``).

    Parameters
    ----------
    config_file : path-like
        The ``.cfg`` file.
    mm_path : path-like, optional
        Micro-Manager installation folder (see :func:`load_mm_config`).
    buffer_mb : int, optional
        Sequence buffer, MiB.

    Attributes
    ----------
    core : UniMMCore or None
        The loaded core between :meth:`open` and :meth:`close`.
    """

    def __init__(
        self,
        config_file: str | Path,
        *,
        mm_path: str | Path | None = None,
        buffer_mb: int | None = None,
    ) -> None:
        self.config_file = config_file
        self.mm_path = mm_path
        self.buffer_mb = buffer_mb
        self.core: Any = None

    def open(self) -> MMConfigSession:
        """Load the configuration (idempotent)."""
        if self.core is None:
            self.core = load_mm_config(
                self.config_file, mm_path=self.mm_path, buffer_mb=self.buffer_mb
            )
        return self

    @property
    def frame_shape(self) -> tuple[int, int]:
        """The camera's (rows, cols)."""
        return (int(self.core.getImageHeight()), int(self.core.getImageWidth()))

    def close(self) -> None:
        """Stop acquisition, unload the devices, release the core (idempotent)."""
        if self.core is not None:
            from livesr.sim._core import shutdown_core

            shutdown_core(self.core)
            self.core = None

    def __enter__(self) -> MMConfigSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def source(
        self,
        endpoint: str,
        frames: int,
        ctx: Any,
        *,
        stop_event: Any = None,
        on_frame: Any = None,
        mda: Any = None,
    ) -> Any:
        """A :class:`MMCorePushSource` on the core: sequence acquisition (paced by
        the camera; the header's interval is the camera's exposure) or, with ``mda``
        (a useq YAML/JSON file or sequence), that MDA."""
        from livesr.adapters.sources.mmcore_push import MMCorePushSource

        return MMCorePushSource(
            self.core,
            endpoint,
            frames=frames,
            stream="mm",
            stop_event=stop_event,
            context=ctx,
            on_frame=on_frame,
            mda=mda,
        )
