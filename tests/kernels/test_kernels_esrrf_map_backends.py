"""Fused per-frame eSRRF map backends vs NanoPyx 2.1.5 and the numpy reference.

Every backend of ``kernels/esrrf_map`` must equal NanoPyx's
``eSRRF_ST(...).run(..., run_type="threaded")`` per frame within 1e-4 of the
frame's maximum (interior), with the ``int(R·M)`` margin exactly 0, and equal
``livesr.kernels.esrrf_frame`` for shifted sampling.  The CUDA source of the
CuPy backend is additionally run on the CPU through a small C++ shim (g++), so
its indexing is checked on machines without a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesr.engine.testing import skip_backend

RTOL = 1e-4  # of the frame's maximum
KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels" / "esrrf_map"

# backend id -> (module, function name, extra kwargs)
BACKENDS = {
    "numba": ("_numba", "esrrf_map_numba", {}),
    "cython": ("_cython", "esrrf_map_cython", {"schedule": "static"}),
    "cython-guided": ("_cython", "esrrf_map_cython", {"schedule": "guided"}),
    "cython-dynamic": ("_cython", "esrrf_map_cython", {"schedule": "dynamic"}),
    "opencl": ("_opencl", "esrrf_map_opencl", {}),
    "cupy": ("_cupy", "esrrf_map_cupy", {}),
}

# (M, R, S, intensity weighting): a covering set of the parameter space
CASES = [
    (1, 1.0, 1.0, True),
    (1, 2.0, 2.0, False),
    (2, 1.5, 2.0, False),
    (2, 3.0, 1.0, True),
    (5, 1.5, 1.0, True),
    (5, 1.0, 2.0, True),
    (8, 2.0, 1.0, True),
    (8, 3.0, 2.0, False),
]


def _load(backend: str):
    mod_name, fn_name, kwargs = BACKENDS[backend]
    try:
        mod = importlib.import_module(f"livesr.kernels.esrrf_map.{mod_name}")
    except ImportError as exc:  # unavailable backend: skip with the reason
        skip_backend(backend, f"{type(exc).__name__}: {exc}")
    fn = getattr(mod, fn_name)
    if backend == "opencl":
        try:
            mod._queue()
        except Exception as exc:  # noqa: BLE001 - no OpenCL platform/device
            skip_backend("opencl", f"no usable device ({exc})")
    if backend == "cupy":
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001
            skip_backend("cupy", f"no CUDA device ({exc})")

    def call(frame, m, r, s, iw, shift=(0.0, 0.0)):
        return fn(frame, m, r, s, iw, shift, **kwargs)

    return call


@pytest.fixture(params=list(BACKENDS), ids=lambda b: f"esrrf_map-{b}")
def esrrf_map(request):
    return _load(request.param)


def blinking_stack(n: int = 3, h: int = 20, w: int = 27, seed: int = 0) -> np.ndarray:
    """Blinking Gaussian emitters on a background, Poisson noise, ``(n, h, w)`` f32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    pos = rng.uniform([1, 1], [h - 2, w - 2], size=(10, 2))
    out = np.empty((n, h, w), np.float32)
    for t in range(n):
        im = np.full((h, w), 100.0)
        for py, px in pos[rng.random(len(pos)) < 0.5]:
            im += 800 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * 1.3**2))
        out[t] = rng.poisson(im)
    return out


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return blinking_stack()


@pytest.fixture(scope="module")
def nanopyx_maps(stack, nanopyx):
    """NanoPyx eSRRF_ST per-frame maps for every case (computed once)."""
    eSRRF_ST = nanopyx.core.transform.eSRRF_ST
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            case: np.asarray(
                eSRRF_ST(verbose=False).run(
                    stack,
                    magnification=case[0],
                    radius=case[1],
                    sensitivity=case[2],
                    doIntensityWeighting=case[3],
                    run_type="threaded",
                ),
                dtype=np.float32,
            )
            for case in CASES
        }


def assert_map_equal(got: np.ndarray, want: np.ndarray, margin: int) -> None:
    assert got.dtype == np.float32
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * scale)
    if margin:
        for edge in (got[:margin], got[-margin:], got[:, :margin], got[:, -margin:]):
            assert not edge.any(), "margin must be exactly 0"


