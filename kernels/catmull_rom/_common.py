"""Host-side preparation shared by the compiled ``catmull_rom`` implementations."""

from __future__ import annotations

import numpy as np

from livesr.kernels.catmull_rom._numpy import sample_taps


def taps(
    image: np.ndarray, row_coords: np.ndarray, col_coords: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ri, rw, ci, cw)``: int32 indices and float64 weights, each ``(k, 4)``.

    The same taps as the numpy reference (:func:`sample_taps`), C-contiguous.
    """
    ri, rw = sample_taps(row_coords, image.shape[0])
    ci, cw = sample_taps(col_coords, image.shape[1])
    c = np.ascontiguousarray
    return c(ri, dtype=np.int32), c(rw), c(ci, dtype=np.int32), c(cw)
