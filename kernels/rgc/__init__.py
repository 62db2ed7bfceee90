"""Radial gradient convergence (RGC), the core of eSRRF, as NanoPyx 2.1.5.

``radial_gradient_convergence(gx2, gy2, intensity, params)`` with half-pixel
gradients ``(2H+1, 2W+1)`` float32 and magnified intensity ``(H*M, W*M)`` float32
returns ``(H*M, W*M)`` float32. ``_numpy.py`` is the reference implementation.
"""

from __future__ import annotations

from livesr.kernels.rgc._numpy import (
    offset_tables,
    radial_gradient_convergence,
    window_tables,
)

__all__ = ["offset_tables", "radial_gradient_convergence", "window_tables"]
