"""Each eSRRF stage (numpy reference) against NanoPyx 2.1.5's own sub-step classes.

Inputs are tiny stacks from ``livesr.sim``. NanoPyx runs on a CPU run type
("threaded"; all CPU run types are bit-identical) with HOME pointed at a temporary
folder and OpenCL disabled.
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels import EsrrfParams
from livesr.kernels.catmull_rom import magnify, upsample_gradient
from livesr.kernels.macro_pixel import macro_pixel_correction
from livesr.kernels.rgc import radial_gradient_convergence
from livesr.kernels.roberts_cross import roberts_cross
from livesr.kernels.temporal import TemporalAccumulator, temporal_two_pass

pytestmark = [
    pytest.mark.nanopyx,
    # liquid_engine warns on import when OpenCL is disabled on purpose (see fixture)
    pytest.mark.filterwarnings("ignore:OpenCL is disabled:UserWarning"),
]

RTOL = 1e-4  # max |ours - ref| / max |ref|
MIN_PEARSON = 0.9999


@pytest.fixture(scope="module")
def nptf(nanopyx):
    """``nanopyx.core.transform`` (the ``nanopyx`` fixture of tests/conftest.py)."""
    return nanopyx.core.transform


_STACKS: dict[tuple[int, int, int, int], np.ndarray] = {}


def sim_stack(t: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    """(t, h, w) float32 blinking stack from the simulator (cached)."""
    key = (t, h, w, seed)
    if key not in _STACKS:
        from livesr.sim import CameraConfig, SimConfig, simulate_stack

        stack, _ = simulate_stack(
            t, SimConfig(camera=CameraConfig(shape=(h, w)), seed=seed)
        )
        _STACKS[key] = stack.astype(np.float32)
    return _STACKS[key]


def assert_parity(ours: np.ndarray, ref: np.ndarray, margin: int = 0) -> None:
    assert ours.shape == ref.shape
    scale = float(np.abs(ref).max())
    assert scale > 0, "reference is all zero: the test input is degenerate"
    sl = (
        ...,
        slice(margin, ref.shape[-2] - margin),
        slice(margin, ref.shape[-1] - margin),
    )
    err = float(np.abs(ours[sl] - ref[sl]).max()) / scale
    assert err <= RTOL, f"interior max relative difference {err:.3g} > {RTOL}"
    r = np.corrcoef(ours[sl].ravel(), ref[sl].ravel())[0, 1]
    assert r >= MIN_PEARSON, f"Pearson {r:.6f} < {MIN_PEARSON}"
    if margin:
        border = np.ones(ours.shape[-2:], dtype=bool)
        border[margin:-margin, margin:-margin] = False
        assert np.all(ours[..., border] == 0), "margin must be exactly 0"


# ---------------------------------------------------------------- Catmull-Rom ---
def test_catmull_rom_taps_match_dense_kernel():
    from livesr.kernels.catmull_rom import cubic_kernel, sample_weights

    x = np.linspace(-2.5, 2.5, 101)
    k = cubic_kernel(x)
    assert k[50] == 1.0 and np.all(k[np.abs(x) >= 2] == 0)
    np.testing.assert_allclose(cubic_kernel(np.array([0.5, 1.5])), [0.5625, -0.0625])
    # interior samples: the four weights sum to 1 (partition of unity)
    w = sample_weights(np.array([2.0, 3.3, 4.75]), 8)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    # outside [0, n): zero row; next to the edge: neighbours outside are skipped
    w = sample_weights(np.array([-0.01, 8.0, 0.2]), 8)
    assert np.all(w[:2] == 0) and w[2].sum() < 1.0


@pytest.mark.parametrize(
    ("shape", "m"),
    [((24, 24), 1), ((20, 31), 2), ((17, 23), 3), ((20, 31), 5), ((17, 23), 8)],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"M{v}",
)
def test_catmull_rom_magnify_matches_nanopyx(nptf, shape, m):
    img = sim_stack(2, *shape)
    ref = nptf.CRShiftAndMagnify(verbose=False).run(
        img, 0, 0, m, m, run_type="threaded"
    )
    ours = np.stack([magnify(f, m) for f in img])
    assert ours.dtype == np.float32
    # same taps, same kernel expression, same float64 accumulation order
    np.testing.assert_array_equal(ours, ref)


def test_catmull_rom_shift_matches_nanopyx_shift(nptf):
    """Our ``shift=(dy, dx)`` samples at ``k/M + shift``; NanoPyx's is ``-shift``."""
    img = sim_stack(1, 20, 31)
    dy, dx = 0.3, -1.25
    ref = nptf.CRShiftAndMagnify(verbose=False).run(
        img, -dy, -dx, 4, 4, run_type="threaded"
    )
    ours = magnify(img[0], 4, shift=(dy, dx))
    # NanoPyx adds the shift in float32, we in float64
    assert_parity(ours[None], ref)


