"""Simulator speed: frames/s at 256 x 256 (run with ``--benchmark-only``).

``python -m pytest tests/benchmarks/test_bench_sim.py --benchmark-only``; frames/s
is 1 / mean (``ops`` column). The measured figures are quoted in
``livesr.sim``'s module docstring.
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.sim import CameraConfig, DriftConfig, Microscope, SimConfig

CASES = {
    # the default eSRRF-like blinking sample (1416 emitters, ~25 % on), noise on
    "blinking-default": SimConfig(drift=DriftConfig.all()),
    # dense always-on sample (registration tests)
    "static-bright": SimConfig.static_bright(shape=(256, 256), drift=DriftConfig.all()),
    # expected value only (no shot / read noise)
    "blinking-noise-free": SimConfig(camera=CameraConfig(noise=False)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bench_render_256(benchmark, case):
    scope = Microscope(CASES[case])
    buf = np.empty(scope.shape, np.uint16)
    scope.render_into(buf)  # warm-up (lazy scipy import, Poisson table)
    benchmark.group = "sim-render-256x256"
    benchmark.extra_info["emitters"] = scope.n_emitters
    benchmark.pedantic(
        scope.render_into, args=(buf,), rounds=300, iterations=1, warmup_rounds=10
    )
    assert scope.frame_index == 311
