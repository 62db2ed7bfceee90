"""``upsampled_peak_axes`` with numba: the O(h·w) collapses and the 1-D DFT
profiles as parallel loops; argmax and parabola on the host exactly as the
reference (``_refine.sweep``).  Compiled on first call (``cache=True``).
Registered as implementation ``numba`` of kernel ``xcorr``."""

from __future__ import annotations

import numba
import numpy as np

from livesr.engine import implementation
from livesr.kernels.xcorr._refine import sweep

__all__ = ["upsampled_peak_axes_numba"]


@numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
def _collapse_cols(x, phase):  # pragma: no cover (compiled)
    h, w = x.shape
    out = np.empty(h, dtype=np.complex128)
    for k in numba.prange(h):
        acc = 0j
        for l_ in range(w):
            acc += x[k, l_] * phase[l_]
        out[k] = acc
    return out


@numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
def _collapse_rows(x, phase):  # pragma: no cover (compiled)
    h, w = x.shape
    out = np.zeros(w, dtype=np.complex128)
    for l_ in numba.prange(w):
        acc = 0j
        for k in range(h):
            acc += x[k, l_] * phase[k]
        out[l_] = acc
    return out


@numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
def _profile(v, pos, freqs):  # pragma: no cover (compiled)
    n = pos.shape[0]
    out = np.empty(n, dtype=np.float64)
    two_pi = 2.0 * np.pi
    for i in numba.prange(n):
        acc = 0.0
        for k in range(freqs.shape[0]):
            a = two_pi * pos[i] * freqs[k]
            acc += np.cos(a) * v[k].real - np.sin(a) * v[k].imag
        out[i] = acc
    return out


@implementation("xcorr", backend="numba")
def upsampled_peak_axes_numba(
    cross_spectrum: np.ndarray,
    lag: tuple[float, float],
    *,
    upsample: int = 20,
    region: float = 1.0,
    sweeps: int = 3,
) -> tuple[float, float]:
    """Refined lag ``(dy, dx)`` px, as ``xcorr._numpy.upsampled_peak_axes``.

    Parameters
    ----------
    cross_spectrum : (h, w) complex128
        Unshifted cross-power spectrum.
    lag : (float, float)
        Starting lag (dy, dx), px.
    upsample, region, sweeps
        As the reference.
    """
    xs = np.ascontiguousarray(cross_spectrum, dtype=np.complex128)

    def collapse(axis: int, phase: np.ndarray) -> np.ndarray:
        return _collapse_cols(xs, phase) if axis == 1 else _collapse_rows(xs, phase)

    return sweep(xs.shape, lag, upsample, region, sweeps, collapse, _profile)
