"""CUDA implementation of the window sums (CuPy raw kernels), for the GPU window.

The arithmetic of :mod:`._numba` / :mod:`._numpy` on device arrays, compiled
without FMA contraction (``--fmad=false``) so batched and frame-by-frame pushes of
:class:`livesr.kernels.sliding.DeviceSlidingEsrrf` give the same bits.  Unlike
the host kernels the six sums (``S, Q, P`` as hi/lo pairs) are always kept and
centred on a reference map ``ref`` (AVG adds it back):

``window_update(sums..., ref, x_rem, x_next, do_rem, has_next, x_add, x_prev,
do_add, has_prev, n)``
    Remove one map (with the following one, for the lag-1 sum) and/or add one
    (after the previous one).
``window_update_many(sums..., ref, ops, nops, n)``
    The updates of a batch in one pass: op ``k`` is the pointer quadruple
    ``ops[4k .. 4k+3]`` = (rem, next, add, prev), 0 for absent; exactly the
    arithmetic of ``nops`` calls of ``window_update``, sums read and written once.
``window_combine(mode, n, sums..., ref, first, last, out, npix)``
    The statistic, 0 AVG, 1 VAR, 2 TAC2 (float32 ``out``).

Launch with :data:`THREADS` threads per block over the ``n`` output pixels.
"""

from __future__ import annotations

import functools
from typing import Any

from livesr.kernels._lazy import LazyModule

__all__ = ["THREADS", "cuda_kernels", "grid"]

cp: Any = LazyModule("cupy")

#: threads per block of every window-sum launch
THREADS = 256

_SOURCE = r"""
__device__ __forceinline__ void two_sum(double &hi, double &lo, double y) {
    double t = hi + y;
    double z = t - hi;
    double e = (y - z) + (hi - (t - z));
    hi = t;
    lo = lo + e;
}

extern "C" __global__ void window_update(
    double *s_hi, double *s_lo, double *q_hi, double *q_lo, double *p_hi,
    double *p_lo, const float *ref,
    const float *x_rem, const float *x_next, int do_rem, int has_next,
    const float *x_add, const float *x_prev, int do_add, int has_prev,
    long long n)
{
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    double r = (double)ref[k];
    double sh = s_hi[k], sl = s_lo[k], qh = q_hi[k], ql = q_lo[k];
    double ph = p_hi[k], pl = p_lo[k];
    if (do_rem) {
        double y = (double)x_rem[k] - r;
        two_sum(sh, sl, -y);
        two_sum(qh, ql, -(y * y));
        if (has_next) {
            double yf = (double)x_next[k] - r;
            two_sum(ph, pl, -(y * yf));
        }
    }
    if (do_add) {
        double y = (double)x_add[k] - r;
        two_sum(sh, sl, y);
        two_sum(qh, ql, y * y);
        if (has_prev) {
            double yp = (double)x_prev[k] - r;
            two_sum(ph, pl, yp * y);
        }
    }
    s_hi[k] = sh; s_lo[k] = sl; q_hi[k] = qh; q_lo[k] = ql; p_hi[k] = ph; p_lo[k] = pl;
}

// The window updates of a batch in one pass: op k removes map rem (with the
// following map nxt) and/or adds map add (after map prev), pointers in
// ops[4k .. 4k+3] (0: absent), in order; exactly the arithmetic of k calls to
// window_update, with the sums read and written once.
extern "C" __global__ void window_update_many(
    double *s_hi, double *s_lo, double *q_hi, double *q_lo, double *p_hi,
    double *p_lo, const float *ref, const unsigned long long *ops, int nops,
    long long n)
{
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    double r = (double)ref[k];
    double sh = s_hi[k], sl = s_lo[k], qh = q_hi[k], ql = q_lo[k];
    double ph = p_hi[k], pl = p_lo[k];
    for (int o = 0; o < nops; o++) {
        const float *x_rem = (const float *)ops[4 * o];
        const float *x_next = (const float *)ops[4 * o + 1];
        const float *x_add = (const float *)ops[4 * o + 2];
        const float *x_prev = (const float *)ops[4 * o + 3];
        if (x_rem) {
            double y = (double)x_rem[k] - r;
            two_sum(sh, sl, -y);
            two_sum(qh, ql, -(y * y));
            if (x_next) {
                double yf = (double)x_next[k] - r;
                two_sum(ph, pl, -(y * yf));
            }
        }
        if (x_add) {
            double y = (double)x_add[k] - r;
            two_sum(sh, sl, y);
            two_sum(qh, ql, y * y);
            if (x_prev) {
                double yp = (double)x_prev[k] - r;
                two_sum(ph, pl, yp * y);
            }
        }
    }
    s_hi[k] = sh; s_lo[k] = sl; q_hi[k] = qh; q_lo[k] = ql; p_hi[k] = ph; p_lo[k] = pl;
}

extern "C" __global__ void window_combine(
    int mode, int n, const double *s_hi, const double *s_lo, const double *q_hi,
    const double *q_lo, const double *p_hi, const double *p_lo, const float *ref,
    const float *first, const float *last, float *out, long long npix)
{
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= npix) return;
    double nf = (double)n;
    double r = (double)ref[k];
    double mean = (s_hi[k] + s_lo[k]) / nf;
    if (mode == 0) {
        out[k] = (float)(mean + r);
    } else if (mode == 1) {
        double v = (q_hi[k] + q_lo[k]) / nf;
        v = v - mean * mean;
        if (v < 0.0) v = 0.0;
        out[k] = (float)v;
    } else {
        double ab = (s_hi[k] + s_lo[k]) * 2.0;
        ab = ab - ((double)first[k] - r);
        ab = ab - ((double)last[k] - r);
        double acc = p_hi[k] + p_lo[k];
        acc = acc - mean * ab;
        acc = acc + (double)(n - 1) * (mean * mean);
        out[k] = (float)(acc / (double)(n - 1));
    }
}
"""


def grid(n: int) -> tuple[int]:
    """Blocks of :data:`THREADS` covering ``n`` pixels."""
    return ((n + THREADS - 1) // THREADS,)


@functools.lru_cache(maxsize=8)
def cuda_kernels(device_id: int) -> tuple[Any, Any, Any]:
    """``(window_update, window_combine, window_update_many)`` compiled for the
    current device (``device_id`` keys the cache: one module per device)."""
    del device_id
    mod = cp.RawModule(code=_SOURCE, options=("--fmad=false",))
    return (
        mod.get_function("window_update"),
        mod.get_function("window_combine"),
        mod.get_function("window_update_many"),
    )