# --------------------------------------------------------------- Roberts cross ---
@pytest.mark.parametrize("shape", [(24, 24), (17, 23)], ids=["24x24", "17x23"])
def test_roberts_cross_matches_nanopyx_exactly(nptf, shape):
    img = sim_stack(2, *shape)
    grad_col, grad_row = nptf.GradientRobertsCross(verbose=False).run(
        img, run_type="threaded"
    )
    for f in range(img.shape[0]):
        gx, gy = roberts_cross(img[f])
        np.testing.assert_array_equal(gx, grad_col[f])
        np.testing.assert_array_equal(gy, grad_row[f])
    # the edge row / column use the replicated neighbour
    gx, gy = roberts_cross(img[0])
    assert np.all(gx[:, 0] == 0) and np.all(gy[0, :] == 0)


# ------------------------------------------------------------- 2x gradient trick --
def _nanopyx_half_pixel_samples(g2m: np.ndarray, h: int, w: int, m: int) -> np.ndarray:
    """The (2H+1, 2W+1) samples NanoPyx's RGC reads from a 2M-magnified gradient."""
    rows = np.append(np.arange(2 * h) * m, 2 * h * m - 1)
    cols = np.append(np.arange(2 * w) * m, 2 * w * m - 1)
    return g2m[np.ix_(rows, cols)]


@pytest.mark.parametrize("m", [1, 3, 5], ids=lambda v: f"M{v}")
def test_gradient_2x_upsampling_equals_nanopyx_2m_magnification(nptf, m):
    img = sim_stack(1, 17, 23)[0]
    h, w = img.shape
    gx, gy = roberts_cross(img)
    cr = nptf.CRShiftAndMagnify(verbose=False)
    for g in (gx, gy):
        g2m = cr.run(g, 0, 0, 2 * m, 2 * m, run_type="threaded")[0]
        ref = _nanopyx_half_pixel_samples(g2m, h, w, m)
        ours = upsample_gradient(g, m)
        assert ours.shape == (2 * h + 1, 2 * w + 1)
        np.testing.assert_array_equal(ours, ref)


