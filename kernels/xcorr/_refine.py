"""Host side of the compiled ``upsampled_peak_axes`` backends (not discovered).

:func:`sweep` runs the coordinate ascent of
:func:`livesr.kernels.xcorr._numpy.upsampled_peak_axes` with the reference's
grid, argmax and parabola (its own ``_three_point``), calling two backend
functions for the O(h·w) work:

- ``collapse(axis, phase)`` -> complex (n_other,): the spectrum summed along
  ``axis`` (1: over columns, 0: over rows) against ``phase`` =
  ``exp(2πi f pos)`` (complex128, computed here exactly as the reference);
- ``profile(v, pos, freqs)`` -> float (n,): ``Re sum_k exp(2πi pos_i f_k) v_k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from livesr.kernels.xcorr._numpy import _three_point

Collapse = Callable[[int, np.ndarray], np.ndarray]
Profile = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def sweep(
    shape: tuple[int, int],
    lag: tuple[float, float],
    upsample: int,
    region: float,
    sweeps: int,
    collapse: Collapse,
    profile: Profile,
) -> tuple[float, float]:
    """The refined lag ``(dy, dx)`` in px (see the module docs)."""
    h, w = shape
    fy = np.fft.fftfreq(h)
    fx = np.fft.fftfreq(w)
    n = int(math.ceil(2 * region * upsample)) + 1
    off = (np.arange(n) - n // 2) / upsample
    y, x = float(lag[0]), float(lag[1])

    def best(prof: np.ndarray, pos: np.ndarray) -> float:
        i = int(np.argmax(prof))
        d = 0.0
        if 0 < i < n - 1:
            d = _three_point(
                float(prof[i - 1]), float(prof[i]), float(prof[i + 1]), False
            )
        return float(pos[i] + d / upsample)

    for _ in range(max(1, sweeps)):
        col = collapse(1, np.exp(2j * np.pi * fx * x))
        py = y + off
        y = best(profile(col, py, fy), py)
        row = collapse(0, np.exp(2j * np.pi * fy * y))
        px = x + off
        x = best(profile(row, px, fx), px)
    return y, x
