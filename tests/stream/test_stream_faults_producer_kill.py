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

import csv
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from livesr.stream._config import LivesrConfig
from livesr.stream._pipeline import Pipeline
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


def _kill_once_delivered(
    procs: list[subprocess.Popen], delivered: Callable[[], int], n: int
) -> None:
    """SIGKILL the running producer once ``delivered()`` reaches ``n`` frames."""
    deadline = time.monotonic() + 60
    while delivered() < n:
        assert time.monotonic() < deadline, "the first producer never delivered"
        time.sleep(0.002)
    procs[-1].send_signal(signal.SIGKILL)
    assert procs[-1].wait(10) == -signal.SIGKILL
    time.sleep(0.2)  # frames already on the wire are persisted meanwhile


def _reap(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        if p.stdout is not None:
            p.stdout.close()


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
        _kill_once_delivered(procs, lambda: len(got), 500)
        with lock:
            e = len(got)  # frames 0..e-1 persisted from the killed session
        first_new = e + 300  # the camera ran on for 300 frames during the outage
        procs.append(_spawn(ep, first_new, 1000))
        out, _ = procs[1].communicate(timeout=60)
        assert procs[1].returncode == 0, out
        assert ended.wait(10)
    finally:
        _reap(procs)
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


def _replicate(frame, params, *, shift=(0.0, 0.0), out=None):  # type: ignore[no-untyped-def]
    """Stand-in per-frame map (pixel replication): processing nearly free."""
    m = params.magnification
    big = np.repeat(np.repeat(np.asarray(frame, np.float32), m, 0), m, 1)
    if out is None:
        return big
    out[...] = big
    return out


def test_pipeline_numbers_on_a_source_restarted_at_seq_zero(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    """A camera whose counter was reset: the new session starts at seq 0 again.

    The pipeline must not take its frames for old ones (nor crash processing): they
    are numbered on from the last frame seen, persisted, processed and accounted.
    """
    cfg = pipeline_config(
        tmp_path / "out", window=4, stride=4, budget_ms=None, ring_mb=1.0
    )
    pipe = Pipeline(
        cfg, endpoint=f"ipc://{tmp_path}/r2p.ipc", frame_map=_replicate
    ).start()
    procs: list[subprocess.Popen] = []
    try:
        assert pipe.ready.wait(60.0)
        procs.append(_spawn(pipe.endpoint, 0, 100_000))
        _kill_once_delivered(procs, lambda: pipe.snapshot()["frames_persisted"], 300)
        seen = pipe.snapshot()["frames_persisted"]
        procs.append(_spawn(pipe.endpoint, 0, 400))  # counter reset: seq 0 again
        out, _ = procs[1].communicate(timeout=60)
        assert procs[1].returncode == 0, out
        assert pipe.wait(60.0), "pipeline did not finish"
    finally:
        _reap(procs)
        summary = pipe.close()
    assert summary["processing_error"] is None
    (restart,) = summary["source_restarts"]
    e = restart["seq"]  # frames the killed session delivered (0..e-1)
    assert restart["source_seq"] == 0 and e >= seen
    assert summary["frames_persisted"] == e + 400
    assert summary["frames_acquired"] == e + 400 and summary["frames_in_gaps"] == 0
    assert summary["accounting_ok"] is True
    # every frame on disk once, in order; the new session's stamps restart at 0
    raw = zarr.open_group(str(tmp_path / "out" / "raw.ome.zarr"), mode="r")
    stamps = np.asarray(raw["0"][:, 0, 0, 0, 0]).astype(np.int64)
    assert stamps.tolist() == list(range(e)) + list(range(400))
    seqs = np.asarray(raw["frames"]["seq"][:]).tolist()
    assert seqs == list(range(e + 400))
    # processing went on across the restart: windows up to the last frame
    assert summary["frames_processed"] + summary["frames_not_processed"] == e + 400
    with open(tmp_path / "out" / "windows.csv") as fh:
        last = [int(r["last_frame"]) for r in csv.DictReader(fh)]
    assert last and last[-1] >= e + 400 - 4
