"""``catmull_rom`` in OpenCL: one work item per output sample.

The kernel source is ``_opencl.cl.mako`` rendered at run time (output shape and
precision baked in) and built once per (context, source); ``LIVESR_DUMP_KERNELS=dir``
writes each rendered source there.  Sums in double where the device has
``cl_khr_fp64`` (PoCL, NVIDIA), else float.  ``pyopencl`` is imported on first call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from livesr.engine import implementation
from livesr.kernels import _clhost
from livesr.kernels.catmull_rom._common import taps

__all__ = ["catmull_rom_opencl"]

TEMPLATE = Path(__file__).with_name("_opencl.cl.mako")


@implementation("catmull_rom", backend="opencl")
def catmull_rom_opencl(
    image: np.ndarray, row_coords: np.ndarray, col_coords: np.ndarray
) -> np.ndarray:
    """Catmull-Rom samples of ``image`` (H, W) float32 on ``row_coords x col_coords``.

    Returns
    -------
    (len(row_coords), len(col_coords)) float32
    """
    ri, rw, ci, cw = taps(image, row_coords, col_coords)
    k, l_ = ri.shape[0], ci.shape[0]
    fp64 = _clhost.has_fp64()
    prg = _clhost.build(
        "catmull_rom", TEMPLATE, K=k, L=l_, W=image.shape[1], FP64=int(fp64)
    )
    wt = np.float64 if fp64 else np.float32
    out = np.empty((k, l_), dtype=np.float32)
    out_d = _clhost.empty(out.nbytes)
    dev = _clhost.to_device
    args = [dev(image), dev(ri), dev(rw.astype(wt)), dev(ci), dev(cw.astype(wt)), out_d]
    _clhost.run(prg, "catmull_rom", (l_, k), args, [(out, out_d)])
    return out
