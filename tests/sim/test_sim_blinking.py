"""Blinking kinetics: duty cycle, dwell times, bleaching, and the truth's on-states."""

from __future__ import annotations

import numpy as np
import pytest

from livesr.sim import (
    CameraConfig,
    Microscope,
    SampleConfig,
    SimConfig,
    steady_state_on_fraction,
)
from livesr.sim._blinking import Blinking, transition_probabilities


@pytest.mark.parametrize(("k_on", "k_off"), [(20.0, 80.0), (3.0, 100.0), (50.0, 50.0)])
def test_duty_cycle_matches_the_kinetics(k_on, k_off):
    cfg = SampleConfig(on_rate_hz=k_on, off_rate_hz=k_off, bleach_rate_hz=0.0)
    dt = 0.01
    b = Blinking(4000, cfg, dt, np.random.default_rng(0))
    frac = []
    for _ in range(300):
        frac.append(b.on.mean())
        b.step()
    p_on, p_off = 1 - np.exp(-k_on * dt), 1 - np.exp(-k_off * dt)
    expected = p_on / (p_on + p_off)
    assert steady_state_on_fraction(cfg, dt) == pytest.approx(expected)
    assert np.mean(frac) == pytest.approx(expected, rel=0.05)
    assert frac[0] == pytest.approx(expected, rel=0.1)  # starts in steady state


def test_on_dwell_time_is_geometric_with_the_off_rate():
    cfg = SampleConfig(on_rate_hz=20.0, off_rate_hz=80.0, bleach_rate_hz=0.0)
    b = Blinking(3000, cfg, 0.01, np.random.default_rng(1))
    states = []
    for _ in range(200):
        states.append(b.on.copy())
        b.step()
    s = np.stack(states)  # (t, n)
    # completed on-runs: on at t, off at t+1 ; mean run length = 1 / p_off
    starts = (s[1:] & ~s[:-1]).sum()
    ends = (s[:-1] & ~s[1:]).sum()
    mean_on = s[1:-1].sum() / ((starts + ends) / 2)
    _, p_off, _ = transition_probabilities(cfg, 0.01)
    assert mean_on == pytest.approx(1 / p_off, rel=0.05)


def test_bleached_fraction_follows_the_three_state_chain():
    cfg = SampleConfig(on_rate_hz=30.0, off_rate_hz=60.0, bleach_rate_hz=5.0)
    dt = 0.01
    b = Blinking(5000, cfg, dt, np.random.default_rng(2))
    n_steps = 150
    for _ in range(n_steps):
        b.step()
    p_on, p_off, p_b = transition_probabilities(cfg, dt)
    # states (off, on, bleached); row-stochastic transition matrix
    m = np.array(
        [[1 - p_on, p_on, 0.0], [p_off, 1 - p_off - p_b, p_b], [0.0, 0.0, 1.0]]
    )
    frac0 = steady_state_on_fraction(cfg, dt)
    dist = np.array([1 - frac0, frac0, 0.0]) @ np.linalg.matrix_power(m, n_steps)
    assert b.bleached.mean() == pytest.approx(dist[2], rel=0.05)
    assert b.on.mean() == pytest.approx(dist[1], rel=0.05)
    assert not (b.on & b.bleached).any()


def test_always_on_when_off_rate_is_zero():
    cfg = SampleConfig(on_rate_hz=1.0, off_rate_hz=0.0, bleach_rate_hz=0.0)
    b = Blinking(100, cfg, 0.01, np.random.default_rng(3))
    for _ in range(20):
        assert b.on.all()
        b.step()


def test_microscope_on_states_match_the_default_duty_cycle():
    cfg = SimConfig(
        sample=SampleConfig(bleach_rate_hz=0.0),
        camera=CameraConfig(shape=(32, 32)),
        seed=4,
    )
    scope = Microscope(cfg)
    _, truths = scope.acquire(150)
    on = np.stack([t.on for t in truths])
    assert on.shape == (150, scope.n_emitters) and scope.n_emitters > 1000
    duty = steady_state_on_fraction(cfg.sample, 0.01)
    assert 0.2 < duty < 0.3  # the documented eSRRF-like default (~25 % on)
    assert on.mean() == pytest.approx(duty, rel=0.05)
