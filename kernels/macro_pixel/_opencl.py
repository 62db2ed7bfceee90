"""``macro_pixel`` in OpenCL: per-phase means (one work item per phase and slice),
then one work item per pixel for the division; ``_opencl.cl.mako`` rendered at run
time (M and slice shape baked in), built once per (context, source).
``pyopencl`` is imported on first call."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from livesr.engine import implementation
from livesr.kernels import _clhost

__all__ = ["macro_pixel_opencl"]

TEMPLATE = Path(__file__).with_name("_opencl.cl.mako")


@implementation("macro_pixel", backend="opencl")
def macro_pixel_opencl(image: np.ndarray, magnification: int) -> np.ndarray:
    """Macro-pixel corrected copy of ``image`` (Y, X) or (n, Y, X) float32."""
    m = int(magnification)
    stack = image.reshape((-1, *image.shape[-2:]))
    n, ny, nx = stack.shape
    if ny // m == 0 or nx // m == 0:
        return image.copy()
    prg = _clhost.build(
        "macro_pixel", TEMPLATE, M=m, NY=ny, NX=nx, FP64=int(_clhost.has_fp64())
    )
    img_d = _clhost.to_device(stack)
    cmap_d = _clhost.empty(n * m * m * 4)
    for s in range(n):
        _clhost.run(prg, "phase_means", (m * m,), [img_d, np.int32(s), cmap_d], [])
    out = np.empty_like(stack)
    out_d = _clhost.empty(out.nbytes)
    _clhost.run(prg, "divide", (nx, ny, n), [img_d, cmap_d, out_d], [(out, out_d)])
    return out.reshape(image.shape)
