"""Lossless frame path (SourceLink -> Ingest) in one process over ipc.

Exact counts only: lost, duplicated, corrupted, gap ranges.  No timing assertions.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from livesr.stream._transport import (
    Ingest,
    IngestConfig,
    RingOverflowError,
    SourceLink,
    SourceLinkConfig,
)
from livesr.stream._wire import (
    FrameHeader,
    decode_control,
    encode_control,
    encode_frame,
)

SHAPE = (64, 64)
WINDOW = 8


class Store:
    """What a pipeline would persist: seq -> count, with the pixel stamp checked."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: dict[int, int] = {}
        self.order: list[int] = []
        self.corrupted = 0
        self.gaps: list[tuple[int, int]] = []

    def on_frame(self, header: FrameHeader, frame: np.ndarray) -> None:
        with self.lock:
            if not (frame == (header.seq & 0xFFFF)).all():
                self.corrupted += 1
            self.count[header.seq] = self.count.get(header.seq, 0) + 1
            self.order.append(header.seq)

    def on_gap(self, stream: str, first: int, last: int) -> None:
        # a long gap arrives in credit-sized parts; record contiguous runs (as the
        # Persister does)
        if self.gaps and self.gaps[-1][1] == first - 1:
            self.gaps[-1] = (self.gaps[-1][0], last)
        else:
            self.gaps.append((first, last))

    def last_seq(self, stream: str, session: str) -> int:  # one session per test
        with self.lock:
            return max(self.count, default=-1)

    @property
    def persisted(self) -> int:
        return len(self.order)


def frame_of(seq: int) -> np.ndarray:
    return np.full(SHAPE, seq & 0xFFFF, np.uint16)


