"""``rgc`` with numba: one parallel pass over output rows, float32 sums.

Per output pixel: the loop over the window offsets in the reference's order
(``_common`` documents the sample rule), Wsum and RGC accumulated in float32,
then ``RGC / Wsum``, the sensitivity exponent, the intensity weighting; the
``margin`` border is 0.  Unit gradients and the (phase, offset) table come from
``_common`` (host, small).  Compiled on first call (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

from livesr.engine import implementation
from livesr.kernels._params import EsrrfParams
from livesr.kernels.rgc._common import prepare

__all__ = ["rgc_numba"]


@numba.njit(inline="always", cache=True)
def _sample(gxn, gyn, tab, n, iy, ix, rgc, wsum):  # pragma: no cover (compiled)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    wt = tab[n, 0]
    ux = tab[n, 1]
    uy = tab[n, 2]
    wsum += wt
    gx = gxn[iy, ix]
    gy = gyn[iy, ix]
    if gx * ux + gy * uy < zero:
        rgc += (one - abs(gy * ux - gx * uy)) * wt
    return rgc, wsum


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False)
def _rgc(
    gxn, gyn, offs, table, inten, h, w, m, margin, weighted, apply_pow, sens, out
):  # pragma: no cover (compiled)
    """``table`` is (M, M, n, 4): per (row phase, column phase) the offsets' rows."""
    hm, wm = h * m, w * m
    zero = np.float32(0.0)
    s32 = np.float32(sens)
    n_off = offs.shape[0]
    jmin, jmax = offs[:, 0].min(), offs[:, 0].max()
    imin, imax = offs[:, 1].min(), offs[:, 1].max()
    ylim = min(2 * h, 2 * (hm - 1))
    xlim = min(2 * w, 2 * (wm - 1))
    for y in numba.prange(hm):
        py = y % m
        by = (2 * y + 1) // m
        row_inside = by + jmin > 0 and by + jmax <= ylim
        for x in range(wm):
            if y < margin or y >= hm - margin or x < margin or x >= wm - margin:
                out[y, x] = zero
                continue
            px = x % m
            bx = (2 * x + 1) // m
            tab = table[py, px]
            rgc = zero
            wsum = zero
            if row_inside and bx + imin > 0 and bx + imax <= xlim:
                # every sample of the window is kept and unclamped
                for n in range(n_off):
                    rgc, wsum = _sample(
                        gxn, gyn, tab, n, by + offs[n, 0], bx + offs[n, 1], rgc, wsum
                    )
            else:
                for n in range(n_off):
                    ty = by + offs[n, 0]
                    if ty <= 0 or ty > 2 * (hm - 1):
                        continue
                    tx = bx + offs[n, 1]
                    if tx <= 0 or tx > 2 * (wm - 1):
                        continue
                    rgc, wsum = _sample(
                        gxn, gyn, tab, n, min(ty, 2 * h), min(tx, 2 * w), rgc, wsum
                    )
            if wsum > zero:
                rgc = rgc / wsum
            else:
                rgc = zero
            if apply_pow and rgc >= zero:
                rgc = rgc**s32
            if rgc < zero:
                rgc = zero
            if weighted:
                rgc = rgc * inten[y, x]
            out[y, x] = rgc


@implementation("rgc", backend="numba")
def rgc_numba(
    gx2: np.ndarray, gy2: np.ndarray, intensity: np.ndarray | None, params: EsrrfParams
) -> np.ndarray:
    """RGC map ``(H*M, W*M)`` float32 from half-pixel gradients ``(2H+1, 2W+1)``
    float32 and the magnified intensity (see :func:`livesr.kernels.rgc.kernel`)."""
    p = prepare(gx2, gy2, intensity, params)
    out = np.empty((p.h * p.m, p.w * p.m), dtype=np.float32)
    _rgc(
        p.gxn,
        p.gyn,
        p.offs,
        np.ascontiguousarray(p.table.transpose(1, 2, 0, 3)),
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
