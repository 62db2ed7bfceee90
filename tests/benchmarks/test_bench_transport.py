"""Transport alone (SourceLink -> Ingest, ipc) at camera rate: loss, latency, rate.

``python -m pytest tests/benchmarks/test_bench_transport.py --benchmark-only -s`` or
``python tests/benchmarks/test_bench_transport.py [seconds]``.

A paced producer sends ``rate`` frames/s for ``seconds``; the ingest's ``on_frame``
checks the seq stamped into the pixels and records ``latency = receive time -
header.t_send`` (the wire alone) and ``age = receive time - header.t_acq`` (ring +
credit wait + wire).  Targets (STREAMING.md tier A): 0 lost, 0 corrupted, p99 <= 10 ms.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pytest

from livesr.stream._transport import SourceLink, SourceLinkConfig

CASES = {
    "512x512@1000": ((512, 512), 1000.0, 256),
    "2048x2048@100": ((2048, 2048), 100.0, 32),
}


CHILD = r"""
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
cpu0 = time.process_time()
done.wait(600)
cpu = time.process_time() - cpu0
ingest.close()
np.savez(out, lat=lat, age=age, seen=seen, bad=np.array(bad), cpu=np.array([cpu]))
"""


def run_case(
    shape: tuple[int, int],
    rate: float,
    ring: int,
    seconds: float,
    folder: str,
    frames: int = 0,
    zero_copy: bool = False,
) -> dict[str, Any]:
    """Source in this process, ingest in a child process (as in a real deployment).

    ``rate`` 0: unpaced (``send`` waits for ring space) for ``frames`` frames.
    ``zero_copy``: acquire into the ring (``reserve``/``commit``) instead of ``send``.
    """
    n = int(rate * seconds) if rate > 0 else frames
    endpoint = f"ipc://{folder}/bench-{shape[0]}.ipc"
    out = f"{folder}/bench-{shape[0]}.npz"
    frame_bytes = shape[0] * shape[1] * 2
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, endpoint, str(n), str(frame_bytes), out],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == b"bound\n"
        link = SourceLink(
            SourceLinkConfig(
                endpoint=endpoint,
                stream="bench",
                shape=shape,
                ring_frames=ring,
                overflow="continue",
            )
        ).start()
        frames = [
            np.random.default_rng(i).integers(0, 4000, shape, dtype=np.uint16)
            for i in range(2)
        ]
        try:
            assert link.wait_ready(10)
            period = 1.0 / rate if rate > 0 else 0.0
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            late = 0
            for s in range(n):
                target = t0 + s * period
                wait = target - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif rate > 0 and wait < -period:
                    late += 1
                wait_s = 0.0 if rate > 0 else 30.0
                buf = link.reserve(timeout=wait_s) if zero_copy else None
                f = frames[s & 1] if buf is None else buf  # reserve: camera -> ring
                f[0, 0] = s & 0xFFFF
                f[-1, -1] = (s >> 16) & 0xFFFF
                if buf is None:
                    link.send(f, t_acq=time.time(), timeout=wait_s)
                else:
                    link.commit(buf, t_acq=time.time())
            t_sent = time.perf_counter()
            summary = link.close(timeout=30)
            t_done = time.perf_counter()
            cpu_source = time.process_time() - cpu0
        finally:
            link.close(timeout=0)
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
    with np.load(out) as z:
        lat, age, seen, bad = z["lat"], z["age"], z["seen"], int(z["bad"][0])
        cpu_ingest = float(z["cpu"][0])
    got = seen > 0
    return {
        "frames": n,
        "received": int(got.sum()),
        "lost": int(n - got.sum() - summary["frames_in_gaps"]),
        "duplicates": int((seen > 1).sum()),
        "corrupted": bad,
        "frames_in_gaps": summary["frames_in_gaps"],
        "producer_late": late,
        "offered_fps": rate,
        "achieved_fps": n / (t_done - t0),
        "producer_fps": n / (t_sent - t0),
        "MB_per_s": n * frame_bytes / (t_done - t0) / 1e6,
        "latency_ms_p50": float(np.percentile(lat[got], 50) * 1e3),
        "latency_ms_p99": float(np.percentile(lat[got], 99) * 1e3),
        "latency_ms_max": float(lat[got].max() * 1e3),
        "age_ms_p50": float(np.percentile(age[got], 50) * 1e3),
        "age_ms_p99": float(np.percentile(age[got], 99) * 1e3),
        "ring_peak": summary["ring_peak"],
        # CPU per frame (all threads of each process; load-independent-ish)
        "source_cpu_us_per_frame": cpu_source / n * 1e6,
        "ingest_cpu_us_per_frame": cpu_ingest / n * 1e6,
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bench_transport_ipc(benchmark, case, tmp_path):
    shape, rate, ring = CASES[case]
    benchmark.group = "transport-ipc-paced"
    result = benchmark.pedantic(
        run_case, args=(shape, rate, ring, 3.0, str(tmp_path)), rounds=1, iterations=1
    )
    benchmark.extra_info.update(result)
    assert (
        result["lost"] == 0 and result["corrupted"] == 0 and result["duplicates"] == 0
    )
    assert result["frames_in_gaps"] == 0


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    with tempfile.TemporaryDirectory() as d:
        for name, (shape, rate, ring) in CASES.items():
            size = name.split("@")[0]
            for label, kwargs in (
                (name, {}),
                (f"{size}@max", {"frames": int(rate * secs)}),
                (
                    f"{size}@max reserve/commit",
                    {"frames": int(rate * secs), "zero_copy": True},
                ),
            ):
                r = run_case(
                    shape, rate if not kwargs else 0.0, ring, secs, d, **kwargs
                )
                sys.stdout.write(
                    f"{label}: "
                    + ", ".join(
                        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r.items()
                    )
                    + "\n"
                )
