"""``esrrf_map_batch`` reference: the numpy ``esrrf_map`` per frame."""

from __future__ import annotations

from typing import Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels.esrrf_map._numpy import esrrf_map_numpy
from livesr.kernels.esrrf_map_batch._loop import map_loop

__all__ = ["esrrf_map_batch_numpy"]


@implementation("esrrf_map_batch", backend="numpy")
def esrrf_map_batch_numpy(
    frames: np.ndarray,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shifts: np.ndarray | None = None,
    out: Any = None,
) -> np.ndarray:
    """Maps of a ``(N, H, W)`` float32 batch, frame ``k`` shifted by ``shifts[k]``
    (input px); ``(N, H*M, W*M)`` float32 (the reference)."""
    return map_loop(
        esrrf_map_numpy,
        frames,
        magnification,
        radius,
        sensitivity,
        intensity_weighting,
        shifts,
        out,
    )
