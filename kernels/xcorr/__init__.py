"""livesr.kernels.xcorr: cross-correlation and sub-pixel peak location.

``_numpy`` is the plain reference (oracle) implementation; faster backends live
beside it and must agree with it. See :mod:`livesr.kernels.xcorr._numpy` for the
lag and map conventions (a lag (dy, dx) > 0 means the image moved towards larger
row / column relative to the reference).
"""

from __future__ import annotations

from livesr.kernels.xcorr._numpy import (
    Registration,
    correlation_spectrum,
    cross_correlation_map,
    integer_peak,
    peak_to_sidelobe_ratio,
    prepare_spectrum,
    register,
    register_spectra,
    subpixel_peak,
    tukey_window,
    upsampled_peak,
    upsampled_peak_axes,
)

__all__ = [
    "Registration",
    "correlation_spectrum",
    "cross_correlation_map",
    "integer_peak",
    "peak_to_sidelobe_ratio",
    "prepare_spectrum",
    "register",
    "register_spectra",
    "subpixel_peak",
    "tukey_window",
    "upsampled_peak",
    "upsampled_peak_axes",
]
