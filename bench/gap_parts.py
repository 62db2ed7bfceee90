"""How long a long ring-overflow gap takes to reach the ingest.

The ingest accepts a ``gap`` only within the credit it granted, so the source sends a
gap of N frames in ``N / window`` parts, one round trip each.  This script loses N
frames while the ingest is down, restarts it and times until everything is
acknowledged.

Usage: ``python bench/gap_parts.py [N ...]`` (default 1000 100000).
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

from livesr.stream._transport import Ingest, IngestConfig, SourceLink, SourceLinkConfig

SHAPE = (64, 64)
WINDOW = 16


def run(n_lost: int) -> None:
    persisted: set[int] = set()
    gaps: list[tuple[int, int]] = []

    def on_frame(header, frame):
        persisted.add(header.seq)

    def resume(stream, session):
        return max(persisted, default=-1)

    ep = f"ipc://{tempfile.mkdtemp()}/i.ipc"
    cfg = IngestConfig(endpoint=ep, window=WINDOW)
    first = Ingest(cfg, on_frame, resume=resume).start()
    link = SourceLink(
        SourceLinkConfig(
            endpoint=ep,
            stream="cam0",
            shape=SHAPE,
            dtype="uint16",
            ring_frames=32,
            overflow="continue",
        )
    ).start()
    frame = np.zeros(SHAPE, np.uint16)
    for _ in range(10):
        link.send(frame)
    assert link.wait_acked(20)
    first.close()
    for _ in range(32 + n_lost):  # 32 fit in the ring, n_lost become a gap
        link.send(frame)
    t0 = time.perf_counter()
    second = Ingest(
        cfg, on_frame, resume=resume, on_gap=lambda s, a, b: gaps.append((a, b))
    ).start()
    for _ in range(5):
        link.send(frame, timeout=60)
    assert link.wait_acked(120)
    dt = time.perf_counter() - t0
    link.close(timeout=20)
    st = second.close()["streams"]["cam0"]
    print(
        f"gap of {n_lost} frames, window {WINDOW}: acknowledged {dt:.2f} s after the "
        f"ingest restarted, in {len(gaps)} part(s); ingest gaps {st['gaps']}, "
        f"accounting {st['frames_persisted']} + {st['frames_in_reported_gaps']} == "
        f"{st['next_seq'] - st['resumed_from']}"
    )


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [1000, 100000]:
        run(n)
