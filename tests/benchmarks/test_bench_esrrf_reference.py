"""Per-frame eSRRF: the numpy reference vs NanoPyx 2.1.5 threaded, side by side.

``python -m pytest tests/benchmarks/test_bench_esrrf_reference.py --benchmark-only``

M = 5, R = 1.5, S = 1, intensity weighting; per-frame maps only (no temporal step,
no macro-pixel correction): ``esrrf_frame`` over the frames vs
``eSRRF_ST().run(stack, run_type="threaded")``. Each benchmark group holds both
implementations on the same stack; s / frame = mean / frames (``extra_info``).
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels import EsrrfParams, esrrf_frame

pytestmark = pytest.mark.filterwarnings("ignore:OpenCL is disabled:UserWarning")

CASES = {"4x64x64": (4, 64, 64), "2x256x256": (2, 256, 256)}
PARAMS = EsrrfParams(
    magnification=5, radius=1.5, sensitivity=1.0, intensity_weighting=True
)


def _stack(shape: tuple[int, int, int]) -> np.ndarray:
    from livesr.sim import CameraConfig, SimConfig, simulate_stack

    stack, _ = simulate_stack(
        shape[0], SimConfig(camera=CameraConfig(shape=shape[1:]), seed=1)
    )
    return stack.astype(np.float32)


@pytest.fixture(scope="module")
def esrrf_st(nanopyx):
    return nanopyx.core.transform.eSRRF_ST(verbose=False)


def _numpy_reference(stack: np.ndarray) -> np.ndarray:
    return np.stack([esrrf_frame(f, PARAMS) for f in stack])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", ["numpy-reference", "nanopyx-threaded"])
def test_bench_esrrf_per_frame(benchmark, esrrf_st, case, impl):
    stack = _stack(CASES[case])
    if impl == "numpy-reference":
        fn = _numpy_reference
    else:

        def fn(s: np.ndarray) -> np.ndarray:
            return esrrf_st.run(
                s,
                magnification=5,
                radius=1.5,
                sensitivity=1,
                doIntensityWeighting=True,
                run_type="threaded",
            )

    benchmark.group = f"esrrf-per-frame-{case}"
    benchmark.extra_info["frames"] = stack.shape[0]
    out = benchmark.pedantic(fn, args=(stack,), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["s_per_frame"] = benchmark.stats.stats.mean / stack.shape[0]
    assert out.shape == (stack.shape[0], stack.shape[1] * 5, stack.shape[2] * 5)
