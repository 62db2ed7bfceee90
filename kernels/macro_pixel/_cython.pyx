# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""``macro_pixel`` in Cython with OpenMP: per-phase float64 sums in one sequential
pass, then ``prange`` over rows for the division.  Compiled at install time;
implementation ``cython``."""

import numpy as np

from cython.parallel cimport prange

from livesr.engine import implementation


def _correct(const float[:, :, ::1] stack, int m, float[:, :, ::1] out):
    cdef Py_ssize_t n = stack.shape[0], ny = stack.shape[1], nx = stack.shape[2]
    cdef int rows = ny // m, cols = nx // m
    cdef float inv = <float>(rows * cols)
    cdef double[:, ::1] acc = np.zeros((m, m), dtype=np.float64)
    cdef float[:, ::1] cmap = np.zeros((m, m), dtype=np.float32)
    cdef Py_ssize_t s, y, x
    cdef int a, b
    cdef float c, v
    for s in range(n):
        with nogil:
            # one sequential pass (cache friendly); per phase the terms are still
            # added macro-pixel row by row, column by column
            for a in range(m):
                for b in range(m):
                    acc[a, b] = 0.0
            for y in range(rows * m):
                a = y % m
                for x in range(cols * m):
                    acc[a, x % m] += <double>(stack[s, y, x] / inv)
            for a in range(m):
                for b in range(m):
                    cmap[a, b] = <float>acc[a, b]
            for y in prange(ny, schedule="static"):
                for x in range(nx):
                    c = cmap[y % m, x % m]
                    v = stack[s, y, x]
                    out[s, y, x] = v / c if c != 0 else v


@implementation("macro_pixel", backend="cython")
def macro_pixel_cython(image, magnification):
    """Macro-pixel corrected copy of ``image`` (Y, X) or (n, Y, X) float32."""
    m = int(magnification)
    stack = image.reshape((-1, *image.shape[-2:]))
    if stack.shape[1] // m == 0 or stack.shape[2] // m == 0:
        return image.copy()
    out = np.empty_like(stack)
    _correct(stack, m, out)
    return out.reshape(image.shape)
