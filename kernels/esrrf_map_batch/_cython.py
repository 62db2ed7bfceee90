"""``esrrf_map_batch`` with the Cython ``esrrf_map`` per frame (three OpenMP schedules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels.esrrf_map._cython import SCHEDULES, esrrf_map_cython
from livesr.kernels.esrrf_map_batch._loop import map_loop

__all__ = ["variant"]


def variant(schedule: str) -> Callable[..., np.ndarray]:
    """The batch map with the Cython per-frame map of OpenMP ``schedule``."""

    def per_frame(frame, m, r, s, iw, shift):  # type: ignore[no-untyped-def]
        return esrrf_map_cython(frame, m, r, s, iw, shift, schedule)

    def esrrf_map_batch(
        frames: np.ndarray,
        magnification: int,
        radius: float,
        sensitivity: float,
        intensity_weighting: bool,
        shifts: np.ndarray | None = None,
        out: Any = None,
    ) -> np.ndarray:
        return map_loop(
            per_frame, frames, magnification, radius, sensitivity,
            intensity_weighting, shifts, out,
        )

    esrrf_map_batch.__name__ = esrrf_map_batch.__qualname__ = (
        f"esrrf_map_batch_cython_{schedule}"
    )
    esrrf_map_batch.__doc__ = (
        f"Maps of a (N, H, W) float32 batch (Cython, schedule {schedule}) per frame."
    )
    return esrrf_map_batch


for _schedule in SCHEDULES:
    implementation(
        "esrrf_map_batch",
        backend="cython",
        variant="" if _schedule == "static" else _schedule,
    )(variant(_schedule))
