"""Drift lock closed loop on the simulated microscope (frames through the core).

Frames come from sequence acquisition of the simulated ``UniMMCore``
(:class:`MMCoreSource`), drift is estimated from the frames by
:class:`livesr.kernels.RollingDrift`, results go through :class:`HookRunner` to
:class:`DriftLock`, and stage moves go through the :class:`MicroscopeController`
into the core. The residual is the simulator's ground truth displacement
(``livesr_*`` frame metadata).
"""

from __future__ import annotations

import dataclasses
import logging
import math

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


def _run(core, hooks, ctl):
    rd = RollingDrift(block=BLOCK, key_blocks=1)
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
        lock = DriftLock(DriftLockConfig(threshold_px=0.1, settle_s=0.005))
        truths, stats = _run(core, [lock], ctl)
        ctl.close()
    disp = np.array([t.displacement_px for t in truths])
    drift_px = np.array([t.drift_um[:2] for t in truths]) / cfg.camera.pixel_size_um
    uncorrected = float(np.hypot(*drift_px[-1]))
    residual = np.hypot(disp[:, 0], disp[:, 1])
    logger.info(
        "drift lock: uncorrected %.2f px, residual max %.3f px, rms %.3f px, %d moves, "
        "%d refused, %d skipped, hook drops %d",
        uncorrected,
        residual.max(),
        math.sqrt(np.mean(residual**2)),
        lock.moves,
        lock.refused,
        lock.skipped,
        stats[0].drops,
    )
    assert [t.index for t in truths] == list(range(N_FRAMES))
    assert uncorrected > 10.0
    assert residual.max() < 0.5
    assert lock.moves >= 20 and stats[0].failures == 0
    # the stage carries the whole correction
    sx, sy = truths[-1].stage_xy_um
    assert (sy, sx) == pytest.approx(tuple(drift_px[-1] * 0.1), abs=0.05)
