"""Stage kernels (catmull_rom, roberts_cross, rgc, temporal, macro_pixel) and eSRRF
through the engine: checks beyond the registry-driven equivalence test.

- every available implementation of each stage kernel on inputs the generic
  cases do not cover (shifted magnification, 1-pixel images, single-frame blocks);
- the engine kernels equal the public numpy functions they wrap;
- ``esrrf`` / ``esrrf_frame`` give the same result whichever implementation is
  pinned with ``impl=`` (within the ``esrrf_map`` tolerance), for both geometries;
- OpenCL sources are rendered with ``strict_undefined`` and dumped on request;
- importing the stage backend modules loads neither pyopencl nor cupy.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from livesr.engine.testing import assert_matches, required_backends, skip_backend
from livesr.kernels import EsrrfParams, esrrf, esrrf_frame
from livesr.kernels.catmull_rom import (
    gradient_coordinates,
    magnification_coordinates,
    magnify,
)
from livesr.kernels.catmull_rom import kernel as catmull_rom
from livesr.kernels.esrrf_map import kernel as esrrf_map
from livesr.kernels.macro_pixel import kernel as macro_pixel
from livesr.kernels.macro_pixel import macro_pixel_correction
from livesr.kernels.rgc import kernel as rgc
from livesr.kernels.roberts_cross import kernel as roberts
from livesr.kernels.temporal import TemporalAccumulator, temporal_two_pass
from livesr.kernels.temporal import kernel as temporal

STAGES = [catmull_rom, roberts, rgc, temporal, macro_pixel]


def _available(kernel):
    return [i.id for i in kernel.implementations(include_unavailable=False)]


def _each(kernel, *args):
    """``{impl: result}`` of every available implementation on ``args``."""
    return {impl: kernel.using(impl)(*args) for impl in _available(kernel)}


def _frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), np.float32)
    for _ in range(3):
        cy, cx = rng.random(2) * (h, w)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0).astype(np.float32)
    return img / img.max()


@pytest.mark.parametrize("kernel", STAGES, ids=lambda k: k.name)
def test_stage_kernel_declares_cases_and_compiled_backends(kernel):
    ids = {i.id for i in kernel.implementations()}
    assert {"numpy", "numba", "cython", "opencl", "cupy"} <= ids
    assert kernel.reference == "numpy"
    assert kernel.tolerance.rtol <= 1e-5
    assert len(kernel.cases()) >= 3
    # odd sizes are among the cases
    shapes = [np.shape(c.args[0]) for c in kernel.cases()]
    assert any(any(n % 2 for n in s[-2:]) for s in shapes), shapes


def test_shifted_magnification_equals_magnify_on_every_backend():
    img = _frame(7, 11, 1) * 300
    m = 3
    want = magnify(img, m, shift=(-0.7, 1.25), geometry="corrected")
    rows = magnification_coordinates(7, m, -0.7, "corrected")
    cols = magnification_coordinates(11, m, 1.25, "corrected")
    for impl, got in _each(catmull_rom, img, rows, cols).items():
        assert got.dtype == np.float32 and got.shape == (21, 33), impl
        assert_matches(got, want, catmull_rom.tolerance, impl)
    # samples shifted out of the image are exactly 0 (zero padding)
    far = magnification_coordinates(7, m, 50.0)
    for impl, got in _each(catmull_rom, img, far, cols).items():
        assert not got.any(), impl


def test_gradient_grid_and_one_pixel_images():
    one = np.array([[3.5]], np.float32)
    rows = gradient_coordinates(1, 4)
    for impl, got in _each(catmull_rom, one, rows, rows).items():
        assert_matches(
            got,
            catmull_rom.using("numpy")(one, rows, rows),
            catmull_rom.tolerance,
            impl,
        )
    for impl, (gx, gy) in _each(roberts, one).items():
        assert gx.shape == gy.shape == (1, 1) and gx[0, 0] == 0 and gy[0, 0] == 0, impl


def test_rgc_backends_zero_margin_and_exponent():
    img = _frame(9, 10, 2)
    params = EsrrfParams(magnification=3, radius=2.0, sensitivity=3.0)
    from livesr.kernels.catmull_rom import upsample_gradient
    from livesr.kernels.roberts_cross import roberts_cross

    gx, gy = roberts_cross(img)
    args = (upsample_gradient(gx, 3), upsample_gradient(gy, 3), magnify(img, 3), params)
    want = rgc.using("numpy")(*args)
    margin = params.margin
    assert margin == 6 and want[margin:-margin, margin:-margin].max() > 0.05
    for impl, got in _each(rgc, *args).items():
        assert_matches(got, want, rgc.tolerance, impl)
        assert not got[:margin].any() and not got[:, -margin:].any(), impl


@pytest.mark.parametrize("mode", ["avg", "var", "tac2"])
def test_temporal_kernel_equals_accumulator_and_two_pass(mode):
    rng = np.random.default_rng(5)
    maps = (1 + 0.2 * rng.standard_normal((7, 5, 9))).astype(np.float32)
    acc = TemporalAccumulator(mode, (5, 9))
    for mp in maps:
        acc.add(mp)
    for impl, got in _each(temporal, maps, mode).items():
        np.testing.assert_allclose(
            got, acc.result(), rtol=1e-6, atol=1e-7, err_msg=impl
        )
        # NanoPyx's float32 two-pass differs by float32 rounding only
        np.testing.assert_allclose(
            got, temporal_two_pass(maps, mode), rtol=1e-4, atol=1e-6, err_msg=impl
        )
    single = maps[:1]
    for impl, got in _each(temporal, single, mode).items():
        if mode == "tac2":
            assert np.isnan(got).all(), impl
        elif mode == "var":
            assert not got.any(), impl
        else:
            np.testing.assert_array_equal(got, single[0], err_msg=impl)


def test_macro_pixel_kernel_equals_function_2d_and_3d():
    rng = np.random.default_rng(6)
    img = rng.random((3, 11, 14), dtype=np.float32) + 0.5
    for impl, got in _each(macro_pixel, img, 3).items():
        assert got.shape == img.shape and got.dtype == np.float32, impl
        assert_matches(got, macro_pixel_correction(img, 3), macro_pixel.tolerance, impl)
        assert_matches(
            macro_pixel.using(impl)(img[1], 3),
            macro_pixel_correction(img[1], 3),
            macro_pixel.tolerance,
            impl,
        )
    assert macro_pixel.using("numpy")(img, 3) is not img


def test_esrrf_frame_same_result_whichever_implementation():
    frame = _frame(12, 13, 3)
    params = EsrrfParams(magnification=3)
    want = esrrf_frame(frame, params, impl="numpy")
    impls = [i.id for i in esrrf_map.implementations(include_unavailable=False)]
    # numpy, numba and Cython are always there (dependencies, built at install);
    # OpenCL and CuPy wherever they run (LIVESR_REQUIRE_BACKENDS makes them required)
    required = required_backends()
    assert {"numpy", "numba", "cython"} | required <= {i.split("-")[0] for i in impls}
    for impl in impls:
        got = esrrf_frame(frame, params, shift=(0.0, 0.0), impl=impl)
        assert_matches(got, want, esrrf_map.tolerance, impl)
    out = np.empty_like(want)
    assert esrrf_frame(frame, params, out=out) is out
    np.testing.assert_array_equal(out, esrrf_frame(frame, params))  # pinned choice
    # (impl="auto" is the engine's dispatch, tested in tests/engine; it records run
    # times, which would start the benchmark store's flush thread in this session)


@pytest.mark.parametrize("impl", ["numba", "cython", "opencl"])
def test_esrrf_corrected_geometry_through_stage_kernels(impl):
    if impl not in _available(rgc):
        skip_backend(impl, "unavailable here")
    rng = np.random.default_rng(7)
    stack = np.stack(
        [
            _frame(10, 9, 8) + 0.05 * rng.random((10, 9), dtype=np.float32)
            for _ in range(3)
        ]
    )
    kw = {"magnification": 2, "temporal": "var", "geometry": "corrected"}
    want = esrrf(stack, impl="numpy", **kw)
    got = esrrf(stack, impl=impl, **kw)
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def test_esrrf_rejects_unknown_impl():
    with pytest.raises(KeyError, match="no implementation 'fortran'"):
        esrrf_frame(_frame(6, 6), EsrrfParams(magnification=2), impl="fortran")


def test_opencl_templates_are_strict_and_dumped(tmp_path, monkeypatch):
    pytest.importorskip("mako")
    from pathlib import Path

    from mako.exceptions import RuntimeException

    from livesr.kernels import _clhost
    from livesr.kernels.rgc import _opencl as rgc_cl

    with pytest.raises((NameError, RuntimeException)):
        _clhost.render(rgc_cl.TEMPLATE, H=4, W=4)  # M, NOFF, ... missing
    src = _clhost.render(
        Path(rgc_cl.TEMPLATE),
        H=4,
        W=5,
        M=2,
        NOFF=9,
        MARGIN=3,
        WEIGHTED=1,
        APPLY_POW=0,
        SENSITIVITY="1.0",
    )
    assert "__kernel void rgc" in src and "FP_CONTRACT OFF" in src
    if "opencl" not in _available(roberts):
        pytest.skip("no OpenCL device")
    monkeypatch.setenv("LIVESR_DUMP_KERNELS", str(tmp_path))
    img = np.arange(35, dtype=np.float32).reshape(5, 7)  # a shape no other test builds
    roberts.using("opencl")(img)
    dumped = list(tmp_path.glob("roberts_cross_*.cl"))
    assert len(dumped) == 1 and "H=5 W=7" in dumped[0].read_text()


IMPORT_SCRIPT = """
import importlib, json, sys
names = [f"livesr.kernels.{k}.{m}" for k in
         ("catmull_rom", "roberts_cross", "rgc", "temporal", "macro_pixel")
         for m in ("_numpy", "_numba", "_opencl", "_cupy", "_cython")]
