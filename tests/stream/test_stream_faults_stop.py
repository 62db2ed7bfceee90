"""The ``stop`` message: the processing side ends, the remote acquisition stops cleanly.

In-process links over ipc for the protocol (graceful stop, final stop, validation),
then two real ``livesr run`` processes (``--listen`` / ``--connect``): the listening
side reaches ``--frames`` or is interrupted (SIGINT) and the connected acquisition
process ends by itself with its own summary saying why.  Exact counts throughout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
from livesr.stream._wire import decode_control, encode_control

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="ipc endpoints and SIGINT are POSIX-only"
)

SHAPE = (16, 16)


def frame_of(seq: int) -> np.ndarray:
    return np.full(SHAPE, seq & 0xFFFF, np.uint16)


class Producer(threading.Thread):
    """Acquires (sends) until the link asks to stop, then closes the link."""

    def __init__(self, link: SourceLink, *, obey: bool = True) -> None:
        super().__init__(daemon=True)
        self.link, self.obey = link, obey
        self.summary: dict | None = None
        self.sent = 0
        self.halt = threading.Event()
        self.overflowed = False

    def run(self) -> None:
        while not self.halt.is_set():
            if self.obey and self.link.stop_requested.is_set():
                break
            try:
                self.link.send(frame_of(self.sent), timeout=5.0)
            except RingOverflowError:  # the frame is a reported gap; stop acquiring
                self.sent += 1
                self.overflowed = True
                break
            self.sent += 1
            if self.sent % 20 == 0:
                time.sleep(0.002)  # a camera, not a busy loop
        self.summary = self.link.close(timeout=20.0)


def test_request_stop_ends_the_source_cleanly(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/stop.ipc"
    persisted: list[int] = []
    ended = threading.Event()
    ingest = Ingest(
        IngestConfig(endpoint=ep, window=8),
        lambda h, f: persisted.append(int(f[0, 0])),
        on_end=lambda s, summ: ended.set(),
    ).start()
    link = SourceLink(
        SourceLinkConfig(endpoint=ep, stream="cam0", shape=SHAPE, ring_frames=64)
    ).start()
    prod = Producer(link)
    prod.start()
    try:
        deadline = time.monotonic() + 30
        while len(persisted) < 100 and time.monotonic() < deadline:
            time.sleep(0.005)
        ingest.request_stop("test: enough frames")
        prod.join(30)
        assert not prod.is_alive(), "the source did not stop"
        assert ended.wait(10)
    finally:
        prod.halt.set()
        prod.join(5)
        isum = ingest.close()
    src = prod.summary
    assert src is not None
    n = src["frames_acquired"]
    assert n == prod.sent >= 100
    assert src["stop_reason"] == "test: enough frames" and src["stops_received"] == 1
    assert src["frames_acked"] == n and src["frames_unacked"] == 0
    assert src["end_acked"] is True and src["ingest_closed"] is False
    st = isum["streams"]["cam0"]
    assert st["ended"] and st["accounting_ok"] is True and st["frames_persisted"] == n
    assert persisted == list(range(n))  # everything acquired before the stop is kept
    assert isum["stop_sent"] == 1 and isum["rejected"] == 0


def test_close_with_stop_drains_then_final_stop_never_hangs(tmp_path: Path) -> None:
    """A producer that ignores ``stop``: the ingest waits ``drain_s``, then sends a
    final stop; the link's close returns at once and reports what stayed unacked."""
    ep = f"ipc://{tmp_path}/final.ipc"
    persisted: list[int] = []
    ingest = Ingest(
        IngestConfig(endpoint=ep, window=8), lambda h, f: persisted.append(h.seq)
    ).start()
    link = SourceLink(
        SourceLinkConfig(endpoint=ep, stream="cam0", shape=SHAPE, ring_frames=64)
    ).start()
    prod = Producer(link, obey=False)
    prod.start()
    try:
        deadline = time.monotonic() + 30
        while len(persisted) < 50 and time.monotonic() < deadline:
            time.sleep(0.005)
        isum = ingest.close(stop_reason="test: closing", drain_s=0.3)
        deadline = time.monotonic() + 10
        while not link.summary()["ingest_closed"] and time.monotonic() < deadline:
            time.sleep(0.005)
        # the producer keeps acquiring after the final stop (what it sends now stays
        # unacknowledged); without this wait it may be halted before its next frame
        sent = prod.sent
        while prod.sent < sent + 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        prod.halt.set()
        prod.join(30)  # close(timeout=20) must not wait for acks that never come
        assert not prod.is_alive(), "the link's close hung after a final stop"
    finally:
        prod.halt.set()
        prod.join(5)
    src = prod.summary
    assert src is not None
    assert src["stop_reason"] == "test: closing" and src["ingest_closed"] is True
    # one to stop, one final (which can be lost with the connection: the disconnect
    # after a stop counts as final then)
    assert src["stops_received"] in (1, 2)
    # nothing silently lost: acquired == acked + gaps + unacked, acked == persisted
    assert (
        src["frames_acquired"]
        == src["frames_acked"] + src["frames_in_gaps"] + src["frames_unacked"]
    )
    assert (
        src["frames_acked"]
        <= len(persisted)
        == isum["streams"]["cam0"]["frames_persisted"]
    )
    assert src["frames_unacked"] > 0 and src["end_acked"] is False
    assert isum["stop_sent"] == 2


