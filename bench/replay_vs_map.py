"""`livesr replay --rate asap` throughput against the bare per-frame map, one run.

    python bench/replay_vs_map.py [--size 256] [--frames 400] [--magnification 2]
                                  [--json bench/results/replay_vs_map_vm.json]

1. renders a simulated recording (blinking, linear drift) with `livesr sim`;
2. times every CPU implementation of the per-frame eSRRF map at that shape
   (the engine's `esrrf_map`, 8 calls each after a warm-up) and keeps the fastest;
3. replays the recording with `livesr replay FILE --rate asap` (drift on, the
   default settings otherwise) and measures its processing rate from the
   publication times of its first and last image (warm-up excluded);
4. prints both rates and their ratio (issue 13's bar on the 2-core VM: >= 0.8).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "livesr.stream.cli", *args]


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--magnification", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        subprocess.run(
            _cli(
                "sim",
                "--output",
                str(tmpd / "rec"),
                "--frames",
                str(a.frames),
                "--shape",
                str(a.size),
                str(a.size),
                "--drift",
                "linear",
                "--seed",
                "2",
                "--no-progress",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rec = next((tmpd / "rec").glob("*.ome.tif*"), None) or next(
            (tmpd / "rec").iterdir()
        )
        best, best_rate, rates = bare_map_rate(a.size, a.magnification)
        out = tmpd / "replay"
        subprocess.run(
            _cli(
                "replay",
                str(rec),
                "--output",
                str(out),
                "--rate",
                "asap",
                "--magnification",
                str(a.magnification),
                "--no-status",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        summary = json.loads((out / "summary.json").read_text())
        rate = replay_rate(out)
        best2, best_rate2, rates2 = bare_map_rate(a.size, a.magnification)
    bare = (best_rate + best_rate2) / 2  # before and after the replay (noisy machine)
    res = {
        "size": a.size,
        "magnification": a.magnification,
        "frames": a.frames,
        "bare_map_fps": bare,
        "bare_map_impl": best,
        "bare_map_rates_before": rates,
        "bare_map_rates_after": rates2,
        "replay_fps": rate,
        "ratio": rate / bare,
        "replay_windows_published": summary["windows_published"],
        "replay_windows_skipped": summary["windows_skipped"],
        "replay_implementation": summary["implementation"],
        "drift": summary["params"]["drift"]["enabled"],
    }
    sys.stdout.write(json.dumps(res, indent=2) + "\n")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
