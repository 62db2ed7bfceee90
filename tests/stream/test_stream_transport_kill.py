"""The ingest runs in a child process that is SIGKILLed mid-stream and restarted.

The child persists one text record per frame (``seq ok|BAD``) to an append-only file
and resumes from the last complete record after a restart; the test checks that every
seq is persisted exactly once, uncorrupted, and that the source replayed at most one
credit window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from livesr.stream._transport import SourceLink, SourceLinkConfig

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="SIGKILL and ipc are POSIX-only"
)

WINDOW = 8

CHILD = r"""
import os, sys, threading
from livesr.stream._ingest import Ingest, IngestConfig

endpoint, store = sys.argv[1], sys.argv[2]
# drop a record torn by the previous SIGKILL, then resume after the last complete one
last = -1
if os.path.exists(store):
    with open(store, "rb") as f:
        data = f.read()
    keep = data[: data.rfind(b"\n") + 1]
    with open(store, "wb") as f:
        f.write(keep)
    lines = keep.splitlines()
    last = int(lines[-1].split()[0]) if lines else -1
fd = os.open(store, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
done = threading.Event()

def on_frame(header, frame):
    ok = bool((frame == (header.seq & 0xFFFF)).all())
    os.write(fd, b"%d %s\n" % (header.seq, b"ok" if ok else b"BAD"))

ingest = Ingest(IngestConfig(endpoint=endpoint, window=WINDOW_), on_frame,
                resume=lambda stream, session: last,  # one source session here
                on_end=lambda s, summary: done.set())
ingest.start()
sys.stdout.write("bound\n"); sys.stdout.flush()
done.wait(120)
ingest.close()
os.close(fd)
""".replace("WINDOW_", str(WINDOW))


def _records(path) -> list[tuple[int, str]]:
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    return [
        (int(a), b.decode())
        for a, b in (
            line.split() for line in data[: data.rfind(b"\n") + 1].splitlines()
        )
    ]


def _spawn(endpoint: str, store: str, log) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, endpoint, store],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"bound\n"  # bound before we go on (no sleeps)
    return child


CASES = [
    # frames, shape, frames/s (0: bursts of 10 every 5 ms, ~2 kHz), ring, kill after
    pytest.param(2000, (64, 64), 0, 2000, 700, id="2000x64x64"),
    *(
        pytest.param(
            3000, (256, 256), 500, 1024, 1000, id=f"R1-run{i}", marks=pytest.mark.slow
        )
        for i in range(3)
    ),
]


@pytest.mark.parametrize(("n", "shape", "rate", "ring", "kill_after"), CASES)
def test_ingest_process_sigkilled_and_restarted(
    tmp_path, n, shape, rate, ring, kill_after
):
    endpoint = f"ipc://{tmp_path}/k.ipc"
    store = str(tmp_path / "store.txt")
    children: list[subprocess.Popen] = []
    with open(tmp_path / "child.log", "wb") as log:
        children.append(_spawn(endpoint, store, log))
        link = SourceLink(
            SourceLinkConfig(
                endpoint=endpoint, stream="cam0", shape=shape, ring_frames=ring
            )
        ).start()

        def produce() -> None:  # never waits for the consumer
            t0 = time.perf_counter()
            for seq in range(n):
                if rate:
                    wait = t0 + seq / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                elif seq % 10 == 0:
                    time.sleep(0.005)
                link.send(np.full(shape, seq & 0xFFFF, np.uint16))

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            deadline = time.monotonic() + 30
            while len(_records(store)) < kill_after and time.monotonic() < deadline:
                time.sleep(0.005)
            children[0].send_signal(signal.SIGKILL)
            assert children[0].wait(10) == -signal.SIGKILL
            killed_at = len(_records(store))
            children.append(_spawn(endpoint, store, log))
            producer.join(60)
            summary = link.close(timeout=30)
            assert children[1].wait(30) == 0
        finally:
            producer.join(5)
            link.close(timeout=0)
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(10)
                child.stdout.close()
    records = _records(store)
    seqs = [s for s, _ in records]
    assert kill_after <= killed_at < n  # killed mid-stream
    assert sorted(seqs) == list(range(n))  # 0 lost, every seq persisted exactly once
    assert seqs == list(range(n))  # and in order
    assert {flag for _, flag in records} == {"ok"}  # 0 corrupted
    assert summary["frames_acked"] == n and summary["end_acked"]
    assert summary["frames_replayed"] <= WINDOW
    assert summary["frames_in_gaps"] == 0
    assert summary["ingest"]["accounting_ok"] is True
