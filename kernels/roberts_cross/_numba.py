"""``roberts_cross`` with numba: parallel over rows, float32 as the reference."""

from __future__ import annotations

import numba
import numpy as np

from livesr.engine import implementation

__all__ = ["roberts_cross_numba"]


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False, nogil=True)
def _grad(im, gx, gy):  # pragma: no cover (compiled)
    h, w = im.shape
    for r in numba.prange(h):
        r0 = r - 1 if r > 0 else 0
        for c in range(w):
            c0 = c - 1 if c > 0 else 0
            up = im[r0, c]
            left = im[r, c0]
            diag = im[r0, c0]
            cur = im[r, c]
            gx[r, c] = ((up - left) + cur) - diag
            gy[r, c] = ((-up + left) + cur) - diag


@implementation("roberts_cross", backend="numba")
def roberts_cross_numba(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roberts-cross ``(gx, gy)`` of ``image`` (H, W) float32, each (H, W) float32."""
    gx = np.empty_like(image)
    gy = np.empty_like(image)
    _grad(image, gx, gy)
    return gx, gy
