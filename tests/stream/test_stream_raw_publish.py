"""The newest raw frame at display rate (``Pipeline.raw_publish_endpoint``): copies of
the ring's newest slot are exact, a subscriber gets increasing seqs whose pixels are
the persisted frames, at most the display rate, and the run's counts are untouched."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zmq

from livesr.adapters.sources.simulated import SimulatedSource
from livesr.sim import SimConfig
from livesr.stream._pipeline import Pipeline
from livesr.stream._pubsub import LatestSubscriber
from livesr.stream._raw_publish import RAW_DISPLAY_HZ, RawFramePublisher
from livesr.stream._ring import ProcessingRing
from livesr.stream._shmring import SharedRing
from livesr.stream._wire_result import decode_result, encode_raw_frame


def _ring(kind: str, capacity: int) -> Any:
    shape = (4, 5)
    budget = capacity * 4 * 5 * 2
    if kind == "thread":
        return ProcessingRing(shape, np.uint16, budget, min_frames=2)
    return SharedRing.create(shape, np.uint16, budget, min_frames=2)


@pytest.mark.parametrize("kind", ["thread", "shared"])
def test_newest_copy_is_the_frame_written_last_even_after_processing(kind: str) -> None:
    ring = _ring(kind, 4)
    try:
        assert ring.newest_copy() is None  # nothing written yet
        frames = [np.full((4, 5), 10 + k, np.uint16) for k in range(6)]
        for k in range(3):
            assert ring.offer(100 + k, frames[k], 1.0 + k, 2.0 + k)
        item = ring.newest_copy()
        assert item is not None and item.seq == 102
        np.testing.assert_array_equal(item.frame, frames[2])
        assert (item.t_acq, item.t_recv) == (3.0, 4.0)
        ring.pop_many(3)  # processed: the slot still holds the newest frame
        for k in range(3, 6):  # wraps around the 4 slots
            assert ring.offer(100 + k, frames[k], 1.0 + k, 2.0 + k)
        item = ring.newest_copy()
        assert item is not None and item.seq == 105
        np.testing.assert_array_equal(item.frame, frames[5])
        ring.pop_many(3)
        copy = ring.newest_copy()
        assert copy is not None
        ring.offer(106, frames[0], 0.0, 0.0)  # a new frame does not change the copy
        np.testing.assert_array_equal(copy.frame, frames[5])
    finally:
        if kind == "shared":
            ring.release(unlink=True)


def test_encode_raw_frame_decodes_as_a_raw_message() -> None:
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    parts = encode_raw_frame(
        stream="cam", seq=41, frame=frame, pixel_size_um=0.1, t_acq=5.0, t_recv=5.5,
        t_publish=6.0,
    )
    msg = decode_result(parts)
    assert (msg.kind, msg.index, msg.pixel_size_um, msg.magnification) == ("raw", 41, 0.1, 1)
    assert msg.timestamps == {"acquired": 5.0, "received": 5.5, "published": 6.0}
    np.testing.assert_array_equal(msg.image, frame)


def test_publisher_sends_nothing_without_a_subscriber(tmp_path: Path) -> None:
    ring = _ring("thread", 4)
    ring.offer(0, np.ones((4, 5), np.uint16), 0.0, 0.0)

    class State:
        pass

    state = State()
    state.ring, state.stream, state.pixel_size_um = ring, "s", 0.1  # type: ignore[attr-defined]
    pub = RawFramePublisher(f"ipc://{tmp_path}/raw.ipc", lambda: state, rate_hz=200)
    pub.start()
    try:
        time.sleep(0.2)
        assert pub.published == 0 and not pub.tick()
    finally:
        pub.close()


def _sim(frames_ms: float) -> SimConfig:
    sim = SimConfig.blinking(shape=(32, 32), seed=3)
    return dataclasses.replace(
        sim,
        camera=dataclasses.replace(
            sim.camera, stamp_index=True, interval_ms=frames_ms, exposure_ms=frames_ms
        ),
    )


@pytest.mark.parametrize("ingest", ["thread", "process"])
def test_pipeline_publishes_the_newest_raw_frame_at_display_rate(
    tmp_path: Path, pipeline_config: Any, ingest: str
) -> None:
    n = 300  # 1.5 s at 5 ms per frame
    cfg = pipeline_config(tmp_path / "out", window=10, stride=10, ingest=ingest)
    ctx = zmq.Context()
    name = tmp_path.name
    ep = f"inproc://ingest-{name}" if ingest == "thread" else f"ipc://{tmp_path}/in.ipc"
    pipe = Pipeline(cfg, endpoint=ep, context=ctx).start()
    got: list[Any] = []
    stop = threading.Event()

    def listen() -> None:
        with LatestSubscriber(pipe.raw_publish_endpoint, hwm=64) as sub:
            while not stop.is_set():
                parts = sub.latest(50)
                if parts is not None:
                    got.append(decode_result(parts))

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    try:
        assert pipe.ready.wait(60.0)
        time.sleep(0.3)  # the subscription reaches the publisher
        t0 = time.monotonic()
        src = SimulatedSource(
            _sim(5.0), pipe.endpoint, frames=n, pace=True,
            stop_event=pipe.stop_requested, context=ctx,
        ).start()
        assert src.join(60.0) is not None and src.error is None
        elapsed = time.monotonic() - t0
        assert pipe.wait(60.0)
        time.sleep(0.2)
    finally:
        stop.set()
        reader.join(5.0)
        summary = pipe.close()
        ctx.term()
    assert not reader.is_alive()
    assert summary["frames_persisted"] == n and summary["frames_in_gaps"] == 0
    seqs = [m.index for m in got]
    assert all(m.kind == "raw" for m in got)
    assert seqs == sorted(set(seqs)), f"raw seqs not strictly increasing: {seqs}"
    # display rate: a few per second at least, never more than the rate allows
    assert 5 <= len(seqs) <= RAW_DISPLAY_HZ * (elapsed + 1.0), (len(seqs), elapsed)
    assert seqs[-1] >= n - 1 - 0.2 * n  # it follows the acquisition to its end
    raw = zarr.open_group(str(tmp_path / "out" / "raw.ome.zarr"), mode="r")["0"]
    for m in got[:: max(1, len(got) // 10)]:  # the pixels are the persisted frame's
        np.testing.assert_array_equal(m.image, raw[m.index, 0, 0])
        assert m.timestamps["acquired"] <= m.timestamps["published"]
