"""``esrrf_map_batch`` with the Cython ``esrrf_map`` per frame (three OpenMP schedules)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from livesr.engine import implementation
from livesr.kernels.esrrf_map._cython import SCHEDULES, esrrf_map_cython
from livesr.kernels.esrrf_map_batch._loop import batch_of

__all__ = ["variant"]


def variant(schedule: str) -> Callable[..., np.ndarray]:
    """The batch map with the Cython per-frame map of OpenMP ``schedule``."""

    def per_frame(frame, m, r, s, iw, shift, out=None):  # type: ignore[no-untyped-def]
        return esrrf_map_cython(frame, m, r, s, iw, shift, schedule, out)

    return batch_of(
        per_frame,
        f"esrrf_map_batch_cython_{schedule}",
        f"Cython, schedule {schedule},",
        writes_into=True,
    )


for _schedule in SCHEDULES:
    implementation(
        "esrrf_map_batch",
        backend="cython",
        variant="" if _schedule == "static" else _schedule,
    )(variant(_schedule))
