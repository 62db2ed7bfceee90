"""Macro-pixel correction of eSRRF images, as NanoPyx 2.1.5.

``macro_pixel_correction(image (Y, X) or (n, Y, X), magnification) -> float32``.
"""

from __future__ import annotations

from livesr.kernels.macro_pixel._numpy import macro_pixel_correction

__all__ = ["macro_pixel_correction"]
