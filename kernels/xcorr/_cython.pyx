# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""``upsampled_peak_axes`` in Cython with OpenMP: the O(h·w) collapses and the
1-D DFT profiles as ``prange`` loops in double precision; argmax and parabola on
the host exactly as the reference (``_refine.sweep``).  Compiled at install time;
registered as implementation ``cython`` of kernel ``xcorr``."""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport M_PI, cos, sin

from livesr.engine import implementation
from livesr.kernels.xcorr._refine import sweep


def _collapse(const double complex[:, ::1] x, const double complex[::1] phase, int axis):
    cdef Py_ssize_t h = x.shape[0], w = x.shape[1], k, l
    cdef Py_ssize_t n_out = h if axis == 1 else w
    out = np.empty(n_out, dtype=np.complex128)
    cdef double complex[::1] o = out
    cdef double complex acc
    with nogil:
        for k in prange(n_out, schedule="static"):
            acc = 0
            if axis == 1:
                for l in range(w):
                    acc = acc + x[k, l] * phase[l]
            else:
                for l in range(h):
                    acc = acc + x[l, k] * phase[l]
            o[k] = acc
    return out


def _profile(const double complex[::1] v, const double[::1] pos, const double[::1] freqs):
    cdef Py_ssize_t n = pos.shape[0], i, k
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    cdef double acc, a
    with nogil:
        for i in prange(n, schedule="static"):
            acc = 0.0
            for k in range(freqs.shape[0]):
                a = 2.0 * M_PI * pos[i] * freqs[k]
                acc = acc + (cos(a) * v[k].real - sin(a) * v[k].imag)
            o[i] = acc
    return out


@implementation("xcorr", backend="cython")
def upsampled_peak_axes_cython(cross_spectrum, lag, *, upsample=20, region=1.0, sweeps=3):
    """Refined lag ``(dy, dx)`` px of a (h, w) complex128 cross spectrum."""
    xs = np.ascontiguousarray(cross_spectrum, dtype=np.complex128)

    def collapse(axis, phase):
        return _collapse(xs, np.ascontiguousarray(phase, dtype=np.complex128), axis)

    def profile(v, pos, freqs):
        return _profile(np.ascontiguousarray(v, dtype=np.complex128),
                        np.ascontiguousarray(pos, dtype=np.float64),
                        np.ascontiguousarray(freqs, dtype=np.float64))

    return sweep(xs.shape, lag, upsample, region, sweeps, collapse, profile)
