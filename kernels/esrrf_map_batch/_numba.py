"""``esrrf_map_batch`` with the numba ``esrrf_map`` per frame."""

from __future__ import annotations

from livesr.engine import implementation
from livesr.kernels.esrrf_map._numba import esrrf_map_numba
from livesr.kernels.esrrf_map_batch._loop import batch_of

__all__ = ["esrrf_map_batch_numba"]

esrrf_map_batch_numba = implementation("esrrf_map_batch", backend="numba")(
    batch_of(esrrf_map_numba, "esrrf_map_batch_numba", "numba")
)
