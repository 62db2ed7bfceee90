"""Per-frame eSRRF map, 256×256, M=5, R=1.5, S=1, intensity weighting.

Every ``kernels/esrrf_map`` backend side by side with NanoPyx 2.1.5's fastest CPU
run type (``eSRRF_ST(...).run(..., run_type="threaded")``), one input frame per
timed call, in one pytest-benchmark group.  Compare ratios measured in the same
run; absolute times on the shared development machine are noisy.

Run: ``python -m pytest tests/benchmarks/test_bench_esrrf_map.py --benchmark-only``.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

GROUP = "esrrf_map-256x256-M5-R1.5"
M, R, S, IW = 5, 1.5, 1.0, True

BACKENDS = {
    "numba": ("_numba", "esrrf_map_numba", {}),
    "cython": ("_cython", "esrrf_map_cython", {"schedule": "static"}),
    "cython-guided": ("_cython", "esrrf_map_cython", {"schedule": "guided"}),
    "cython-dynamic": ("_cython", "esrrf_map_cython", {"schedule": "dynamic"}),
    "opencl": ("_opencl", "esrrf_map_opencl", {}),
    "cupy": ("_cupy", "esrrf_map_cupy", {}),
}
SLOW = {"opencl"}  # PoCL on 2 CPU cores: ~0.7 s per frame


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    im = np.full((256, 256), 100.0)
    for py, px in rng.uniform(2, 254, size=(150, 2)):
        im += 800 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * 1.3**2))
    return rng.poisson(im).astype(np.float32)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_bench_esrrf_map(benchmark, frame, backend):
    mod_name, fn_name, kwargs = BACKENDS[backend]
    try:
        mod = importlib.import_module(f"livesr.kernels.esrrf_map.{mod_name}")
    except ImportError as exc:
        pytest.skip(f"{backend}: {exc}")
    fn = getattr(mod, fn_name)
    if backend == "cupy":
        import cupy

        def run():
            out = fn(frame, M, R, S, IW, (0.0, 0.0), **kwargs)
            cupy.cuda.get_current_stream().synchronize()
            return out
    else:

        def run():
            return fn(frame, M, R, S, IW, (0.0, 0.0), **kwargs)

    benchmark.group = GROUP
    rounds = 2 if backend in SLOW else 5
    out = benchmark.pedantic(run, rounds=rounds, warmup_rounds=1)
    assert out.shape == (256 * M, 256 * M) and float(out.max()) > 0


@pytest.mark.nanopyx
def test_bench_esrrf_map_nanopyx_threaded(benchmark, frame, nanopyx):
    eSRRF_ST = nanopyx.core.transform.eSRRF_ST

    stack = frame[None]

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return eSRRF_ST(verbose=False).run(
                stack,
                magnification=M,
                radius=R,
                sensitivity=S,
                doIntensityWeighting=IW,
                run_type="threaded",
            )

    benchmark.group = GROUP
    out = benchmark.pedantic(run, rounds=2, warmup_rounds=0)  # 2 frames: ~3 s each
    assert np.asarray(out).shape[-2:] == (256 * M, 256 * M)
