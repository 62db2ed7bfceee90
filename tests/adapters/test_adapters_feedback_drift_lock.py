"""Drift lock closed loop on the simulated microscope (frames through the core).

Frames come from sequence acquisition of the simulated ``UniMMCore``
(:class:`MMCoreSource`), drift is estimated from the frames by
:class:`livesr.kernels.RollingDrift`, results go through :class:`HookRunner` to
:class:`DriftLock`, and stage moves go through the :class:`MicroscopeController`
into the core. The residual is the simulator's ground truth displacement
(``livesr_*`` frame metadata).

The residual bar depends on how fast the lock sees the drift: on a loaded
machine (a CPU hog beside the test) results reach the hook later and the
sample drifts on meanwhile (1.6 px/s here). The closed-loop test therefore
bounds the residual by 0.5 px plus the drift during the largest latency the hook
actually had (newest frame acquired -> hook called), and checks separately what
the lock controls: its inputs (the drift estimates) are right within their own
uncertainty, and it does not act on estimates within that uncertainty of zero.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np
import pytest

from livesr.adapters.feedback import (
    DriftLock,
    DriftLockConfig,
    FeedbackLimits,
    HookRunner,
    MicroscopeController,
    Result,
)
from livesr.adapters.sources.mmcore import MMCoreSource
from livesr.kernels import RollingDrift
from livesr.sim import (
    DriftConfig,
    SampleConfig,
    SimConfig,
    make_core,
    truth_from_metadata,
)

logger = logging.getLogger(__name__)

N_FRAMES = 2000
BLOCK = 10


def _config() -> SimConfig:
    base = SimConfig.static_bright(
        shape=(64, 64),
        seed=11,
        drift=DriftConfig(velocity_um_per_s=(0.1, 0.125)),  # (8, 10) px over 8 s
    )
    sample = SampleConfig.static_bright(n_filaments=5, n_rings=3, n_clusters=3)
    # 4 ms frames: the same drift per frame as a faster camera, with more slack for the
    # consumer on a loaded 2-core CI machine (the residual grows with the lag in frames)
    cam = dataclasses.replace(base.camera, interval_ms=4.0, exposure_ms=4.0)
    return dataclasses.replace(base, sample=sample, camera=cam)


class _TimedLock(DriftLock):
    """DriftLock recording each result's latency (newest frame -> hook) and input."""

    def __init__(self, config: DriftLockConfig) -> None:
        super().__init__(config)
        self.latency_s: list[float] = []
        self.inputs: list[tuple[int, float, float, float]] = []

    def on_result(self, result: Result, controller) -> None:  # type: ignore[no-untyped-def]
        self.latency_s.append(time.time() - result.timestamps["t_acq_last"])
        self.inputs.append((result.frame_range[1], *result.drift_px, result.drift_sigma_px))
        super().on_result(result, controller)

    __call__ = on_result


class _FakeController:
    last_move_wall = None

    def __init__(self) -> None:
        self.moves: list[tuple[float, float]] = []

    def move_xy_by(self, dx_um: float, dy_um: float) -> None:
        self.moves.append((dx_um, dy_um))


def _result(i: int, dy: float, dx: float, sigma: float) -> Result:
    return Result(
        index=i,
        drift_px=(dy, dx),
        drift_sigma_px=sigma,
        pixel_size_um=0.1,
        frame_range=(10 * i, 10 * i + 9),
        timestamps={},
    )


def test_adapters_feedback_drift_lock_ignores_drift_within_its_uncertainty():
    lock = DriftLock(DriftLockConfig(threshold_px=0.1, n_sigma=3.0, settle_results=0))
    ctl = _FakeController()
    lock.on_result(_result(0, 0.15, 0.1, 0.08), ctl)  # 0.18 px < 3 sigma = 0.24
    lock.on_result(_result(1, 0.0, 0.3, float("nan")), ctl)  # no sigma: threshold only
    lock.on_result(_result(2, 0.5, 0.0, 0.08), ctl)  # 0.5 px > 0.24
    assert lock.within_sigma == 1 and lock.moves == 2
    assert ctl.moves == [pytest.approx((0.03, 0.0)), pytest.approx((0.0, 0.05))]
    assert lock.report()["within_sigma"] == 1
    with pytest.raises(ValueError, match="n_sigma"):
        DriftLockConfig(n_sigma=-1.0)


def _run(core, hooks, ctl):
    # the origin fixed, as the pipeline keeps it when feedback hooks run
    rd = RollingDrift(block=BLOCK, key_blocks=1, origin_blocks=0)
    # imports and first-call set-up before acquisition, not as a backlog inside it
    rd.warm_up((core.getImageHeight(), core.getImageWidth()))
    truths, block_t = [], []
    with HookRunner(hooks, ctl) as runner, MMCoreSource(core, frames=N_FRAMES) as src:
        for seq, frame, meta in src:
            truths.append(truth_from_metadata(meta["mm"]))
            block_t.append(meta["t_acq"])
            est = rd.push(frame)
            if est is None:
                continue
            runner.submit(
                Result(
                    index=est.block_index,
                    drift_px=(est.dy, est.dx),
                    drift_sigma_px=est.sigma_px,
                    pixel_size_um=core.getPixelSizeUm(),
                    frame_range=(seq - BLOCK + 1, seq),
                    timestamps={"t_acq_first": block_t[0], "t_acq_last": block_t[-1]},
                )
            )
            block_t = []
        stats = runner.stats()
    assert src.frames_delivered == N_FRAMES and src.gaps == []
    return truths, stats