@pytest.mark.nanopyx
@pytest.mark.parametrize("case", CASES, ids=lambda c: "M{}-R{}-S{}-{}".format(*c))
def test_equals_nanopyx(esrrf_map, stack, nanopyx_maps, case):
    m, r, s, iw = case
    margin = int(float(np.float32(r)) * m)
    for f in range(stack.shape[0]):
        got = esrrf_map(stack[f], m, r, s, iw)
        assert_map_equal(got, nanopyx_maps[case][f], margin)


@pytest.mark.parametrize(
    ("case", "shift"),
    [
        ((5, 1.5, 1.0, True), (0.0, 0.0)),
        ((5, 1.5, 1.0, True), (0.3, -0.7)),
        ((2, 3.0, 2.0, False), (-1.2, 2.5)),
        ((8, 2.0, 1.0, True), (0.45, 0.05)),
        ((1, 2.0, 1.0, True), (2.0, -1.5)),
    ],
    ids=str,
)
def test_equals_numpy_reference_shifted(esrrf_map, stack, case, shift):
    esrrf_frame = pytest.importorskip("livesr.kernels").esrrf_frame
    from livesr.kernels import EsrrfParams

    m, r, s, iw = case
    params = EsrrfParams(
        magnification=m, radius=r, sensitivity=s, intensity_weighting=iw
    )
    for f in range(2):
        want = esrrf_frame(stack[f], params, shift=shift)
        got = esrrf_map(stack[f], m, r, s, iw, shift)
        assert_map_equal(got, want, int(r * m))
    # a shift must change the result (the test would be void otherwise)
    if shift != (0.0, 0.0):
        unshifted = esrrf_map(stack[0], m, r, s, iw)
        assert np.abs(
            unshifted - esrrf_map(stack[0], m, r, s, iw, shift)
        ).max() > 1e-3 * float(np.abs(unshifted).max())


def test_flat_frame_is_zero(esrrf_map):
    """No gradient anywhere: no convergence, the map is 0 (and finite)."""
    out = esrrf_map(np.full((12, 14), 7.0, np.float32), 3, 1.5, 1.0, True)
    assert out.shape == (36, 42)
    assert np.isfinite(out).all() and not out.any()


def test_rejects_bad_input(esrrf_map):
    with pytest.raises(ValueError, match="float32"):
        esrrf_map(np.zeros((8, 8), np.float64), 2, 1.5, 1.0, True)
    with pytest.raises(ValueError, match="magnification"):
        esrrf_map(np.zeros((8, 8), np.float32), 0, 1.5, 1.0, True)


def test_window_table_matches_direct_formula():
    from livesr.kernels.esrrf_map import _weights

    m, r = 5, 1.5
    table = _weights.window_table(m, r)
    k = _weights.rgc_constants(m, r)
    assert (k.start, k.n, k.margin) == (-3, 7, 7)
    # phase (py, px) = (2, 4): centre (2.5/5, 4.5/5); offsets (j, i) = (1, 5)
    yc, xc = np.float32(2.5 / 5), np.float32(4.5 / 5)
    vy = np.float32(int(2 * yc) - 3 + 1) / 2
    vx = np.float32(int(2 * xc) - 3 + 5) / 2
    dx, dy = np.float32(vx - xc), np.float32(vy - yc)
    d = float(np.sqrt(dx * dx + dy * dy))
    w = (d * np.exp(-d * d / k.tss)) ** 4
    np.testing.assert_allclose(table[2, 4, 1, 5], [w, dx / d, dy / d], rtol=1e-6)


# --------------------------------------------------------------------------------------
# The CuPy backend's CUDA source, run on the CPU with g++ and a small shim
# --------------------------------------------------------------------------------------
_SHIM = r"""
#include <cmath>
#include <cstddef>
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __launch_bounds__(x)
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
static inline float2 make_float2(float a, float b) {
  float2 r; r.x = a; r.y = b; return r;
}
struct dim3 { int x, y, z; };
static dim3 blockIdx, threadIdx, blockDim;
static int g_pass = 0;
struct SyncStop {};
/* block barrier: pass 0 runs every thread up to it (the tile loads), pass 1 all */
static inline void __syncthreads() { if (g_pass == 0) throw SyncStop(); }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
template <class T> static inline T __ldg(const T* p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
using std::sqrt; using std::pow; using std::floor; using std::fabs;
"""

