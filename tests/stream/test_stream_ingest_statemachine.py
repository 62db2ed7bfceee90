"""A hypothesis state machine against a real :class:`Ingest` (issue 14).

Several DEALER clients (two streams, a few session ids, reconnections) send valid
frames, control messages (``hello``, ``gap``, ``end``) and malformed messages in any
order; ``on_frame`` sometimes fails.  The ingest is bound on an ``ipc://`` endpoint
in a fresh temporary folder (short, for the ipc path limit) and served with
:meth:`Ingest.serve` on the test thread (no thread) until it has handled every
message sent.  After every step:

- no frame is persisted twice: ``on_frame`` runs at most once per (stream, session
  instance, seq) and once per (stream, session, seq) with a ``resume`` callback;
- every seq a stream instance covers (``resumed_from`` .. ``next_seq - 1``) was either
  persisted by an ``on_frame`` that returned or lies in a recorded gap (never both),
  so nothing is acknowledged that is not persisted: every ``ack``/``ready`` a client
  gets says ``upto < next_seq`` of its session;
- the accounting identity ``next_seq - resumed_from == frames_persisted +
  frames_in_reported_gaps`` for every stream (current and replaced sessions), and
  ``accounting_ok`` once a stream ended;
- every message sent was handled (``messages``), each malformed one is rejected
  and counted, and the ingest never fails.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import zmq
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from livesr.stream._transport import Ingest, IngestConfig
from livesr.stream._wire import (
    SEQ_MAX,
    FrameHeader,
    decode_control,
    encode_control,
    encode_frame,
)

SHAPE = (2, 3)
WINDOW = 4


def _malformed(kind: str, stream: str) -> list[bytes]:
    good = {
        "v": 1,
        "kind": "frame",
        "stream": stream,
        "seq": 0,
        "t_acq": 0.0,
        "shape": list(SHAPE),
        "dtype": "uint16",
        "pixel_size_um": 0.1,
    }
    payload = np.zeros(SHAPE, np.uint16).tobytes()
    if kind == "nested":
        return [b"[" * 2000, b"x"]
    if kind == "nested-control":
        return [b'{"a":[' * 680, b""]
    if kind == "not-json":
        return [b"\xff\xfe garbage", payload]
    if kind == "nan-meta":
        raw = json.dumps({**good, "meta": {"z": 1.0}}).replace("1.0", "NaN")
        return [raw.encode(), payload]
    if kind == "short-payload":
        return [json.dumps(good).encode(), payload[:-1]]
    if kind == "three-parts":
        return [json.dumps(good).encode(), payload, payload]
    if kind == "bad-shape-hello":
        return encode_control(
            "hello",
            stream=stream,
            session="x",
            n=1,
            first=0,
            shape=[0, 3],
            dtype="uint16",
        )
    if kind == "unexpected-kind":
        return encode_control("ack", stream=stream, upto=0, credit=1)
    if kind == "negative-gap":
        raw = json.dumps(
            {"v": 1, "kind": "gap", "stream": stream, "first": -5, "last": 3}
        )
        return [raw.encode(), b""]
    raise AssertionError(kind)


MALFORMED = [
    "nested",
    "nested-control",
    "not-json",
    "nan-meta",
    "short-payload",
    "three-parts",
    "bad-shape-hello",
    "unexpected-kind",
    "negative-gap",
]


class Client:
    def __init__(self, ctx: zmq.Context, endpoint: str, stream: str, session: str):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.stream = stream
        self.session = session
        self.next = 0  # the next seq this client believes unacknowledged
        self.nonce = 0
        self.open = True

    def __repr__(self) -> str:
        return f"Client({self.stream}, {self.session}, next={self.next})"


class IngestMachine(RuleBasedStateMachine):
    clients = Bundle("clients")

    def __init__(self) -> None:
        super().__init__()
        self.ctx = zmq.Context()
        self.all_clients: list[Client] = []
        self.frames: dict[tuple[str, int], list[int]] = {}  # (stream, instance)
        self.by_session: dict[tuple[str, str, int], int] = {}
        self.fail_next = False
        self.sent = 0
        self.expected_rejects = 0

    # ---------------------------------------------------------------- setup
    @initialize()
    def start(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="livesr-sm-")  # short: ipc path limit
        self.ingest = Ingest(
            IngestConfig(
                endpoint=f"ipc://{self.tmp}/ingest.ipc",
                window=WINDOW,
                ack_every=2,
                heartbeat_ivl_ms=0,
                takeover_after_s=3600,
            ),
            self.on_frame,
            resume=self.resume,
        )
        self.endpoint = self.ingest.bind()

    def teardown(self) -> None:
        for c in self.all_clients:
            c.sock.close(linger=0)
        if hasattr(self, "ingest"):
            self.ingest.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.ctx.term()

    # ---------------------------------------------------------------- callbacks
    def _instance(self, stream: str) -> int:
        prev = self.ingest.summary()["previous_sessions"]
        return sum(1 for p in prev if p["stream"] == stream)

    def on_frame(self, header: FrameHeader, frame: np.ndarray) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("simulated write failure")
        assert (frame == header.seq % 60000).all()
        session = self.ingest.session(header.stream)
        assert session is not None
        key = (header.stream, session, header.seq)
        self.by_session[key] = self.by_session.get(key, 0) + 1
        self.frames.setdefault(
            (header.stream, self._instance(header.stream)), []
        ).append(header.seq)

    def resume(self, stream: str, session: str) -> int:
        seqs = [s for (st_, se, s) in self.by_session if (st_, se) == (stream, session)]
        return max(seqs, default=-1)

    # ---------------------------------------------------------------- plumbing
    def send(self, c: Client, parts: list[Any]) -> None:
        c.sock.send_multipart(parts)
        self.sent += 1

    def pump(self) -> None:
        """Serve until the ingest handled every message sent; collect replies."""
        deadline = time.monotonic() + 10
        while self.ingest.summary()["messages"] < self.sent:
            assert time.monotonic() < deadline, "the ingest did not handle a message"
            self.ingest.serve(5)
        self.ingest.serve(0)
        for c in self.all_clients:
            if not c.open:
                continue
            while c.sock.poll(1, zmq.POLLIN):
                msg = decode_control(c.sock.recv_multipart())
                assert msg["stream"] == c.stream
                if msg["kind"] in ("ack", "ready"):
                    self.check_ack(c, msg["upto"])
                    if msg["kind"] == "ready" or msg["upto"] + 1 > c.next:
                        c.next = msg["upto"] + 1

    def check_ack(self, c: Client, upto: int) -> None:
        """Acknowledged means persisted (or a recorded gap) for that session."""
        s = self.ingest.summary()
        mine = [p for p in s["previous_sessions"] if p["stream"] == c.stream]
        cur = s["streams"].get(c.stream)
        if cur is not None:
            mine.append(cur)
        nexts = [p["next_seq"] for p in mine if p["session"] == c.session]
        assert nexts, f"{c} got an ack for a session the ingest never had"
        assert upto < max(nexts), (c, upto, nexts)

    # ---------------------------------------------------------------- rules
    @rule(
        target=clients,
        stream=st.sampled_from(["cam0", "cam1"]),
        session=st.sampled_from(["A", "B", "C"]),
    )
    def connect(self, stream: str, session: str) -> Client:
        c = Client(self.ctx, self.endpoint, stream, session)
        self.all_clients.append(c)
        return c

    @rule(c=clients, first=st.sampled_from(["next", "next", 0, "ahead", 2**62]))
    def hello(self, c: Client, first: Any) -> None:
        if not c.open:
            return
        c.nonce += 1
        value = {"next": c.next, "ahead": c.next + 3}.get(first, first)
        self.send(
            c,
            encode_control(
                "hello",
                stream=c.stream,
                session=c.session,
                n=c.nonce,
                first=value,
                shape=list(SHAPE),
                dtype="uint16",
            ),
        )
        self.pump()

    @rule(c=clients, k=st.integers(1, WINDOW + 2), start=st.sampled_from([0, 0, -1, 1]))
    def frames_(self, c: Client, k: int, start: int) -> None:
        if not c.open:
            return
        for seq in range(max(0, c.next + start), max(0, c.next + start) + k):
            head = FrameHeader(
                stream=c.stream,
                seq=seq,
                shape=SHAPE,
                dtype="uint16",
                pixel_size_um=0.1,
                t_acq=1.0,
            )
            self.send(c, encode_frame(head, np.full(SHAPE, seq % 60000, np.uint16)))
        self.pump()

    @rule(
        c=clients,
        offset=st.sampled_from([0, 0, 1, -1]),
        length=st.sampled_from([1, 2, WINDOW, WINDOW + 5, "max"]),
    )
    def gap(self, c: Client, offset: int, length: Any) -> None:
        if not c.open:
            return
        first = max(0, c.next + offset)
        last = SEQ_MAX if length == "max" else first + length - 1
        self.send(c, encode_control("gap", stream=c.stream, first=first, last=last))
        self.pump()

    @rule(c=clients, gap_frames=st.sampled_from([0, 1, 5, "huge"]), late=st.booleans())
    def end(self, c: Client, gap_frames: Any, late: bool) -> None:
        if not c.open:
            return
        upto = c.next - 1 + (2 if late else 0)
        g = SEQ_MAX if gap_frames == "huge" else gap_frames
        self.send(
            c,
            encode_control("end", stream=c.stream, upto=upto, n=upto + 1, gap_frames=g),
        )
        self.pump()

    @rule(c=clients, kind=st.sampled_from(MALFORMED))
    def malformed(self, c: Client, kind: str) -> None:
        if not c.open:
            return
        before = self.ingest.summary()["rejected"]
        self.send(c, _malformed(kind, c.stream))
        self.pump()
        assert self.ingest.summary()["rejected"] == before + 1, kind

    @rule()
    def failing_write(self) -> None:
        self.fail_next = True

    @precondition(lambda self: any(c.open for c in self.all_clients))
    @rule(c=clients)
    def disconnect(self, c: Client) -> None:
        if c.open:
            c.open = False
            c.sock.close(linger=0)
            time.sleep(0.005)  # let the ROUTER see the disconnect
            self.ingest.serve(0)

    # ---------------------------------------------------------------- invariants
    @invariant()
    def nothing_persisted_twice(self) -> None:
        if not hasattr(self, "ingest"):
            return
        assert all(n == 1 for n in self.by_session.values()), self.by_session
        for key, seqs in self.frames.items():
            assert len(seqs) == len(set(seqs)), (key, seqs)
            assert seqs == sorted(seqs), (key, seqs)

    @invariant()
    def every_covered_seq_persisted_or_in_a_gap(self) -> None:
        if not hasattr(self, "ingest"):
            return
        s = self.ingest.summary()
        assert not self.ingest.failed and s["failed"] is False
        n_persisted = 0
        for stream, cur in s["streams"].items():
            inst = sum(1 for p in s["previous_sessions"] if p["stream"] == stream)
            self._check_instance(cur, self.frames.get((stream, inst), []))
        counts: dict[str, int] = {}
        for p in s["previous_sessions"]:
            k = counts.get(p["stream"], 0)
            counts[p["stream"]] = k + 1
            self._check_instance(p, self.frames.get((p["stream"], k), []))
        for summ in [*s["streams"].values(), *s["previous_sessions"]]:
            n_persisted += summ["frames_persisted"]
        assert n_persisted == sum(self.by_session.values())

    def _check_instance(self, summ: dict[str, Any], seqs: list[int]) -> None:
        lo, hi = summ["resumed_from"], summ["next_seq"]
        gaps = summ["gaps"]
        assert hi - lo == summ["frames_persisted"] + summ["frames_in_reported_gaps"]
        assert summ["frames_in_reported_gaps"] == sum(b - a + 1 for a, b in gaps)
        assert len(seqs) == summ["frames_persisted"]
        edges = sorted(gaps)
        for (_a, b), (c, _d) in zip(edges, edges[1:], strict=False):
            assert b < c, gaps  # gaps never overlap
        for a, b in gaps:
            assert lo <= a <= b < hi, (summ, gaps)
        for seq in seqs:
            assert lo <= seq < hi, (summ, seq)
            assert not any(a <= seq <= b for a, b in gaps), (seq, gaps)
        if summ["ended"]:
            assert summ["accounting_ok"] is True, summ

    @invariant()
    def every_message_handled(self) -> None:
        if hasattr(self, "ingest"):
            assert self.ingest.summary()["messages"] == self.sent


TestIngestMachine = IngestMachine.TestCase
TestIngestMachine.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
