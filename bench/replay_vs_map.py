"""`livesr replay --rate asap` throughput against the bare per-frame map, one run.

    python bench/replay_vs_map.py [--size 256] [--frames 400] [--magnification 2]
                                  [--repeats 1] [--baseline-python PY]
                                  [--replay-args ARGS] [--quiet-wait-s 60]
                                  [--max-others 0.1]
                                  [--json bench/results/replay_vs_map_vm.json]

1. renders a simulated recording (blinking, linear drift) with `livesr sim`;
2. times every CPU implementation of the per-frame eSRRF map at that shape
   (the engine's `esrrf_map`, 8 calls each after a warm-up) and keeps the fastest;
3. replays the recording with `livesr replay FILE --rate asap` (drift on, the
   default settings otherwise) and measures its processing rate from the
   publication times of its first and last image (warm-up excluded);
4. times the bare map again (the machine is shared and noisy: the bare rate of a
   repeat is the mean of the two), and prints both rates and their ratio (issue
   13's bar on the 2-core VM: >= 0.8).

``--repeats N`` does 2-4 N times and reports each repeat and the medians.
``--baseline-python PY`` also replays with another interpreter (e.g. the venv of
main, installed from another checkout) right after this one's, between the same
two bare-map timings: the ratio before and after a change, side by side in one
run.  ``--quiet-wait-s S`` waits (at most S seconds) before each repeat until the
machine's CPUs have been idle for 2 s (other users' jobs), and records how busy
they were; ``--max-others F`` measures the CPU share other processes took during
the repeat (``/proc/stat`` minus this process and its children) and does the
repeat again (at most 4 tries) while it was above F (default 0.1).  ``--replay-args`` adds arguments to every replay (e.g. ``"--drift
off"``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _cli(python: str, *args: str) -> list[str]:
    return [python, "-m", "livesr.stream.cli", *args]


def bare_map_rate(
    size: int, magnification: int, calls: int = 8
) -> tuple[str, float, dict]:
    from livesr.kernels.esrrf_map import kernel

    frame = np.random.default_rng(0).poisson(100.0, (size, size)).astype(np.float32)
    args = (frame, magnification, 1.5, 1.0, True)
    rates = {}
    for info in kernel.implementations(include_unavailable=False):
        if info.backend.value not in ("numpy", "numba", "cython", "opencl"):
            continue
        if info.backend.value == "numpy":
            continue  # the reference, never the fastest on a CPU
        try:
            fn = kernel.using(info.id)
            fn(*args, shift=(0.1, 0.2))
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(*args, shift=(0.1, 0.2))
            rates[info.id] = calls / (time.perf_counter() - t0)
        except Exception as exc:  # an implementation that cannot run here
            rates[info.id] = f"failed: {exc}".splitlines()[0]
    numeric = {k: v for k, v in rates.items() if isinstance(v, float)}
    best = max(numeric, key=numeric.__getitem__)
    return best, numeric[best], rates


def replay_rate(out: Path) -> float:
    with (out / "windows.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    a, b = rows[0], rows[-1]
    return (int(b["last_frame"]) - int(a["last_frame"])) / (
        float(b["t_published"]) - float(a["t_published"])
    )


def _cpu_busy(seconds: float) -> float:
    """Share of the machine's CPU time not idle over ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
        return sum(f), f[3] + f[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(max_wait_s: float, busy_below: float = 0.15) -> float:
    """Wait until the CPUs were idle for 2 s (at most ``max_wait_s``); the last
    busy share seen."""
    deadline = time.monotonic() + max_wait_s
    busy = _cpu_busy(2.0)
    while busy >= busy_below and time.monotonic() < deadline:
        busy = _cpu_busy(2.0)
    return busy


class OthersShare:
    """Share of the machine's CPU time that processes other than this one and its
    children used between :meth:`start` and :meth:`stop` (a shared machine)."""

    @staticmethod
    def _sample() -> tuple[int, int, float]:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        return sum(f), sum(f) - f[3] - f[4], mine

    def start(self) -> None:
        self._t0 = self._sample()

    def stop(self) -> float:
        total0, busy0, mine0 = self._t0
        total1, busy1, mine1 = self._sample()
        tick = os.sysconf("SC_CLK_TCK")
        others = (busy1 - busy0) - (mine1 - mine0) * tick
        return max(0.0, others / max(1, total1 - total0))


def replay_once(python: str, rec: Path, out: Path, magnification: int,
                extra: list[str]) -> dict[str, Any]:
    """One ``livesr replay --rate asap`` with ``python``; its rate and summary."""
    shutil.rmtree(out, ignore_errors=True)  # a repeat tried again
    subprocess.run(
        _cli(python, "replay", str(rec), "--output", str(out), "--rate", "asap",
             "--magnification", str(magnification), "--no-status", *extra),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    summary = json.loads((out / "summary.json").read_text())
    return {
        "replay_fps": replay_rate(out),
        "windows_published": summary["windows_published"],
        "windows_skipped": summary["windows_skipped"],
        "implementation": summary["implementation"],
        "drift": summary["params"]["drift"]["enabled"],
        "latency_p99_ms": summary["latency_ms"]["p99"],
    }


def one_repeat(a: argparse.Namespace, rec: Path, tmpd: Path, r: int) -> dict[str, Any]:
    """:func:`one_try` until other processes took at most ``--max-others``."""
    tries = []
    for _ in range(4):
        res = one_try(a, rec, tmpd, r)
        tries.append(res["others_cpu_share"])
        if res["others_cpu_share"] <= a.max_others:
            break
    res["others_cpu_share_of_tries"] = tries
    return res


def one_try(a: argparse.Namespace, rec: Path, tmpd: Path, r: int) -> dict[str, Any]:
    """Bare map, the replay(s), bare map again."""
    busy = wait_quiet(a.quiet_wait_s) if a.quiet_wait_s > 0 else None
    others = OthersShare()
    others.start()
    extra = shlex.split(a.replay_args)
    best, best_rate, rates = bare_map_rate(a.size, a.magnification)
    runs: dict[str, Any] = {}
    pythons = {"after": sys.executable}
    if a.baseline_python:
        pythons = {"before": str(a.baseline_python), "after": sys.executable}
    for label, python in pythons.items():
        runs[label] = replay_once(python, rec, tmpd / f"replay-{r}-{label}",
                                  a.magnification, extra)
    best2, best_rate2, rates2 = bare_map_rate(a.size, a.magnification)
    bare = (best_rate + best_rate2) / 2  # before and after the replays (noisy machine)
    for run in runs.values():
        run["ratio"] = run["replay_fps"] / bare
    return {
        "others_cpu_share": others.stop(),
        "bare_map_fps": bare,
        "bare_map_impl": best,
        "bare_map_rates_before": rates,
        "bare_map_rates_after": rates2,
        "cpu_busy_before": busy,
        **{f"replay_{k}": v for k, v in runs.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--magnification", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline-python", type=Path, default=None)
    ap.add_argument("--replay-args", default="")
    ap.add_argument("--quiet-wait-s", type=float, default=0.0)
    ap.add_argument("--max-others", type=float, default=0.1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        subprocess.run(
            _cli(sys.executable, "sim", "--output", str(tmpd / "rec"),
                 "--frames", str(a.frames), "--shape", str(a.size), str(a.size),
                 "--drift", "linear", "--seed", "2", "--no-progress"),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rec = next((tmpd / "rec").glob("*.ome.tif*"), None) or next(
            (tmpd / "rec").iterdir()
        )
        repeats = [one_repeat(a, rec, tmpd, r) for r in range(a.repeats)]
    labels = [k[len("replay_"):] for k in repeats[0] if k.startswith("replay_")]
    med = {
        "bare_map_fps": statistics.median(r["bare_map_fps"] for r in repeats),
        **{
            label: {
                key: statistics.median(r[f"replay_{label}"][key] for r in repeats)
                for key in ("replay_fps", "ratio", "latency_p99_ms")
            }
            for label in labels
        },
    }
    res = {
        "size": a.size,
        "magnification": a.magnification,
        "frames": a.frames,
        "replay_args": a.replay_args,
        "baseline_python": None if a.baseline_python is None else str(a.baseline_python),
        "python": sys.executable,
        "median": med,
        "repeats": repeats,
    }
    sys.stdout.write(json.dumps(res, indent=2) + "\n")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
