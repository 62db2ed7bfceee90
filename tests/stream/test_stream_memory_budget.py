"""The memory budget of a run (issue 16): stated in ``summary.json`` ``memory`` before
processing, the peak resident memory measured at the end, and a replay of a 120-frame
256x256 recording stays within it (measured from outside too, by the kernel's
accounting of the child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from livesr.kernels.sliding import estimate_memory
from livesr.stream._config import LivesrConfig
from livesr.stream._memory import MARGIN, peak_rss_bytes, process_budget, rss_bytes
from livesr.stream._pipeline import Pipeline
from livesr.stream.cli import main

linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="VmRSS/VmHWM come from /proc"
)


def test_process_budget_adds_up_its_parts() -> None:
    mb = 2**20
    kw = dict(window=10, frame_shape=(64, 64), magnification=2, temporal="avg",
              sums_backend="numpy")
    b = process_budget(
        shape=(64, 64), ring_bytes=mb, window=10, magnification=2, temporal="avg",
        max_batch=4, window_budget=2**30, link_bytes=3 * mb, baseline=100 * mb,
    )
    assert b.window_strategy == "maps" and b.window == estimate_memory("maps", **kw)
    assert b.batch == (4 + 2) * 128 * 128 * 4
    parts = 100 * mb + mb + b.window + b.batch + 3 * mb
    assert b.total == int(parts * (1 + MARGIN))
    rep = b.report(peak=200 * mb)
    assert rep["process_budget_mb"] == pytest.approx(b.total / mb)
    assert sum(rep["process_budget_parts_mb"].values()) == pytest.approx(b.total / mb)
    assert rep["peak_rss_mb"] == 200.0 and rep["within_budget"] is (200 * mb <= b.total)
    # a window budget too small for the stored maps: the raw strategy's state
    small = process_budget(
        shape=(64, 64), ring_bytes=mb, window=10, magnification=2, temporal="avg",
        max_batch=4, window_budget=estimate_memory("maps", **kw) - 1, link_bytes=0,
        baseline=0,
    )
    assert small.window_strategy == "raw" and small.window == estimate_memory("raw", **kw)


@linux_only
def test_rss_readings() -> None:
    now, peak = rss_bytes(), peak_rss_bytes()
    assert now is not None and peak is not None and 0 < now <= peak


@pytest.mark.parametrize(("length", "frames"), [(None, 512), (120, 120), (10, 66)])
def test_ring_never_longer_than_the_known_length(
    tmp_path: Path, length: int | None, frames: int
) -> None:
    """256x256 uint16, window 50, batch 16: 512 frames (64 MiB) by default; a
    replay of 120 frames needs 120; never fewer than window + batch (66)."""
    pipe = Pipeline(LivesrConfig(), output=tmp_path / "out", length=length)
    plan = pipe._plan_ring((256, 256), np.dtype(np.uint16), None)
    assert plan.frames == frames and plan.minimum == 50 + 16


@linux_only
def test_replay_of_120_frames_256_stays_within_the_stated_budget(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    assert main(["sim", "--output", str(rec), "--frames", "120", "--shape", "256", "256",
                 "--no-progress"]) == 0
    out = tmp_path / "out"
    log = tmp_path / "replay.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "livesr.stream.cli", "replay",
             str(rec / "frames.ome.tif"), "--output", str(out), "--no-status",
             "--rate", "asap"],
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
        timer = threading.Timer(480.0, proc.kill)  # never hang the suite
        timer.start()
        try:
            # reaped here: wait4 gives this child's own peak resident memory
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = log.read_text(errors="replace")
    assert proc.returncode == 0, err
    child_peak_mb = usage.ru_maxrss / 1024  # kB on Linux
    s = json.loads((out / "summary.json").read_text())
    mem = s["memory"]
    assert s["frames_persisted"] == 120 and s["frames_processed"] == 120
    # the processing ring sized from the recording's length (default: 512 frames)
    assert mem["ring_frames"] == 120 == s["ring"]["capacity"]
    assert mem["ring_mb"] == pytest.approx(120 * 256 * 256 * 2 / 2**20)
    parts = mem["process_budget_parts_mb"]
    assert parts["ring"] == pytest.approx(mem["ring_mb"])
    assert sum(parts.values()) == pytest.approx(mem["process_budget_mb"])
    assert parts["source_link"] == pytest.approx(256 * 256 * 256 * 2 / 2**20)
    # the peak: measured by the run at its end, and from outside by the kernel
    assert 0 < mem["peak_rss_mb"] <= child_peak_mb + 1
    assert mem["within_budget"] is True
    # the kernel's peak of the process itself (VmHWM at close) within the budget;
    # wait4's ru_maxrss is only an upper bound: it also covers the reaped children,
    # i.e. the live-resolution worker process, which the budget does not count
    # (1650 MB beside a CPU hog, where the process itself stayed within budget)
    assert mem["peak_rss_mb"] <= mem["process_budget_mb"], (child_peak_mb, mem)
