"""``temporal`` with numba: parallel over map rows, the accumulator's float64
per-pixel recurrence (sums about the first map).  Compiled on first call."""

from __future__ import annotations

import numba
import numpy as np

from livesr.engine import implementation
from livesr.kernels.temporal import MODES

__all__ = ["temporal_numba"]


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False, nogil=True)
def _stat(maps, mode, out):  # pragma: no cover (compiled)
    n, ny, nx = maps.shape
    for r in numba.prange(ny):
        for c in range(nx):
            if mode == 0:
                s = 0.0
                for t in range(n):
                    s += np.float64(maps[t, r, c])
                out[r, c] = np.float32(s / n)
                continue
            first = np.float64(maps[0, r, c])
            s = 0.0
            q = 0.0
            last = 0.0
            for t in range(n):
                y = np.float64(maps[t, r, c]) - first
                s += y
                if mode == 1:
                    q += y * y
                else:
                    if t > 0:
                        q += last * y
                    last = y
            mean = s / n
            if mode == 1:
                v = q / n - mean * mean
                out[r, c] = np.float32(v if v > 0.0 else 0.0)
            elif n < 2:
                out[r, c] = np.float32(np.nan)
            else:
                a = s - last
                lag = q - mean * (a + s) + (n - 1) * mean * mean
                out[r, c] = np.float32(lag / (n - 1))


@implementation("temporal", backend="numba")
def temporal_numba(maps: np.ndarray, mode: str) -> np.ndarray:
    """Temporal statistic ``(Y, X)`` float32 of ``maps`` (n, Y, X) float32."""
    out = np.empty(maps.shape[1:], dtype=np.float32)
    _stat(maps, MODES.index(mode), out)
    return out
