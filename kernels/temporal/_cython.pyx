# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""``temporal`` in Cython with OpenMP: ``prange`` over map rows, the accumulator's
float64 per-pixel recurrence.  Compiled at install time; implementation ``cython``."""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport NAN

from livesr.engine import implementation
from livesr.kernels.temporal import MODES


cdef inline float _pixel(const float[:, :, ::1] maps, int mode, Py_ssize_t r,
                         Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t n = maps.shape[0], t
    cdef double s = 0.0, q = 0.0, last = 0.0, first, y, mean, v, a
    if mode == 0:
        for t in range(n):
            s = s + <double>maps[t, r, c]
        return <float>(s / n)
    first = maps[0, r, c]
    for t in range(n):
        y = <double>maps[t, r, c] - first
        s = s + y
        if mode == 1:
            q = q + y * y
        else:
            if t > 0:
                q = q + last * y
            last = y
    mean = s / n
    if mode == 1:
        v = q / n - mean * mean
        return <float>(v if v > 0.0 else 0.0)
    if n < 2:
        return <float>NAN
    a = s - last
    return <float>((q - mean * (a + s) + (n - 1) * mean * mean) / (n - 1))


def _stat(const float[:, :, ::1] maps, int mode, float[:, ::1] out):
    cdef Py_ssize_t r, c
    with nogil:
        for r in prange(maps.shape[1], schedule="static"):
            for c in range(maps.shape[2]):
                out[r, c] = _pixel(maps, mode, r, c)


@implementation("temporal", backend="cython")
def temporal_cython(maps, mode):
    """Temporal statistic ``(Y, X)`` float32 of ``maps`` (n, Y, X) float32."""
    out = np.empty(maps.shape[1:], dtype=np.float32)
    _stat(maps, MODES.index(mode), out)
    return out
