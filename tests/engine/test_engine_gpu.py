"""On a CUDA machine: the engine times CuPy work to completion, not to its launch."""

from __future__ import annotations

import importlib
import time

import pytest

from livesr.engine import implementation, probe
from livesr.engine.testing import skip_backend

pytestmark = pytest.mark.gpu


def _cupy():
    availability = probe("cupy")
    if not availability.ok:
        skip_backend("cupy", availability.reason)
    import cupy

    return cupy


def test_cupy_runs_are_timed_to_completion(toy_package):
    cp = _cupy()
    name = toy_package()
    kernel = importlib.import_module(name).kernel
    a = cp.random.default_rng(0).random((2048, 2048), dtype=cp.float32) / 2048

    @implementation(name, backend="cupy")
    def chain(x, n=40):
        for _ in range(n):
            x = cp.tanh(x @ a)
        return x

    kernel.configure(store=None)
    x = cp.ones((2048, 2048), cp.float32)
    kernel(x)  # first call: cuBLAS handles, kernel compile; not recorded
    reg = kernel._registration("cupy")
    # the launch alone returns long before the GPU is done ...
    start_ev, end_ev = cp.cuda.Event(), cp.cuda.Event()
    start_ev.record()
    t0 = time.perf_counter()
    reg.func(x)
    launch_s = time.perf_counter() - t0
    end_ev.record()
    end_ev.synchronize()
    gpu_s = cp.cuda.get_elapsed_time(start_ev, end_ev) / 1e3
    assert launch_s < 0.5 * gpu_s, (launch_s, gpu_s)  # precondition: asynchronous
    # ... and the engine's recorded time covers the GPU work
    for _ in range(3):
        kernel(x)
    recorded = kernel.agent.stats(kernel.signature(x).key, "cupy").fast_avg
    assert recorded >= 0.9 * gpu_s, (recorded, gpu_s, launch_s)


def test_cupy_probe_reports_devices():
    _cupy()
    availability = probe("cupy")
    assert availability.ok and "device" in availability.detail
