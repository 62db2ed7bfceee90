"""QnR sweep, SQUIRREL error map, FIRE and decorrelation vs NanoPyx 2.1.5, on
simulator stacks (sparse and dense emitters, M 2 and 4, AVG and VAR, FRC and
decorrelation); plus the parts that need no reference (QnR maths, batches,
AutoParams). Stacks are small (<= 24 frames, <= 32 px) so the file runs in a
few minutes on 2 cores."""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels import (
    AutoParams,
    decorrelation_analysis,
    error_map,
    esrrf,
    esrrf_sweep,
    fire_number,
)
from livesr.kernels.sweep import logistic_normalise, qnr_score

TOL = 1e-3

_STACKS: dict[tuple[str, int, int, int], np.ndarray] = {}


def sim_stack(kind: str, t: int, side: int, seed: int) -> np.ndarray:
    """(t, side, side) uint16 blinking stack; ``kind`` sparse or dense labelling."""
    key = (kind, t, side, seed)
    if key not in _STACKS:
        from livesr.sim import CameraConfig, SampleConfig, SimConfig, simulate_stack

        density = 2.0 if kind == "sparse" else 40.0
        cfg = SimConfig(
            camera=CameraConfig(shape=(side, side)),
            sample=SampleConfig(labelling_density_per_um=density).scaled_to_field(
                (side, side)
            ),
            seed=seed,
        )
        _STACKS[key] = simulate_stack(t, cfg)[0]
    return _STACKS[key]


_NANOPYX = [
    pytest.mark.nanopyx,
    pytest.mark.filterwarnings("ignore:OpenCL is disabled:UserWarning"),
]


def _close(ours: float, ref: float) -> bool:
    return abs(ours - ref) <= TOL * max(1.0, abs(ref))


# -- the parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    *[
        "kind,m,temporal",
        [("sparse", 2, "avg"), ("dense", 4, "var"), ("dense", 2, "var")],
    ]
)
@pytest.mark.parametrize("mark", [pytest.param(0, marks=_NANOPYX)])
def test_error_map_matches_nanopyx(nanopyx, kind, m, temporal, mark):
    from nanopyx.core.transform.error_map import ErrorMap

    stack = sim_stack(kind, 16, 24, 3)
    sr = esrrf(
        stack,
        magnification=m,
        radius=1.5,
        temporal=temporal,
        macro_pixel_correction=False,
    )
    raw = stack.mean(axis=0)
    ref = ErrorMap()
    ref.optimise(raw, sr)
    ours = error_map(raw, sr, magnification=m)
    assert ours.error_map.shape == sr.shape
    for name, value, expected in [
        ("rsp", ours.rsp, ref.getRSP()),
        ("rse", ours.rse, ref.getRSE()),
        ("alpha", ours.alpha, ref._alpha),
        ("beta", ours.beta, ref._beta),
        ("sigma", ours.sigma, ref.get_sigma()),
    ]:
        assert _close(value, expected), (name, value, expected)
    ref_map = np.asarray(ref.imRSE)
    assert np.abs(ours.error_map - ref_map).max() <= TOL * ref_map.max()


@pytest.mark.parametrize(
    "m,temporal,side", [(2, "var", 32), (4, "var", 24), (2, "avg", 31), (4, "var", 31)]
)
@pytest.mark.parametrize("mark", [pytest.param(0, marks=_NANOPYX)])
def test_fire_number_matches_nanopyx(nanopyx, m, temporal, side, mark):
    from nanopyx.core.analysis.frc import FIRECalculator

    stack = sim_stack("dense", 24, side, 2)
    odd = esrrf(
        stack[1::2], magnification=m, temporal=temporal, macro_pixel_correction=False
    )
    even = esrrf(
        stack[::2], magnification=m, temporal=temporal, macro_pixel_correction=False
    )
    expected = FIRECalculator().calculate_fire_number(odd, even)
    ours = fire_number(odd, even)
    assert _close(ours, expected), (ours, expected)


