"""``temporal`` in OpenCL: one work item per map pixel; ``_opencl.cl.mako``
rendered at run time (frame count, shape and mode baked in), built once per
(context, source).  ``pyopencl`` is imported on first call."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from livesr.engine import implementation
from livesr.kernels import _clhost
from livesr.kernels.temporal import MODES

__all__ = ["temporal_opencl"]

TEMPLATE = Path(__file__).with_name("_opencl.cl.mako")


@implementation("temporal", backend="opencl")
def temporal_opencl(maps: np.ndarray, mode: str) -> np.ndarray:
    """Temporal statistic ``(Y, X)`` float32 of ``maps`` (n, Y, X) float32."""
    n, ny, nx = maps.shape
    prg = _clhost.build(
        "temporal",
        TEMPLATE,
        N=n,
        NY=ny,
        NX=nx,
        MODE=MODES.index(mode),
        FP64=int(_clhost.has_fp64()),
    )
    out = np.empty((ny, nx), dtype=np.float32)
    out_d = _clhost.empty(out.nbytes)
    _clhost.run(
        prg, "temporal", (ny * nx,), [_clhost.to_device(maps), out_d], [(out, out_d)]
    )
    return out
