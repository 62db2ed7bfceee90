"""``temporal`` on CUDA through a CuPy ``RawKernel``: one thread per map pixel,
double sums (the accumulator's recurrence), ``--fmad=false``.  ``cupy`` is
imported on first call; numpy in -> numpy out, cupy in -> cupy out."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels.temporal import MODES

__all__ = ["CUDA_SOURCE", "temporal_cupy"]

CUDA_SOURCE = r"""
extern "C" __global__ void temporal(const float *maps, float *out, int n, int plane,
                                    int mode)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= plane) return;
    double s = 0.0, q = 0.0, last = 0.0;
    if (mode == 0) {
        for (int t = 0; t < n; ++t) s += (double)maps[(size_t)t * plane + i];
        out[i] = (float)(s / n);
        return;
    }
    double first = (double)maps[i];
    for (int t = 0; t < n; ++t) {
        double y = (double)maps[(size_t)t * plane + i] - first;
        s += y;
        if (mode == 1) q += y * y;
        else { if (t > 0) q += last * y; last = y; }
    }
    double mean = s / n;
    if (mode == 1) { double v = q / n - mean * mean; out[i] = (float)(v > 0 ? v : 0); }
    else if (n < 2) out[i] = __int_as_float(0x7fc00000);
    else out[i] = (float)((q - mean * ((s - last) + s) + (n - 1) * mean * mean)
                          / (n - 1));
}
"""


@functools.lru_cache(maxsize=8)
def _kernel(device_id: int) -> Any:
    import cupy as cp

    return cp.RawModule(code=CUDA_SOURCE, options=("--fmad=false",)).get_function(
        "temporal"
    )


@implementation("temporal", backend="cupy")
def temporal_cupy(maps: Any, mode: str) -> Any:
    """Temporal statistic ``(Y, X)`` float32 of ``maps`` (n, Y, X) float32."""
    import cupy as cp

    on_host = isinstance(maps, np.ndarray)
    d = cp.ascontiguousarray(cp.asarray(maps, dtype=cp.float32))
    n, ny, nx = d.shape
    out = cp.empty((ny, nx), dtype=cp.float32)
    plane = ny * nx
    _kernel(cp.cuda.Device().id)(
        ((plane + 255) // 256,),
        (256,),
        (d, out, np.int32(n), np.int32(plane), np.int32(MODES.index(mode))),
    )
    return cp.asnumpy(out) if on_host else out
