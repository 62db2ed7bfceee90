"""The transport measurement of ``livesr bench --report``: a paced
:class:`~livesr.stream._transport.SourceLink` in this process sending to an
:class:`~livesr.stream._ingest.Ingest` in a child process over ``ipc://``."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

_INGEST_CHILD = r"""
import sys, time, threading
import numpy as np
from livesr.stream._ingest import Ingest, IngestConfig

endpoint, out = sys.argv[1], sys.argv[4]
n, frame_bytes = int(sys.argv[2]), int(sys.argv[3])
lat = np.zeros(n); age = np.zeros(n); seen = np.zeros(n, np.int64); bad = [0]
done = threading.Event()

def on_frame(header, frame):
    now = time.time()
    s = header.seq
    if int(frame[0, 0]) != (s & 0xFFFF) or int(frame[-1, -1]) != ((s >> 16) & 0xFFFF):
        bad[0] += 1
    lat[s] = now - header.t_send
    age[s] = now - header.t_acq
    seen[s] += 1

ingest = Ingest(IngestConfig(endpoint=endpoint, window=16, max_frame_bytes=frame_bytes),
                on_frame, on_end=lambda s, summary: done.set()).start()
sys.stdout.write("bound\n"); sys.stdout.flush()
done.wait(600)
ingest.close()
np.savez(out, lat=lat, age=age, seen=seen, bad=np.array(bad))
"""


def measure_transport(
    shape: tuple[int, int], fps: float, seconds: float, ring_frames: int = 256
) -> dict[str, Any]:
    """SourceLink (this process) -> Ingest (a child process) over ``ipc://``, paced.

    The producer stamps each frame's seq into two pixels and sends ``fps`` frames/s
    for ``seconds``; the child checks the stamps and records, per frame, the wire
    latency ``receive - t_send`` and the age ``receive - t_acq``.

    Returns
    -------
    dict
        Counters (``frames``, ``received``, ``lost``, ``duplicates``, ``corrupted``,
        ``frames_in_gaps``, ``producer_late``), rates and the per-frame latency and
        age arrays in ms (``latency_ms``, ``age_ms``).
    """
    n = max(1, int(fps * seconds))
    frame_bytes = shape[0] * shape[1] * 2
    with tempfile.TemporaryDirectory(prefix="livesr-report-") as folder:
        endpoint = f"ipc://{folder}/transport.ipc"
        out = f"{folder}/transport.npz"
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _INGEST_CHILD,
                endpoint,
                str(n),
                str(frame_bytes),
                out,
            ],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        try:
            line = child.stdout.readline()
            if line != b"bound\n":
                raise RuntimeError(
                    f"the ingest child process did not start (said {line!r}); run "
                    "'python -c \"import livesr.stream._ingest\"' to see why"
                )
            sent = _send_paced(endpoint, shape, fps, n, ring_frames)
            if child.wait(60) != 0:
                raise RuntimeError(
                    f"the ingest child process exited with {child.returncode}"
                )
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            child.stdout.close()
        with np.load(out) as z:
            lat, age, seen, bad = z["lat"], z["age"], z["seen"], int(z["bad"][0])
    got = seen > 0
    summary = sent["summary"]
    gaps = int(summary["frames_in_gaps"])
    t0, t_sent, t_done = sent["t0"], sent["t_sent"], sent["t_done"]
    return {
        "shape": list(shape),
        "offered_fps": fps,
        "seconds": seconds,
        "frames": n,
        "received": int(got.sum()),
        "lost": int(n - got.sum() - gaps),
        "frames_in_gaps": gaps,
        "duplicates": int((seen > 1).sum()),
        "corrupted": bad,
        "producer_late": sent["late"],
        "producer_fps": n / (t_sent - t0),
        "achieved_fps": n / (t_done - t0),
        "MB_per_s": n * frame_bytes / (t_done - t0) / 1e6,
        "ring_peak": summary.get("ring_peak"),
        "latency_ms": (lat[got] * 1e3).tolist(),
        "age_ms": (age[got] * 1e3).tolist(),
    }


def _send_paced(
    endpoint: str, shape: tuple[int, int], fps: float, n: int, ring_frames: int
) -> dict[str, Any]:
    """Send ``n`` seq-stamped frames at ``fps`` through a SourceLink to ``endpoint``
    and close it; returns the link's ``summary``, the frames sent later than one
    period (``late``) and the ``perf_counter`` times of the first send (``t0``), the
    last send (``t_sent``) and the link's close (``t_done``)."""
    from livesr.stream._transport import SourceLink, SourceLinkConfig

    link = SourceLink(
        SourceLinkConfig(
            endpoint=endpoint,
            stream="report",
            shape=shape,
            ring_frames=ring_frames,
            overflow="continue",
        )
    ).start()
    frames = [
        np.random.default_rng(i).integers(0, 4000, shape, dtype=np.uint16)
        for i in range(2)
    ]
    try:
        if not link.wait_ready(10):
            raise RuntimeError("the ingest did not answer the handshake in 10 s")
        period = 1.0 / fps
        late = 0
        t0 = time.perf_counter()
        for s in range(n):
            wait = t0 + s * period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -period:
                late += 1
            f = frames[s & 1]
            f[0, 0] = s & 0xFFFF
            f[-1, -1] = (s >> 16) & 0xFFFF
            link.send(f, t_acq=time.time(), timeout=0.0)
        t_sent = time.perf_counter()
        summary = link.close(timeout=30)
        t_done = time.perf_counter()
    finally:
        link.close(timeout=0)
    return {
        "summary": summary,
        "late": late,
        "t0": t0,
        "t_sent": t_sent,
        "t_done": t_done,
    }
