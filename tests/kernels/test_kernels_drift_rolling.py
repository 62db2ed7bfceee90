"""RollingDrift (causal, block-wise) against simulator ground truth.

Main scenario (module fixture, 5000 frames of 96x96, ~2000 emitters, blinking
~23 % on, 500 photons, 20 photons/px background, no bleaching so that the SNR is
constant and any growth of the error over time would come from the estimator):
drift = oscillation of (1.6, 1.2) um = (16, 12) px amplitude, 10 s (1000-frame)
period, peak speed (0.10, 0.075) px/frame, + 0.001 px/frame linear + random walk
0.003 px/frame. The sample sweeps +-16 px across a 96 px field, so key frames are
needed (3 are made; old keys are revisited).

Measured (K = 10, defaults, this shared 2-core VM): per-frame RMS error 0.023 px
= 2.3 nm at 100 nm pixels (smoothing=2; 0.026 px unsmoothed), first 1000 frames
0.028, last 1000 0.020; reported sigma ~1.5x the actual block error (conservative).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from livesr.kernels import RollingDrift
from livesr.kernels.drift import DriftEstimate, RollingDriftParams
from livesr.sim import (
    CameraConfig,
    DriftConfig,
    SampleConfig,
    SimConfig,
    simulate_stack,
)

K = 10
N = 5000
PIXEL_NM = 100.0


def _rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(e))))


def _config(shape=(96, 96), seed=5, **drift) -> SimConfig:
    d = {
        "oscillation_amplitude_um": (1.6, 1.2),
        "oscillation_period_s": 10.0,
        "velocity_um_per_s": (0.0, 0.01),
        "random_walk_um": 0.0003,
    }
    d.update(drift)
    return SimConfig(
        camera=CameraConfig(shape=shape),
        sample=SampleConfig(margin_um=3.0, n_filaments=16, bleach_rate_hz=0.0),
        drift=DriftConfig(**d),
        seed=seed,
    )


@pytest.fixture(scope="module")
def long_run():
    stack, truths = simulate_stack(N, _config())
    d = np.array([t.displacement_px for t in truths])
    rd = RollingDrift(block=K)
    ests = rd.update(stack)
    # reference of RollingDrift: the position of the first block (its K frames)
    d_ref = d - d[:K].mean(axis=0)
    return rd, ests, d_ref


@pytest.fixture(scope="module")
def short_stack():
    stack, truths = simulate_stack(600, _config(seed=11))
    d = np.array([t.displacement_px for t in truths])
    return stack, d


def test_drift_rolling_speed_of_the_scenario_is_up_to_0p1_px_per_frame(long_run):
    _, _, d = long_run
    v = np.abs(np.diff(d, axis=0)).max(axis=0)
    assert 0.09 < v[0] < 0.12 and v[1] > 0.07


def test_drift_rolling_rms_error_over_5000_frames(long_run):
    rd, ests, d = long_run
    assert len(ests) == N // K
    assert rd.n_keys >= 2  # key frames were needed
    assert not any(e.rejected for e in ests)
    table = rd.drift_table()
    assert table.shape == (N, 2)
    err = table - d
    # the run's origin is the first block's position as the provisional
    # estimates saw it (one frame for the whole run, no jump at the first key):
    # known to ~the block noise; measured (0.040, -0.005) px at 0.1 px/frame
    frame = err.mean(axis=0)
    assert np.all(np.abs(frame) <= 0.06), frame
    rms = _rms(err - frame)
    # requirement: <= 0.03 px = 3 nm at 100 nm pixels; measured 0.023 px
    assert rms <= 0.03, f"RMS {rms:.4f} px = {rms * PIXEL_NM:.2f} nm"
    # block estimates (raw, revised reference) vs the block-mean truth
    centres = np.array([e.center for e in ests])
    assert np.allclose(centres, np.arange(N // K) * K + (K - 1) / 2)
    raw = np.array([(e.dy, e.dx) for e in ests])[K:]  # after the first key is frozen
    block_truth = d.reshape(-1, K, 2).mean(axis=1)[K:]
    assert _rms(raw - block_truth - frame) <= 0.04  # measured 0.028


def test_drift_rolling_error_does_not_grow_with_run_length(long_run):
    rd, _, d = long_run
    e = rd.drift_table() - d
    first, last = _rms(e[:1000]), _rms(e[-1000:])
    assert last <= 1.3 * first + 0.005, (first, last)


def test_drift_rolling_sigma_is_calibrated(long_run):
    _, ests, d = long_run
    raw = np.array([(e.dy, e.dx) for e in ests])[K:]
    sig = np.array([e.sigma_px for e in ests])[K:]
    actual = _rms(raw - d.reshape(-1, K, 2).mean(axis=1)[K:])
    assert np.all(np.isfinite(sig)) and np.all(sig > 0)
    # per axis: the reported sigma is within a factor 2 of the actual RMS error
    assert 0.5 * actual <= float(np.mean(sig)) <= 2.0 * actual, (
        float(np.mean(sig)),
        actual,
    )


def test_drift_rolling_causal_extrapolation_is_usable(long_run, short_stack):
    """What a stream applies to frames whose block is not complete yet: the
    extrapolation over the next K frames (measured 0.079 px RMS on this seeded,
    strongly accelerating scenario; 0.077 before the Kalman predictor; vs 0.023 px for
    frames between completed blocks)."""
    stack, d = short_stack
    rd = RollingDrift(block=K, smoothing=0)
    errs: list[np.ndarray] = []
    ref = None
    for i, frame in enumerate(stack):
        est = rd.push(frame)
        if ref is None and rd.n_frames >= K * rd.params.key_blocks + K:
            ref = d[:K].mean(axis=0)
        if ref is not None and est is not None and i + K < len(stack):
            pred = np.array([rd.displacement_at(i + j) for j in range(1, K + 1)])
            errs.append(pred - (d[i + 1 : i + K + 1] - ref))
    e = np.array(errs)
    # prediction error about the run's constant frame offset (see above)
    assert _rms(e - e.reshape(-1, 2).mean(axis=0)) < 0.08


def test_drift_rolling_push_and_update_contract(short_stack):
    stack, _ = short_stack
    rd = RollingDrift(block=K)
    assert rd.current() == (0.0, 0.0) and rd.displacement_at(5) == (0.0, 0.0)
    outs = [rd.push(f) for f in stack[: K - 1]]
    assert outs == [None] * (K - 1)
    e0 = rd.push(stack[K - 1])
    assert isinstance(e0, DriftEstimate)
    assert (e0.block_index, e0.frame_index, e0.center) == (0, K - 1, (K - 1) / 2)
    assert (e0.dy, e0.dx, e0.rejected) == (0.0, 0.0, False)
    more = rd.update(stack[K : 3 * K + 3])
    assert [e.block_index for e in more] == [1, 2]
    assert [e.frame_index for e in more] == [2 * K - 1, 3 * K - 1]
    assert rd.n_frames == 3 * K + 3
    assert rd.current() == (more[-1].dy, more[-1].dx)
    with pytest.raises(AttributeError):
        e0.dy = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="differs from the stream"):
        rd.push(stack[0, :32, :32])
    with pytest.raises(ValueError, match="non-finite"):
        rd.push(np.full(stack.shape[1:], np.nan))
    with pytest.raises(ValueError, match="2-D"):
        rd.push(stack[:2])


def test_drift_rolling_rejects_garbage_block_and_predicts(short_stack):
    stack, d = short_stack
    bad = stack.copy()
    rng = np.random.default_rng(1)
    g0 = 30 * K  # block 30: replace by a different sample / pure noise
    bad[g0 : g0 + K] = rng.poisson(150, size=(K, *stack.shape[1:])).astype(np.uint16)
    j0 = 40 * K  # block 40: the whole block jumps by 7 px (e.g. a glitch)
    bad[j0 : j0 + K] = np.roll(stack[j0 : j0 + K], (7, -7), axis=(1, 2))
    rd = RollingDrift(block=K)
    ests = rd.update(bad)
    rejected = [e.block_index for e in ests if e.rejected]
    assert rejected == [30, 40]
    ref = d[:K].mean(axis=0)
    truth = d.reshape(-1, K, 2).mean(axis=1) - ref
    for b in (30, 40):
        e = ests[b]
        # the prediction stands in for the block, within 0.15 px of the truth
        assert np.max(np.abs(np.array([e.dy, e.dx]) - truth[b])) < 0.15
        assert e.sigma_px > ests[b - 1].sigma_px
    good = np.array([(e.dy, e.dx) for e in ests[41:]])
    assert _rms(good - truth[41:]) < 0.05  # the tracker was not thrown off


def test_drift_rolling_relocks_after_a_real_step(short_stack):
    stack, d = short_stack
    stepped = stack.copy()
    s0 = 30 * K
    stepped[s0:] = np.roll(stack[s0:], (6, 0), axis=(1, 2))  # a permanent 6 px step
    rd = RollingDrift(block=K, relock_after=3)
    ests = rd.update(stepped)
    rej = [e.block_index for e in ests if e.rejected]
    assert rej == [30, 31, 32]
    ref = d[:K].mean(axis=0)
    truth = (
        d.reshape(-1, K, 2).mean(axis=1)
        - ref
        + np.where(np.arange(len(ests)) >= 30, 6.0, 0.0)[:, None] * [1, 0]
    )
    vals = np.array([(e.dy, e.dx) for e in ests])
    ok = np.r_[10:30, 33 : len(ests)]
    frame = (vals[ok] - truth[ok]).mean(axis=0)  # the run's constant frame offset
    assert _rms(vals[33:] - truth[33:] - frame) < 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block": 0}, "block=0"),
        ({"block": 2.5}, "block=2.5"),
        ({"max_drift": -1.0}, "max_drift=-1.0"),
        ({"keyframe_every": -1}, "keyframe_every=-1"),
        ({"upsample": 0}, "upsample=0"),
        ({"min_overlap": 1.0}, "min_overlap=1.0"),
        ({"min_overlap": 0.5, "min_ref_overlap": 0.6}, "min_ref_overlap=0.6"),
        ({"max_velocity": 0.0}, "max_velocity=0.0"),
        ({"psr_drop": math.nan}, "psr_drop=nan"),
        ({"smoothing": -1}, "smoothing=-1"),
    ],
)
def test_drift_rolling_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RollingDrift(**kwargs)
    with pytest.raises(ValueError, match=match):
        RollingDriftParams(**kwargs)


def test_drift_rolling_small_blocks_and_forced_key_frames(short_stack):
    """block=2 (split halves of one frame), a key frame forced every 5 blocks."""
    stack, d = short_stack
    rd = RollingDrift(block=2, keyframe_every=5, key_blocks=3)
    ests = rd.update(stack[:240])
    assert len(ests) == 120
    assert rd.n_keys >= 5
    ref = d[:2].mean(axis=0)  # reference: the first block (2 frames)
    e = rd.drift_table() - (d[:240] - ref)
    # about the run's constant frame offset (a 2-frame first block is noisy)
    assert _rms(e - e.mean(axis=0)) < 0.1  # measured 0.068 with 18 keys (2-frame blocks are noisy)