failed = {}
for n in names:
    try:
        importlib.import_module(n)
    except ImportError as exc:
        failed[n] = str(exc)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pyopencl", "cupy"))
print(json.dumps({"loaded": loaded, "failed": failed}))
"""


def test_stage_backend_modules_import_no_gpu_library():
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["failed"] == {}, report["failed"]


def test_cupy_implementations_registered_or_skipped_with_reason():
    for kernel in STAGES:
        (info,) = [i for i in kernel.implementations() if i.id == "cupy"]
        if not info.available:
            assert "cupy" in info.reason


# ---------------------------------------------------------------- xcorr ----------
XCORR_BACKENDS = {
    "numba": ("_numba", "upsampled_peak_axes_numba"),
    "cython": ("_cython", "upsampled_peak_axes_cython"),
    "opencl": ("_opencl", "upsampled_peak_axes_opencl"),
    "cupy": ("_cupy", "upsampled_peak_axes_cupy"),
}


def _xcorr_fn(backend):
    import importlib

    from livesr.engine import probe

    mod_name, fn_name = XCORR_BACKENDS[backend]
    avail = probe(backend)
    if not avail.ok:
        skip_backend(backend, avail.reason)
    try:
        mod = importlib.import_module(f"livesr.kernels.xcorr.{mod_name}")
    except ImportError as exc:  # fails instead under LIVESR_REQUIRE_BACKENDS
        skip_backend(backend, f"{backend}: {exc}")
    return getattr(mod, fn_name)


def _shifted_pair(h, w, d, seed):
    rng = np.random.default_rng(seed)
    a = rng.random((h, w))
    fa = np.fft.fft2(a)
    ky, kx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    fa *= np.exp(-(ky**2 + kx**2) * 60)  # smooth: a few-pixel blobs
    a = np.fft.ifft2(fa).real
    b = np.fft.ifft2(fa * np.exp(-2j * np.pi * (ky * d[0] + kx * d[1]))).real
    return a, b


@pytest.mark.parametrize("backend", list(XCORR_BACKENDS))
@pytest.mark.parametrize(
    ("shape", "lag", "kw"),
    [
        ((33, 40), (1.3, -2.6), {}),
        ((48, 31), (-0.4, 0.45), {"upsample": 10, "region": 1.5, "sweeps": 2}),
    ],
)
def test_xcorr_backends_match_numpy_upsampled_peak_axes(backend, shape, lag, kw):
    from livesr.kernels.xcorr._numpy import (
        correlation_spectrum,
        prepare_spectrum,
        tukey_window,
        upsampled_peak_axes,
    )

    fn = _xcorr_fn(backend)
    a, b = _shifted_pair(*shape, lag, seed=len(kw))
    win = tukey_window(shape, 0.25)
    x = correlation_spectrum(prepare_spectrum(a, win), prepare_spectrum(b, win))
    start = (round(lag[0]), round(lag[1]))
    want = upsampled_peak_axes(x, start, **kw)
    got = fn(x, start, **kw)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(want, lag, atol=0.3)  # near the shift (window bias)
