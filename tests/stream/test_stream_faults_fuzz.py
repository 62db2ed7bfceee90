"""R6: >= 10⁴ mixed valid and malformed messages into the live ingest, plus oversized.

A real :class:`SourceLink` streams stamped frames (stream ``cam``) while a raw
DEALER that said a valid hello for stream ``fz`` sends hypothesis-generated
messages: valid frames (random metadata, times, pixel sizes and pixels, in seq
order) mixed with malformed ones (random bytes, truncated or padded payloads,
wrong shape/dtype, bad field types and ranges, non-UTF-8, oversized headers, extra
parts, other streams).  A third socket sends parts larger than ``ZMQ_MAXMSGSIZE``.

Checked: 100 % of the valid frames persisted (once, in order, bit-exact), 100 % of
the malformed messages rejected and counted (the ingest's ``rejected`` equals the
number sent), every oversized message cost its sender the connection (counted as a
disconnect) and nothing else, the ingest thread alive and still serving, RSS bounded.

``LIVESR_FUZZ_EXAMPLES`` sets the number of hypothesis examples (default 220, ~50
messages each); the long run is ``test_live_fuzz_long`` (``@pytest.mark.slow``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livesr.stream._transport import Ingest, IngestConfig, SourceLink, SourceLinkConfig
from livesr.stream._wire import decode_control, encode_control

SHAPE = (8, 8)
FRAME_BYTES = SHAPE[0] * SHAPE[1] * 2
MAX_FRAME_BYTES = 4096  # -> ZMQ_MAXMSGSIZE = 1.5 * 4096 + 4096 = 10240 bytes


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _head(seq: int, **over: Any) -> dict[str, Any]:
    h = {
        "v": 1,
        "kind": "frame",
        "stream": "fz",
        "seq": seq,
        "t_acq": 1.0,
        "t_send": 2.0,
        "shape": list(SHAPE),
        "dtype": "uint16",
        "pixel_size_um": 0.1,
        "meta": {},
    }
    h.update(over)
    return h


def _enc(h: Any) -> bytes:
    return json.dumps(h, separators=(",", ":")).encode()


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
valid_meta = st.dictionaries(st.text(max_size=12), json_scalars, max_size=5)

# (name, mutation of a valid header dict, payload) -> every one must be rejected
BAD_FIELDS: list[tuple[str, Any]] = [
    ("v", 2),
    ("v", True),
    ("v", "1"),
    ("kind", "frames"),
    ("kind", None),
    ("stream", ""),
    ("stream", "bad stream!"),
    ("stream", "x" * 65),
    ("stream", 5),
    ("stream", "nobody"),  # no hello: unknown stream
    ("stream", "cam"),  # owned by the SourceLink's connection
    ("seq", -1),
    ("seq", 2**63),
    ("seq", 1.5),
    ("seq", True),
    ("seq", "3"),
    ("shape", [8]),
    ("shape", [8, 8, 1]),
    ("shape", [0, 8]),
    ("shape", [8, 70000]),
    ("shape", "8x8"),
    ("shape", [4, 16]),  # right size, differs from the hello
    ("dtype", "int16"),
    ("dtype", "float16"),
    ("dtype", None),
    ("dtype", "uint8"),  # differs from the hello (size checked first: 64 B)
    ("pixel_size_um", 0),
    ("pixel_size_um", -0.1),
    ("pixel_size_um", "0.1"),
    ("pixel_size_um", None),
    ("t_acq", "now"),
    ("t_acq", None),
    ("t_acq", 1e400),  # json: Infinity
    ("t_send", [1]),
    ("meta", [1, 2]),
    ("meta", "m"),
]
DROP_FIELDS = ["v", "kind", "stream", "seq", "shape", "dtype", "pixel_size_um", "t_acq"]


@st.composite
def malformed(draw: Any, seq: int) -> list[bytes]:
    """One message the ingest must reject (never a valid frame of stream fz)."""
    payload = np.zeros(FRAME_BYTES, np.uint8).tobytes()
    kind = draw(st.integers(0, 9))
    if kind == 0:  # random parts (random bytes never form a valid v=1 header)
        return draw(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
    if kind == 1:  # a field of the wrong type or out of range
        key, value = draw(st.sampled_from(BAD_FIELDS))
        head = _head(seq)
        head[key] = value
        if key == "dtype" and value == "uint8":
            payload = payload[: FRAME_BYTES // 2]
        return [json.dumps(head).encode(), payload]
    if kind == 2:  # a required field missing
        head = _head(seq)
        del head[draw(st.sampled_from(DROP_FIELDS))]
        return [_enc(head), payload]
    if kind == 3:  # payload truncated or padded
        n = draw(st.integers(1, FRAME_BYTES * 2).filter(lambda k: k != FRAME_BYTES))
        return [_enc(_head(seq)), draw(st.binary(min_size=n, max_size=n))]
    if kind == 4:  # a header cut short (torn JSON)
        raw = _enc(_head(seq))
        # (a fraction: the header's length depends on seq, the draw must not)
        cut = draw(st.floats(0.0, 1.0, exclude_max=True))
        return [raw[: int(cut * len(raw))], payload]
    if kind == 5:  # header larger than MAX_HEADER_BYTES
        big = {"pad": "x" * draw(st.integers(4100, 6000))}
        return [_enc(_head(seq, meta=big)), payload]
    if kind == 6:  # not UTF-8 / not an object
        return [
            draw(st.sampled_from([b"\xff\xfe{", b"[1,2]", b"null", b'"s"', b"1e5"])),
            payload,
        ]
    if kind == 7:  # extra or missing parts
        if draw(st.booleans()):
            return [_enc(_head(seq)), payload, b"extra"]
        return [_enc(_head(seq))]
    if kind == 8:  # a control message the ingest never receives, or a bad one
        return draw(
            st.sampled_from(
                [
                    encode_control("ack", stream="fz", upto=1, credit=1),
                    encode_control("ready", stream="fz", upto=1, credit=1),
                    encode_control("gap", stream="fz", first=5, last=2),
                    encode_control("end", stream="fz", upto=3, n=9, gap_frames=0),
                    [b'{"v":1,"kind":"gap","stream":"fz","first":-1,"last":2}', b""],
                    encode_control("hello", stream="fz", session="", n=1, first=0),
                ]
            )
        )
    # kind 9: NaN in a number field (JSON text a strict encoder would refuse)
    raw = _enc(_head(seq)).replace(b'"t_acq":1.0', b'"t_acq":NaN')
    return [raw, payload]


@st.composite
def valid_frame(draw: Any, seq: int) -> tuple[list[bytes], bytes]:
    px = draw(st.binary(min_size=FRAME_BYTES, max_size=FRAME_BYTES))
    head = _head(
        seq,
        t_acq=draw(st.floats(-1e12, 1e12, allow_nan=False)),
        t_send=draw(st.floats(-1e12, 1e12, allow_nan=False)),
        pixel_size_um=draw(st.floats(1e-6, 1e6)),
        meta=draw(valid_meta),
    )
    raw = json.dumps(head, separators=(",", ":")).encode()
    if len(raw) > 4096:  # pragma: no cover - meta is small
        raw = _enc(_head(seq))
    return [raw, px], px


class Harness:
    """Ingest + SourceLink stream + fuzzing DEALER (hello done for stream fz)."""

    def __init__(self, tmp_path: Any) -> None:
        self.ep = f"ipc://{tmp_path}/fuzz.ipc"
        self.lock = threading.Lock()
        self.cam: list[int] = []
        self.fz: list[bytes] = []
        self.cam_bad = 0

        def on_frame(h: Any, f: np.ndarray) -> None:
            with self.lock:
                if h.stream == "cam":
                    self.cam.append(h.seq)
                    if not (f == (h.seq & 0xFFFF)).all():
                        self.cam_bad += 1
                else:
                    self.fz.append(f.tobytes())

        self.ingest = Ingest(
            IngestConfig(endpoint=self.ep, window=16, max_frame_bytes=MAX_FRAME_BYTES),
            on_frame,
        ).start()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(self.ep)
        self.sock.send_multipart(
            encode_control(
                "hello",
                stream="fz",
                session="fuzz",
                n=1,
                first=0,
                shape=list(SHAPE),
                dtype="uint16",
            )
        )
        assert self.sock.poll(20_000)
        assert decode_control(self.sock.recv_multipart(), "ready")["upto"] == -1
        self.next_seq = 0
        self.sent_valid: list[bytes] = []
        self.sent_bad = 0

    def drain_acks(self) -> None:
        while True:
            try:
                self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return

    def wait_counted(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.ingest.summary()
            with self.lock:
                got = len(self.fz)
            if s["rejected"] >= self.sent_bad and got >= len(self.sent_valid):
                return
            self.drain_acks()
            time.sleep(0.002)

    def close(self) -> dict[str, Any]:
        self.sock.close(linger=0)
        self.ctx.term()
        return self.ingest.close()


def _run_fuzz(tmp_path: Any, examples: int, rounds: int = 100) -> dict[str, Any]:
    h = Harness(tmp_path)
    cam_n = 3000
    link = SourceLink(
        SourceLinkConfig(endpoint=h.ep, stream="cam", shape=SHAPE, ring_frames=256)
    ).start()
    stop = threading.Event()

    def produce() -> None:
        for seq in range(cam_n):
            link.send(np.full(SHAPE, seq & 0xFFFF, np.uint16), timeout=30)
            if seq % 50 == 0:
                time.sleep(0.001)
            if stop.is_set():
                return

    producer = threading.Thread(target=produce)
    producer.start()
    rss: list[float] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def storm(data: Any) -> None:
        for _ in range(data.draw(st.integers(40, 60))):
            seq = h.next_seq
            if data.draw(st.integers(0, 2)) == 0:
                parts, px = data.draw(valid_frame(seq))
                h.sent_valid.append(px)
                h.next_seq += 1
            else:
                parts = data.draw(malformed(seq))
                h.sent_bad += 1
            h.sock.send_multipart(parts)
        h.wait_counted()
        if len(rss) < 2 or h.sent_bad + len(h.sent_valid) > 2000 * len(rss):
            rss.append(rss_mb())

    try:
        storm()
        h.wait_counted()
        # RSS of the ingest: a deterministic storm (no hypothesis bookkeeping in the
        # measurement): every bad field and missing field, `rounds` times over
        fixed = []
        for key, value in BAD_FIELDS:
            head = _head(0)
            head[key] = value
            fixed.append([json.dumps(head).encode(), b"\0" * FRAME_BYTES])
        for key in DROP_FIELDS:
            head = _head(0)
            del head[key]
            fixed.append([_enc(head), b"\0" * FRAME_BYTES])
        rss_fixed = [rss_mb()]
        for _ in range(rounds):
            for parts in fixed:
                h.sock.send_multipart(parts)
                h.sent_bad += 1
            h.wait_counted()
        rss_fixed.append(rss_mb())
        # MAXMSGSIZE: each oversized message costs its sender the connection
        big = h.ctx.socket(zmq.DEALER)
        big.linger = 0
        big.connect(h.ep)
        oversized = 20
        for i in range(oversized):
            before = h.ingest.summary()["disconnects"]
            big.send_multipart([_enc(_head(0)), b"\0" * (10240 + 1 + 5000 * i)])
            deadline = time.monotonic() + 20
            while h.ingest.summary()["disconnects"] == before:
                assert time.monotonic() < deadline, "oversized message not refused"
                time.sleep(0.002)
        big.close(linger=0)
        producer.join(60)
        summary_link = link.close(timeout=30)
        # still serving: a last valid frame on the fuzzing connection is persisted
        px = np.arange(FRAME_BYTES, dtype=np.uint8).tobytes()
        parts = [_enc(_head(h.next_seq)), px]
        h.sent_valid.append(px)
        h.sock.send_multipart(parts)
        h.wait_counted()
        alive = h.ingest._thread is not None and h.ingest._thread.is_alive()
        rss.append(rss_mb())
    finally:
        stop.set()
        producer.join(10)
        link.close(timeout=0)
        isum = h.close()
    return {
        "h": h,
        "isum": isum,
        "link": summary_link,
        "cam_n": cam_n,
        "oversized": oversized,
        "alive": alive,
        "rss": rss,
        "rss_fixed": rss_fixed,
        "fixed_messages": rounds * len(fixed),
    }


def _check(res: dict[str, Any]) -> None:
    h, isum = res["h"], res["isum"]
    assert res["alive"]
    # 100 % valid accepted: every fz frame, once, in order, bit-exact
    assert h.fz == h.sent_valid
    assert isum["streams"]["fz"]["frames_persisted"] == len(h.sent_valid)
    assert isum["streams"]["fz"]["duplicates"] == 0
    # the SourceLink stream alongside: all frames, in order, uncorrupted
    assert h.cam == list(range(res["cam_n"])) and h.cam_bad == 0
    assert res["link"]["frames_acked"] == res["cam_n"] and res["link"]["end_acked"]
    # 100 % malformed rejected and counted
    assert isum["rejected"] == h.sent_bad
    assert sum(isum["rejected_by_reason"].values()) == h.sent_bad
    assert isum["messages"] >= h.sent_bad + len(h.sent_valid) + res["cam_n"]
    # oversized: refused by ZeroMQ before the ingest sees them (a disconnect each)
    assert isum["disconnects"] >= res["oversized"]
    # RSS bounded: flat over the deterministic storm (ingest only) ...
    assert res["rss_fixed"][1] - res["rss_fixed"][0] < 8, res["rss_fixed"]


def test_live_fuzz_mixed_10k_messages(tmp_path: Any) -> None:
    examples = int(os.environ.get("LIVESR_FUZZ_EXAMPLES", "220"))
    res = _run_fuzz(tmp_path, examples)
    _check(res)
    total = res["h"].sent_bad + len(res["h"].sent_valid)
    assert total >= 10_000 or examples < 220
    assert res["h"].sent_bad > 5000 and len(res["h"].sent_valid) > 2500


@pytest.mark.slow
def test_live_fuzz_long(tmp_path: Any) -> None:
    res = _run_fuzz(
        tmp_path, int(os.environ.get("LIVESR_FUZZ_EXAMPLES", "4000")), rounds=1000
    )
    _check(res)
    report = os.environ.get("LIVESR_FUZZ_REPORT")
    if report:
        with open(report, "w") as fh:
            json.dump(
                {
                    "valid_sent": len(res["h"].sent_valid),
                    "malformed_sent": res["h"].sent_bad,
                    "rejected": res["isum"]["rejected"],
                    "rejected_by_reason": res["isum"]["rejected_by_reason"],
                    "disconnects": res["isum"]["disconnects"],
                    "rss_mb_whole_test": res["rss"],
                    "rss_mb_fixed_storm": res["rss_fixed"],
                    "fixed_messages": res["fixed_messages"],
                },
                fh,
                indent=1,
            )
