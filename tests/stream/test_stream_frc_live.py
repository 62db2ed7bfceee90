"""Even/odd FRC of one window, live (issue 15): :mod:`livesr.stream._frc_live`.

Simulator (``SimConfig.blinking``, 96², seed 1, M = 4: 25 nm SR pixels; PSF
sigma 130 nm, FWHM 306 nm = 12.2 SR px). Measured here: FIRE 15.4 / 13.6 / 11.6
/ 5.5 SR px for windows of 20 / 50 / 100 / 200 frames (the decorrelation of the
same window images sits at its 2-2.5 px Nyquist floor from 100 frames on); the
halves cost 0.7-0.8x the window's own maps (one map per frame again).
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels.frc import fire_number
from livesr.kernels.sliding import SlidingEsrrf
from livesr.sim import DriftConfig, SimConfig, simulate_stack
from livesr.stream._frc_live import (
    FrcEstimate,
    LiveFrc,
    frc_of_window,
    window_halves,
)

M = 4
PSF_FWHM_SR_PX = 2.3548 * 1.298 * M  # 12.2


@pytest.fixture(scope="module")
def blinking():
    stack, _ = simulate_stack(200, SimConfig.blinking(shape=(96, 96), seed=1))
    return stack


def test_frc_live_halves_are_the_windows_of_even_and_odd_frames(blinking):
    w = blinking[:40]
    shifts = np.random.default_rng(0).normal(0, 0.3, (40, 2))
    even, odd = window_halves(w, shifts, magnification=M, temporal="var")
    ref_e = (
        SlidingEsrrf(20, 20, magnification=M, temporal="var")
        .push_many(w[0::2], shifts[0::2])[0]
        .image
    )
    ref_o = (
        SlidingEsrrf(20, 20, magnification=M, temporal="var")
        .push_many(w[1::2], shifts[1::2])[0]
        .image
    )
    np.testing.assert_array_equal(even, ref_e)
    np.testing.assert_array_equal(odd, ref_o)
    assert even.shape == (96 * M, 96 * M)
    assert float(np.abs(even - odd).mean()) > 0.05 * float(np.abs(even).mean())


@pytest.mark.nanopyx
def test_frc_live_equals_nanopyx_fire(blinking, nanopyx):
    from nanopyx.core.analysis.frc import FIRECalculator

    even, odd = window_halves(blinking[:100], magnification=M)
    theirs = FIRECalculator(pixel_size=1, units="px").calculate_fire_number(even, odd)
    est = frc_of_window(blinking[:100], magnification=M)
    assert est.value_px == pytest.approx(float(theirs), rel=1e-5)  # 3e-7 measured
    assert est.value_px == pytest.approx(fire_number(even, odd), rel=1e-12)


def test_frc_live_improves_with_frames_and_stays_above_the_floor(blinking):
    vals = []
    for n in (20, 100, 200):
        est = frc_of_window(blinking[:n], index=n, magnification=M)
        assert isinstance(est, FrcEstimate) and est.frames == n
        assert est.resolved and est.value_px is not None, est
        vals.append(est.value_px)
    # more frames, finer resolution: from about the PSF's FWHM (12.2 SR px) at
    # 20 frames to about half of it at 200 (15.4 -> 5.5 measured); never at the
    # 2-px Nyquist floor
    assert vals[0] > vals[1] > vals[2] >= 2.5, vals
    assert 0.8 * PSF_FWHM_SR_PX < vals[0] < 1.6 * PSF_FWHM_SR_PX, vals
    assert vals[2] < 0.6 * PSF_FWHM_SR_PX, vals


def test_frc_live_uses_the_drift_shifts():
    cfg = SimConfig.blinking(
        shape=(96, 96), seed=2, drift=DriftConfig(velocity_um_per_s=(0.15, -0.1))
    )
    stack, truths = simulate_stack(100, cfg)
    d = np.array([t.displacement_px for t in truths])  # 1.5, -1.0 px over the window
    with_shift = frc_of_window(stack, d - d[0], magnification=M)
    without = frc_of_window(stack, magnification=M)
    assert with_shift.value_px is not None and without.value_px is not None
    assert with_shift.value_px < 0.9 * without.value_px, (with_shift, without)


def test_frc_live_schedule_every_and_once(blinking):
    clock = [0.0]
    frc = LiveFrc(
        {"magnification": M},
        every=2,
        background=False,
        cpu_share=1.0,
        clock=lambda: clock[0],
    )
    taken = [frc.offer(i, blinking[:20]) for i in range(4)]
    assert taken == [True, False, True, False]
    est = frc.take()
    assert isinstance(est, FrcEstimate) and est.image_index == 2
    assert frc.take() is None  # handed out once
    assert frc.estimates == 2 and frc.frames_mapped == 40 and frc.published == 1
    js = est.to_json(25.0)
    assert js["value_nm"] == pytest.approx(25.0 * est.value_px)
    assert js["method"] == "frc-even-odd" and js["frames"] == 20
    assert frc.report()["latest"]["image_index"] == 2
    # too few frames, too small an image: not taken
    assert not frc.offer(4, blinking[:3])
    assert not frc.offer(6, blinking[:20, :6, :6])
    frc.close()


def test_frc_live_background_thread_and_failures(blinking):
    frc = LiveFrc({"magnification": M}, cpu_share=1.0)
    try:
        assert frc.offer(7, blinking[:20])
        assert frc.wait_idle(60.0)
        est = frc.take()
        assert est is not None and est.image_index == 7 and est.value_px is not None
        bad = LiveFrc({"magnification": M, "temporal": "nope"}, background=False)
        assert bad.offer(0, blinking[:20])
        assert bad.failures == 1 and bad.take() is None
    finally:
        frc.close()
    with pytest.raises(ValueError, match="every"):
        LiveFrc({}, every=0)
    with pytest.raises(ValueError, match="n >= 4"):
        window_halves(blinking[:3])


def test_window_frames_keep_what_was_collected_when_a_batch_grows() -> None:
    from livesr.stream._frc_live import WindowFrames

    frames = np.arange(10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4)
    shifts = np.stack([np.arange(10) * 0.1, -np.arange(10) * 0.1], axis=1)
    wf = WindowFrames()
    for k in range(3):  # batches of 1 (capacity window + 1)
        wf.push(np.array([k]), frames[k : k + 1], shifts[k : k + 1], window=4)
    wf.push(np.arange(3, 7), frames[3:7], shifts[3:7], window=4)  # a batch of 4
    got = wf.window(0, 6)
    assert got is not None
    np.testing.assert_array_equal(got[0], frames[:7])
    np.testing.assert_array_equal(got[1], shifts[:7])
    assert wf.window(0, 7) is None  # frame 7 never came
    wf.clear()
    assert wf.window(3, 6) is None


def test_live_frc_takes_at_most_one_window_per_min_interval() -> None:
    from livesr.stream._frc_live import LiveFrc

    t = [0.0]
    frames = np.random.default_rng(3).poisson(50.0, (8, 24, 24)).astype(np.float32)
    frc = LiveFrc({"magnification": 2}, background=False, cpu_share=1.0,
                  min_interval_s=1.0, clock=lambda: t[0])
    try:
        assert frc.wants_frames() and frc.offer(0, frames)
        assert frc.take().image_index == 0
        t[0] = 0.5
        assert not frc.wants_frames() and not frc.offer(1, frames)
        t[0] = 1.0
        assert frc.wants_frames() and frc.offer(2, frames)
        assert frc.take().image_index == 2 and frc.estimates == 2
    finally:
        frc.close(timeout_s=10.0)
    with pytest.raises(ValueError, match="min_interval_s"):
        LiveFrc({"magnification": 2}, min_interval_s=-1.0)
