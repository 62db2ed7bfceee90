"""Hostile input on the live ingest socket, and recovery from a failing ``on_frame``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livesr.stream._transport import Ingest, IngestConfig, SourceLink, SourceLinkConfig

SHAPE = (16, 16)


def test_random_multipart_messages_are_all_rejected_and_counted(tmp_path):
    endpoint = f"ipc://{tmp_path}/fuzz.ipc"
    persisted: list[int] = []
    ingest = Ingest(
        IngestConfig(endpoint=endpoint), lambda h, f: persisted.append(h.seq)
    )
    ingest.bind()  # served from this thread: no background thread
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.linger = 0
    raw.connect(endpoint)
    sent = [0]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(
            st.lists(st.binary(max_size=96), min_size=1, max_size=4),
            min_size=1,
            max_size=8,
        )
    )
    def storm(messages):
        for parts in messages:
            raw.send_multipart(parts)
            sent[0] += 1
        for _ in range(200):  # every message reaches the ingest and is counted
            if ingest.summary()["rejected"] >= sent[0]:
                break
            ingest.serve(50)
        assert ingest.summary()["rejected"] == sent[0]

    try:
        storm()
        summary = ingest.summary()
    finally:
        raw.close(linger=0)
        ctx.term()
        ingest.close()
    assert summary["rejected"] == sent[0] >= 300
    assert summary["messages"] == sent[0]
    assert persisted == [] and summary["streams"] == {}


def test_failing_on_frame_is_retried_not_lost(tmp_path):
    endpoint = f"ipc://{tmp_path}/retry.ipc"
    got: list[int] = []
    failed: list[int] = []

    def on_frame(header, frame) -> None:
        if (
            header.seq in (5, 77) and header.seq not in failed
        ):  # e.g. a transient disk error
            failed.append(header.seq)
            raise OSError("injected write failure")
        assert (frame == header.seq).all()
        got.append(header.seq)

    ingest = Ingest(IngestConfig(endpoint=endpoint, window=8), on_frame).start()
    try:
        cfg = SourceLinkConfig(
            endpoint=endpoint, stream="cam0", shape=SHAPE, ring_frames=32
        )
        with SourceLink(cfg) as link:
            for seq in range(200):
                link.send(np.full(SHAPE, seq, np.uint16), timeout=20)
        summary = link.summary()
    finally:
        isum = ingest.close()
    assert got == list(range(200))  # in order, exactly once, nothing lost
    assert failed == [5, 77] and isum["on_frame_errors"] == 2
    assert summary["frames_acked"] == 200 and summary["end_acked"]
    assert summary["frames_replayed"] >= 2  # the failed frames were sent again


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_file_descriptor_leak_over_restarts(tmp_path):
    """Links and ingests opened and closed (with and without END) leave no fd behind."""
    endpoint = f"ipc://{tmp_path}/fd.ipc"

    def cycle(graceful: bool) -> None:
        ingest = Ingest(IngestConfig(endpoint=endpoint), lambda h, f: None).start()
        link = SourceLink(SourceLinkConfig(endpoint=endpoint, stream="c", shape=SHAPE))
        link.start()
        for seq in range(20):
            link.send(np.full(SHAPE, seq, np.uint16), timeout=20)
        link.close(timeout=20 if graceful else 0)
        ingest.close()

    cycle(True)  # warm-up: lazy imports, pyzmq's gc thread
    before = len(os.listdir("/proc/self/fd"))
    for i in range(10):
        cycle(graceful=i % 2 == 0)
    assert len(os.listdir("/proc/self/fd")) == before
