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


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False)
def _rgc(
    gxn, gyn, offs, table, inten, h, w, m, margin, weighted, apply_pow, sens, out
):  # pragma: no cover (compiled)
    hm, wm = h * m, w * m
    zero = np.float32(0.0)
    one = np.float32(1.0)
    s32 = np.float32(sens)
    n_off = offs.shape[0]
    for y in numba.prange(hm):
        py = y % m
        by = (2 * y + 1) // m
        for x in range(wm):
            if y < margin or y >= hm - margin or x < margin or x >= wm - margin:
                out[y, x] = zero
                continue
            px = x % m
            bx = (2 * x + 1) // m
            rgc = zero
            wsum = zero
            for n in range(n_off):
                ty = by + offs[n, 0]
                if ty <= 0 or ty > 2 * (hm - 1):
                    continue
                tx = bx + offs[n, 1]
                if tx <= 0 or tx > 2 * (wm - 1):
                    continue
                iy = min(ty, 2 * h)
                ix = min(tx, 2 * w)
                wt = table[n, py, px, 0]
                ux = table[n, py, px, 1]
                uy = table[n, py, px, 2]
                wsum += wt
                gx = gxn[iy, ix]
                gy = gyn[iy, ix]
                if gx * ux + gy * uy < zero:
                    rgc += (one - abs(gy * ux - gx * uy)) * wt
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
        p.table,
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
