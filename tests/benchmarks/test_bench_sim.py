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


@pytest.mark.parametrize("method", ["bincount", "sparse"])
@pytest.mark.parametrize("n", [400, 1500, 6000, 15000])
def test_bench_accumulate(benchmark, n, method):
    """The crossover between the two accumulations sets ``SPARSE_FROM``."""
    from livesr.sim._render import render_expected

    pos = np.random.default_rng(0).uniform(0, 256, (n, 2))
    render_expected(pos, 100.0, (256, 256), 1.3, method=method)
    benchmark.group = f"sim-accumulate-{n}"
    benchmark.pedantic(
        render_expected,
        args=(pos, 100.0, (256, 256), 1.3),
        kwargs={"method": method},
        rounds=100,
        iterations=1,
        warmup_rounds=3,
    )
