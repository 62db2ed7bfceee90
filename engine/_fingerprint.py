"""Machine fingerprint for the benchmark store: CPU, GPU and driver, livesr version.

Read from cheap sources only (``/proc/cpuinfo``, ``/proc/driver/nvidia``, the
``platform`` module, package metadata): no backend is imported, no subprocess is
run.  The livesr release is the version of the installed distribution the engine
ships in, read from package metadata here (the engine imports nothing above itself;
a version handed down by the stream layer would leave the default store of a
library user who never imports stream without one).  Benchmarks recorded under one fingerprint are never used under another, so a
new GPU, driver or livesr release starts from the factory defaults again.  (OpenCL
device identity is not part of it: probing OpenCL costs a platform scan; an OpenCL
device change on the same machine shows up as a delay and then as new timings.)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

#: The distribution whose version is part of the fingerprint.
DISTRIBUTION = "livesr"


def release() -> str:
    """The installed livesr version, or ``"0+unknown"`` from a bare tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0+unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _nvidia() -> tuple[list[str], str]:
    gpus: list[str] = []
    driver = ""
    root = Path("/proc/driver/nvidia")
    try:
        text = (root / "version").read_text(errors="replace")
        first = text.splitlines()[0] if text else ""
        parts = [p for p in first.split() if p[:1].isdigit() and "." in p]
        driver = parts[0] if parts else first.strip()
        for info in sorted((root / "gpus").glob("*/information")):
            for line in info.read_text(errors="replace").splitlines():
                if line.startswith("Model:"):
                    gpus.append(line.split(":", 1)[1].strip())
    except OSError:
        pass
    return gpus, driver


@functools.lru_cache(maxsize=1)
def machine_description() -> dict[str, object]:
    """What the fingerprint is made of (stored beside it, for humans)."""
    gpus, driver = _nvidia()
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "system": platform.system(),
        "machine": platform.machine(),
        "gpus": gpus,
        "nvidia_driver": driver,
        "livesr": release(),
    }


def fingerprint(description: dict[str, object] | None = None) -> str:
    """A 16-hex-digit hash of :func:`machine_description`."""
    desc = machine_description() if description is None else description
    text = json.dumps(desc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