@pytest.mark.parametrize(
    "kind,m,temporal", [("sparse", 2, "avg"), ("dense", 4, "var"), ("dense", 2, "avg")]
)
@pytest.mark.parametrize("mark", [pytest.param(0, marks=_NANOPYX)])
def test_decorrelation_matches_nanopyx(nanopyx, kind, m, temporal, mark):
    from nanopyx.core.analysis.decorr import DecorrAnalysis

    stack = sim_stack(kind, 16, 32, 4)
    sr = esrrf(stack, magnification=m, temporal=temporal, macro_pixel_correction=False)
    ref = DecorrAnalysis()
    ref.run_analysis(sr)
    ours = decorrelation_analysis(sr)
    assert np.isfinite(ours.resolution) and ours.resolution > 1.0
    assert _close(ours.resolution, ref.resolution), (ours.resolution, ref.resolution)
    assert _close(
        decorrelation_analysis(sr, pixel_size=50.0).resolution, 50.0 * ref.resolution
    )


# -- the sweep ----------------------------------------------------------------

_SWEEP_CASES = [
    # kind, M, temporal, use_decorr, frames_per_batch
    ("sparse", 2, "avg", False, None),
    ("dense", 2, "var", False, None),
    ("dense", 4, "var", False, None),
    ("dense", 2, "var", True, None),
    ("dense", 2, "var", False, 10),
]


@pytest.mark.parametrize("case", _SWEEP_CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("mark", [pytest.param(0, marks=_NANOPYX)])
def test_sweep_matches_nanopyx(nanopyx, case, mark, monkeypatch):
    from nanopyx.core.analysis.parameter_sweep import ParameterSweep
    from nanopyx.methods.esrrf.parameter_sweep import run_esrrf_parameter_sweep

    kind, m, temporal, decorr, batch = case
    stack = sim_stack(kind, 20, 24 if m == 4 else 32, 5)
    # radius 1 with decorrelation hits NanoPyx's uninitialised-buffer case
    # (no peak found; see livesr.kernels.decorr), so that case sweeps 1.5 .. 2.5
    sens, radii = [1, 2], ([1.5, 2.0, 2.5] if decorr else [1.0, 1.5, 2.0])
    captured = {}
    original = ParameterSweep.calculate_qnr_score

    def capture(self, rsp, res):
        captured["rsp"], captured["res"] = np.array(rsp), np.array(res)
        return original(self, rsp, res)

    monkeypatch.setattr(ParameterSweep, "calculate_qnr_score", capture)
    expected = run_esrrf_parameter_sweep(
        stack,
        magnification=m,
        sensitivities=sens,
        radii=radii,
        temporal_correlation=temporal.upper(),
        use_decorr=decorr,
        return_qnr=True,
        n_frames=batch,
    )
    ours = esrrf_sweep(
        stack,
        magnification=m,
        sensitivities=sens,
        radii=radii,
        temporal=temporal,
        use_decorr=decorr,
        frames_per_batch=batch,
    )
    assert ours.qnr.shape == (2, 3)
    np.testing.assert_allclose(ours.rsp, captured["rsp"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(ours.resolution, captured["res"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(ours.qnr, expected, rtol=0, atol=TOL)
    i, j = np.unravel_index(np.argmax(expected), expected.shape)
    assert ours.best == (sens[i], radii[j])
    assert ours.images.shape == (2, 3, stack.shape[1] * m, stack.shape[2] * m)


# -- no reference needed --------------------------------------------------------


def test_qnr_is_harmonic_mean_of_rsp_and_logistic_resolution():
    res = np.array([[2.0, 3.0], [4.0, 2.0]])
    n = logistic_normalise(res)
    # the finest resolution (smallest) scores 0.925, the coarsest 0.075
    assert n[0, 0] == pytest.approx(0.925) and n[1, 0] == pytest.approx(0.075)
    assert n[0, 1] == pytest.approx(0.5)
    rsp = np.array([[0.8, 0.6], [0.5, 0.0]])
    q = qnr_score(rsp, res)
    assert q[0, 0] == pytest.approx(2 * 0.8 * 0.925 / 1.725, rel=1e-6)
    assert q[1, 0] == pytest.approx(2 * 0.5 * 0.075 / 0.575, rel=1e-6)
    assert q[1, 1] == 0.0
    assert np.all(logistic_normalise(np.full((2, 2), 3.0)) == 0.5)


def test_sweep_images_equal_esrrf_and_batches_cover_the_stack():
    stack = sim_stack("dense", 12, 16, 7)
    res = esrrf_sweep(
        stack, magnification=2, sensitivities=(1, 2), radii=(1.0, 1.5), temporal="var"
    )
    for i, s in enumerate((1, 2)):
        for j, r in enumerate((1.0, 1.5)):
            ref = esrrf(
                stack,
                magnification=2,
                radius=r,
                sensitivity=s,
                temporal="var",
                macro_pixel_correction=False,
            )
            assert np.abs(res.images[i, j] - ref).max() <= 1e-5 * ref.max()
    np.testing.assert_allclose(res.raw_mean, stack.mean(axis=0), rtol=1e-6)
    one_batch = esrrf_sweep(
        stack,
        magnification=2,
        sensitivities=(1, 2),
        radii=(1.0, 1.5),
        temporal="var",
        frames_per_batch=100,
    )
    np.testing.assert_array_equal(one_batch.qnr, res.qnr)
    batched = esrrf_sweep(
        stack,
        magnification=2,
        sensitivities=(1, 2),
        radii=(1.0, 1.5),
        temporal="var",
        frames_per_batch=5,
    )
    np.testing.assert_allclose(batched.images, res.images, rtol=1e-5, atol=1e-6)
    assert batched.n_frames == 12
    # a last batch of one frame (VAR: a constant image) is left out of the means
    tail = esrrf_sweep(
        stack,
        sensitivities=(1, 2),
        radii=(1.0, 1.5),
        temporal="var",
        frames_per_batch=11,
    )
    head = esrrf_sweep(
        stack[:11], sensitivities=(1, 2), radii=(1.0, 1.5), temporal="var"
    )
    np.testing.assert_array_equal(tail.rsp, head.rsp)
    np.testing.assert_array_equal(tail.resolution, head.resolution)
    frames_seen = []
    esrrf_sweep(stack, sensitivities=(1,), radii=(1.0,), progress=frames_seen.append)
    assert sum(frames_seen) == 12


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"radii": ()}, "radii must not be empty"),
        ({"radii": (0.0,)}, "radii value"),
        ({"sensitivities": (-1,)}, "sensitivities value"),
        ({"temporal": "tac2"}, "'avg' or 'var'"),
        ({"frames_per_batch": 0}, "frames_per_batch"),
        ({"use_decorr": True}, "use_decorr needs SR images"),
    ],
)
def test_sweep_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        esrrf_sweep(np.ones((4, 16, 16), np.float32), **kwargs)
    with pytest.raises(ValueError, match="at least 2 frames"):
        esrrf_sweep(np.ones((1, 16, 16), np.float32))


def test_error_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="integer multiple"):
        error_map(np.ones((8, 8)), np.ones((16, 17)))
    with pytest.raises(ValueError, match="magnification=3"):
        error_map(np.ones((8, 8)), np.ones((16, 16)), magnification=3)


