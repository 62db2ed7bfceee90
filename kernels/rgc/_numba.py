"""``rgc`` with numba: parallel over output rows, vectorisable over each row.

Per output row and window offset (in the reference's row-major order): the
gradient row the offset reads is fetched once, then one branch-free loop over the
row's output pixels gathers the sample's unit gradient (per-column index table),
adds its weight to Wsum and, where the gradient points inwards, ``(1 - |g x u|)
w`` to RGC -- both float32 row buffers, so every pixel sees the reference's
additions in the reference's order (samples that are rejected or not inwards add
``+0.0``, which changes no sum).  Then ``RGC / Wsum``, the exponent, the
intensity weighting; the ``margin`` border is 0.  Host tables from ``_common``
laid out along whole output rows.  Compiled on first call (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

from livesr.engine import implementation
from livesr.kernels._params import EsrrfParams
from livesr.kernels.rgc._common import prepare

__all__ = ["rgc_numba"]


def _row_tables(offs, table, w, m):
    """Per offset ``n`` and output column ``x``: the half-pixel column index read
    (``-1`` when rejected) and ``(w, ux, uy)`` for each row phase.

    Returns ``cols`` (n, W*M) int32 and ``tab`` (M, n, 3, W*M) float32.
    """
    wm = w * m
    x = np.arange(wm)
    tx = (2 * x + 1)[None, :] // m + offs[:, 1][:, None]
    ok = (tx > 0) & (tx <= 2 * (wm - 1))
    cols = np.where(ok, np.minimum(tx, 2 * w), -1).astype(np.int32)
    px = x % m
    # table (n, M_row, M_col, 4) -> (M_row, n, 3, W*M)
    tab = table[:, :, px, :3].transpose(1, 0, 3, 2)
    return np.ascontiguousarray(cols), np.ascontiguousarray(tab, dtype=np.float32)


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False, nogil=True)
def _rgc(
    gxn, gyn, rows_j, cols, tab, inten, h, w, m, margin, weighted, apply_pow, sens, out
):  # pragma: no cover (compiled)
    hm, wm = h * m, w * m
    zero = np.float32(0.0)
    one = np.float32(1.0)
    s32 = np.float32(sens)
    n_off = rows_j.shape[0]
    for y in numba.prange(hm):
        py = y % m
        by = (2 * y + 1) // m
        acc = np.zeros(wm, dtype=np.float32)
        wsum = np.zeros(wm, dtype=np.float32)
        for n in range(n_off):
            ty = by + rows_j[n]
            if ty <= 0 or ty > 2 * (hm - 1):
                continue  # rejected for the whole row
            iy = min(ty, 2 * h)
            grow_x = gxn[iy]
            grow_y = gyn[iy]
            ci = cols[n]
            tw = tab[py, n, 0]
            tux = tab[py, n, 1]
            tuy = tab[py, n, 2]
            for x in range(wm):
                c = ci[x]
                valid = c >= 0
                cc = c if valid else 0
                gx = grow_x[cc]
                gy = grow_y[cc]
                wt = tw[x] if valid else zero
                ux = tux[x]
                uy = tuy[x]
                wsum[x] += wt
                inward = valid and (gx * ux + gy * uy < zero)
                acc[x] += (one - abs(gy * ux - gx * uy)) * wt if inward else zero
        for x in range(wm):
            if y < margin or y >= hm - margin or x < margin or x >= wm - margin:
                out[y, x] = zero
                continue
            r = acc[x] / wsum[x] if wsum[x] > zero else zero
            if apply_pow and r >= zero:
                r = r**s32
            if r < zero:
                r = zero
            if weighted:
                r = r * inten[y, x]
            out[y, x] = r


@implementation("rgc", backend="numba")
def rgc_numba(
    gx2: np.ndarray, gy2: np.ndarray, intensity: np.ndarray | None, params: EsrrfParams
) -> np.ndarray:
    """RGC map ``(H*M, W*M)`` float32 from half-pixel gradients ``(2H+1, 2W+1)``
    float32 and the magnified intensity (see :func:`livesr.kernels.rgc.kernel`)."""
    p = prepare(gx2, gy2, intensity, params)
    cols, tab = _row_tables(p.offs, p.table, p.w, p.m)
    out = np.empty((p.h * p.m, p.w * p.m), dtype=np.float32)
    rows_j = np.ascontiguousarray(p.offs[:, 0])
    _rgc(
        p.gxn,
        p.gyn,
        rows_j,
        cols,
        tab,
        p.intensity,
        p.h,
        p.w,
        p.m,
        p.margin,
        p.weighted,
        p.apply_pow,
        p.sensitivity,
        out,
    )
    return out