_DRIVER = r"""
extern "C" void run_grad(const float* f, const int* ri, const double* rw, const int* ci,
                         const double* cw, float2* grid, int nb,
                         const double* sh, int dev) {
  blockDim = {32, 8, 1};
  for (int z = 0; z < nb; z++) for (int y = 0; y < (GR + 7) / 8; y++)
    for (int x = 0; x < (GC + 31) / 32; x++)
      for (int ty = 0; ty < 8; ty++) for (int tx = 0; tx < 32; tx++) {
        blockIdx = {x, y, z}; threadIdx = {tx, ty, 0};
        esrrf_grad(f, ri, rw, ci, cw, grid, nb, sh, dev);
      }
}
extern "C" void run_rgc(const float* f, const float2* grid, const float4* tab,
                        const int* ri, const double* rw, const int* ci,
                        const double* cw, float* out, float* ring, float* sum,
                        int nb, int slot0, int nslots, int mode,
                        const double* sh, int dev) {
  blockDim = {BX, BY, 1};
  for (int y = 0; y < (HM + BY - 1) / BY; y++)
    for (int x = 0; x < (WM + BX - 1) / BX; x++)
    for (int pass = 0; pass < 2; pass++) {
      g_pass = pass;
      for (int ty = 0; ty < BY; ty++) for (int tx = 0; tx < BX; tx++) {
        blockIdx = {x, y, 0}; threadIdx = {tx, ty, 0};
        try {
          esrrf_rgc(f, grid, tab, ri, rw, ci, cw, out, ring, sum, nb, slot0, nslots,
                    mode, sh, dev);
        }
        catch (SyncStop&) {}
      }
    }
}
"""


def _emulated_cuda(tmp_path: Path, shape, m, r, s, iw, batch):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: cannot emulate the CUDA source on the CPU")
    from livesr.kernels.esrrf_map import _weights

    text = (KERNEL_DIR / "_cupy.py").read_text()
    source = (KERNEL_DIR / "_cuda_source.py").read_text()
    cuda = re.search(r'CUDA_SOURCE = r"""(.*?)"""', source, re.S).group(1)
    bx, by = (
        int(v) for v in re.search(r"^BX, BY = (\d+), (\d+)$", text, re.M).groups()
    )
    k = _weights.rgc_constants(m, r)
    h, w = shape
    defs = {
        "M": m,
        "N": k.n,
        "START": k.start,
        "H": h,
        "W": w,
        "MARGIN": k.margin,
        "APPLY_POW": int(np.float32(s) > 1),
        "SENS": repr(float(np.float32(s))),
        "WEIGHTED": int(iw),
        "BATCH": batch,
        "BX": bx,
        "BY": by,
        "TR": (2 * (by - 1)) // m + 2 + k.n,
        "TC": (2 * (bx - 1)) // m + 2 + k.n,
    }
    src = _SHIM + cuda + _DRIVER
    key = hashlib.sha1((src + repr(sorted(defs.items()))).encode()).hexdigest()[:12]
    cpp, so = tmp_path / f"k{key}.cpp", tmp_path / f"k{key}.so"
    cpp.write_text(src)
    cmd = [gxx, "-O1", "-std=c++14", "-shared", "-fPIC", "-ffp-contract=off"]
    cmd += [f"-D{a}={b}" for a, b in defs.items()] + [str(cpp), "-o", str(so)]
    subprocess.run(cmd, check=True, capture_output=True)
    return ctypes.CDLL(str(so))


def _ptr(a: np.ndarray):
    assert a.flags.c_contiguous
    return ctypes.c_void_p(a.ctypes.data)


