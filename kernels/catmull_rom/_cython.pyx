# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""``catmull_rom`` in Cython with OpenMP: ``prange`` over output rows, float64 sums.

Same operations and order as the numpy reference (row pass per input column, then
column pass), rounded once to float32.  Compiled at install time
(``pip install -e .``); registered as implementation ``cython``.
"""

import numpy as np

cimport cython
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from livesr.engine import implementation
from livesr.kernels.catmull_rom._common import taps


cdef void _row(const float[:, ::1] img, const int[:, ::1] ri, const double[:, ::1] rw,
               const int[:, ::1] ci, const double[:, ::1] cw, float[:, ::1] out,
               Py_ssize_t s, double *p) noexcept nogil:
    cdef Py_ssize_t w = img.shape[1], c, u, t
    cdef Py_ssize_t r
    cdef double wt, q
    for c in range(w):
        p[c] = 0.0
    for t in range(4):
        r = ri[s, t]
        wt = rw[s, t]
        for c in range(w):
            p[c] += wt * <double>img[r, c]
    for u in range(out.shape[1]):
        q = 0.0
        for t in range(4):
            q += p[ci[u, t]] * cw[u, t]
        out[s, u] = <float>q


def _sample(const float[:, ::1] img, const int[:, ::1] ri, const double[:, ::1] rw,
            const int[:, ::1] ci, const double[:, ::1] cw, float[:, ::1] out):
    cdef Py_ssize_t s, k = out.shape[0], w = img.shape[1]
    cdef double *p
    with nogil:
        for s in prange(k, schedule="static"):
            p = <double *>malloc(w * sizeof(double))
            _row(img, ri, rw, ci, cw, out, s, p)
            free(p)


@implementation("catmull_rom", backend="cython")
def catmull_rom_cython(image, row_coords, col_coords):
    """Catmull-Rom samples of ``image`` (H, W) float32 on ``row_coords x col_coords``.

    Returns
    -------
    (len(row_coords), len(col_coords)) float32
    """
    ri, rw, ci, cw = taps(image, row_coords, col_coords)
    out = np.empty((ri.shape[0], ci.shape[0]), dtype=np.float32)
    _sample(image, ri, rw, ci, cw, out)
    return out
