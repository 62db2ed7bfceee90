"""``livesr run --viewer`` costs: windows skipped and the GUI's longest stall, three ways.

Modes, alternated in every repeat so that the machine's load hits them alike:

``none``
    ``livesr run`` at the quick-start settings without a viewer (the reference).
``process``
    ``livesr run --viewer``: the napari viewer in its own process (this design).
``process-nice0``
    The same at the parent's CPU priority (``LIVESR_VIEWER_NICE=0``).
``inproc``
    The previous design: the same viewer (``run_viewer``) in the Qt main thread of the
    pipeline's process, closed automatically once the run's frames are processed.

Each run acquires ``--seconds`` of the simulated camera (100 frames/s, 64x64) with
``--window 20 --stride 10 --magnification 4``.  The viewer writes its probe
(:class:`livesr.adapters.sinks._viewer_process.GuiProbe`: QTimer ticks, longest gap
between them after the first SR image settled, draws, raw seqs) as JSON.

Run under a display, e.g.::

    xvfb-run -a -s "-screen 0 1280x1024x24" python bench/viewer_process.py \\
        --seconds 30 --repeats 2 --json bench/results/viewer_process_vm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_QUICK = ["--window", "20", "--stride", "10", "--magnification", "4", "--no-status"]

#: the in-process viewer of the previous design, driven by the real CLI
_INPROC = r"""
import json, sys
from livesr.stream.cli import _cmd_run as m
from livesr.stream import cli

stats_path = sys.argv[1]
follow = m._Run.follow

def inproc_follow(self, pipe, src):
    import napari
    from qtpy.QtCore import QTimer
    from livesr.adapters.sinks._viewer_process import GuiProbe
    from livesr.adapters.sinks.napari_viewer import run_viewer
    sink = run_viewer(pipe.publish_endpoint, title="inproc", block=False,
                      raw_endpoint=pipe.raw_publish_endpoint)
    probe = GuiProbe(16)
    sink.on_tick = lambda drew, spent: probe.tick(drew, spent, sink)
    def done():
        if src.join(0) is not None and pipe.wait(0):
            QTimer.singleShot(500, sink.viewer.close)
            t.stop()
    t = QTimer(); t.setInterval(100); t.timeout.connect(done); t.start()
    napari.run()
    sink.stop()
    with open(stats_path, "w") as f:
        json.dump(probe.record("run finished"), f)
    follow(self, pipe, src)

m._Run.follow = inproc_follow
sys.exit(cli.main(sys.argv[2:]))
"""


def _one(mode: str, seconds: float, work: Path) -> dict[str, Any]:
    out = work / f"{mode}-{time.monotonic_ns()}"
    stats = out.with_suffix(".viewer.json")
    args = ["run", "--output", str(out), "--frames", str(int(seconds * 100)), *_QUICK]
    env = dict(os.environ)
    if mode == "none":
        cmd = [sys.executable, "-m", "livesr.stream.cli", *args]
    elif mode in ("process", "process-nice0"):
        cmd = [sys.executable, "-m", "livesr.stream.cli", *args, "--viewer"]
        env["LIVESR_VIEWER_STATS"] = str(stats)
        if mode == "process-nice0":
            env["LIVESR_VIEWER_NICE"] = "0"
    else:
        cmd = [sys.executable, "-c", _INPROC, str(stats), *args]
    t0, cpu0 = time.monotonic(), os.times()
    done = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=seconds * 4 + 180,
    )  # fmt: skip
    wall, cpu1 = time.monotonic() - t0, os.times()
    cpu = (cpu1.children_user - cpu0.children_user) + (
        cpu1.children_system - cpu0.children_system
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
    s = json.loads((out / "summary.json").read_text())
    row: dict[str, Any] = {
        "mode": mode,
        "wall_s": round(wall, 1),
        "cpu_s_all_processes": round(cpu, 1),
        "frames_persisted": s["frames_persisted"],
        "frames_in_gaps": s["frames_in_gaps"],
        "windows_published": s["windows_published"],
        "windows_skipped": s["windows_skipped"],
        "latency_p50_ms": round(s["latency_ms"]["p50"], 1),
        "latency_p99_ms": round(s["latency_ms"]["p99"], 1),
    }
    if stats.is_file():
        row["viewer"] = json.loads(stats.read_text())
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="acquisition per run (30)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the three modes (2)")
    ap.add_argument("--modes", default="none,process,inproc", help="comma-separated")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    a = ap.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        sys.exit("no DISPLAY: run under xvfb-run -a (see the module docstring)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="livesr-viewer-bench-") as tmp:
        for r in range(a.repeats):
            for mode in a.modes.split(","):
                row = _one(mode, a.seconds, Path(tmp))
                row["repeat"] = r
                rows.append(row)
                v = row.get("viewer") or {}
                print(
                    f"{mode:8s} r{r}: skipped {row['windows_skipped']:3d} of "
                    f"{row['windows_published'] + row['windows_skipped']}, "
                    f"p99 {row['latency_p99_ms']:.0f} ms; GUI max gap "
                    f"{v.get('max_tick_gap_ms', '-')} ms, >100 ms: "
                    f"{v.get('ticks_gap_over_100ms', '-')}, raw shown "
                    f"{v.get('raw_shown', '-')}; CPU {row['cpu_s_all_processes']} s "
                    f"(viewer process {v.get('cpu_s', '-')} s), load "
                    f"{os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    if a.json is not None:
        load = os.getloadavg()
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(
            json.dumps(
                {
                    "machine": f"{platform.node()} ({os.cpu_count()} cores), "
                    f"load average at end {load[0]:.1f}",
                    "settings": f"{a.seconds:.0f} s at 100 frames/s, 64x64, "
                    + " ".join(_QUICK),
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