@pytest.mark.parametrize(
    ("case", "shift"),
    [((5, 1.5, 1.0, True), (0.0, 0.0)), ((2, 3.0, 2.0, False), (0.3, -0.7))],
    ids=str,
)
def test_cuda_source_emulated_on_cpu(tmp_path, stack, case, shift):
    """The CuPy kernels' CUDA source, compiled with g++, equals the numba backend."""
    from livesr.kernels.esrrf_map import _weights
    from livesr.kernels.esrrf_map._numba import esrrf_map_numba

    m, r, s, iw = case
    nb, h, w = stack.shape
    lib = _emulated_cuda(tmp_path, (h, w), m, r, s, iw, nb)
    gri, grw = _weights.catmull_rom_taps(_weights.gradient_coords(h, m, shift[0]), h)
    gci, gcw = _weights.catmull_rom_taps(_weights.gradient_coords(w, m, shift[1]), w)
    grid = np.full((nb, 2 * h + 1, 2 * w + 1, 2), np.nan, np.float32)
    frames = np.ascontiguousarray(stack)
    no_shifts = np.zeros((nb, 2), np.float64)
    lib.run_grad(
        _ptr(frames), _ptr(gri), _ptr(grw), _ptr(gci), _ptr(gcw), _ptr(grid), nb,
        _ptr(no_shifts), 0,
    )
    assert np.isfinite(grid).all()
    table = _weights.window_table(m, r)
    t4 = np.zeros(table.shape[:4] + (4,), np.float32)
    t4[..., :3] = table
    rp = _weights.axis_plan(h, m, r, shift[0])
    cp = _weights.axis_plan(w, m, r, shift[1])
    out = np.full((nb, h * m, w * m), np.nan, np.float32)
    dummy = np.zeros(1, np.float32)
    taps = (_ptr(t4), _ptr(rp.cr_idx), _ptr(rp.cr_wt), _ptr(cp.cr_idx), _ptr(cp.cr_wt))
    lib.run_rgc(
        _ptr(frames),
        _ptr(grid),
        *taps,
        _ptr(out),
        _ptr(dummy),
        _ptr(dummy),
        nb,
        0,
        1,
        0,
        _ptr(no_shifts),
        0,
    )
    refs = [esrrf_map_numba(stack[f], m, r, s, iw, shift) for f in range(nb)]
    for f in range(nb):
        assert np.isfinite(out[f]).all(), "every output element must be written"
        assert_map_equal(out[f], refs[f], int(r * m))
    # sliding-window mode: ring of 2 maps + running sum, frames pushed as 2 then 1
    ring = np.zeros((2, h * m, w * m), np.float32)
    acc = np.zeros((h * m, w * m), np.float32)
    for lo, hi in ((0, 2), (2, 3)):
        part = np.ascontiguousarray(stack[lo:hi])
        lib.run_grad(
            _ptr(part), _ptr(gri), _ptr(grw), _ptr(gci), _ptr(gcw), _ptr(grid), hi - lo,
            _ptr(no_shifts), 0,
        )
        lib.run_rgc(
            _ptr(part),
            _ptr(grid),
            *taps,
            _ptr(dummy),
            _ptr(ring),
            _ptr(acc),
            hi - lo,
            lo,
            2,
            1,
            _ptr(no_shifts),
            0,
        )
    np.testing.assert_array_equal(ring[0], refs[2])
    np.testing.assert_array_equal(ring[1], refs[1])
    np.testing.assert_allclose(
        acc, refs[1] + refs[2], rtol=0, atol=1e-5 * float(refs[1].max())
    )


