"""Live (causal) drift against ground truth and against the batch estimator.

Simulated microscope at the quick start's structure density
(``SimConfig.blinking``: 8 filaments, 6 rings, 6 clusters per 256², blinking
~25 % on, 500 photons, 20 photons/px background), seeded. For each scenario the
frames go through :class:`livesr.kernels.RollingDrift` (block 10, max_drift 10
px: the pipeline's defaults) in batches, and every frame's causal shift (the one
the pipeline applies, ``shifts_for``) is compared with the truth; the batch
``estimate_drift`` (time_averaging 10) runs on the same frames::

    python bench/drift_accuracy.py [--shape 256] [--frames 2000] [--seeds 1 2 3]

Prints a Markdown table; ``--out FILE`` writes it too. References: the live
estimate's origin is the first block (frames 0-9), so its truth is
``truth - truth[:10].mean()``; the batch's origin is frame 0 (truth as is).
Columns: RMS over every frame, the constant part (mean error), the largest
step between consecutive frames that the truth does not have, and the mean
reported sigma.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from livesr.kernels import RollingDrift
from livesr.kernels.drift import estimate_drift
from livesr.sim import DriftConfig, SimConfig, simulate_stack

BLOCK = 10

#: (y, x) um/s and um per frame; 0.1 um pixels, 10 ms frames, 2000 frames = 20 s
SCENARIOS: dict[str, DriftConfig] = {
    "none": DriftConfig(),
    # (6, 8) px = 10 px over 2000 frames
    "linear": DriftConfig(velocity_um_per_s=(0.03, 0.04)),
    # (5, -4) px linear + a random walk of 0.005 px per frame per axis
    "linear+walk": DriftConfig(velocity_um_per_s=(0.025, -0.02), random_walk_um=0.0005),
}


def scenario(name: str, shape: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, h, w) uint16 stack and (frames, 2) truth displacement, px."""
    cfg = SimConfig.blinking(shape=(shape, shape), seed=seed, drift=SCENARIOS[name])
    stack, truths = simulate_stack(frames, cfg)
    return stack, np.array([t.displacement_px for t in truths])


def live_shifts(stack: np.ndarray, batch: int = 7) -> tuple[np.ndarray, RollingDrift]:
    """Causal shift of every frame, fed in batches of ``batch`` frames."""
    rd = RollingDrift(block=BLOCK, max_drift=10.0)
    for i in range(0, len(stack), batch):
        rd.push_many(stack[i : i + batch])
    return rd.shifts_for(0, len(stack)), rd


def errors(est: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMS, mean (constant part) and largest unexplained step of ``est - truth``."""
    e = est - truth
    step = np.abs(np.diff(e, axis=0)).max() if len(e) > 1 else 0.0
    return {
        "rms": float(np.sqrt(np.mean(e**2))),
        "mean_y": float(e[:, 0].mean()),
        "mean_x": float(e[:, 1].mean()),
        "max_step": float(step),
    }


def run(name: str, shape: int, frames: int, seed: int) -> dict[str, float]:
    stack, truth = scenario(name, shape, frames, seed)
    t0 = time.perf_counter()
    shifts, rd = live_shifts(stack)
    t_live = time.perf_counter() - t0
    live = errors(shifts, truth - truth[:BLOCK].mean(axis=0))
    batch = errors(estimate_drift(stack, time_averaging=BLOCK, max_drift=10.0), truth)
    sig = float(np.mean([e.sigma_px for e in rd.estimates[1:]]))
    span = float(np.hypot(*(truth[-1] - truth[0])))
    return {
        "span": span,
        **{f"live_{k}": v for k, v in live.items()},
        **{f"batch_{k}": v for k, v in batch.items()},
        "sigma": sig,
        "ms_per_frame": 1e3 * t_live / frames,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, default=256)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [
        "| scenario | seed | drift px | live RMS | live mean (y, x) | live max step "
        "| batch RMS | batch mean (y, x) | sigma | live ms/frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SCENARIOS:
        for seed in args.seeds:
            r = run(name, args.shape, args.frames, seed)
            rows.append(
                f"| {name} | {seed} | {r['span']:.1f} | {r['live_rms']:.4f} "
                f"| ({r['live_mean_y']:+.4f}, {r['live_mean_x']:+.4f}) "
                f"| {r['live_max_step']:.4f} | {r['batch_rms']:.4f} "
                f"| ({r['batch_mean_y']:+.4f}, {r['batch_mean_x']:+.4f}) "
                f"| {r['sigma']:.4f} | {r['ms_per_frame']:.2f} |"
            )
            print(rows[-1], flush=True)
    text = (
        f"Live vs batch drift, {args.shape}² x {args.frames} frames, "
        f"block {BLOCK} (bench/drift_accuracy.py)\n\n" + "\n".join(rows) + "\n"
    )
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