def wait_for(cond, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@pytest.fixture
def endpoint(tmp_path):
    return f"ipc://{tmp_path}/ingest.ipc"


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def link_cfg(endpoint: str, **over) -> SourceLinkConfig:
    base = {
        "endpoint": endpoint,
        "stream": "cam0",
        "shape": SHAPE,
        "dtype": "uint16",
        "ring_frames": 64,
    }
    base.update(over)
    return SourceLinkConfig(**base)


def test_lossless_in_order_2000_frames(endpoint):
    store = Store()
    ingest = Ingest(
        IngestConfig(endpoint=endpoint, window=WINDOW), store.on_frame
    ).start()
    try:
        with SourceLink(link_cfg(endpoint)) as link:
            for seq in range(2000):
                assert link.send(frame_of(seq), timeout=30.0) == seq
        summary = link.summary()
    finally:
        isum = ingest.close()
    assert store.order == list(range(2000))  # 0 lost, 0 duplicated, order preserved
    assert store.corrupted == 0
    assert summary["end_acked"] is True
    assert summary["frames_acquired"] == summary["frames_acked"] == 2000
    assert summary["frames_in_gaps"] == summary["frames_unacked"] == 0
    st = isum["streams"]["cam0"]
    assert (
        st["frames_persisted"] == 2000 and st["duplicates"] == 0 and st["accounting_ok"]
    )
    assert summary["ingest"]["frames_persisted"] == 2000
    assert st["credit_violations"] == 0  # the source never exceeded its credit
    assert isum["rejected"] == 0


@pytest.mark.parametrize("resume", [True, False], ids=["resume", "no-resume"])
def test_ingest_closed_mid_stream_and_restarted(endpoint, resume):
    n = 2000
    store = Store()
    cfg = IngestConfig(endpoint=endpoint, window=WINDOW)
    kwargs = {"resume": store.last_seq} if resume else {}
    first = Ingest(cfg, store.on_frame, **kwargs).start()
    link = SourceLink(link_cfg(endpoint, ring_frames=n + 16)).start()
    producer_done = threading.Event()

    def produce() -> None:  # keeps producing while the ingest is gone
        for seq in range(n):
            link.send(frame_of(seq))
            if seq % 50 == 0:
                time.sleep(0.001)
        producer_done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    second = None
    try:
        assert wait_for(lambda: store.persisted >= 700)
        first.close()  # abrupt: no END, unacked frames in flight
        killed_at = store.persisted
        second = Ingest(cfg, store.on_frame, **kwargs).start()
        producer.join(30)
        assert producer_done.is_set()
        summary = link.close(timeout=30)
    finally:
        producer.join(5)
        link.close(timeout=0)
        if second is not None:
            second.close()
    assert killed_at < n  # the kill happened mid-stream
    assert set(store.count) == set(range(n))  # 0 lost
    assert store.corrupted == 0
    dup_calls = sum(c - 1 for c in store.count.values())
    if resume:
        assert dup_calls == 0  # every seq persisted exactly once
    else:
        assert dup_calls <= WINDOW  # at-least-once: only unacked-but-persisted frames
    assert summary["frames_acked"] == n and summary["end_acked"]
    assert summary["frames_replayed"] <= WINDOW  # only frames in flight at the kill
    assert summary["handshakes"] >= 2
    # the new ingest accounts for everything from where it resumed
    assert summary["ingest"]["accounting_ok"] is True
    assert summary["ingest"]["credit_violations"] == 0


def test_ring_overflow_continue_reports_exact_gap(endpoint):
    store = Store()
    cfg = IngestConfig(endpoint=endpoint, window=WINDOW)
    first = Ingest(
        cfg, store.on_frame, on_gap=store.on_gap, resume=store.last_seq
    ).start()
    link = SourceLink(link_cfg(endpoint, ring_frames=32, overflow="continue")).start()
    second = None
    try:
        for seq in range(10):
            link.send(frame_of(seq))
        assert link.wait_acked(20)
        first.close()  # consumer gone
        for seq in range(10, 110):  # 32 fit in the ring, 68 are lost
            assert link.send(frame_of(seq)) == seq
        second = Ingest(
            cfg, store.on_frame, on_gap=store.on_gap, resume=store.last_seq
        ).start()
        for seq in range(110, 120):
            link.send(frame_of(seq), timeout=20)
        summary = link.close(timeout=20)
    finally:
        link.close(timeout=0)
        isum = second.close() if second is not None else None
    assert summary["gaps"] == [[42, 109]]
    assert summary["frames_in_gaps"] == 68
    assert summary["frames_acquired"] == 120
    assert (
        summary["frames_acquired"]
        == summary["frames_acked"] + summary["frames_in_gaps"]
    )
    assert sorted(store.count) == [*range(0, 42), *range(110, 120)]
    assert all(c == 1 for c in store.count.values()) and store.corrupted == 0
    assert store.gaps == [(42, 109)]
    st = isum["streams"]["cam0"]
    assert st["gaps"] == [[42, 109]] and st["frames_in_reported_gaps"] == 68
    # frames_acquired == frames_persisted + frames_in_reported_gaps (both ingests)
    assert 120 == store.persisted + st["frames_in_reported_gaps"]
    assert st["accounting_ok"] is True


def test_ring_overflow_stop_policy(endpoint):
    store = Store()
    cfg = IngestConfig(endpoint=endpoint, window=WINDOW)
    first = Ingest(
        cfg, store.on_frame, on_gap=store.on_gap, resume=store.last_seq
    ).start()
    link = SourceLink(link_cfg(endpoint, ring_frames=32)).start()  # overflow="stop"
    second = None
    try:
        for seq in range(10):
            link.send(frame_of(seq))
        assert link.wait_acked(20)
        first.close()
        for seq in range(10, 42):
            link.send(frame_of(seq))
        with pytest.raises(RingOverflowError, match="full at seq 42"):
            link.send(frame_of(42))
        with pytest.raises(RingOverflowError, match="stopped"):
            link.send(frame_of(43))  # not acquired: the acquisition must stop
        second = Ingest(
            cfg, store.on_frame, on_gap=store.on_gap, resume=store.last_seq
        ).start()
        summary = link.close(timeout=20)
    finally:
        link.close(timeout=0)
        isum = second.close() if second is not None else None
    assert summary["stopped_on_overflow"] is True
    assert summary["gaps"] == [[42, 42]]
    assert (
        summary["frames_acquired"]
        == 43
        == summary["frames_acked"] + summary["frames_in_gaps"]
    )
    assert sorted(store.count) == list(range(42)) and store.corrupted == 0
    assert store.gaps == [(42, 42)]
    st = isum["streams"]["cam0"]
    assert st["ended"] and st["frames_acquired"] == 43 and st["accounting_ok"]
    assert 43 == store.persisted + st["frames_in_reported_gaps"]


def _recv(sock, timeout_ms=5000):
    assert sock.poll(timeout_ms, zmq.POLLIN), "no reply from the ingest"
    return decode_control(sock.recv_multipart())


def _frame_msg(seq: int, stream: str = "cam0", shape=SHAPE) -> list:
    head = FrameHeader(
        stream=stream,
        seq=seq,
        shape=shape,
        dtype="uint16",
        pixel_size_um=0.1,
        t_acq=0.0,
    )
    return encode_frame(head, np.full(shape, seq, np.uint16))


def test_protocol_dedup_out_of_order_gap_and_end(endpoint, context):
    """A hand-driven source: duplicates dropped and counted, holes trigger a replay."""
    store = Store()
    ingest = Ingest(
        IngestConfig(endpoint=endpoint, window=4, ack_every=1), store.on_frame
    ).start()
    raw = context.socket(zmq.DEALER)
    raw.linger = 0
    try:
        raw.connect(endpoint)
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
        ready = _recv(raw)
        assert (ready["kind"], ready["n"], ready["upto"], ready["credit"]) == (
            "ready",
            1,
            -1,
            4,
        )
        for seq in (0, 1, 2, 1, 2, 5, 3):
            raw.send_multipart(_frame_msg(seq))
        raw.send_multipart(encode_control("gap", stream="cam0", first=4, last=4))
        raw.send_multipart(_frame_msg(5))
        raw.send_multipart(
            encode_control("end", stream="cam0", upto=5, n=6, gap_frames=1)
        )
        replies = []
        while not replies or replies[-1]["kind"] != "end_ack":
            replies.append(_recv(raw))
    finally:
        raw.close(linger=0)
        isum = ingest.close()
    assert store.order == [0, 1, 2, 3, 5]
    st = isum["streams"]["cam0"]
    assert (st["duplicates"], st["out_of_order"], st["gaps"]) == (2, 1, [[4, 4]])
    assert st["credit_violations"] == 0
    assert st["accounting_ok"] is True and st["ended"] is True
    resyncs = [r for r in replies if r["kind"] == "ready"]
    assert [(r["n"], r["upto"]) for r in resyncs] == [(0, 2)]  # "replay after seq 2"
    acks = [r["upto"] for r in replies if r["kind"] == "ack"]
    assert acks == sorted(acks) and acks[-1] == 5  # cumulative
    assert replies[-1]["summary"]["frames_persisted"] == 5


def _malformed_messages() -> list[tuple[str, list[bytes]]]:
    good = _frame_msg(0)
    head = json.loads(good[0])
    payload = good[1].tobytes()

    def hdr(**over):
        h = dict(head, **over)
        return json.dumps(h).encode()

    return [
        ("garbage", [b"\xff\x00garbage"]),
        ("empty", [b""]),
        ("4 parts", [good[0], payload, b"x", b"y"]),
        ("not json", [b"{not json", payload]),
        ("json array", [b"[1,2]", payload]),
        ("version", [hdr(v=99), payload]),
        ("kind", [hdr(kind="bogus"), payload]),
        ("short payload", [good[0], payload[:-2]]),
        ("bad dtype", [hdr(dtype="object"), payload]),
        ("spoofed stream", [good[0], payload]),  # cam0 frames from another connection
        ("unknown stream", [hdr(stream="nope"), payload]),
        (
            "bad hello",
            encode_control(
                "hello",
                stream="x",
                session="s",
                n=1,
                first=0,
                shape=[0, 4],
                dtype="uint16",
            ),
        ),
        (
            "huge hello",
            encode_control(
                "hello",
                stream="x",
                session="s",
                n=1,
                first=0,
                shape=[65536, 65536],
                dtype="float64",
            ),
        ),
        ("ack to ingest", encode_control("ack", stream="cam0", upto=3, credit=4)),
        ("gap unknown", encode_control("gap", stream="nope", first=1, last=2)),
        ("negative seq", [hdr(seq=-5), payload]),
        ("huge header", [b" " * 5000 + good[0], payload]),
    ]


def test_malformed_messages_between_valid_frames(endpoint, context):
    n_valid, rounds, n_after = 600, 12, 100
    bad = _malformed_messages()
    n_bad = rounds * len(bad)
    store = Store()
    cfg = IngestConfig(endpoint=endpoint, window=WINDOW, max_frame_bytes=1 << 20)
    ingest = Ingest(cfg, store.on_frame).start()
    raw = context.socket(zmq.DEALER)
    raw.linger = 0
    raw.connect(endpoint)
    try:
        with SourceLink(link_cfg(endpoint)) as link:
            assert link.wait_ready(20)
            step = n_valid // rounds
            for seq in range(n_valid):
                link.send(frame_of(seq), timeout=30)
                if seq % step == 0 and seq // step < rounds:
                    for _, msg in bad:
                        raw.send_multipart(msg)
            assert wait_for(lambda: ingest.summary()["rejected"] >= n_bad)
            # a part over MAXMSGSIZE: ZeroMQ drops that connection, the rest goes on
            raw.send_multipart([b"{}", b"\0" * (3 << 20)])
            assert wait_for(lambda: ingest.summary()["disconnects"] >= 1)  # dropped
            for seq in range(n_valid, n_valid + n_after):
                link.send(frame_of(seq), timeout=30)
        summary = link.summary()
    finally:
        raw.close(linger=0)
        isum = ingest.close()
    assert store.order == list(range(n_valid + n_after)) and store.corrupted == 0
    assert summary["frames_acked"] == n_valid + n_after and summary["end_acked"]
    assert isum["rejected"] == n_bad  # every malformed message counted once
    assert isum["streams"]["cam0"]["credit_violations"] == 0
    expected = {
        "malformed": 11,
        "parts": 1,
        "wrong-peer": 1,
        "unknown-stream": 2,
        "oversized": 1,
        "unexpected": 1,
    }
    assert isum["rejected_by_reason"] == {k: v * rounds for k, v in expected.items()}


def test_config_validation_names_field_and_range(endpoint):
    with pytest.raises(ValueError, match=r"IngestConfig\.window=0 .*\[1, 1024\]"):
        IngestConfig(endpoint=endpoint, window=0)
    with pytest.raises(ValueError, match=r"SourceLinkConfig\.overflow='drop'"):
        link_cfg(endpoint, overflow="drop")
    with pytest.raises(ValueError, match=r"SourceLinkConfig\.ring_frames=0"):
        link_cfg(endpoint, ring_frames=0)
    with pytest.raises(ValueError, match=r"max_ring_bytes"):
        link_cfg(endpoint, shape=(4096, 4096), ring_frames=1000, max_ring_bytes=2**30)
    with pytest.raises(ValueError, match=r"SourceLinkConfig\.stream"):
        link_cfg(endpoint, stream="a b")
    with pytest.raises(ValueError, match=r"SourceLinkConfig\.shape"):
        link_cfg(endpoint, shape=(0, 4))


def test_send_rejects_wrong_frame_and_closed_link(endpoint):
    link = SourceLink(link_cfg(endpoint))
    with pytest.raises(RuntimeError, match="not started"):
        link.send(frame_of(0))
    link.start()
    try:
        with pytest.raises(ValueError, match="same shape and dtype"):
            link.send(np.zeros((3, 3), np.uint16))
    finally:
        summary = link.close(timeout=0)
    assert summary["frames_acquired"] == 0
    with pytest.raises(RuntimeError, match="already closed"):
        link.send(frame_of(0))


def test_restarted_source_is_a_new_session(endpoint):
    """A new SourceLink restarts at seq 0 with a new session; nothing is mistaken for
    a duplicate of the previous run, even with a resume store."""
    persisted: dict[tuple[str, int], int] = {}
    ingest: Ingest

    def on_frame(header, frame) -> None:
        key = (ingest.session(header.stream), header.seq)
        persisted[key] = persisted.get(key, 0) + 1

    def last_seq(stream: str, session: str) -> int:
        return max((s for (ses, s) in persisted if ses == session), default=-1)

    cfg = IngestConfig(endpoint=endpoint, window=WINDOW)
    ingest = Ingest(cfg, on_frame, resume=last_seq).start()
    sessions = []
    try:
        for run in range(2):
            with SourceLink(link_cfg(endpoint)) as link:
                for seq in range(100 + run * 50):
                    link.send(frame_of(seq), timeout=20)
            summary = link.summary()
            assert summary["frames_acked"] == 100 + run * 50 and summary["end_acked"]
            sessions.append(summary["session"])
    finally:
        isum = ingest.close()
    assert sessions[0] != sessions[1]
    assert sorted(persisted) == sorted(
        [(sessions[0], s) for s in range(100)] + [(sessions[1], s) for s in range(150)]
    )
    assert set(persisted.values()) == {1}
    st = isum["streams"]["cam0"]
    assert st["session"] == sessions[1] and st["frames_persisted"] == 150
    (prev,) = isum["previous_sessions"]
    assert prev["session"] == sessions[0] and prev["frames_persisted"] == 100
    assert prev["accounting_ok"] is True


def test_slow_consumer_resync_replays_nothing_already_received(endpoint):
    """on_frame stalls longer than the source's ack timeout: the source re-handshakes.
    Every frame sent before the HELLO is ahead of it on the connection, so the READY
    covers them all: the resync costs no replay and no duplicate."""
    store = Store()
    stalled = threading.Event()

    def on_frame(header, frame) -> None:
        if header.seq == 50 and not stalled.is_set():
            stalled.set()
            time.sleep(0.5)  # > ack_timeout_s below
        store.on_frame(header, frame)

    ingest = Ingest(IngestConfig(endpoint=endpoint, window=WINDOW), on_frame).start()
    try:
        with SourceLink(link_cfg(endpoint, ack_timeout_s=0.1)) as link:
            for seq in range(200):
                link.send(frame_of(seq), timeout=20)
        summary = link.summary()
    finally:
        isum = ingest.close()
    assert store.order == list(range(200)) and store.corrupted == 0
    assert summary["frames_acked"] == 200 and summary["end_acked"]
    assert summary["handshakes"] >= 2  # the resync happened
    assert summary["frames_replayed"] == 0
    assert isum["streams"]["cam0"]["duplicates"] == 0


def test_hello_never_skips_a_frame_still_being_queued(endpoint, context):
    """Regression: send() takes its seq before the frame is queued (the copy runs
    outside the lock); a HELLO sent meanwhile must still announce that seq."""
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoint)
    link = SourceLink(link_cfg(endpoint, hello_interval_s=0.01))
    copying, release = threading.Event(), threading.Event()
    real_view = link._ring.view

    def slow_view(slot):  # send() copies through view(): hold it mid-copy
        copying.set()
        release.wait(20)
        return real_view(slot)

    link._ring.view = slow_view  # type: ignore[method-assign]
    link.start()
    producer = threading.Thread(target=link.send, args=(frame_of(0),))
    try:
        producer.start()
        assert copying.wait(20)
        hellos = []
        while len(hellos) < 3:  # HELLOs repeat until READY; all sent mid-copy
            assert router.poll(5000, zmq.POLLIN)
            _, *parts = router.recv_multipart()
            hellos.append(decode_control(parts, "hello"))
        assert [h["first"] for h in hellos] == [0, 0, 0]
    finally:
        release.set()
        producer.join(20)
        link.close(timeout=0)
        router.close(linger=0)


