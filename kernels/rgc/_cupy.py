"""``rgc`` on CUDA through a CuPy ``RawKernel``: one thread per output pixel.

The per-pixel loop of ``_opencl.cl.mako`` in CUDA C, compiled once per constant
set (``-D`` options) with ``--fmad=false`` so float32 products are not fused (as
the reference).  Host tables from ``_common``; ``cupy`` is imported on first call.
numpy in -> numpy out.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels._params import EsrrfParams
from livesr.kernels.rgc._common import prepare

__all__ = ["CUDA_SOURCE", "rgc_cupy"]

CUDA_SOURCE = r"""
extern "C" __global__ void rgc(
    const float *gxn, const float *gyn, const int *offs, const float4 *table,
    const float *inten, float *out)
{
    const int HM = H * M, WM = W * M, GC = 2 * W + 1;
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= WM || y >= HM) return;
    if (y < MARGIN || y >= HM - MARGIN || x < MARGIN || x >= WM - MARGIN) {
        out[y * WM + x] = 0.0f;
        return;
    }
    int py = y % M, px = x % M, by = (2 * y + 1) / M, bx = (2 * x + 1) / M;
    float rgc = 0.0f, wsum = 0.0f;
    for (int n = 0; n < NOFF; ++n) {
        int ty = by + offs[2 * n];
        if (ty <= 0 || ty > 2 * (HM - 1)) continue;
        int tx = bx + offs[2 * n + 1];
        if (tx <= 0 || tx > 2 * (WM - 1)) continue;
        int iy = min(ty, 2 * H), ix = min(tx, 2 * W);
        float4 t = table[(n * M + py) * M + px];
        wsum += t.x;
        float gx = gxn[iy * GC + ix], gy = gyn[iy * GC + ix];
        if (gx * t.y + gy * t.z < 0.0f)
            rgc += (1.0f - fabsf(gy * t.y - gx * t.z)) * t.x;
    }
    rgc = wsum > 0.0f ? rgc / wsum : 0.0f;
    if (APPLY_POW && rgc >= 0.0f) rgc = powf(rgc, SENS);
    if (rgc < 0.0f) rgc = 0.0f;
    if (WEIGHTED) rgc *= inten[y * WM + x];
    out[y * WM + x] = rgc;
}
"""


@functools.lru_cache(maxsize=32)
def _kernel(options: tuple[str, ...], device_id: int) -> Any:
    import cupy as cp

    return cp.RawModule(code=CUDA_SOURCE, options=options).get_function("rgc")


@implementation("rgc", backend="cupy")
def rgc_cupy(
    gx2: np.ndarray, gy2: np.ndarray, intensity: np.ndarray | None, params: EsrrfParams
) -> np.ndarray:
    """RGC map ``(H*M, W*M)`` float32 (see :func:`livesr.kernels.rgc.kernel`)."""
    import cupy as cp

    p = prepare(
        np.asarray(gx2),
        np.asarray(gy2),
        None if intensity is None else np.asarray(intensity),
        params,
    )
    kern = _kernel(compile_options(p), cp.cuda.Device().id)
    hm, wm = p.h * p.m, p.w * p.m
    out = cp.empty((hm, wm), dtype=cp.float32)
    a = cp.asarray
    kern(
        ((wm + 31) // 32, (hm + 7) // 8, 1),
        (32, 8, 1),
        (a(p.gxn), a(p.gyn), a(p.offs), a(p.table), a(p.intensity), out),
    )
    return cp.asnumpy(out)


def compile_options(p: Any) -> tuple[str, ...]:
    """NVRTC options of the CUDA ``rgc`` kernel for a prepared call ``p`` (its
    shape, magnification, ring offsets, margin and flags are compile-time
    constants; no fused multiply-add, to match numpy's rounding).  The
    device-resident sweep (:mod:`livesr.kernels._sweep_device`) compiles the same."""
    return (
        "--fmad=false",
        f"-DH={p.h}",
        f"-DW={p.w}",
        f"-DM={p.m}",
        f"-DNOFF={p.offs.shape[0]}",
        f"-DMARGIN={p.margin}",
        f"-DWEIGHTED={int(p.weighted)}",
        f"-DAPPLY_POW={int(p.apply_pow)}",
        f"-DSENS={p.sensitivity!r}f",
    )
