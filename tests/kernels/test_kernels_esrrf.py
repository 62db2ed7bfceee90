"""``esrrf_frame`` / ``esrrf`` (numpy reference) vs NanoPyx 2.1.5 on simulator stacks.

A covering design over shapes (square, non-square, odd), magnifications 1-8,
radii 1-3, sensitivities 1-4 (and 0.5: no exponent), intensity weighting,
macro-pixel correction, every temporal mode and frames_per_timepoint 0 / 4.
Each case is tiny (<= 9 frames, <= 31 px per side).
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels import EsrrfParams, esrrf, esrrf_frame

pytestmark = [
    pytest.mark.nanopyx,
    # liquid_engine warns on import when OpenCL is disabled on purpose (see fixture)
    pytest.mark.filterwarnings("ignore:OpenCL is disabled:UserWarning"),
]

RTOL = 1e-4  # interior max |ours - ref| / max |ref|
MIN_PEARSON = 0.9999


_STACKS: dict[tuple[int, int, int, int], np.ndarray] = {}


def sim_stack(t: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    """(t, h, w) uint16 blinking stack from the simulator (cached)."""
    key = (t, h, w, seed)
    if key not in _STACKS:
        from livesr.sim import CameraConfig, SimConfig, simulate_stack

        stack, _ = simulate_stack(
            t, SimConfig(camera=CameraConfig(shape=(h, w)), seed=seed)
        )
        _STACKS[key] = stack
    return _STACKS[key]


def assert_parity(ours: np.ndarray, ref: np.ndarray, margin: int) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == np.float32
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


def assert_zero_margin(img: np.ndarray, margin: int) -> None:
    border = np.ones(img.shape[-2:], dtype=bool)
    border[margin : img.shape[-2] - margin, margin : img.shape[-1] - margin] = False
    assert np.all(img[..., border] == 0), "margin must be exactly 0"


# -------------------------------------------------------------- per-frame maps ---
FRAME_CASES = [
    # shape, M, R, S, intensity weighting
    ((24, 24), 5, 1.5, 1.0, True),
    ((20, 31), 1, 1.5, 1.0, True),
    ((17, 23), 2, 1.0, 2.0, False),
    ((24, 24), 3, 2.0, 4.0, True),
    ((20, 31), 4, 3.0, 1.0, False),
    ((17, 23), 6, 1.0, 3.0, True),
    ((20, 31), 7, 2.5, 0.5, True),
    ((17, 23), 8, 1.5, 2.0, False),
    # edge cases: tiny frames (clamped gradient reads, the M = 1 bound check),
    # float32 radius (int(float32(0.7) * 10) = 6 margin pixels)
    ((5, 4), 3, 0.5, 1.0, True),
    ((8, 5), 10, 0.7, 1.0, True),
    ((6, 6), 1, 0.7, 1.5, True),
]


@pytest.mark.parametrize(
    ("shape", "m", "radius", "sensitivity", "weighting"),
    FRAME_CASES,
    ids=[
        f"{s[0]}x{s[1]}-M{m}-R{r}-S{s_}-{'iw' if iw else 'rgc'}"
        for s, m, r, s_, iw in FRAME_CASES
    ],
)
def test_esrrf_frame_matches_nanopyx_esrrf_st(
    nanopyx, shape, m, radius, sensitivity, weighting
):
    stack = sim_stack(2, *shape)
    ref = nanopyx.core.transform.eSRRF_ST(verbose=False).run(
        stack,
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
    ours = np.stack([esrrf_frame(f, params) for f in stack])
    assert ours.shape == (2, shape[0] * m, shape[1] * m)
    assert_parity(ours, ref, params.margin)
    assert_zero_margin(ours, params.margin)


def test_esrrf_frame_writes_into_out():
    frame = sim_stack(1, 17, 23)[0]
    params = EsrrfParams(magnification=2)
    out = np.full((34, 46), np.nan, dtype=np.float32)
    res = esrrf_frame(frame, params, out=out)
    assert res is out
    np.testing.assert_array_equal(out, esrrf_frame(frame, params))


# --------------------------------------------------------------- full eSRRF ----
BATCH_CASES = [
    # shape, t, M, R, S, iw, macro-pixel, temporal, F
    ((24, 24), 5, 5, 1.5, 1.0, True, True, "avg", 0),
    ((20, 31), 9, 4, 1.5, 1.0, True, True, "avg", 4),
    ((17, 23), 6, 3, 2.0, 2.0, False, True, "var", 0),
    ((24, 24), 9, 2, 1.0, 1.0, True, False, "var", 4),
    ((20, 31), 6, 5, 1.5, 1.0, True, True, "tac2", 0),
    ((17, 23), 8, 2, 3.0, 4.0, True, False, "tac2", 4),
    ((24, 24), 4, 1, 1.5, 1.0, False, False, "avg", 0),
    ((20, 31), 3, 8, 1.0, 3.0, True, True, "var", 0),
    ((17, 23), 5, 6, 2.5, 1.0, False, True, "tac2", 0),
    ((24, 24), 9, 3, 1.5, 1.0, True, True, "var", 4),
]


def _batch_id(case):
    s, t, m, r, sens, iw, mp, tm, f = case
    kind = f"{'iw' if iw else 'rgc'}-{'mp' if mp else 'raw'}"
    return f"{s[0]}x{s[1]}-t{t}-M{m}-R{r}-S{sens}-{kind}-{tm}-F{f}"


@pytest.mark.parametrize("case", BATCH_CASES, ids=[_batch_id(c) for c in BATCH_CASES])
def test_esrrf_matches_nanopyx_esrrf(nanopyx, case):
    shape, t, m, radius, sens, iw, mp, temporal, f = case
    stack = sim_stack(t, *shape)
    from nanopyx.methods.esrrf.eSRRF_workflow import eSRRF as nanopyx_esrrf

    ref = nanopyx_esrrf(
        stack,
        magnification=m,
        radius=radius,
        sensitivity=sens,
        frames_per_timepoint=f,
        temporal_correlation=temporal.upper(),
        doIntensityWeighting=iw,
        macro_pixel_correction=mp,
        _force_run_type="threaded",
    )
    ours = esrrf(
        stack,
        magnification=m,
        radius=radius,
        sensitivity=sens,
        intensity_weighting=iw,
        macro_pixel_correction=mp,
        temporal=temporal,
        frames_per_timepoint=f,
    )
    n_blocks = -(-t // f) if f else 1
    expected_shape = (shape[0] * m, shape[1] * m)
    assert ours.shape == ((n_blocks, *expected_shape) if f else expected_shape)
    margin = EsrrfParams(magnification=m, radius=radius).margin
    # NanoPyx squeezes its (n_blocks, Y, X) output
    assert_parity(ours, ref.reshape(ours.shape), margin)
    # the margin is 0 in both (macro-pixel correction divides 0 by the phase mean)
    assert_zero_margin(ref.reshape(ours.shape), margin)
    assert_zero_margin(ours, margin)
