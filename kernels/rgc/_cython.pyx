# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""``rgc`` in Cython with OpenMP: ``prange`` over output rows, float32 sums.

The per-pixel loop of ``_numba.py`` (window offsets in the reference's order,
Wsum and RGC in float32, ``powf`` exponent, intensity weighting, zero margin);
host tables from ``_common``.  Compiled at install time; implementation ``cython``.
"""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport fabsf, powf

from livesr.engine import implementation
from livesr.kernels.rgc._common import prepare


cdef inline float _pixel(const float[:, ::1] gxn, const float[:, ::1] gyn,
                         const int[:, ::1] offs, const float[:, :, :, ::1] table,
                         int y, int x, int h, int w, int m) noexcept nogil:
    cdef int hm = h * m, wm = w * m
    cdef int py = y % m, px = x % m
    cdef int by = (2 * y + 1) // m, bx = (2 * x + 1) // m
    cdef int n, ty, tx, iy, ix
    cdef float rgc = 0.0, wsum = 0.0, wt, ux, uy, gx, gy
    for n in range(offs.shape[0]):
        ty = by + offs[n, 0]
        if ty <= 0 or ty > 2 * (hm - 1):
            continue
        tx = bx + offs[n, 1]
        if tx <= 0 or tx > 2 * (wm - 1):
            continue
        iy = ty if ty < 2 * h else 2 * h
        ix = tx if tx < 2 * w else 2 * w
        wt = table[n, py, px, 0]
        ux = table[n, py, px, 1]
        uy = table[n, py, px, 2]
        wsum = wsum + wt
        gx = gxn[iy, ix]
        gy = gyn[iy, ix]
        if gx * ux + gy * uy < 0:
            rgc = rgc + (<float>1.0 - fabsf(gy * ux - gx * uy)) * wt
    if wsum > 0:
        return rgc / wsum
    return 0.0


def _rgc(const float[:, ::1] gxn, const float[:, ::1] gyn, const int[:, ::1] offs,
         const float[:, :, :, ::1] table, const float[:, ::1] inten, int h, int w,
         int m, int margin, bint weighted, bint apply_pow, float sens,
         float[:, ::1] out):
    cdef int hm = h * m, wm = w * m, y, x
    cdef float r
    with nogil:
        for y in prange(hm, schedule="static"):
            for x in range(wm):
                if y < margin or y >= hm - margin or x < margin or x >= wm - margin:
                    out[y, x] = 0.0
                    continue
                r = _pixel(gxn, gyn, offs, table, y, x, h, w, m)
                if apply_pow and r >= 0:
                    r = powf(r, sens)
                if r < 0:
                    r = 0.0
                if weighted:
                    r = r * inten[y, x]
                out[y, x] = r


@implementation("rgc", backend="cython")
def rgc_cython(gx2, gy2, intensity, params):
    """RGC map ``(H*M, W*M)`` float32 (see :func:`livesr.kernels.rgc.kernel`)."""
    p = prepare(gx2, gy2, intensity, params)
    out = np.empty((p.h * p.m, p.w * p.m), dtype=np.float32)
    _rgc(p.gxn, p.gyn, p.offs, p.table, p.intensity, p.h, p.w, p.m, p.margin,
         p.weighted, p.apply_pow, p.sensitivity, out)
    return out
