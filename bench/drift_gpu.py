"""CuPy live drift vs numpy: parity (px) and cost per frame at 256², 512², 2048².

Synthetic stream (no simulator needed on the GPU image): a smooth random
texture of Gaussian spots, shifted per frame by a known drift (Fourier shift,
linear 0.02 px/frame + a slow sine), Poisson noise, uint16. The same frames go
through two :class:`livesr.kernels.RollingDrift` (block 10, max_drift 10 px):
numpy on the host, CuPy with the frames uploaded once (as the GPU map holds
them); both with ``precision`` single and double. Reports the largest
difference of the causal shifts and of the block estimates (px), and the time
per frame of each path (push_many in batches of 10 + shifts_for, after
warm_up), with the device synchronised::

    LIVESR_CACHE_DIR=/tmp/livesr-cache python bench/drift_gpu.py --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def stream(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_spots = int(600 * (size / 256) ** 2)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.zeros((size, size))
    pos = rng.random((n_spots, 2)) * size
    amp = rng.uniform(50, 200, n_spots)
    for (y, x), a in zip(pos, amp, strict=True):
        r0, r1 = int(max(0, y - 6)), int(min(size, y + 7))
        c0, c1 = int(max(0, x - 6)), int(min(size, x + 7))
        base[r0:r1, c0:c1] += a * np.exp(
            -((yy[r0:r1, c0:c1] - y) ** 2 + (xx[r0:r1, c0:c1] - x) ** 2) / (2 * 1.3**2)
        )
    t = np.arange(n)
    drift = np.stack([0.02 * t + 0.5 * np.sin(t / 150), -0.015 * t], axis=1)
    try:  # the Fourier shifts on the GPU when there is one (2048² is slow here)
        import cupy as xp
    except ImportError:
        xp = np
    f = xp.fft.fft2(xp.asarray(base))
    ky = xp.asarray(np.fft.fftfreq(size)[:, None])
    kx = xp.asarray(np.fft.fftfreq(size)[None, :])
    frames = np.empty((n, size, size), np.uint16)
    for i, (dy, dx) in enumerate(drift):
        img = xp.fft.ifft2(f * xp.exp(-2j * np.pi * (ky * dy + kx * dx))).real
        img = np.asarray(img.get() if xp is not np else img)
        frames[i] = np.clip(rng.poisson(np.maximum(img, 0) + 20) + 100, 0, 65535)
    return frames, drift


def run(frames, precision: str, device: bool, batch: int = 10):
    from livesr.kernels import RollingDrift

    if device:
        import cupy as cp

    rd = RollingDrift(block=10, max_drift=10.0, precision=precision)
    rd.warm_up(frames.shape[1:], device=device)
    data = cp.asarray(frames) if device else frames
    if device:
        cp.cuda.Device().synchronize()
    else:
        cp = None
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch):
        rd.push_many(data[i : i + batch])
        rd.shifts_for(i, min(batch, len(frames) - i))
    if device:
        cp.cuda.Device().synchronize()
    dt = (time.perf_counter() - t0) / len(frames)
    ests = np.array([(e.dy, e.dx) for e in rd.estimates])
    return rd.shifts_for(0, len(frames)), ests, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 2048])
    ap.add_argument("--frames", type=int, nargs="+", default=[300, 200, 110])
    ap.add_argument("--host-only", action="store_true", help="numpy path only (a check)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out = []
    for size, n in zip(args.sizes, args.frames, strict=True):
        frames, drift = stream(n, size)
        row: dict = {"size": size, "frames": n}
        # the host path at 2048² costs ~1 s per block: single precision only there
        for prec in ("double", "single") if size < 1024 else ("single",):
            s_h, e_h, t_h = run(frames, prec, device=False)
            if args.host_only:
                s_d, e_d, t_d = s_h, e_h, t_h
            else:
                s_d, e_d, t_d = run(frames, prec, device=True)
            truth = drift - drift[:10].mean(axis=0)
            row[prec] = {
                "max_diff_causal_px": float(np.abs(s_d - s_h).max()),
                "max_diff_blocks_px": float(np.abs(e_d - e_h).max()),
                "numpy_ms_per_frame": 1e3 * t_h,
                "cupy_ms_per_frame": 1e3 * t_d,
                "rms_vs_truth_numpy_px": float(np.sqrt(np.mean((s_h - truth) ** 2))),
                "rms_vs_truth_cupy_px": float(np.sqrt(np.mean((s_d - truth) ** 2))),
            }
            print(size, prec, json.dumps(row[prec]), flush=True)
        out.append(row)
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
