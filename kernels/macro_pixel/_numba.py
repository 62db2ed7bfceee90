"""``macro_pixel`` with numba: per-phase float64 sums in one sequential pass, then a
parallel division over rows.  Compiled on first call (``cache=True``)."""

from __future__ import annotations

import numba
import numpy as np

from livesr.engine import implementation

__all__ = ["macro_pixel_numba"]


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False, nogil=True)
def _correct(stack, m, out):  # pragma: no cover (compiled)
    n, ny, nx = stack.shape
    rows = ny // m
    cols = nx // m
    inv = np.float32(rows * cols)
    for s in range(n):
        # one sequential pass (cache friendly); per phase the terms are still added
        # macro-pixel row by row, column by column
        acc = np.zeros((m, m), dtype=np.float64)
        for y in range(rows * m):
            a = y % m
            for x in range(cols * m):
                acc[a, x % m] += np.float64(stack[s, y, x] / inv)
        cmap = acc.astype(np.float32)
        for y in numba.prange(ny):
            for x in range(nx):
                c = cmap[y % m, x % m]
                v = stack[s, y, x]
                out[s, y, x] = v / c if c != 0 else v


@implementation("macro_pixel", backend="numba")
def macro_pixel_numba(image: np.ndarray, magnification: int) -> np.ndarray:
    """Macro-pixel corrected copy of ``image`` (Y, X) or (n, Y, X) float32."""
    m = int(magnification)
    stack = image.reshape((-1, *image.shape[-2:]))
    if stack.shape[1] // m == 0 or stack.shape[2] // m == 0:
        return image.copy()
    out = np.empty_like(stack)
    _correct(stack, m, out)
    return out.reshape(image.shape)
