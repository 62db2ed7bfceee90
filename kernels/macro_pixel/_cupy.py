"""``macro_pixel`` on CUDA through CuPy ``RawKernel``s: per-phase float64 means
(one thread per phase and slice), then one thread per pixel for the division.
``cupy`` is imported on first call; numpy in -> numpy out, cupy in -> cupy out."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from livesr.engine import implementation

__all__ = ["CUDA_SOURCE", "macro_pixel_cupy"]

CUDA_SOURCE = r"""
extern "C" __global__ void phase_means(const float *img, float *cmap, int n, int ny,
                                       int nx, int m)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n * m * m) return;
    int s = t / (m * m), ab = t % (m * m), a = ab / m, b = ab % m;
    int rows = ny / m, cols = nx / m;
    float inv = (float)(rows * cols);
    const float *im = img + (size_t)s * ny * nx;
    double acc = 0.0;
    for (int p = 0; p < rows; ++p)
        for (int q = 0; q < cols; ++q)
            acc += (double)__fdiv_rn(im[(p * m + a) * nx + q * m + b], inv);
    cmap[t] = (float)acc;
}

extern "C" __global__ void divide(const float *img, const float *cmap, float *out,
                                  int n, int ny, int nx, int m)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * ny * nx) return;
    int s = i / ((size_t)ny * nx), r = i % ((size_t)ny * nx), y = r / nx, x = r % nx;
    float c = cmap[s * m * m + (y % m) * m + x % m];
    out[i] = c != 0.0f ? __fdiv_rn(img[i], c) : img[i];
}
"""


@functools.lru_cache(maxsize=8)
def _module(device_id: int) -> Any:
    import cupy as cp

    return cp.RawModule(code=CUDA_SOURCE)


@implementation("macro_pixel", backend="cupy")
def macro_pixel_cupy(image: Any, magnification: int) -> Any:
    """Macro-pixel corrected copy of ``image`` (Y, X) or (n, Y, X) float32."""
    import cupy as cp

    m = int(magnification)
    on_host = isinstance(image, np.ndarray)
    d = cp.ascontiguousarray(cp.asarray(image, dtype=cp.float32))
    stack = d.reshape((-1, *d.shape[-2:]))
    n, ny, nx = stack.shape
    if ny // m == 0 or nx // m == 0:
        out = stack.copy()
    else:
        mod = _module(cp.cuda.Device().id)
        cmap = cp.empty((n, m, m), dtype=cp.float32)
        args = (np.int32(n), np.int32(ny), np.int32(nx), np.int32(m))
        mod.get_function("phase_means")(
            ((n * m * m + 63) // 64,), (64,), (stack, cmap, *args)
        )
        out = cp.empty_like(stack)
        total = n * ny * nx
        mod.get_function("divide")(
            ((total + 255) // 256,), (256,), (stack, cmap, out, *args)
        )
    out = out.reshape(d.shape)
    return cp.asnumpy(out) if on_host else out