@pytest.mark.parametrize("case", [(5, 1.5, 1.0, True), (2, 3.0, 2.0, False)], ids=str)
def test_cuda_device_taps_emulated_on_cpu(tmp_path, stack, case):
    """With ``dev_taps`` the kernels compute every frame's Catmull-Rom taps from its
    own shift (no host tables): each frame equals the numba map at its shift."""
    from livesr.kernels.esrrf_map import _weights
    from livesr.kernels.esrrf_map._numba import esrrf_map_numba

    m, r, s, iw = case
    nb, h, w = stack.shape
    lib = _emulated_cuda(tmp_path, (h, w), m, r, s, iw, nb)
    shifts = np.random.default_rng(5).uniform(-1.4, 1.4, size=(nb, 2))
    shifts[0] = (0.0, 0.0)
    frames = np.ascontiguousarray(stack)
    # the tables hold garbage: the device-taps path must not read them
    bad_i = np.full((max(h, w) * m * 2 + 2, 4), 10**6, np.int32)
    bad_w = np.full((max(h, w) * m * 2 + 2, 4), np.nan)
    grid = np.full((nb, 2 * h + 1, 2 * w + 1, 2), np.nan, np.float32)
    lib.run_grad(
        _ptr(frames), _ptr(bad_i), _ptr(bad_w), _ptr(bad_i), _ptr(bad_w), _ptr(grid),
        nb, _ptr(shifts), 1,
    )
    table = _weights.window_table(m, r)
    t4 = np.zeros(table.shape[:4] + (4,), np.float32)
    t4[..., :3] = table
    out = np.full((nb, h * m, w * m), np.nan, np.float32)
    dummy = np.zeros(1, np.float32)
    lib.run_rgc(
        _ptr(frames), _ptr(grid), _ptr(t4), _ptr(bad_i), _ptr(bad_w), _ptr(bad_i),
        _ptr(bad_w), _ptr(out), _ptr(dummy), _ptr(dummy), nb, 0, 1, 0,
        _ptr(shifts), 1,
    )
    for f in range(nb):
        ref = esrrf_map_numba(stack[f], m, r, s, iw, tuple(shifts[f]))
        assert np.isfinite(out[f]).all()
        assert_map_equal(out[f], ref, int(r * m))


def test_opencl_dump_kernels(tmp_path, monkeypatch):
    """``LIVESR_DUMP_KERNELS=dir`` writes the rendered OpenCL source."""
    call = _load("opencl")
    mod = importlib.import_module("livesr.kernels.esrrf_map._opencl")
    monkeypatch.setenv("LIVESR_DUMP_KERNELS", str(tmp_path))
    # parameters not used elsewhere, so the program is built (and dumped) here
    call(np.random.default_rng(0).random((9, 11), dtype=np.float32), 3, 1.25, 1.5, True)
    dumped = sorted(tmp_path.glob("esrrf_map_*.cl"))
    assert dumped, "no rendered kernel written"
    text = dumped[0].read_text()
    assert "#define M 3" in text and "__kernel void esrrf_map" in text
    assert text == mod.render_source(
        (9, 11), 3, 1.25, 1.5, True, fp64="double acc_t" in text
    )


def test_importing_backends_leaves_no_side_effects():
    """_weights is numpy-only; heavy backends are imported by their own modules only."""
    code = (
        "import sys; import livesr.kernels.esrrf_map._weights; "
        "bad = [m for m in ('numba', 'pyopencl', 'cupy', 'mako') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --------------------------------------------------------------------------------------
# Property test: random shapes and parameters, every CPU backend vs esrrf_frame
# --------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    h=st.integers(2, 14),
    w=st.integers(2, 14),
    m=st.integers(1, 6),
    r=st.sampled_from([0.5, 0.9, 1.0, 1.25, 1.5, 2.0, 2.7, 3.0]),
    s=st.sampled_from([0.5, 1.0, 1.7, 2.0]),
    iw=st.booleans(),
    dy=st.floats(-2.0, 2.0, allow_nan=False),
    dx=st.floats(-2.0, 2.0, allow_nan=False),
    seed=st.integers(0, 2**16),
)
def test_random_inputs_match_reference(h, w, m, r, s, iw, dy, dx, seed):
    from livesr.kernels import EsrrfParams, esrrf_frame

    frame = (np.random.default_rng(seed).random((h, w)) * 1000).astype(np.float32)
    params = EsrrfParams(
        magnification=m, radius=r, sensitivity=s, intensity_weighting=iw
    )
    want = esrrf_frame(frame, params, shift=(dy, dx))
    scale = max(float(np.abs(want).max()), 1e-30)
    for backend in ("numba", "cython", "cython-guided"):
        mod_name, fn_name, kwargs = BACKENDS[backend]
        try:
            mod = importlib.import_module(f"livesr.kernels.esrrf_map.{mod_name}")
        except ImportError:
            continue
        got = getattr(mod, fn_name)(frame, m, r, s, iw, (dy, dx), **kwargs)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(
            got, want, rtol=0, atol=RTOL * scale, err_msg=backend
        )
