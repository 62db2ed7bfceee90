"""Fused numba implementation of the window sums (imports numba: load it lazily).

:data:`KERNELS` is ``(update, combine)`` multi-threaded, then the same two
single-threaded (:data:`livesr.kernels._window.PARALLEL_MIN_PIXELS` picks).
``update(sums..., x_rem, x_next, do_rem, x_add, x_prev, do_add, add_lag)`` removes
then adds an image in one pass over the pixels; ``combine(mode, n, sums..., first,
last, out)`` writes the statistic (0 AVG, 1 VAR, 2 TAC2).  :data:`WINDOW_MEAN`
(multi-threaded, then serial) is ``window_mean(ring, slots, out)``: the AVG of the
stored images ``ring[slots]`` summed at once (:func:`livesr.kernels._window.
window_mean`), pixel tile by pixel tile. Each performs, per
element, exactly the float64 operations of the numpy implementation
(:mod:`._numpy`) in the same order (no fast-math, so no contraction into FMA),
hence the same bits. Arrays are flat (``reshape(-1)``); absent sums or images are
empty arrays with their flag off.
"""

from __future__ import annotations

import types
from typing import Any

import numba
import numpy as np

__all__ = ["KERNELS", "WINDOW_MEAN", "warm_up"]


@numba.njit(inline="always", cache=True, nogil=True)
def two_sum(hi, lo, y):  # type: ignore[no-untyped-def]
    t = hi + y
    z = t - hi
    e = (y - z) + (hi - (t - z))
    return t, lo + e


def update(  # type: ignore[no-untyped-def]  # noqa: PLR0913
    s_hi,
    s_lo,
    q_hi,
    q_lo,
    p_hi,
    p_lo,
    ref,
    centred,
    need_q,
    need_p,
    x_rem,
    x_next,
    do_rem,
    x_add,
    x_prev,
    do_add,
    add_lag,
):
    for k in numba.prange(s_hi.shape[0]):
        r = np.float64(ref[k]) if centred else 0.0
        sh = s_hi[k]
        sl = s_lo[k]
        if do_rem:
            y = np.float64(x_rem[k]) - r
            sh, sl = two_sum(sh, sl, -y)
            if need_q:
                q_hi[k], q_lo[k] = two_sum(q_hi[k], q_lo[k], -(y * y))
            if need_p:
                yf = np.float64(x_next[k]) - r
                p_hi[k], p_lo[k] = two_sum(p_hi[k], p_lo[k], -(y * yf))
        if do_add:
            y = np.float64(x_add[k]) - r
            sh, sl = two_sum(sh, sl, y)
            if need_q:
                q_hi[k], q_lo[k] = two_sum(q_hi[k], q_lo[k], y * y)
            if need_p and add_lag:
                yp = np.float64(x_prev[k]) - r
                p_hi[k], p_lo[k] = two_sum(p_hi[k], p_lo[k], yp * y)
        s_hi[k] = sh
        s_lo[k] = sl

def combine(  # type: ignore[no-untyped-def]  # noqa: PLR0913
    mode,
    n,
    s_hi,
    s_lo,
    q_hi,
    q_lo,
    p_hi,
    p_lo,
    ref,
    centred,
    first,
    last,
    out,
):
    nf = np.float64(n)
    for k in numba.prange(s_hi.shape[0]):
        mean = (s_hi[k] + s_lo[k]) / nf
        if mode == 0:
            if centred:
                mean = mean + np.float64(ref[k])
            out[k] = np.float32(mean)
        elif mode == 1:
            v = (q_hi[k] + q_lo[k]) / nf
            v = v - mean * mean
            if v < 0.0:
                v = 0.0
            out[k] = np.float32(v)
        else:
            r = np.float64(ref[k])
            ab = (s_hi[k] + s_lo[k]) * 2.0
            ab = ab - (np.float64(first[k]) - r)
            ab = ab - (np.float64(last[k]) - r)
            acc = p_hi[k] + p_lo[k]
            acc = acc - mean * ab
            acc = acc + np.float64(n - 1) * (mean * mean)
            out[k] = np.float32(acc / np.float64(n - 1))

#: pixels per tile of :func:`window_mean` (its float64 sums stay in the L1/L2 cache)
MEAN_TILE = 1024


def window_mean(ring, slots, out):  # type: ignore[no-untyped-def]
    """``out = float32((hi + lo) / n)`` with ``(hi, lo)`` the TwoSum sum of
    ``ring[slots[0]], ring[slots[1]], ...`` in that order: the operations of
    ``CompensatedSum.add`` per image, then of ``combine`` (AVG, not centred).
    Written out (not :func:`two_sum`) so the tile loop vectorises: 2x faster."""
    n = slots.shape[0]
    size = out.shape[0]
    tiles = (size + MEAN_TILE - 1) // MEAN_TILE
    nf = np.float64(n)
    for t in numba.prange(tiles):
        a = t * MEAN_TILE
        b = min(size, a + MEAN_TILE)
        m = b - a
        hi = np.zeros(m)
        lo = np.zeros(m)
        for j in range(n):
            row = ring[slots[j], a:b]
            for k in range(m):
                h = hi[k]
                y = np.float64(row[k])
                s = h + y
                z = s - h
                lo[k] += (y - z) + (h - (s - z))
                hi[k] = s
        for k in range(m):
            out[a + k] = np.float32((hi[k] + lo[k]) / nf)


def _serial(fn: Any) -> Any:
    """A copy of ``fn`` named ``<name>_serial`` for its single-threaded jit.

    Numba's on-disk cache files a function by its qualified name and line and
    keys the entries by signature and CPU, not by ``parallel``: jitting one
    Python function twice (``parallel=True`` and ``False``) made both load
    whichever variant was cached first (the serial kernel ran multi-threaded,
    or the parallel one serially, depending on what compiled first).
    """
    twin = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__,
        fn.__closure__,
    )
    twin.__qualname__ = fn.__qualname__ + "_serial"
    return twin


# nogil: the window update runs on the processing thread beside the ingest
# thread (ZeroMQ receive + persist); holding the GIL for milliseconds per frame
# starved it (the source ring overflowed on a 256² @ 200 fps run).
def _jit(parallel: bool) -> Any:
    return numba.njit(
        parallel=parallel, cache=True, fastmath=False, boundscheck=False, nogil=True
    )


KERNELS: tuple[Any, Any, Any, Any] = (
    _jit(True)(update),
    _jit(True)(combine),
    _jit(False)(_serial(update)),
    _jit(False)(_serial(combine)),
)


#: ``window_mean`` multi-threaded, then single-threaded
WINDOW_MEAN: tuple[Any, Any] = (
    _jit(True)(window_mean),
    _jit(False)(_serial(window_mean)),
)


def warm_up() -> None:
    """Compile (or load from numba's disk cache) the six kernels now."""
    x = np.ones(1, dtype=np.float32)
    for offset in (0, 2):
        update, combine = KERNELS[offset], KERNELS[offset + 1]
        hi, lo = np.zeros(1), np.zeros(1)
        update(hi, lo, hi.copy(), lo.copy(), hi.copy(), lo.copy(), x,
               True, True, True, x, x, True, x, x, True, True)
        combine(2, 2, hi, lo, hi, lo, hi, lo, x, True, x, x, np.empty(1, np.float32))
    ring = np.ones((2, 1), dtype=np.float32)
    for mean in WINDOW_MEAN:
        mean(ring, np.arange(2, dtype=np.int64), np.empty(1, np.float32))