def test_stop_messages_are_validated(tmp_path: Path) -> None:
    """A fake ingest (raw ROUTER) answers the hello, then sends malformed stops: each
    is rejected and counted; only a valid stop for this session stops the source."""
    ep = f"ipc://{tmp_path}/fake.ipc"
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(ep)
    link = SourceLink(
        SourceLinkConfig(endpoint=ep, stream="cam0", shape=SHAPE, ring_frames=8)
    ).start()
    try:
        # answer every hello until the link is ready: it re-sends its hello every
        # hello_interval_s and takes only the answer to the newest one
        deadline = time.monotonic() + 20
        while not link.wait_ready(0.01):
            assert time.monotonic() < deadline, "the source link never became ready"
            if not router.poll(100):
                continue
            peer, *hello = router.recv_multipart()
            h = decode_control(hello, "hello")
            session = h["session"]
            router.send_multipart(
                [peer]
                + encode_control(
                    "ready",
                    stream="cam0",
                    session=session,
                    n=h["n"],
                    upto=-1,
                    credit=8,
                )
            )
        bad = [
            {"stream": "cam0", "session": session},  # no reason
            {"stream": "cam0", "session": session, "reason": ""},
            {"stream": "cam0", "session": session, "reason": "x" * 257},
            {"stream": "cam0", "session": session, "reason": 7},
            {"stream": "cam0", "session": session, "reason": "r", "final": "yes"},
            {"stream": "other", "session": session, "reason": "r"},  # wrong stream
            {"stream": "cam0", "session": session, "reason": "r", "n": -1},
        ]
        for fields in bad:
            router.send_multipart([peer] + encode_control("stop", **fields))
        # a stop for an earlier session of the stream is ignored, not an error
        router.send_multipart(
            [peer]
            + encode_control("stop", stream="cam0", session="old", reason="stale")
        )
        deadline = time.monotonic() + 10
        while (
            link.summary()["control_rejected"] < len(bad)
            and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        s = link.summary()
        assert s["control_rejected"] == len(bad)
        assert not link.stop_requested.is_set() and s["stop_reason"] is None
        router.send_multipart(
            [peer]
            + encode_control(
                "stop", stream="cam0", session=session, reason="disk full", final=True
            )
        )
        assert link.stop_requested.wait(10)
        s = link.close(timeout=20)
    finally:
        link.close(timeout=0)
        router.close()
        ctx.term()
    assert s["stop_reason"] == "disk full" and s["ingest_closed"] is True
    assert s["control_rejected"] == len(bad) and s["stops_received"] == 1


# --------------------------------------------------------------- two processes
CONFIG = """
[esrrf]
window = 10
stride = 10
magnification = 2
radius = 1.5

[drift]
enabled = false

[stream]
latency_budget_ms = 100000.0
ring_mb = 1.0

[sim]
seed = 2
[sim.camera]
shape = [32, 32]
interval_ms = 10.0
exposure_ms = 10.0
stamp_index = true
"""


def _livesr(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "livesr.stream", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _two_roles(tmp_path: Path, listen_extra: list[str]):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    ep = f"ipc://{tmp_path}/ingest.ipc"
    out = tmp_path / "out"
    common = ["run", "--config", str(cfg), "--no-status"]
    listen = _livesr(
        *common,
        "--listen",
        ep,
        "--output",
        str(out),
        *listen_extra,
        log=tmp_path / "listen.log",
    )
    deadline = time.monotonic() + 60  # the pipeline is up before the camera starts
    while "listening on" not in (tmp_path / "listen.log").read_text():
        if listen.poll() is not None or time.monotonic() > deadline:
            _finish(listen, timeout=1)
            pytest.fail((tmp_path / "listen.log").read_text())
        time.sleep(0.05)
    # --frames 0: acquire until stopped (only the pipeline's stop ends it)
    connect = _livesr(
        *common, "--connect", ep, "--frames", "0", log=tmp_path / "connect.log"
    )
    return listen, connect, out


def _finish(*procs: subprocess.Popen, timeout: float = 90.0) -> list[int]:
    codes = []
    try:
        for p in procs:
            codes.append(p.wait(timeout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    return codes


def _connect_line(tmp_path: Path) -> tuple[str, int, int, int, int]:
    text = (tmp_path / "connect.log").read_text()
    line = next(x for x in text.splitlines() if x.startswith("livesr run: sent "))
    words = line.replace(",", "").split()
    sent, acked, gaps, unacked = (
        int(words[3]),
        int(words[7]),
        int(words[9]),
        int(words[12]),
    )
    return text, sent, acked, gaps, unacked


def test_listen_frames_limit_stops_the_remote_acquisition(tmp_path: Path) -> None:
    listen, connect, out = _two_roles(tmp_path, ["--frames", "150"])
    rc_connect, rc_listen = _finish(connect, listen)
    text, sent, acked, gaps, unacked = _connect_line(tmp_path)
    assert (rc_connect, rc_listen) == (0, 0), text
    assert "stopped by the pipeline: the pipeline stopped acquisition" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["source_ended"] is True and s["accounting_ok"] is True
    assert s["frames_acquired"] == sent == acked + gaps and unacked == 0
    assert s["frames_persisted"] == acked >= 150 and s["frames_in_gaps"] == gaps == 0


def test_listen_interrupted_stops_the_remote_acquisition(tmp_path: Path) -> None:
    listen, connect, out = _two_roles(tmp_path, [])
    try:
        # frames/seq is appended per persisted frame (8 bytes each)
        seqs = out / "raw.ome.zarr" / "frames" / "seq" / "c" / "0"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # frames are flowing
            if seqs.is_file() and seqs.stat().st_size // 8 >= 50:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no frames reached the listening pipeline")
        listen.send_signal(signal.SIGINT)  # Ctrl-C on the processing side
    except BaseException:
        _finish(listen, connect, timeout=1)
        raise
    rc_connect, rc_listen = _finish(connect, listen)
    text, sent, acked, gaps, unacked = _connect_line(tmp_path)
    assert (rc_connect, rc_listen) == (0, 0), text
    assert "stopped by the pipeline: the pipeline is closing" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["source_ended"] is True and s["accounting_ok"] is True
    assert s["frames_acquired"] == sent == s["frames_persisted"] == acked >= 50
    assert gaps == unacked == 0
