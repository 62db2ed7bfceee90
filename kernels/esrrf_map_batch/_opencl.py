"""``esrrf_map_batch`` with the OpenCL ``esrrf_map`` per frame."""

from __future__ import annotations

from livesr.engine import implementation
from livesr.kernels.esrrf_map._opencl import esrrf_map_opencl
from livesr.kernels.esrrf_map_batch._loop import batch_of

__all__ = ["esrrf_map_batch_opencl"]

esrrf_map_batch_opencl = implementation("esrrf_map_batch", backend="opencl")(
    batch_of(esrrf_map_opencl, "esrrf_map_batch_opencl", "OpenCL")
)
