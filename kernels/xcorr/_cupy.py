"""``upsampled_peak_axes`` on CUDA with CuPy array operations (the collapses and
1-D DFT profiles as element-wise products and reductions on the device; argmax and
parabola on the host as the reference, ``_refine.sweep``).  ``cupy`` is imported
on first call.  Registered as implementation ``cupy`` of kernel ``xcorr``."""

from __future__ import annotations

from typing import Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels.xcorr._refine import sweep

__all__ = ["upsampled_peak_axes_cupy"]


@implementation("xcorr", backend="cupy")
def upsampled_peak_axes_cupy(
    cross_spectrum: Any,
    lag: tuple[float, float],
    *,
    upsample: int = 20,
    region: float = 1.0,
    sweeps: int = 3,
) -> tuple[float, float]:
    """Refined lag ``(dy, dx)`` px of a (h, w) complex cross spectrum.

    ``cross_spectrum`` may be a numpy or a cupy array.
    """
    import cupy as cp

    xs = cp.asarray(cross_spectrum, dtype=cp.complex128)

    def collapse(axis: int, phase: np.ndarray) -> np.ndarray:
        ph = cp.asarray(phase)
        v = (
            (xs * ph[None, :]).sum(axis=1)
            if axis == 1
            else (xs * ph[:, None]).sum(axis=0)
        )
        return cp.asnumpy(v)

    def profile(v: np.ndarray, pos: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        e = cp.exp(2j * np.pi * cp.asarray(pos)[:, None] * cp.asarray(freqs)[None, :])
        return cp.asnumpy((e * cp.asarray(v)[None, :]).sum(axis=1).real)

    return sweep(tuple(xs.shape), lag, upsample, region, sweeps, collapse, profile)
