"""Hostile or broken sources: one message never kills the ingest, control messages are
checked against the stream's state (issue 14, "Ingest robustness")."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from livesr.stream._transport import Ingest, IngestConfig
from livesr.stream._wire import (
    SEQ_MAX,
    FrameHeader,
    decode_control,
    encode_control,
    encode_frame,
)

SHAPE = (4, 4)


@pytest.fixture
def endpoint(tmp_path):
    return f"ipc://{tmp_path}/ingest.ipc"


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.term()


class Store:
    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self.gaps: list[tuple[int, int]] = []

    def on_frame(self, header: FrameHeader, frame: np.ndarray) -> None:
        self.count[header.seq] = self.count.get(header.seq, 0) + 1

    def on_gap(self, stream: str, first: int, last: int) -> None:
        self.gaps.append((first, last))


class Raw:
    """A hand-driven source (DEALER) talking to an ingest served by ``pump``."""

    sent: dict[int, int] = {}  # messages sent to each ingest (by id), all clients

    def __init__(self, context: zmq.Context, endpoint: str, ingest: Ingest) -> None:
        self.sock = context.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.ingest = ingest
        Raw.sent.setdefault(id(ingest), 0)

    def send(self, parts: list) -> None:
        self.sock.send_multipart(parts)
        Raw.sent[id(self.ingest)] += 1

    def pump(self, timeout_s: float = 5.0, want: str | None = None) -> list[dict]:
        """Serve the ingest (no thread) until it handled every message sent, and
        collect its replies (until one of kind ``want`` when given)."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            handled = self.ingest.summary()["messages"] >= Raw.sent[id(self.ingest)]
            self.ingest.serve(0 if handled else 10)
            while self.sock.poll(0 if handled else 1, zmq.POLLIN):
                got.append(decode_control(self.sock.recv_multipart()))
            if handled and (want is None or any(r["kind"] == want for r in got)):
                while self.sock.poll(20, zmq.POLLIN):  # replies still on the way
                    got.append(decode_control(self.sock.recv_multipart()))
                return got
        return got

    def hello(
        self, session: str = "s1", first: int = 0, n: int = 1, refused: bool = False
    ) -> list[dict]:
        self.send(
            encode_control(
                "hello",
                stream="cam0",
                session=session,
                n=n,
                first=first,
                shape=list(SHAPE),
                dtype="uint16",
            )
        )
        return self.pump(2.0, want=None if refused else "ready")

    def frame(self, seq: int) -> None:
        head = FrameHeader(
            stream="cam0",
            seq=seq,
            shape=SHAPE,
            dtype="uint16",
            pixel_size_um=0.1,
            t_acq=0.0,
        )
        self.send(encode_frame(head, np.full(SHAPE, seq, np.uint16)))

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
def bound(endpoint):
    store = Store()
    ingest = Ingest(
        IngestConfig(endpoint=endpoint, window=4, ack_every=1),
        store.on_frame,
        on_gap=store.on_gap,
    )
    ingest.bind()
    yield ingest, store
    ingest.close()


def test_deeply_nested_header_is_rejected_and_the_thread_goes_on(endpoint, context):
    """``[b"[" * 2000, b"x"]`` raised RecursionError and ended the ingest thread."""
    store = Store()
    ingest = Ingest(IngestConfig(endpoint=endpoint, window=4), store.on_frame).start()
    raw = context.socket(zmq.DEALER)
    raw.linger = 0
    try:
        raw.connect(endpoint)
        for _ in range(3):
            raw.send_multipart([b"[" * 2000, b"x"])
        raw.send_multipart([b"[" * 4000, b""])
        raw.send_multipart(
            encode_control(
                "hello",
                stream="cam0",
                session="s1",
                n=1,
                first=0,
                shape=list(SHAPE),
                dtype="uint16",
            )
        )
        assert raw.poll(5000, zmq.POLLIN), "the ingest stopped answering"
        ready = decode_control(raw.recv_multipart())
        assert ready["kind"] == "ready" and ready["upto"] == -1
        head = FrameHeader(
            stream="cam0",
            seq=0,
            shape=SHAPE,
            dtype="uint16",
            pixel_size_um=0.1,
            t_acq=0.0,
        )
        raw.send_multipart(encode_frame(head, np.zeros(SHAPE, np.uint16)))
        assert raw.poll(5000, zmq.POLLIN)
        assert decode_control(raw.recv_multipart())["upto"] == 0
        summary = ingest.summary()
        assert summary["rejected_by_reason"] == {"malformed": 4}
        assert not ingest.failed and ingest.error is None
    finally:
        raw.close(linger=0)
        ingest.close()
    assert store.count == {0: 1}


