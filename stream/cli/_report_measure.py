"""Measurements of ``livesr bench --report``: eSRRF maps, transport, pipeline, agent.

Each ``measure_*`` function runs one experiment and returns plain data (numbers,
lists, short strings) that :mod:`livesr.stream.cli._report` turns into Markdown and
:mod:`livesr.stream.cli._report_plots` into PNG figures.  Nothing runs at import; every
heavy import (numba/Cython/OpenCL backends, nanopyx, the pipeline) is inside a
function.

One module per experiment: :mod:`._measure_esrrf` (the eSRRF map implementations
and their throughput), :mod:`._measure_transport`, :mod:`._measure_pipeline`,
:mod:`._measure_agent`, :mod:`._measure_sweep`; this module gathers them (the
report calls them as ``measure.X``, so a test can replace one) and describes the
machine.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

import numpy as np

from livesr.stream.cli._measure_agent import measure_agent
from livesr.stream.cli._measure_esrrf import (
    ESRRF_PACKAGE,
    IW,
    NANOPYX_ID,
    M,
    MapImpl,
    R,
    S,
    emitter_frame,
    esrrf_map_impls,
    measure_esrrf,
    nanopyx_environment,
    nanopyx_impl,
)
from livesr.stream.cli._measure_pipeline import frame_map_of, measure_pipeline
from livesr.stream.cli._measure_sweep import measure_sweep
from livesr.stream.cli._measure_transport import measure_transport

__all__ = [
    "ESRRF_PACKAGE",
    "IW",
    "M",
    "NANOPYX_ID",
    "R",
    "S",
    "MapImpl",
    "emitter_frame",
    "esrrf_map_impls",
    "frame_map_of",
    "load_average",
    "machine",
    "measure_agent",
    "measure_esrrf",
    "measure_pipeline",
    "measure_sweep",
    "measure_transport",
    "nanopyx_environment",
    "nanopyx_impl",
]


# --------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    """CPU model, cores, GPUs (NVIDIA driver / CuPy), livesr version, Python, numpy."""
    import platform

    from livesr.engine._fingerprint import machine_description

    desc = dict(machine_description())
    listed = desc.get("gpus")
    gpus = [str(g) for g in listed] if isinstance(listed, (list, tuple)) else []
    if not gpus and "cupy" in sys.modules:
        with contextlib.suppress(Exception):
            cupy = sys.modules["cupy"]
            props = cupy.cuda.runtime.getDeviceProperties(0)
            gpus = [props["name"].decode()]
    return {
        "cpu": desc.get("cpu", "?"),
        "cores": desc.get("cpu_count", 0),
        "gpus": gpus,
        "livesr": desc.get("livesr", "?"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": threading.active_count(),
    }


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (NaN where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        nan = float("nan")
        return nan, nan, nan
