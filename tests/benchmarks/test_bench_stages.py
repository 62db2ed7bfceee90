"""Every eSRRF stage kernel, each implementation side by side: 256×256 input, M=5.

One pytest-benchmark group per stage (``stage-<kernel>-256-M5``), one timed run
after one warm-up (JIT compile, OpenCL build), run through
``kernel.using(impl)`` so the timing includes what a dispatched call costs
(validation, host tables, transfers).  Compare the ratios within one run; absolute
times on the shared 2-core development machine are noisy.  Each implementation's
result is checked against the numpy reference with the kernel's tolerance.

Run: ``python -m pytest tests/benchmarks/test_bench_stages.py --benchmark-only``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from livesr.engine.testing import assert_matches

N, M = 256, 5
STAGES = ("catmull_rom", "roberts_cross", "rgc", "temporal", "macro_pixel")
IMPLS = ("numpy", "numba", "cython", "opencl", "cupy")


@functools.lru_cache(maxsize=1)
def _frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:N, 0:N]
    im = np.full((N, N), 100.0)
    for py, px in rng.uniform(2, N - 2, size=(150, 2)):
        im += 800 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * 1.3**2))
    return (rng.poisson(im) / 1000.0).astype(np.float32)


@functools.cache
def _inputs(stage: str) -> tuple:
    from livesr.kernels import EsrrfParams
    from livesr.kernels.catmull_rom import (
        magnification_coordinates,
        magnify,
        upsample_gradient,
    )
    from livesr.kernels.esrrf_stack import _esrrf_frame_numpy
    from livesr.kernels.roberts_cross import roberts_cross

    img = _frame()
    params = EsrrfParams(magnification=M)
    if stage == "catmull_rom":
        c = magnification_coordinates(N, M)
        return (img, c, c)
    if stage == "roberts_cross":
        return (img,)
    if stage == "rgc":
        gx, gy = roberts_cross(img)
        return (
            upsample_gradient(gx, M),
            upsample_gradient(gy, M),
            magnify(img, M),
            params,
        )
    one = _esrrf_frame_numpy(img, params)
    if stage == "temporal":
        rng = np.random.default_rng(1)
        maps = one[None] * (1 + 0.1 * rng.random((5, 1, 1), dtype=np.float32))
        return (maps.astype(np.float32), "var")
    return (one, M)


@functools.cache
def _reference(stage: str):
    from livesr.engine import load_kernel

    return load_kernel(f"livesr.kernels.{stage}").using("numpy")(*_inputs(stage))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("stage", STAGES)
def test_bench_stage(benchmark, stage, impl):
    from livesr.engine import load_kernel

    kernel = load_kernel(f"livesr.kernels.{stage}")
    info = {i.id: i for i in kernel.implementations()}.get(impl)
    if info is None or not info.available:
        pytest.skip(f"{stage}-{impl}: {info.reason if info else 'not registered'}")
    run = kernel.using(impl)
    args = _inputs(stage)
    benchmark.group = f"stage-{stage}-{N}-M{M}"
    out = benchmark.pedantic(run, args=args, rounds=1, warmup_rounds=1)
    assert_matches(out, _reference(stage), kernel.tolerance, f"{stage}-{impl}")


XCORR = {
    "numpy": ("_numpy", "upsampled_peak_axes"),
    "numba": ("_numba", "upsampled_peak_axes_numba"),
    "cython": ("_cython", "upsampled_peak_axes_cython"),
    "opencl": ("_opencl", "upsampled_peak_axes_opencl"),
    "cupy": ("_cupy", "upsampled_peak_axes_cupy"),
}


@functools.lru_cache(maxsize=1)
def _spectrum() -> np.ndarray:
    from livesr.kernels.xcorr._numpy import (
        correlation_spectrum,
        prepare_spectrum,
        tukey_window,
    )

    a = _frame().astype(np.float64)
    b = np.roll(a, (3, -2), axis=(0, 1))
    win = tukey_window(a.shape, 0.25)
    return correlation_spectrum(prepare_spectrum(a, win), prepare_spectrum(b, win))


@pytest.mark.parametrize("impl", list(XCORR))
def test_bench_xcorr_upsampled_peak_axes(benchmark, impl):
    """xcorr backends (kernel not declared yet: the functions are called directly)."""
    import importlib

    from livesr.engine import probe

    avail = probe(impl)
    if not avail.ok:
        pytest.skip(avail.reason)
    mod_name, fn_name = XCORR[impl]
    try:
        fn = getattr(
            importlib.import_module(f"livesr.kernels.xcorr.{mod_name}"), fn_name
        )
    except ImportError as exc:
        pytest.skip(f"{impl}: {exc}")
    benchmark.group = f"stage-xcorr-{N}-upsample20"
    x = _spectrum()
    got = benchmark.pedantic(fn, args=(x, (3, -2)), rounds=1, warmup_rounds=1)
    from livesr.kernels.xcorr._numpy import upsampled_peak_axes

    np.testing.assert_allclose(got, upsampled_peak_axes(x, (3, -2)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got, (3.0, -2.0), atol=0.1)