def test_auto_params_matches_offline_sweep_and_runs_in_background():
    stack = sim_stack("dense", 30, 16, 8)
    auto = AutoParams(
        magnification=2,
        sensitivities=(1, 2),
        radii=(1.0, 1.5),
        temporal="var",
        budget_s=60.0,
        min_frames=20,
        max_frames=20,
    )
    choice = auto.run(stack)
    offline = esrrf_sweep(
        stack[-20:],
        magnification=2,
        sensitivities=(1, 2),
        radii=(1.0, 1.5),
        temporal="var",
    )
    assert choice is not None and choice.serial == 1 and choice.n_frames == 20
    assert (choice.sensitivity, choice.radius) == offline.best
    assert choice.qnr == pytest.approx(offline.best_qnr, abs=1e-6)
    assert auto.submit(stack)
    assert not auto.submit(stack)  # one at a time
    assert auto.close(timeout=120.0)
    latest = auto.latest()
    assert latest is not None and latest.serial == 2
    assert (latest.sensitivity, latest.radius) == offline.best
    assert not auto.submit(stack)  # closed


def test_auto_params_discards_an_overrun_sweep():
    stack = sim_stack("dense", 12, 16, 8)
    auto = AutoParams(budget_s=1e-6, min_frames=2, max_frames=12)
    assert auto.run(stack) is None
    assert auto.latest() is None
    with pytest.raises(ValueError, match="budget_s"):
        AutoParams(budget_s=0)
