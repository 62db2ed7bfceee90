"""``rgc`` in OpenCL: one work item per output pixel.

``_opencl.cl.mako`` is rendered at run time with the shape and the eSRRF
parameters baked in (window length, margin, exponent, weighting) and built once
per (context, source); ``LIVESR_DUMP_KERNELS=dir`` writes each rendered source.
``#pragma OPENCL FP_CONTRACT OFF`` keeps the float32 products unfused, as the
reference.  ``pyopencl`` is imported on first call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from livesr.engine import implementation
from livesr.kernels import _clhost
from livesr.kernels._params import EsrrfParams
from livesr.kernels.rgc._common import prepare

__all__ = ["rgc_opencl"]

TEMPLATE = Path(__file__).with_name("_opencl.cl.mako")


@implementation("rgc", backend="opencl")
def rgc_opencl(
    gx2: np.ndarray, gy2: np.ndarray, intensity: np.ndarray | None, params: EsrrfParams
) -> np.ndarray:
    """RGC map ``(H*M, W*M)`` float32 (see :func:`livesr.kernels.rgc.kernel`)."""
    p = prepare(gx2, gy2, intensity, params)
    prg = _clhost.build(
        "rgc",
        TEMPLATE,
        H=p.h,
        W=p.w,
        M=p.m,
        NOFF=p.offs.shape[0],
        MARGIN=p.margin,
        WEIGHTED=int(p.weighted),
        APPLY_POW=int(p.apply_pow),
        SENSITIVITY=repr(p.sensitivity),
    )
    hm, wm = p.h * p.m, p.w * p.m
    out = np.empty((hm, wm), dtype=np.float32)
    out_d = _clhost.empty(out.nbytes)
    dev = _clhost.to_device
    args = [dev(p.gxn), dev(p.gyn), dev(p.offs), dev(p.table), dev(p.intensity), out_d]
    _clhost.run(prg, "rgc", (wm, hm), args, [(out, out_d)])
    return out
