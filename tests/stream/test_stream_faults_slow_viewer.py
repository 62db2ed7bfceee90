"""R5: a viewer far slower than the stream (PUB/SUB) does not slow the pipeline.

The same workload (unpaced 32x32 frames, a window image after every frame) runs
through a :class:`Pipeline` alternately without a viewer and with a slow viewer in
another process (it looks at one image every 100 ms), side by side in one test:
A, B, A, B.  Checked: with the viewer every frame is persisted and every scheduled
window published (the pipeline never blocks on it), the viewer knows how many images
it missed (index gaps + drained) and missed most of them, and the pipeline's
throughput and latency stay within a bound of the viewer-less runs.

The criterion is +-5 %; on a loaded 2-core CI machine run-to-run noise alone exceeds
that, so CI asserts throughput >= 75 % and p50 latency <= 1.5x + 5 ms of the
viewer-less run; the 5 % figure is measured in repeated runs (see the report).
``LIVESR_R5_REPORT=FILE`` writes the measured pairs as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livesr.stream._config import LivesrConfig
from livesr.stream._pipeline import Pipeline
from livesr.stream._transport import SourceLink, SourceLinkConfig

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="ipc is POSIX-only")

SHAPE = (32, 32)
N = 1500

VIEWER = r"""
import json, signal, sys, time
from livesr.stream._pubsub import LatestSubscriber
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
# a queue deeper than the copies re-sent at close: a SUB whose queue is full drops
# what arrives meanwhile, which lost the final image ~1 run in 3 under load
sub = LatestSubscriber(sys.argv[1], hwm=64).start()
sys.stdout.write("up\n"); sys.stdout.flush()
seen = []
while not stop:
    msg = sub.latest(timeout_ms=100)
    if msg is not None:
        seen.append(json.loads(msg[0].bytes)["index"])
        time.sleep(0.1)  # a slow viewer: one image every 100 ms
# last round: what was still on its way (the socket buffer holds more than the
# SUB queue of 2), until nothing came for 1.5 s (a loaded machine)
while (msg := sub.latest(timeout_ms=1500)) is not None:
    last = json.loads(msg[0].bytes)["index"]
if "last" in dir():
    seen.append(last)
sub.close()
sys.stdout.write(json.dumps({"seen": seen, "received": sub.received,
                             "drained": sub.dropped}) + "\n")
"""


def cheap_map(frame, params, *, shift=(0.0, 0.0), out=None):
    m = params.magnification
    big = np.repeat(np.repeat(np.asarray(frame, np.float32), m, 0), m, 1)
    if out is None:
        return big
    out[...] = big
    return out


def _run(
    tmp_path: Path,
    tag: str,
    viewer: bool,
    pipeline_config: Callable[..., LivesrConfig],
) -> dict[str, Any]:
    cfg = pipeline_config(tmp_path / tag, window=4, stride=1, radius=1.0, ring_mb=1.0)
    pub = f"ipc://{tmp_path}/{tag}-pub.ipc"
    pipe = Pipeline(
        cfg, endpoint=f"ipc://{tmp_path}/{tag}-in.ipc", publish=pub, frame_map=cheap_map
    ).start()
    child = None
    try:
        assert pipe.ready.wait(60)
        if viewer:
            child = subprocess.Popen(
                [sys.executable, "-c", VIEWER, pub], stdout=subprocess.PIPE, text=True
            )
            assert child.stdout is not None and child.stdout.readline() == "up\n"
            time.sleep(0.3)  # subscribed before the first image
        link = SourceLink(
            SourceLinkConfig(
                endpoint=pipe.endpoint, stream="r5", shape=SHAPE, ring_frames=256
            )
        ).start()
        rng = np.random.default_rng(5)
        frames = rng.integers(0, 4000, (64, *SHAPE), dtype=np.uint16)
        t0 = time.perf_counter()
        for seq in range(N):
            # as fast as processing goes (persistence alone is faster than an image
            # per frame): at most 64 frames ahead of it, so no window is skipped and
            # the rate measured is the pipeline's, with or without the viewer
            give_up = time.monotonic() + 30
            while pipe.progress()["frames_processed"] < seq - 64:
                assert time.monotonic() < give_up, "processing stalled"
                time.sleep(0.0005)
            link.send(frames[seq % 64], timeout=30)
        link.close(timeout=60)
        assert pipe.wait(120)
        wall = time.perf_counter() - t0
    finally:
        summary = pipe.close()
    out: dict[str, Any] = {
        "fps": N / wall,
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "summary": summary,
    }
    if child is not None:
        time.sleep(2.0)  # the final image (re-sent at close) is on its way (loaded CI)
        child.terminate()
        text, _ = child.communicate(timeout=60)
        child.stdout.close()  # type: ignore[union-attr]
        out["viewer"] = json.loads(text.strip().splitlines()[-1])
    return out


def test_slow_viewer_does_not_slow_the_pipeline(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    runs = {"alone": [], "viewer": []}
    for i in range(2):  # side by side: A, B, A, B
        runs["alone"].append(_run(tmp_path, f"a{i}", False, pipeline_config))
        runs["viewer"].append(_run(tmp_path, f"b{i}", True, pipeline_config))
    scheduled = N - 4 + 1
    for r in runs["alone"] + runs["viewer"]:
        s = r["summary"]
        assert s["frames_persisted"] == N and s["accounting_ok"] is True
        assert s["windows_published"] == scheduled and s["windows_skipped"] == 0
    for r in runs["viewer"]:
        v = r["viewer"]
        seen = v["seen"]  # the final image is re-sent at close: copies possible
        assert seen == sorted(seen) and seen[-1] == scheduled - 1  # the final image
        shown = sorted(set(seen))
        missed = shown[-1] + 1 - len(shown)  # the drop count a viewer shows
        assert missed > scheduled // 2  # it was far too slow to see them all
        assert len(shown) + missed == scheduled
    fps_a = sum(r["fps"] for r in runs["alone"]) / 2
    fps_b = sum(r["fps"] for r in runs["viewer"]) / 2
    p50_a = sum(r["p50_ms"] for r in runs["alone"]) / 2
    p50_b = sum(r["p50_ms"] for r in runs["viewer"]) / 2
    report = os.environ.get("LIVESR_R5_REPORT")
    if report:
        Path(report).write_text(
            json.dumps(
                {
                    k: [
                        {"fps": r["fps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}
                        | (
                            {
                                "viewer": {
                                    **r["viewer"],
                                    "seen": len(r["viewer"]["seen"]),
                                }
                            }
                            if "viewer" in r
                            else {}
                        )
                        for r in v
                    ]
                    for k, v in runs.items()
                },
                indent=1,
            )
        )
    assert fps_b >= 0.75 * fps_a, (fps_a, fps_b)
    assert p50_b <= 1.5 * p50_a + 5.0, (p50_a, p50_b)
