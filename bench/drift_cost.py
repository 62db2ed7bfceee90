"""Cost of live drift estimation per frame beside the fastest CPU eSRRF map.

Issue 13's bar: on the 2-core VM at 256², block 10, the live drift cost per
frame must be well under 20 % of the fastest CPU eSRRF map at M=2 (radius 1.5,
sensitivity 1, intensity weighting). Both are measured in this one process,
interleaved (``--rounds`` rounds; the machine is shared and noisy, so the
ratio of each round and their median are reported):

- map: ``livesr.kernels.esrrf_map.kernel`` run as each CPU implementation
  (``kernel.using(impl)``) on one 256² float32 frame; the fastest one's median;
- drift: a :class:`livesr.kernels.RollingDrift` (block 10, max_drift 10 px, the
  pipeline's settings) fed ``--frames`` simulated frames (blinking, linear
  drift) in batches of ``--batch`` (``push_many`` + ``shifts_for``: what a
  batched pipeline calls) and frame by frame (``push`` +
  ``displacement_at(n - 1)``: what the pipeline calls today); total time / frames.

::

    python bench/drift_cost.py [--shape 256] [--frames 1000] [--rounds 3] [--out FILE]
                               [--fresh-store]

``--fresh-store`` gives the engine an empty timing store (a temporary
``LIVESR_CACHE_DIR``), so its choices (e.g. the ``xcorr`` implementation of the
registration's refinement) come from timings taken now rather than from the
user's store (on the shared VM that store had numba at 13 ms for the 256² crop
refinement, measured 0.27 ms, so the engine kept the 0.6-1 ms numpy one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from livesr.kernels import RollingDrift
from livesr.sim import DriftConfig, SimConfig, simulate_stack

CPU_BACKENDS = ("numpy", "numba", "cython", "opencl")


def map_times(frame: np.ndarray, reps: int) -> dict[str, float]:
    """Median seconds per call of each available CPU implementation."""
    from livesr.kernels.esrrf_map import kernel

    kw = {"magnification": 2, "radius": 1.5, "sensitivity": 1.0, "intensity_weighting": True}
    out = {}
    for info in kernel.implementations():
        if not info.available or info.backend.value not in CPU_BACKENDS:
            continue
        if info.backend.value == "numpy" and frame.shape[0] > 128:
            continue  # the plain reference: seconds per frame, never the fastest
        f = kernel.using(info.id)
        try:
            f(frame, **kw)  # JIT / build / plans
        except Exception as exc:  # an implementation broken here is not a candidate
            logging.warning("map %s failed here: %s", info.id, exc)
            continue
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(frame, **kw)
            ts.append(time.perf_counter() - t0)
        out[info.id] = statistics.median(ts)
    return out


def drift_time(stack: np.ndarray, batch: int) -> float:
    """Seconds per frame of live drift (batch 0: frame by frame)."""
    rd = RollingDrift(block=10, max_drift=10.0)
    rd.warm_up(stack.shape[1:])
    t0 = time.perf_counter()
    if batch <= 0:
        for f in stack:
            rd.push(f)
            rd.displacement_at(rd.n_frames - 1)
    else:
        for i in range(0, len(stack), batch):
            rd.push_many(stack[i : i + batch])
            rd.shifts_for(i, len(stack[i : i + batch]))
    return (time.perf_counter() - t0) / len(stack)


def _xcorr_choice() -> str:
    from livesr.kernels.xcorr import kernel

    d = kernel.last_decision
    return "" if d is None else f"{d.impl} ({d.reason})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, default=256)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--fresh-store", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.fresh_store:
        import tempfile

        os.environ["LIVESR_CACHE_DIR"] = tempfile.mkdtemp(prefix="livesr-drift-cost-")
    cfg = SimConfig.blinking(
        shape=(args.shape, args.shape),
        seed=1,
        drift=DriftConfig(velocity_um_per_s=(0.03, 0.04)),
    )
    stack, _ = simulate_stack(args.frames, cfg)
    frame = stack[0].astype(np.float32)
    rounds = []
    for r in range(args.rounds):
        maps = map_times(frame, reps=15)
        best = min(maps, key=maps.get)
        d_batch = drift_time(stack, args.batch)
        d_frame = drift_time(stack, 0)
        row = {
            "round": r,
            "map_s": maps,
            "map_fastest": best,
            "drift_batched_s_per_frame": d_batch,
            "drift_per_frame_s_per_frame": d_frame,
            "ratio_batched": d_batch / maps[best],
            "ratio_per_frame": d_frame / maps[best],
        }
        rounds.append(row)
        logging.warning(
            "round %d: map %s %.2f ms; drift %.3f ms/frame batched (%.1f %%), "
            "%.3f ms/frame frame by frame (%.1f %%)",
            r,
            best,
            maps[best] * 1e3,
            d_batch * 1e3,
            100 * row["ratio_batched"],
            d_frame * 1e3,
            100 * row["ratio_per_frame"],
        )
    summary = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "shape": args.shape,
        "frames": args.frames,
        "block": 10,
        "batch": args.batch,
        "fresh_store": args.fresh_store,
        "xcorr_choice": _xcorr_choice(),
        "median_ratio_batched": statistics.median(r["ratio_batched"] for r in rounds),
        "median_ratio_per_frame": statistics.median(r["ratio_per_frame"] for r in rounds),
        "rounds": rounds,
    }
    text = json.dumps(summary, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
