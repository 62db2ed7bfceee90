# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""``roberts_cross`` in Cython with OpenMP (``prange`` over rows), float32 as the
reference.  Compiled at install time; registered as implementation ``cython``."""

import numpy as np

from cython.parallel cimport prange

from livesr.engine import implementation


def _grad(const float[:, ::1] im, float[:, ::1] gx, float[:, ::1] gy):
    cdef Py_ssize_t h = im.shape[0], w = im.shape[1], r, c, r0, c0
    cdef float up, left, diag, cur
    with nogil:
        for r in prange(h, schedule="static"):
            r0 = r - 1 if r > 0 else 0
            for c in range(w):
                c0 = c - 1 if c > 0 else 0
                up = im[r0, c]
                left = im[r, c0]
                diag = im[r0, c0]
                cur = im[r, c]
                gx[r, c] = ((up - left) + cur) - diag
                gy[r, c] = ((-up + left) + cur) - diag


@implementation("roberts_cross", backend="cython")
def roberts_cross_cython(image):
    """Roberts-cross ``(gx, gy)`` of ``image`` (H, W) float32, each (H, W) float32."""
    gx = np.empty_like(image)
    gy = np.empty_like(image)
    _grad(image, gx, gy)
    return gx, gy
