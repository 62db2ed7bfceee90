"""``esrrf_map_batch`` with the OpenCL ``esrrf_map`` per frame."""

from __future__ import annotations

from typing import Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels.esrrf_map._opencl import esrrf_map_opencl
from livesr.kernels.esrrf_map_batch._loop import map_loop

__all__ = ["esrrf_map_batch_opencl"]


@implementation("esrrf_map_batch", backend="opencl")
def esrrf_map_batch_opencl(
    frames: np.ndarray,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shifts: np.ndarray | None = None,
    out: Any = None,
) -> np.ndarray:
    """Maps of a ``(N, H, W)`` float32 batch (OpenCL per frame); ``(N, H*M, W*M)``."""
    return map_loop(
        esrrf_map_opencl, frames, magnification, radius, sensitivity,
        intensity_weighting, shifts, out,
    )
