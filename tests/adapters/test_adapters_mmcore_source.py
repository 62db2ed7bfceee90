"""MMCoreSource: sequence acquisition and MDA from a simulated core; overflow gaps."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from livesr.adapters.sources.mmcore import MMCoreSource
from livesr.sim import SimConfig, make_core, truth_from_metadata


def _cfg(shape=(32, 32), interval_ms=1.0) -> SimConfig:
    sim = SimConfig.blinking(shape=shape, seed=3)
    cam = dataclasses.replace(
        sim.camera, stamp_index=True, interval_ms=interval_ms, exposure_ms=interval_ms
    )
    return dataclasses.replace(sim, camera=cam)


def _stamp(frame: np.ndarray) -> int:
    return int(frame[0, 0]) | (int(frame[0, 1]) << 16)


def test_adapters_mmcore_sequence_300_frames():
    with make_core(_cfg(), buffer_mb=64) as core:
        core.setXYPosition(12.5, -3.0)
        core.setPosition(1.5)
        seqs, stamps, metas = [], [], []
        with MMCoreSource(core, frames=300) as src:
            for seq, frame, meta in src:
                seqs.append(seq)
                stamps.append(_stamp(frame))
                metas.append(meta)
        assert seqs == list(range(300))
        first = core.microscope.frame_index - 300  # frames rendered before this run
        assert stamps == list(range(first, first + 300))
        assert src.frames_acquired == src.frames_delivered == 300
        assert src.gaps == [] and not src.overflowed
    m = metas[-1]
    json.dumps(metas)  # JSON-serialisable
    assert m["ImageNumber"] == 299 and m["camera"] == "SimCamera"
    assert m["pixel_size_um"] == pytest.approx(0.1)
    assert m["exposure_ms"] == pytest.approx(1.0)
    assert (m["x_um"], m["y_um"], m["z_um"]) == pytest.approx((12.5, -3.0, 1.5))
    assert abs(m["t_acq"] - time.time()) < 3600  # an epoch time, not elapsed
    ts = [mm["t_acq"] for mm in metas]
    assert ts == sorted(ts)
    truth = truth_from_metadata(m["mm"])
    assert truth.stage_xy_um == pytest.approx((12.5, -3.0))
    assert truth.index == stamps[-1]


def test_adapters_mmcore_mda_from_yaml(tmp_path):
    path = tmp_path / "seq.yaml"
    path.write_text(
        "axis_order: tz\n"
        "time_plan:\n  interval: 0\n  loops: 3\n"
        "z_plan:\n  range: 2.0\n  step: 1.0\n"
    )
    with make_core(_cfg(shape=(16, 16), interval_ms=2.0)) as core:
        # snapped MDA frames carry no camera metadata in UniMMCore: take the
        # simulator's ground truth of each frame as it is emitted
        truths = []
        core.mda.events.frameReady.connect(
            lambda img, ev, md: truths.append(dict(core.camera.last_metadata))
        )
        src = MMCoreSource(core, mda=path)
        assert src.mode == "mda"
        got = list(src)
        src.close()
    assert [s for s, _, _ in got] == list(range(9))
    assert src.frames_acquired == src.frames_delivered == 9 and src.gaps == []
    zs = [m["z_um"] for _, _, m in got]
    assert zs == pytest.approx(
        [-1.0, 0.0, 1.0] * 3
    )  # no stage position: z_pos absolute
    idx = [m["mda_index"] for _, _, m in got]
    assert idx[4] == {"t": 1, "z": 1}
    assert len(truths) == 9
    for (_, frame, m), t in zip(got, truths, strict=True):
        assert frame.shape == (16, 16)
        assert m["pixel_size_um"] == pytest.approx(0.1)
        json.dumps(m)
        # the camera rendered each frame at the position the MDA reports
        assert truth_from_metadata(t).stage_z_um == pytest.approx(m["z_um"])


def test_adapters_mmcore_overflow_reported_as_gaps():
    n = 400
    # 64x64 uint16 = 8 KiB per frame: a 1 MiB buffer holds 128 frames
    with make_core(_cfg(shape=(64, 64), interval_ms=1.0)) as core:
        core.setCircularBufferMemoryFootprint(1)
        src = MMCoreSource(core, frames=n, stop_on_overflow=False)
        seqs, stamps = [], []
        for seq, frame, _meta in src:
            seqs.append(seq)
            stamps.append(_stamp(frame))
            if len(seqs) < 3:
                time.sleep(0.4)  # a consumer stalled at the start
        src.close()
    assert src.overflowed
    assert src.gaps, "expected at least one gap"
    assert src.frames_acquired == n
    assert src.frames_delivered + src.frames_in_gaps == n
    lost = {k for a, b in src.gaps for k in range(a, b + 1)}
    assert lost.isdisjoint(seqs) and sorted(lost | set(seqs)) == list(range(n))
    assert np.all(np.diff(stamps) == np.diff(seqs))  # seq follows the rendered frame


def test_adapters_mmcore_continuous_and_validation(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        MMCoreSource(object(), frames=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MMCoreSource(object(), mda=tmp_path / "nope.yaml")
    with make_core(_cfg(shape=(16, 16))) as core:
        src = MMCoreSource(core)  # continuous
        got = []
        for seq, _f, _m in src:
            got.append(seq)
            if len(got) == 50:
                src.close()
        assert got[:50] == list(range(50))
        assert not core.isSequenceRunning()
        assert src.frames_delivered + src.frames_in_gaps == src.frames_acquired
