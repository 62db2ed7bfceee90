"""R2: the acquisition (source) process is SIGKILLed mid-stream and restarted.

The ingest runs here (its own thread); the producer is a child process pushing
stamped frames through a :class:`SourceLink` at ~1 kHz.  It is killed after 500
frames were persisted; a new producer process (new session) starts at the camera's
frame counter ``F`` (``first_seq``: the camera ran on during the outage).  Checked:
no hang, the new session is accepted, the ingest records exactly the frames it
never got (``[E, F-1]``, E = first seq not persisted) as one gap, every other frame
is persisted exactly once, in order and uncorrupted, and the stream's accounting
(``acquired - resumed_from == persisted + gaps``) holds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from livesr.stream._transport import Ingest, IngestConfig

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="SIGKILL and ipc are POSIX-only"
)

CHILD = r"""
import sys, time
import numpy as np
from livesr.stream._transport import SourceLink, SourceLinkConfig
endpoint, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
link = SourceLink(SourceLinkConfig(endpoint=endpoint, stream="cam", shape=(16, 16),
                                   ring_frames=512, first_seq=first)).start()
sys.stdout.write("up\n"); sys.stdout.flush()
t0 = time.perf_counter()
for i in range(n):
    wait = t0 + i / 1000.0 - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    link.send(np.full((16, 16), (first + i) & 0xFFFF, np.uint16), timeout=10)
s = link.close(timeout=30)
sys.stdout.write("done %d %d %s\n" % (s["frames_acked"], s["frames_unacked"],
                                      s["session"]))
"""


def _spawn(ep: str, first: int, n: int) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, ep, str(first), str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline() == "up\n"
    return p


def test_producer_killed_and_restarted_reports_exact_gap(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/r2.ipc"
    lock = threading.Lock()
    got: list[tuple[str, int, bool]] = []
    gaps: list[tuple[int, int]] = []
    ended = threading.Event()
    ingest: Ingest

    def on_frame(h, f) -> None:
        with lock:
            got.append(
                (ingest.session("cam"), h.seq, bool((f == (h.seq & 0xFFFF)).all()))
            )

    ingest = Ingest(
        IngestConfig(endpoint=ep, window=16),
        on_frame,
        on_gap=lambda s, a, b: gaps.append((a, b)),
        on_end=lambda s, summ: ended.set(),
    ).start()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_spawn(ep, 0, 100_000))  # would run for 100 s
        deadline = time.monotonic() + 60
        while len(got) < 500:
            assert time.monotonic() < deadline, "the first producer never delivered"
            time.sleep(0.002)
        procs[0].send_signal(signal.SIGKILL)
        assert procs[0].wait(10) == -signal.SIGKILL
        time.sleep(0.2)  # frames already on the wire are persisted meanwhile
        with lock:
            e = len(got)  # frames 0..e-1 persisted from the killed session
        first_new = e + 300  # the camera ran on for 300 frames during the outage
        procs.append(_spawn(ep, first_new, 1000))
        out, _ = procs[1].communicate(timeout=60)
        assert procs[1].returncode == 0, out
        assert ended.wait(10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            if p.stdout is not None:
                p.stdout.close()
        isum = ingest.close()
    acked, unacked, new_session = out.split()[1:]
    assert (int(acked), int(unacked)) == (1000, 0)
    sessions = [s for s, _, _ in got]
    old_session = sessions[0]
    assert new_session != old_session
    seqs = [q for _, q, _ in got]
    # exactly once, in order, uncorrupted; nothing between E and F
    assert seqs == list(range(e)) + list(range(first_new, first_new + 1000))
    assert all(ok for _, _, ok in got)
    assert sessions == [old_session] * e + [new_session] * 1000
    # the gap: exactly the frames never delivered, reported once
    assert gaps == [(e, first_new - 1)]
    st = isum["streams"]["cam"]
    assert st["session"] == new_session and st["ended"] is True
    assert st["gaps"] == [[e, first_new - 1]]
    assert st["frames_in_reported_gaps"] == 300
    assert st["resumed_from"] == e and st["frames_acquired"] == first_new + 1000
    assert st["accounting_ok"] is True and st["duplicates"] == 0
    (prev,) = isum["previous_sessions"]
    assert prev["session"] == old_session and prev["ended"] is False
    assert prev["frames_persisted"] == e
    assert isum["rejected"] == 0
