"""The causal drift predictor's bank of Kalman filters and the race between it
and the polynomial fit (:mod:`livesr.kernels.drift._kalman`, issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels import RollingDrift
from livesr.kernels.drift._causal import CausalShifts, fit_predictor
from livesr.kernels.drift._kalman import KalmanBank, PredictorRace
from livesr.sim import SimConfig, simulate_stack

K = 10


def _predict(coef: np.ndarray, t0: float, t: float) -> np.ndarray:
    x = (t - t0) / K
    return coef[0] + coef[1] * x + coef[2] * x * x


def _one_block_ahead(values: np.ndarray, sigma: float) -> tuple[float, float]:
    """RMS error of the next block's true value predicted by the bank and by the
    8-block fit, over blocks 20..n."""
    n = len(values)
    bank = KalmanBank(K)
    eb, ep = [], []
    centres = np.arange(n) * K + 4.5
    for i in range(n - 1):
        bank.update(centres[i], values[i], sigma)
        if i < 20:
            continue
        t0, coef = bank.predictor()  # type: ignore[misc]
        lo = max(0, i - 7)
        t1, c1 = fit_predictor(
            centres[lo : i + 1], values[lo : i + 1], np.full(i + 1 - lo, sigma), scale=K
        )
        eb.append(_predict(coef, t0, centres[i + 1]))
        ep.append(_predict(c1, t1, centres[i + 1]))
    return np.asarray(eb), np.asarray(ep)


def test_kalman_bank_beats_the_short_fit_on_steady_and_random_walk_drift():
    rng = np.random.default_rng(0)
    n, sigma = 200, 0.02
    t = np.arange(n)[:, None]
    for truth in (
        0.05 * t * np.array([1.0, -0.5]),  # linear: the bank becomes a long line
        0.03 * t + np.cumsum(rng.normal(0, 0.016, (n, 2)), axis=0),  # + walk
    ):
        y = truth + rng.normal(0, sigma, truth.shape)
        eb, ep = _one_block_ahead(y, sigma)
        rb = float(np.sqrt(np.mean((eb - truth[21:]) ** 2)))
        rp = float(np.sqrt(np.mean((ep - truth[21:]) ** 2)))
        assert rb < 0.85 * rp, (rb, rp)


def test_kalman_bank_restarts_at_a_step_and_keeps_the_velocity():
    rng = np.random.default_rng(1)
    bank = KalmanBank(K)
    for i in range(60):
        y = np.array([0.02 * i, 0.0]) + rng.normal(0, 0.01, 2)
        if i >= 40:
            y[1] += 1.0  # the stage moved by 1 px
        bank.update(i * K + 4.5, y, 0.01)
    assert bank.steps == 1
    t0, coef = bank.predictor()  # type: ignore[misc]
    np.testing.assert_allclose(coef[0], [0.02 * 59, 1.0], atol=0.03)
    np.testing.assert_allclose(coef[1], [0.02, 0.0], atol=0.01)  # px per block
    bank.shift(np.array([0.5, -0.5]))
    np.testing.assert_allclose(bank.predictor()[1][0], coef[0] + [0.5, -0.5])  # type: ignore[index]
    bank.reset()
    assert bank.predictor() is None and bank.n == 0


@pytest.mark.parametrize("delta,frames", [(0.012, 3), (0.05, 10), (0.2, 10)])
def test_causal_blend_spreads_a_change_only_as_long_as_continuity_needs(
    delta: float, frames: int
) -> None:
    """A change of prediction at a new epoch is spread over ceil(|delta| / rate)
    frames, at most ``blend``: small changes are not held back for a block."""
    cs = CausalShifts(10.0, 10, rate=0.005)
    coef = np.zeros((3, 2))
    cs.add(0, 0.0, coef, jump=False)
    new = coef.copy()
    new[0] = (delta, -delta / 2)
    cs.add(20, 20.0, new, jump=False)
    s = cs.shifts(20, 15)
    # frame 20 still at the old prediction, then linearly to the new one
    want = np.clip(1.0 - (np.arange(20, 35) - 20 + 1) / frames, 0.0, 1.0)
    np.testing.assert_allclose(s[:, 0], delta - want * delta, atol=1e-12)
    np.testing.assert_allclose(s[:, 1], -delta / 2 + want * delta / 2, atol=1e-12)
    step = np.abs(np.diff(np.vstack([[0.0, 0.0], s]), axis=0)).max()
    assert step <= max(0.005, delta / 10) + 1e-12
    # without a rate: always the whole blend (the former behaviour)
    old = CausalShifts(10.0, 10)
    old.add(0, 0.0, coef, jump=False)
    old.add(20, 20.0, new, jump=False)
    want = np.clip(1.0 - (np.arange(20, 35) - 20 + 1) / 10, 0.0, 1.0)
    np.testing.assert_allclose(old.shifts(20, 15)[:, 0], delta - want * delta)


def test_predictor_race_picks_the_better_recent_predictor():
    race = PredictorRace(K, memory=5)
    good = (0.0, np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))  # 1 px per block
    bad = (0.0, np.zeros((3, 2)))
    name, _ = race.pick(None, {"a": bad, "b": good})
    assert name == "a"  # nothing scored yet: the first
    for i in range(1, 6):
        newest = (i * K, float(i), float(i))
        good = (i * K, np.array([[i, i], [1.0, 1.0], [0.0, 0.0]], dtype=float))
        bad = (i * K, np.array([[i, i], [0.0, 0.0], [0.0, 0.0]], dtype=float))
        name, (t0, _) = race.pick(newest, {"a": bad, "b": good})
        assert t0 == i * K
    assert name == "b" and race.err["b"] < 1e-12 < race.err["a"]
    # a missing candidate is skipped, and nothing is scored until all predicted
    assert race.pick((60.0, 6.0, 6.0), {"a": bad, "b": None})[0] == "a"


def test_rolling_drift_follows_a_step_of_the_sample():
    """A stage move of 1 px in a static sample (256², the quick start's density):
    the bank restarts at the step, the causal shift is within 0.04 px of the
    truth 20 frames later; the 8-block fit alone overshot by 0.5-0.8 px for 80
    frames (RMS after the step 0.136 px against 0.234)."""
    stack, _ = simulate_stack(600, SimConfig.blinking(shape=(256, 256), seed=3))
    stack[300:] = np.roll(stack[300:], 1, axis=2)
    truth = np.zeros((600, 2))
    truth[300:, 1] = 1.0
    out = {}
    for pred in ("kalman", "poly"):
        rd = RollingDrift(block=K, max_drift=10.0, predictor=pred)
        for i in range(0, 600, 7):
            rd.push_many(stack[i : i + 7])
        out[pred] = rd.shifts_for(0, 600) - truth
    e = out["kalman"]
    assert np.abs(e[400:]).max() <= 0.06, np.abs(e[400:]).max()
    assert np.sqrt(np.mean(e[400:] ** 2)) <= 0.03
    rms = {k: float(np.sqrt(np.mean(v[300:] ** 2))) for k, v in out.items()}
    assert rms["kalman"] <= 0.8 * rms["poly"], rms
    with pytest.raises(ValueError, match="predictor"):
        RollingDrift(block=K, predictor="spline")
