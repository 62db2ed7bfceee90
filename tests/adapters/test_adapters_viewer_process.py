"""``livesr run --viewer`` under Xvfb: the viewer runs in its own process, started by
the run, shows SR images and the newest raw frames (seqs increasing), is reaped at
the end; closing its window stops acquisition and finishes the run with every frame
accounted for."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("napari", reason='napari is not installed (pip install "livesr[viewer]")')

from livesr.adapters.sinks._viewer_process import STATS_ENV  # noqa: E402

pytestmark = [pytest.mark.usefixtures("display")]

_PID = re.compile(r"viewer process (\d+) started")


def _start_run(tmp_path: Path, frames: int) -> tuple[subprocess.Popen[str], Path, Path]:
    out = tmp_path / "out"
    stats = tmp_path / "viewer.json"
    cmd = [
        sys.executable, "-m", "livesr.stream.cli", "--log-level", "info", "run",
        "--output", str(out), "--frames", str(frames), "--window", "20",
        "--stride", "10", "--magnification", "2", "--no-status", "--viewer",
    ]  # fmt: skip
    env = {**os.environ, STATS_ENV: str(stats)}
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    return proc, out, stats


def _read_lines(proc: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return t


def _viewer_pid(lines: list[str], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in list(lines):
            if m := _PID.search(line):
                return int(m.group(1))
        time.sleep(0.1)
    raise AssertionError("the run did not log its viewer process:\n" + "".join(lines))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _finish(proc: subprocess.Popen[str], pump: threading.Thread, timeout_s: float) -> int:
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise
    finally:
        pump.join(10)
        assert proc.stderr is not None
        proc.stderr.close()
    return code


def test_run_viewer_is_its_own_process_showing_raw_and_sr(tmp_path: Path) -> None:
    frames = 600  # 6 s at the simulated camera's 100 frames/s
    proc, out, stats_path = _start_run(tmp_path, frames)
    lines: list[str] = []
    pump = _read_lines(proc, lines)
    pid = _viewer_pid(lines, 120.0)
    assert pid != proc.pid
    code = _finish(proc, pump, 300.0)
    log = "".join(lines)
    assert code == 0, log
    assert _gone(pid), "the viewer process outlived the run"
    assert stats_path.is_file(), f"the viewer wrote no probe at exit:\n{log}"
    stats: dict[str, Any] = json.loads(stats_path.read_text())
    assert stats["exit"] == "asked to quit"  # reaped by the run, not killed
    assert stats["sr_shown"] >= 1 and stats["sr_last_index"] >= 1
    assert stats["raw_shown"] >= 3, stats  # the raw layer follows the acquisition
    assert stats["raw_seqs_increasing"], stats
    assert 0 <= stats["raw_first_seq"] < stats["raw_last_seq"] <= frames - 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_persisted"] == frames
    assert summary["frames_acquired"] == frames and summary["frames_in_gaps"] == 0


def test_closing_the_viewer_stops_acquisition_and_finishes_the_run(tmp_path: Path) -> None:
    frames = 6000  # 60 s unless the closed window stops it
    proc, out, stats_path = _start_run(tmp_path, frames)
    lines: list[str] = []
    pump = _read_lines(proc, lines)
    t0 = time.monotonic()
    pid = _viewer_pid(lines, 120.0)
    time.sleep(3.0)
    os.kill(pid, signal.SIGTERM)  # the viewer closes its window (as a user would)
    code = _finish(proc, pump, 300.0)
    log = "".join(lines)
    assert code == 0, log
    assert "viewer closed: stopping acquisition, finishing the run" in log
    assert _gone(pid)
    assert json.loads(stats_path.read_text())["exit"] == "asked to quit"
    summary = json.loads((out / "summary.json").read_text())
    n = summary["frames_acquired"]
    assert 0 < n < frames, "acquisition was not stopped by the closed window"
    assert summary["frames_persisted"] + summary["frames_in_gaps"] == n
    assert time.monotonic() - t0 < 55.0