def test_zero_copy_acquisition_with_reserve_and_commit(endpoint):
    store = Store()
    ingest = Ingest(IngestConfig(endpoint=endpoint, window=WINDOW), store.on_frame)
    link = SourceLink(link_cfg(endpoint, ring_frames=16, overflow="continue")).start()
    try:
        buf = link.reserve()
        assert buf is not None and link.reserve() is buf  # same slot until commit
        with pytest.raises(ValueError, match="not the array returned by reserve"):
            link.commit(np.zeros(SHAPE, np.uint16))
        buf[...] = 0
        assert link.commit(buf) == 0
        for seq in range(1, 16):  # the ingest is not there yet: the ring fills up
            b = link.reserve()
            b[...] = seq
            assert link.commit(b) == seq
        assert (
            link.reserve() is None
        )  # full: nothing counted, caller falls back to send
        assert link.send(frame_of(16)) == 16  # ... which reports the overflow
        ingest.start()
        for seq in range(17, 300):
            b = link.reserve(timeout=20)
            b[...] = seq & 0xFFFF
            assert link.commit(b, meta={"i": seq}) == seq
        summary = link.close(timeout=20)
    finally:
        link.close(timeout=0)
        isum = ingest.close()
    assert store.order == [s for s in range(300) if s != 16] and store.corrupted == 0
    assert summary["gaps"] == [[16, 16]] and summary["frames_acquired"] == 300
    assert summary["frames_acked"] == 299 and summary["end_acked"]
    assert isum["streams"]["cam0"]["accounting_ok"] is True
