"""Catmull-Rom (Keys a = -0.5) sampling and magnification, NanoPyx conventions.

``_numpy.py`` is the readable reference every other implementation is checked
against. Shapes: ``magnify(image (H, W) float32, M) -> (H*M, W*M) float32``;
``upsample_gradient(g (H, W) float32, M) -> (2H+1, 2W+1) float32``.
"""

from __future__ import annotations

from livesr.kernels.catmull_rom._numpy import (
    catmull_rom_sample,
    cubic_kernel,
    gradient_coordinates,
    magnification_coordinates,
    magnify,
    sample_taps,
    sample_weights,
    upsample_gradient,
)

__all__ = [
    "catmull_rom_sample",
    "cubic_kernel",
    "gradient_coordinates",
    "magnification_coordinates",
    "magnify",
    "sample_taps",
    "sample_weights",
    "upsample_gradient",
]