def test_adapters_feedback_drift_lock_closed_loop():
    cfg = _config()
    with make_core(cfg, buffer_mb=64) as core:
        limits = FeedbackLimits(max_step_xy_um=0.5, max_moves_per_s=50.0)
        ctl = MicroscopeController(core, limits)
        lock = _TimedLock(DriftLockConfig(threshold_px=0.1, settle_s=0.005))
        truths, stats = _run(core, [lock], ctl)
        ctl.close()
    disp = np.array([t.displacement_px for t in truths])
    drift_px = np.array([t.drift_um[:2] for t in truths]) / cfg.camera.pixel_size_um
    uncorrected = float(np.hypot(*drift_px[-1]))
    residual = np.hypot(disp[:, 0], disp[:, 1])
    speed = float(np.hypot(*cfg.drift.velocity_um_per_s)) / cfg.camera.pixel_size_um
    latency = max(lock.latency_s)
    logger.info(
        "drift lock: uncorrected %.2f px, residual max %.3f px, rms %.3f px, %d moves, "
        "%d refused, %d skipped, %d within sigma, hook drops %d, latency max %.3f s",
        uncorrected,
        residual.max(),
        math.sqrt(np.mean(residual**2)),
        lock.moves,
        lock.refused,
        lock.skipped,
        lock.within_sigma,
        stats[0].drops,
        latency,
    )
    assert [t.index for t in truths] == list(range(N_FRAMES))
    assert uncorrected > 10.0
    # 0.29-0.51 px measured alone and beside a CPU hog (latency 0.15-0.3 s). Beyond
    # the hook's latency the correction lags by physics too: an estimate is the
    # block's mean position (half a block behind its newest frame) and moves are at
    # least 1 / max_moves_per_s apart
    lag_s = latency + 0.5 * BLOCK * cfg.camera.interval_ms / 1e3 + 1.0 / 50.0
    # the median frame within that; 99 % of the frames within 1 px (100 nm) and
    # every frame within 1.5 px while the uncorrected drift reaches 12.8 px (p99
    # 0.90 px and max 1.01 px were seen in a full-suite run on the 2-core VM,
    # alone the max is 0.21-0.63 px)
    p50, p99 = (float(v) for v in np.percentile(residual, [50, 99]))
    assert p50 < 0.5 + speed * lag_s, (p50, p99, residual.max(), latency)
    assert p99 < 1.0 and residual.max() < 1.5, (p50, p99, residual.max(), latency)
    # the lock's inputs: each block estimate against the block's mean true
    # displacement (the reference is the first block), within 3 reported sigma;
    # blocks with a stage move inside are left out (their mean image holds two
    # positions, the correlation peak follows the brighter one)
    ref = disp[:BLOCK].mean(axis=0)
    stage = np.array([t.stage_xy_um for t in truths])
    inp = np.array(lock.inputs)
    last = inp[:, 0].astype(int)
    still = np.array([np.ptp(stage[f - BLOCK + 1 : f + 1], axis=0).max() == 0 for f in last])
    truth_blk = np.array([disp[f - BLOCK + 1 : f + 1].mean(axis=0) for f in last]) - ref
    err = np.abs(inp[:, 1:3] - truth_blk).max(axis=1)
    sig = inp[:, 3]
    ok = still & np.isfinite(sig) & (sig > 0)
    assert ok.sum() >= 50
    lag = np.hypot(*truth_blk.T)
    # + 2 % of the lag: a bias of 1-1.5 % of the lag (64² bright static sample,
    # measured beside a CPU hog where the lock lagged 2 px behind) that the
    # reported sigma (block noise) does not include
    allow = 3 * sig + 0.02 * lag
    bad = err[ok] > allow[ok]
    logger.info(
        f"lock inputs: {int(ok.sum())} still blocks, error max {err[ok].max():.3f} px, "
        f"median sigma {np.median(sig[ok]):.3f} px, error > 3 sigma in {int(bad.sum())}"
        f" (lags {np.round(lag[ok][bad], 2).tolist()} px, errors "
        f"{np.round(err[ok][bad], 3).tolist()}, sigmas {np.round(sig[ok][bad], 3).tolist()})"
    )
    assert np.mean(~bad) >= 0.95, (err[ok].max(), np.median(sig[ok]))
    assert lock.moves >= 20 and stats[0].failures == 0
    # the stage carries the whole correction
    sx, sy = truths[-1].stage_xy_um
    assert (sy, sx) == pytest.approx(tuple(drift_px[-1] * 0.1), abs=0.05)
