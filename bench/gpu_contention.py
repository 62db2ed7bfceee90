"""R8: the live pipeline while a second process loads the GPU.

Runs ``livesr run --config CONFIG`` twice on the GPU machine: once alone, once with
a second process running a CuPy matrix-multiply loop on the same GPU for a stretch
in the middle of the acquisition. Reports, for both runs, frames acquired /
persisted / in gaps (0 lost), windows published / skipped, end-to-end latency
p50 / p99, and the engine's choices for the map stage (calls per implementation,
switches with the frame where they happened)::

    python3 bench/gpu_contention.py --config bench/e2e_256.toml --out DIR \
        [--hog-start 3 --hog-seconds 4 --hog-size 8192]

Writes ``DIR/contention.json``; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("gpu_contention")

HOG = """
import sys, time
import cupy as cp
n, seconds = int(sys.argv[1]), float(sys.argv[2])
a = cp.random.default_rng(0).random((n, n), dtype=cp.float32) / n
b = cp.empty_like(a)
cp.matmul(a, a, out=b)
cp.cuda.Device().synchronize()
print("hog: loading the GPU", flush=True)
t_end = time.time() + seconds
count = 0
while time.time() < t_end:
    cp.matmul(a, a, out=b)
    count += 1
    if count % 4 == 0:
        cp.cuda.Device().synchronize()
cp.cuda.Device().synchronize()
print(f"hog: {count} matmuls of {n}x{n} in {seconds} s", flush=True)
"""


def _run(config: Path, out: Path, hog: tuple[float, float, int] | None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "livesr.stream",
        "--log-level",
        "INFO",
        "run",
        "--config",
        str(config),
        "--output",
        str(out),
        "--no-status",
    ]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    hog_proc = None
    if hog is not None:
        start, seconds, size = hog
        time.sleep(start)
        hog_proc = subprocess.Popen(
            [sys.executable, "-c", HOG, str(size), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        logger.info("hog started %.1f s into the run", time.time() - t0)
    _, err = proc.communicate(timeout=600)
    hog_out = hog_proc.communicate(timeout=120)[0] if hog_proc else ""
    (out / "stderr.log").write_text(err)
    if proc.returncode != 0:
        raise RuntimeError(f"livesr run failed ({proc.returncode}):\n{err[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    lat = summary["latency_ms"]["by_path"]["end_to_end"]
    return {
        "frames_acquired": summary["frames_acquired"],
        "frames_persisted": summary["frames_persisted"],
        "frames_in_gaps": summary["frames_in_gaps"],
        "lost": summary["frames_acquired"]
        - summary["frames_persisted"]
        - summary["frames_in_gaps"],
        "windows_published": summary["windows_published"],
        "windows_skipped": summary["windows_skipped"],
        "latency_p50_ms": lat["p50"],
        "latency_p99_ms": lat["p99"],
        "latency_max_ms": lat["max"],
        "implementation": summary["implementation"],
        "engine": summary.get("engine"),
        "duration_s": summary.get("duration_s"),
        "hog": hog_out.strip(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hog-start", type=float, default=3.0, help="s into the run")
    p.add_argument("--hog-seconds", type=float, default=4.0)
    p.add_argument("--hog-size", type=int, default=8192, help="matrix side")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"host": os.uname().nodename}
    result["quiet"] = _run(args.config, args.out / "quiet", None)
    logger.info("quiet: %s", result["quiet"])
    hog = (args.hog_start, args.hog_seconds, args.hog_size)
    result["contended"] = _run(args.config, args.out / "contended", hog)
    logger.info("contended: %s", result["contended"])
    (args.out / "contention.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
