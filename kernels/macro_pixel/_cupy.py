"""``macro_pixel`` on CUDA through CuPy ``RawKernel``s: per-phase float64 means
(one block of 256 threads per phase and slice, a tree reduction), then one thread
per pixel for the division.
``cupy`` is imported on first call; numpy in -> numpy out, cupy in -> cupy out."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from livesr.engine import implementation

__all__ = ["CUDA_SOURCE", "macro_pixel_cupy"]

CUDA_SOURCE = r"""
// One block per (slice, phase): its threads stride over the phase's pixels and
// sum x / (rows * cols) in float64, then a shared-memory tree adds the partial
// sums (the order of the float64 additions differs from the serial NanoPyx loop
// by rounding far below float32; the result is cast to float32 as there).
extern "C" __global__ void phase_means(const float *img, float *cmap, int n, int ny,
                                       int nx, int m)
{
    __shared__ double part[256];
    int t = blockIdx.x;
    if (t >= n * m * m) return;
    int s = t / (m * m), ab = t % (m * m), a = ab / m, b = ab % m;
    int rows = ny / m, cols = nx / m;
    float inv = (float)(rows * cols);
    const float *im = img + (size_t)s * ny * nx;
    long long total = (long long)rows * cols;
    double acc = 0.0;
    for (long long k = threadIdx.x; k < total; k += blockDim.x) {
        long long p = k / cols, q = k % cols;
        acc += (double)__fdiv_rn(im[(size_t)(p * m + a) * nx + q * m + b], inv);
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) cmap[t] = (float)part[0];
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
        mod.get_function("phase_means")((n * m * m,), (256,), (stack, cmap, *args))
        out = cp.empty_like(stack)
        total = n * ny * nx
        mod.get_function("divide")(
            ((total + 255) // 256,), (256,), (stack, cmap, out, *args)
        )
    out = out.reshape(d.shape)
    return cp.asnumpy(out) if on_host else out
