"""``catmull_rom`` on CUDA through a CuPy ``RawKernel``: one thread per sample.

Same float64 sums as the reference (row taps per column tap, then column taps);
taps computed on the host.  ``cupy`` is imported on first call, so importing this
module never loads it; the engine's CuPy probe decides availability.  Accepts numpy
or cupy input; returns the same kind.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels.catmull_rom._common import taps

__all__ = ["CUDA_SOURCE", "catmull_rom_cupy"]

CUDA_SOURCE = r"""
extern "C" __global__ void catmull_rom(
    const float *img, const int *ri, const double *rw, const int *ci,
    const double *cw, float *out, int K, int L, int W)
{
    int u = blockIdx.x * blockDim.x + threadIdx.x;
    int s = blockIdx.y * blockDim.y + threadIdx.y;
    if (u >= L || s >= K) return;
    double q = 0.0;
    for (int b = 0; b < 4; ++b) {
        int c = ci[4 * u + b];
        double p = 0.0;
        for (int a = 0; a < 4; ++a)
            p = __dadd_rn(
                p, __dmul_rn(rw[4 * s + a], (double)img[ri[4 * s + a] * W + c]));
        q = __dadd_rn(q, __dmul_rn(p, cw[4 * u + b]));
    }
    out[s * L + u] = (float)q;
}
"""


@functools.lru_cache(maxsize=8)
def _kernel(device_id: int) -> Any:
    import cupy as cp

    return cp.RawKernel(CUDA_SOURCE, "catmull_rom")


@implementation("catmull_rom", backend="cupy")
def catmull_rom_cupy(image: Any, row_coords: Any, col_coords: Any) -> Any:
    """Catmull-Rom samples of ``image`` (H, W) float32 (numpy or cupy).

    Returns
    -------
    (len(row_coords), len(col_coords)) float32, numpy if ``image`` was numpy.
    """
    import cupy as cp

    on_host = isinstance(image, np.ndarray)
    host = image if on_host else cp.asnumpy(image)
    ri, rw, ci, cw = taps(host, np.asarray(row_coords), np.asarray(col_coords))
    k, l_ = ri.shape[0], ci.shape[0]
    img = cp.ascontiguousarray(cp.asarray(image, dtype=cp.float32))
    out = cp.empty((k, l_), dtype=cp.float32)
    block = (32, 8, 1)
    grid = ((l_ + 31) // 32, (k + 7) // 8, 1)
    _kernel(cp.cuda.Device().id)(
        grid,
        block,
        (
            img,
            cp.asarray(ri),
            cp.asarray(rw),
            cp.asarray(ci),
            cp.asarray(cw),
            out,
            np.int32(k),
            np.int32(l_),
            np.int32(img.shape[1]),
        ),
    )
    return cp.asnumpy(out) if on_host else out
