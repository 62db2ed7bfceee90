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
    # acquisition starts once the window is up (napari loads in seconds, beside
    # the stream's first windows otherwise): the viewer shows the stream from its
    # first second (100 frames/s), not from where napari happened to be ready
    assert "viewer ready after" in log
    assert stats["raw_first_seq"] < 150, stats
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


def test_min_draw_interval_coalesces_raw_and_sr_into_one_update(
    display: str, make_napari_viewer, qtbot, tmp_path: Path
) -> None:
    """The viewer process draws at most ``--max-fps`` updates a second: ticks in
    between draw nothing, and the next update draws the newest raw frame and SR
    image together (what arrived in between is skipped, never queued)."""
    import numpy as np

    from livesr.adapters.sinks.napari_viewer import RAW_LAYER, SR_LAYER, LiveViewerSink
    from livesr.stream._pubsub import ResultPublisher
    from livesr.stream._wire_result import encode_raw_frame

    viewer = make_napari_viewer(show=True)
    sr_pub = ResultPublisher(f"ipc://{tmp_path}/sr.ipc").start()
    raw_pub = ResultPublisher(f"ipc://{tmp_path}/raw.ipc").start()

    def sr(i: int) -> list[Any]:
        head = {
            "v": 1, "kind": "sr", "stream": "t", "index": i, "first_frame": 10 * i,
            "last_frame": 10 * i + 9, "shape": [8, 8], "dtype": "float32",
            "pixel_size_um": 0.05, "params": {"magnification": 2, "stride": 10},
            "drift": None, "quality": {"value": 1.0}, "timestamps": {},
        }  # fmt: skip
        return [json.dumps(head).encode(), np.full((8, 8), i, np.float32)]

    def raw(seq: int) -> list[Any]:
        return encode_raw_frame(
            stream="t", seq=seq, frame=np.full((4, 4), seq, np.uint16),
            pixel_size_um=0.1, t_acq=1.0, t_recv=1.0, t_publish=1.0,
        )  # fmt: skip

    sink = LiveViewerSink(
        viewer, sr_pub.endpoint, raw_endpoint=raw_pub.endpoint, interval_ms=10_000
    ).start()
    try:
        for _ in range(500):  # slow joiner: until both subscriptions are through
            sr_pub.publish(sr(0))
            raw_pub.publish(raw(0))
            sink.poll()
            if sink.stats.raw_shown and sink.stats.shown:
                break
            qtbot.wait(10)
        assert sink.stats.raw_shown and sink.stats.shown
        sink.min_draw_interval_s = 3600.0  # nothing more may be drawn
        sink._drawn_t = time.perf_counter()
        shown, raw_shown = sink.stats.shown, sink.stats.raw_shown
        for k in range(1, 6):
            sr_pub.publish(sr(k))
            raw_pub.publish(raw(100 + k))
            qtbot.wait(20)
            assert not sink.poll()
        assert (sink.stats.shown, sink.stats.raw_shown) == (shown, raw_shown)
        sink.min_draw_interval_s = 0.0  # the next tick draws both, the newest only
        qtbot.wait(50)
        assert sink.poll()
        assert sink.stats.last.index == 5 and sink.stats.last_raw.index == 105
        assert sink.stats.raw_shown == raw_shown + 1  # one update, not five
        assert float(np.asarray(viewer.layers[SR_LAYER].data)[0, 0]) == 5.0
        assert int(np.asarray(viewer.layers[RAW_LAYER].data)[0, 0]) == 105
    finally:
        sink.stop()
        sr_pub.close()
        raw_pub.close()


def test_pacer_slows_drawing_while_the_published_counters_show_skips(
    display: str, make_napari_viewer, qtbot, tmp_path: Path
) -> None:
    """The viewer process's sink reads ``counters.windows_skipped`` from each SR
    header it draws: a count that grew halves its draw rate (the viewer yields CPU
    to a pipeline that fell behind); the next image then waits for the longer
    interval, and is the newest one when drawn."""
    import numpy as np

    from livesr.adapters.sinks._draw_pacer import DrawPacer
    from livesr.adapters.sinks.napari_viewer import SR_LAYER, LiveViewerSink
    from livesr.stream._pubsub import ResultPublisher

    viewer = make_napari_viewer(show=True)
    pub = ResultPublisher(f"ipc://{tmp_path}/sr.ipc").start()
    clock = [0.0]

    def sr(i: int, skipped: int) -> list[Any]:
        head = {
            "v": 1, "kind": "sr", "stream": "t", "index": i, "first_frame": 10 * i,
            "last_frame": 10 * i + 9, "shape": [8, 8], "dtype": "float32",
            "pixel_size_um": 0.05, "params": {"magnification": 2, "stride": 10},
            "drift": None, "quality": {"value": 1.0}, "timestamps": {},
            "counters": {"windows_skipped": skipped},
        }  # fmt: skip
        return [json.dumps(head).encode(), np.full((8, 8), i, np.float32)]

    sink = LiveViewerSink(viewer, pub.endpoint, interval_ms=10_000).start()
    sink.pacer = DrawPacer(10.0, 1.0, calm_s=60.0, clock=lambda: clock[0])
    try:
        for _ in range(500):  # slow joiner
            pub.publish(sr(0, 0))
            if sink.poll():
                break
            qtbot.wait(10)
        assert sink.stats.shown and sink.pacer.fps == 10.0
        sink._drawn_t = -float("inf")
        pub.publish(sr(1, 4))  # the pipeline skipped 4 windows since
        for _ in range(300):  # (copies of image 0 still queued are drawn first)
            sink.poll()
            if sink.stats.last.index == 1:
                break
            qtbot.wait(10)
        assert sink.stats.last.index == 1
        assert (sink.pacer.backoffs, sink.pacer.fps) == (1, 5.0)
        sink._drawn_t = time.perf_counter()
        pub.publish(sr(2, 4))
        qtbot.wait(50)
        assert not sink.poll()  # within 1/5 s of the last draw: waits in its slot
        sink._drawn_t = time.perf_counter() - 0.25
        assert sink.poll()
        assert sink.stats.last.index == 2 and sink.pacer.fps == 5.0  # no new skip
        assert float(np.asarray(viewer.layers[SR_LAYER].data)[0, 0]) == 2.0
    finally:
        sink.stop()
        pub.close()