def test_unexpected_error_rejects_one_message_and_the_loop_goes_on(endpoint, context):
    """An exception while handling one message (here: ``on_gap``) drops that message."""
    store = Store()
    calls = []

    def on_gap(stream: str, first: int, last: int) -> None:
        calls.append((first, last))
        raise RuntimeError("gap record failed")

    ingest = Ingest(
        IngestConfig(endpoint=endpoint, window=4, ack_every=1),
        store.on_frame,
        on_gap=on_gap,
    )
    ingest.bind()
    raw = Raw(context, endpoint, ingest)
    try:
        raw.hello()
        raw.send(encode_control("gap", stream="cam0", first=0, last=1))
        raw.pump(0.3)
        raw.frame(2)
        replies = raw.pump(1.0, want="ack")
        summary = ingest.summary()
    finally:
        raw.close()
        ingest.close()
    assert calls == [(0, 1)]
    assert summary["rejected_by_reason"] == {"internal-error": 1}
    assert store.count == {2: 1}
    assert [r["upto"] for r in replies if r["kind"] == "ack"][-1] == 2


def test_a_dead_ingest_thread_is_visible(endpoint, monkeypatch):
    """A bug outside one message's handling ends the thread: ``failed`` says so."""
    ingest = Ingest(IngestConfig(endpoint=endpoint), Store().on_frame)

    def broken(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(ingest, "_check_stop", broken)
    ingest.start()
    try:
        deadline = time.monotonic() + 5
        while not ingest.failed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ingest.failed
        assert ingest.error == "MemoryError: simulated"
        assert ingest.summary()["failed"] is True
    finally:
        ingest.close()


def test_gap_beyond_the_credit_is_refused(bound, context, endpoint):
    """``gap 0..2**63-1`` was accepted: later frames were acked without a write."""
    ingest, store = bound
    raw = Raw(context, endpoint, ingest)
    try:
        ready = raw.hello()[-1]
        assert ready["upto"] + ready["credit"] == 3
        raw.send(encode_control("gap", stream="cam0", first=0, last=SEQ_MAX))
        raw.send(encode_control("gap", stream="cam0", first=0, last=4))
        raw.pump(0.3)
        for seq in range(4):
            raw.frame(seq)
        replies = raw.pump(1.0)
        raw.send(encode_control("gap", stream="cam0", first=4, last=7))
        replies += raw.pump(1.0)
        summary = ingest.summary()
    finally:
        raw.close()
    assert summary["rejected_by_reason"] == {"gap-beyond-credit": 2}
    st = summary["streams"]["cam0"]
    assert store.count == {0: 1, 1: 1, 2: 1, 3: 1}
    assert st["frames_persisted"] == 4 and st["next_seq"] == 8
    assert st["gaps"] == [[4, 7]] and st["frames_in_reported_gaps"] == 4
    assert [r["upto"] for r in replies if r["kind"] == "ack"][-1] == 7


def test_second_session_cannot_take_over_a_live_stream(bound, context, endpoint):
    """A second client with another session and ``first=2**62`` took over the stream."""
    ingest, store = bound
    a = Raw(context, endpoint, ingest)
    b = Raw(context, endpoint, ingest)
    try:
        assert a.hello("A")[-1]["kind"] == "ready"
        a.frame(0)
        a.pump(0.3)
        got = b.hello("B", first=2**62, refused=True)
        assert [r for r in got if r["kind"] == "ready"] == []
        assert ingest.summary()["rejected_by_reason"] == {"session-conflict": 1}
        a.frame(1)  # A still owns the stream
        acks = [r["upto"] for r in a.pump(1.0) if r["kind"] == "ack"]
        assert max(acks) == 1
        a.close()  # A goes away: now B may start its session
        deadline = time.monotonic() + 5
        ready = []
        while not ready and time.monotonic() < deadline:
            ready = [r for r in b.hello("B", first=10) if r["kind"] == "ready"]
        assert ready and ready[0]["upto"] == 9
        summary = ingest.summary()
    finally:
        a.close()
        b.close()
    st = summary["streams"]["cam0"]
    assert st["session"] == "B" and st["resumed_from"] == 2
    assert st["gaps"] == [[2, 9]]
    assert summary["previous_sessions"][0]["frames_persisted"] == 2
    assert store.count == {0: 1, 1: 1}


def test_second_session_takes_over_a_silent_stream(context, endpoint):
    store = Store()
    ingest = Ingest(
        # 1 s: B's hello is refused unless the machine stalls the ingest for a whole
        # second between A's hello and B's (0.3 s was once exceeded in a CI run)
        IngestConfig(endpoint=endpoint, window=4, takeover_after_s=1.0),
        store.on_frame,
    )
    ingest.bind()
    a = Raw(context, endpoint, ingest)
    b = Raw(context, endpoint, ingest)
    try:
        a.hello("A")
        assert not [r for r in b.hello("B", refused=True) if r["kind"] == "ready"]
        time.sleep(1.05)  # A connected but silent for longer than takeover_after_s
        assert [r for r in b.hello("B") if r["kind"] == "ready"]
        assert ingest.session("cam0") == "B"
    finally:
        a.close()
        b.close()
        ingest.close()


def test_same_session_hello_cannot_skip_unacknowledged_frames(bound, context, endpoint):
    ingest, store = bound
    raw = Raw(context, endpoint, ingest)
    try:
        raw.hello()
        raw.frame(0)
        raw.pump(0.3)
        got = raw.hello(first=2**62, n=2, refused=True)
        assert not [r for r in got if r["kind"] == "ready"]
        raw.frame(1)
        raw.pump(0.3)
        summary = ingest.summary()
    finally:
        raw.close()
    assert summary["rejected_by_reason"] == {"inconsistent": 1}
    assert summary["streams"]["cam0"]["next_seq"] == 2
    assert store.count == {0: 1, 1: 1}


@pytest.mark.parametrize(
    ("gap_frames", "accepted"), [(1, True), (0, False), (4, False), (3, True)]
)
def test_end_fields_checked(bound, context, endpoint, gap_frames, accepted):
    """``end``'s gap count lies between the reported gaps and the frames acquired."""
    ingest, store = bound
    raw = Raw(context, endpoint, ingest)
    try:
        raw.hello()
        raw.frame(0)
        raw.send(encode_control("gap", stream="cam0", first=1, last=1))
        raw.frame(2)
        raw.pump(0.3)
        raw.send(
            encode_control("end", stream="cam0", upto=2, n=3, gap_frames=gap_frames)
        )
        replies = raw.pump(0.5)
        summary = ingest.summary()
    finally:
        raw.close()
    st = summary["streams"]["cam0"]
    assert st["ended"] is accepted
    assert any(r["kind"] == "end_ack" for r in replies) is accepted
    assert summary["rejected"] == (0 if accepted else 1)
    if accepted:
        assert st["frames_acquired"] == 3 and st["accounting_ok"] is True


def test_nothing_accepted_after_the_end(bound, context, endpoint):
    """A frame after an accepted ``end`` made ``frames_acquired`` wrong."""
    ingest, store = bound
    raw = Raw(context, endpoint, ingest)
    try:
        raw.hello()
        raw.frame(0)
        raw.pump(0.3)
        raw.send(encode_control("end", stream="cam0", upto=0, n=1, gap_frames=0))
        assert any(r["kind"] == "end_ack" for r in raw.pump(0.5))
        raw.frame(1)
        raw.send(encode_control("gap", stream="cam0", first=1, last=2))
        raw.frame(0)  # a duplicate is still re-acknowledged
        raw.pump(0.5)
        summary = ingest.summary()
    finally:
        raw.close()
    assert summary["rejected_by_reason"] == {"after-end": 2}
    st = summary["streams"]["cam0"]
    assert store.count == {0: 1}
    assert (st["frames_acquired"], st["frames_persisted"], st["next_seq"]) == (1, 1, 1)
    assert st["accounting_ok"] is True and st["duplicates"] == 1
