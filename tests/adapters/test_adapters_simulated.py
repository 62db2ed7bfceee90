"""SimulatedSource: every frame in order over the lossless link; stop on request."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from livesr.adapters.sources.simulated import SimulatedSource
from livesr.sim import Microscope, SimConfig
from livesr.stream._ingest import Ingest, IngestConfig


def _sim() -> SimConfig:
    sim = SimConfig.blinking(shape=(24, 20), seed=5)
    return dataclasses.replace(
        sim,
        camera=dataclasses.replace(
            sim.camera, stamp_index=True, interval_ms=2.0, exposure_ms=2.0
        ),
    )


class _Collector:
    def __init__(
        self, stop_after: int | None = None, stop: threading.Event | None = None
    ) -> None:
        self.frames: list[np.ndarray] = []
        self.seqs: list[int] = []
        self.meta: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self.end_summary: dict[str, Any] = {}
        self._stop_after = stop_after
        self._stop = stop

    def on_frame(self, header: Any, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())
        self.seqs.append(header.seq)
        self.meta.append(dict(header.meta))
        if (
            self._stop is not None
            and self._stop_after is not None
            and len(self.seqs) >= self._stop_after
        ):
            self._stop.set()

    def on_end(self, stream: str, summary: dict[str, Any]) -> None:
        self.end_summary = dict(summary)
        self.ended.set()


@pytest.mark.parametrize("pace", [False, True])
def test_all_frames_in_order_equal_to_the_microscope(
    tmp_path: Path, pace: bool
) -> None:
    n = 40
    col = _Collector()
    ep = f"ipc://{tmp_path}/in.ipc"
    with Ingest(
        IngestConfig(endpoint=ep, window=8, linger_ms=0),
        col.on_frame,
        on_end=col.on_end,
    ):
        summary = SimulatedSource(_sim(), ep, frames=n, pace=pace, ring_frames=16).run()
        assert col.ended.wait(10.0)
    assert (
        summary["frames_acquired"] == n
        and summary["frames_acked"] == n
        and summary["frames_in_gaps"] == 0
    )
    assert col.seqs == list(range(n))
    expected, truths = Microscope(_sim()).acquire(n)
    np.testing.assert_array_equal(np.stack(col.frames), expected)
    assert [m["ImageNumber"] for m in col.meta] == list(range(n))
    assert col.meta[0]["interval_ms"] == 2.0 and col.meta[0]["camera"] == "livesr-sim"
    assert col.meta[5]["displacement_px"] == [
        truths[5].displacement_px[0],
        truths[5].displacement_px[1],
    ]
    assert col.end_summary["frames_acquired"] == n


def test_stop_event_ends_acquisition_cleanly(tmp_path: Path) -> None:
    stop = threading.Event()
    col = _Collector(stop_after=10, stop=stop)
    ctx = zmq.Context()
    try:
        with Ingest(
            IngestConfig(endpoint="inproc://sim-stop", window=4, linger_ms=0),
            col.on_frame,
            on_end=col.on_end,
            context=ctx,
        ):
            src = SimulatedSource(
                _sim(),
                "inproc://sim-stop",
                frames=0,
                pace=True,
                stop_event=stop,
                context=ctx,
            ).start()
            summary = src.join(30.0)
            assert summary is not None and src.error is None
            assert col.ended.wait(10.0)
    finally:
        ctx.term()
    acquired = summary["frames_acquired"]
    assert 10 <= acquired < 1000
    assert summary["frames_acked"] == acquired == len(col.seqs)
    assert col.end_summary["frames_acquired"] == acquired


def test_bad_frame_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="frames=-1; expected an integer >= 0"):
        SimulatedSource(_sim(), "ipc:///tmp/x.ipc", frames=-1)
