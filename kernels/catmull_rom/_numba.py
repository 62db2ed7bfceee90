"""``catmull_rom`` with numba: parallel over output rows, float64 sums.

Per output row ``s``: the row pass ``p[c] = sum_t rw[s, t] * img[ri[s, t], c]``
for every input column (float64), then per output column ``u`` the column pass
``sum_t p[ci[u, t]] * cw[u, t]``, rounded once to float32 -- the reference's
operations in the reference's order.  Compiled on first call (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

from livesr.engine import implementation
from livesr.kernels.catmull_rom._common import taps

__all__ = ["catmull_rom_numba"]


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False, nogil=True)
def _sample(img, ri, rw, ci, cw, out):  # pragma: no cover (compiled)
    k, l_ = out.shape
    w = img.shape[1]
    for s in numba.prange(k):
        p = np.zeros(w, dtype=np.float64)
        for t in range(4):
            r = ri[s, t]
            wt = rw[s, t]
            for c in range(w):
                p[c] += wt * np.float64(img[r, c])
        for u in range(l_):
            q = 0.0
            for t in range(4):
                q += p[ci[u, t]] * cw[u, t]
            out[s, u] = np.float32(q)


@implementation("catmull_rom", backend="numba")
def catmull_rom_numba(
    image: np.ndarray, row_coords: np.ndarray, col_coords: np.ndarray
) -> np.ndarray:
    """Catmull-Rom samples of ``image`` (H, W) float32 on ``row_coords x col_coords``.

    Returns
    -------
    (len(row_coords), len(col_coords)) float32
    """
    ri, rw, ci, cw = taps(image, row_coords, col_coords)
    out = np.empty((ri.shape[0], ci.shape[0]), dtype=np.float32)
    _sample(image, ri, rw, ci, cw, out)
    return out