# -------------------------------------------------------------------------- RGC ---
@pytest.mark.parametrize(
    ("shape", "m", "radius", "sensitivity", "weighting"),
    [
        ((24, 24), 5, 1.5, 1.0, True),
        ((20, 31), 2, 1.0, 2.0, False),
        ((17, 23), 3, 2.0, 4.0, True),
        ((17, 23), 1, 3.0, 1.0, False),
        ((20, 31), 8, 1.5, 0.5, True),
        ((24, 24), 4, 2.5, 3.0, True),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_rgc_matches_nanopyx(nptf, shape, m, radius, sensitivity, weighting):
    img = sim_stack(2, *shape)
    h, w = shape
    cr = nptf.CRShiftAndMagnify(verbose=False)
    grad_col, grad_row = nptf.GradientRobertsCross(verbose=False).run(
        img, run_type="threaded"
    )
    gx2m = cr.run(grad_col, 0, 0, 2 * m, 2 * m, run_type="threaded")
    gy2m = cr.run(grad_row, 0, 0, 2 * m, 2 * m, run_type="threaded")
    im_m = cr.run(img, 0, 0, m, m, run_type="threaded")
    ref = nptf.RadialGradientConvergence(verbose=False).run(
        gx2m,
        gy2m,
        im_m,
        magnification=m,
        radius=radius,
        sensitivity=sensitivity,
        doIntensityWeighting=weighting,
        run_type="threaded",
    )
    params = EsrrfParams(
        magnification=m,
        radius=radius,
        sensitivity=sensitivity,
        intensity_weighting=weighting,
    )
    ours = np.stack(
        [
            radial_gradient_convergence(
                _nanopyx_half_pixel_samples(gx2m[f], h, w, m),
                _nanopyx_half_pixel_samples(gy2m[f], h, w, m),
                im_m[f],
                params,
            )
            for f in range(img.shape[0])
        ]
    )
    assert params.margin == int(np.float32(radius) * m)
    assert_parity(ours, ref, margin=params.margin)


def test_rgc_params_follow_nanopyx_float32_constants():
    p = EsrrfParams(radius=1.5)
    assert p.window == (-3, 4)
    assert EsrrfParams(radius=2.0).window == (-4, 5)
    assert p.margin == 7
    # float32 radius: 0.7 -> 0.69999999 -> int(6.9999) = 6 at M = 10
    assert EsrrfParams(radius=0.7, magnification=10).margin == 6
    assert p.cutoff == pytest.approx(2 * 1.5 / 2.355 + 1, rel=1e-6)


# --------------------------------------------------------------------- temporal ---
@pytest.mark.parametrize("mode", ["avg", "var", "tac2"])
@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_temporal_matches_nanopyx(nptf, mode, n):
    from nanopyx.core.transform.sr_temporal_correlations import (
        calculate_eSRRF_temporal_correlations,
    )

    rng = np.random.default_rng(n)
    maps = (rng.gamma(2.0, 50.0, size=(n, 11, 13)) + 1000.0).astype(np.float32)
    if mode == "tac2" and n == 1:
        two_pass = temporal_two_pass(maps, mode)
        acc = TemporalAccumulator(mode, maps.shape[1:])
        acc.add(maps[0])
        assert np.isnan(two_pass).all() and np.isnan(acc.result()).all()
        return
    ref = calculate_eSRRF_temporal_correlations(maps, mode.upper())
    two_pass = temporal_two_pass(maps, mode)
    acc = TemporalAccumulator(mode, maps.shape[1:])
    for x in maps:
        acc.add(x)
    streamed = acc.result()
    assert streamed.dtype == np.float32 and streamed.shape == (11, 13)
    np.testing.assert_array_equal(two_pass, ref)
    # NanoPyx computes var / tac2 in float32 around a mean of ~1100: its own
    # rounding is ~1e-7 * 1100^2 absolute; compare relative to the statistic's scale
    scale = float(np.abs(ref).max())
    assert float(np.abs(streamed - ref).max()) <= 1e-4 * scale + 1e-7 * 1200.0**2 * (
        mode != "avg"
    )


def test_temporal_accumulator_exact_on_known_series():
    # x_t = t at every pixel: mean (n-1)/2, var (n^2-1)/12,
    # tac2 = mean over t of (t - m)(t + 1 - m)
    n = 7
    t = np.arange(n, dtype=np.float64)
    m = t.mean()
    expected = {
        "avg": 1e6 + m,
        "var": ((t - m) ** 2).mean(),
        "tac2": ((t[:-1] - m) * (t[1:] - m)).mean(),
    }
    for mode, value in expected.items():
        acc = TemporalAccumulator(mode, (2, 3))
        for k in range(n):
            acc.add(np.full((2, 3), 1e6 + k, dtype=np.float32))
        np.testing.assert_allclose(acc.result(), np.float32(value), rtol=1e-6)
        assert acc.count == n


# ------------------------------------------------------------------ macro-pixel ---
@pytest.mark.parametrize(("shape", "m"), [((24, 24), 5), ((17, 23), 3), ((20, 31), 1)])
def test_macro_pixel_correction_matches_nanopyx(nptf, shape, m):
    from nanopyx.core.transform.mpcorrector import macro_pixel_corrector

    rng = np.random.default_rng(3)
    h, w = shape
    img = rng.gamma(2.0, 10.0, size=(h * m, w * m)).astype(np.float32)
    margin = int(1.5 * m)
    img[:margin] = img[-margin:] = 0
    img[:, :margin] = img[:, -margin:] = 0
    ref = macro_pixel_corrector(img[None].copy(), magnification=m)[0]
    ours = macro_pixel_correction(img, m)
    assert ours.shape == img.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=2e-6)
    ours3 = macro_pixel_correction(np.stack([img, 2 * img]), m)
    np.testing.assert_allclose(ours3[1], ref, rtol=2e-6)  # scale invariant per image
