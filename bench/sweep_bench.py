#!/usr/bin/env python3
"""Time per (sensitivity, radius) pair of ``livesr.kernels.esrrf_sweep`` vs
NanoPyx 2.1.5's ``run_esrrf_parameter_sweep`` on the same simulated stack.

    python bench/sweep_bench.py --size 64 --frames 50 --json sweep_cpu.json
    python bench/sweep_bench.py --impl cupy --no-nanopyx   # GPU: CuPy kernels

Each round runs ours, then NanoPyx (OpenCL off: CPU, as on this machine), on the
same frames; the best of ``--rounds`` is reported as seconds per pair, with the
ratio, the largest |QnR difference| and whether both chose the same pair. Peak
traced memory (tracemalloc, numpy buffers included) of one extra untimed run of
each shows how memory grows with the stack length. A warm-up sweep on 4 frames
first pins livesr's implementations (not timed).

GPU (device machine; its image has numpy, scipy, cupy, no nanopyx/tqdm): the repo
root is the ``livesr`` package, so put a ``livesr`` link to it on the path; run
the CuPy kernels and, on the same machine, the numpy ones as the baseline::

    mkdir -p /tmp/p && ln -sfn "$PWD" /tmp/p/livesr && export PYTHONPATH=/tmp/p
    for impl in cupy numpy; do python3 bench/sweep_bench.py --impl $impl \
        --no-nanopyx --no-memory --size 64 --frames 30 --magnification 2 \
        --radii 1 1.5 --sensitivities 1 2 --rounds 3 --json $OUT/sweep_gpu.json
    done

(the case of ``livesr bench --report``'s sweep section, same stack; add larger
cases, e.g. ``--size 256 --frames 100``, to the same file).  The JSON, kept as
``bench/results/sweep_gpu_h100.json``, gives that section its GPU rows:
``livesr bench --report DIR --sweep-gpu-json FILE``.

With CuPy the sweep is device resident (frames uploaded once per block, every
pair's maps and running sums on the GPU, only the scored reconstructions
downloaded; ``livesr.kernels._sweep_device``); ``--per-call`` times the previous
path (every engine call takes and returns host arrays) on the same machine.  Each
run records ``device_resident`` and ``livesr_scoring_s`` (the host's error maps
and FIRE / decorrelation, part of ``livesr_s``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("sweep_bench")


def _stack(size: int, frames: int, seed: int) -> np.ndarray:
    from livesr.sim import CameraConfig, SimConfig, simulate_stack

    cfg = SimConfig(camera=CameraConfig(shape=(size, size)), seed=seed)
    return simulate_stack(frames, cfg)[0]


def _ours(stack: np.ndarray, a: argparse.Namespace) -> Any:
    from livesr.kernels import esrrf_sweep

    return esrrf_sweep(
        stack,
        magnification=a.magnification,
        sensitivities=a.sensitivities,
        radii=a.radii,
        temporal=a.temporal,
        use_decorr=a.decorr,
        impl=a.impl,
        resident=not a.per_call,
    )


def _nanopyx(stack: np.ndarray, a: argparse.Namespace) -> np.ndarray:
    from nanopyx.methods.esrrf.parameter_sweep import run_esrrf_parameter_sweep

    return run_esrrf_parameter_sweep(
        stack,
        magnification=a.magnification,
        sensitivities=list(a.sensitivities),
        radii=list(a.radii),
        temporal_correlation=a.temporal.upper(),
        use_decorr=a.decorr,
        return_qnr=True,
    )


def _gpu_name() -> str | None:
    """Name of CUDA device 0 when CuPy is loaded (``livesr bench --report
    --sweep-gpu-json`` shows it), else None."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return None
    try:
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    except Exception:  # no device: the CPU run of the same script
        return None
    return name.decode() if isinstance(name, bytes) else str(name)


def _peak_mb(fn: Any) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64, help="frame side, px")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--magnification", type=int, default=2)
    p.add_argument("--sensitivities", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--radii", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    p.add_argument("--temporal", choices=("avg", "var"), default="avg")
    p.add_argument("--decorr", action="store_true")
    p.add_argument("--impl", default=None, help="livesr engine implementation")
    p.add_argument(
        "--per-call",
        action="store_true",
        help="CuPy: host arrays in and out of every engine call (the previous path)",
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-nanopyx", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="append the result here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("NANOPYX_DISABLE_OPENCL", "1")
    run_nanopyx = not a.no_nanopyx
    if run_nanopyx:
        try:
            import nanopyx  # noqa: F401
        except ImportError:
            logger.warning("nanopyx not installed: timing livesr only")
            run_nanopyx = False

    stack = _stack(a.size, a.frames, a.seed)
    pairs = len(a.sensitivities) * len(a.radii)
    _ours(stack[:4], a)  # pin implementations, compile
    t_ours: list[float] = []
    t_score: list[float] = []
    t_ref: list[float] = []
    ours = ref = None
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        ours = _ours(stack, a)
        t_ours.append(time.perf_counter() - t0)
        t_score.append(ours.scoring_seconds)
        if run_nanopyx:
            t0 = time.perf_counter()
            ref = _nanopyx(stack, a)
            t_ref.append(time.perf_counter() - t0)
    assert ours is not None
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "gpu": _gpu_name(),
        },
        "case": {
            "size": a.size,
            "frames": a.frames,
            "magnification": a.magnification,
            "sensitivities": a.sensitivities,
            "radii": a.radii,
            "temporal": a.temporal,
            "use_decorr": a.decorr,
            "impl": a.impl,
            "pairs": pairs,
            "path": "per-call" if a.per_call else "resident",
        },
        "device_resident": ours.device_resident,
        "livesr_s": t_ours,
        "livesr_scoring_s": t_score,
        "livesr_s_per_pair": min(t_ours) / pairs,
        "livesr_best": list(ours.best),
    }
    if run_nanopyx and ref is not None:
        i, j = np.unravel_index(int(np.argmax(ref)), ref.shape)
        result.update(
            nanopyx_s=t_ref,
            nanopyx_s_per_pair=min(t_ref) / pairs,
            speedup=min(t_ref) / min(t_ours),
            nanopyx_best=[a.sensitivities[i], a.radii[j]],
            max_abs_qnr_diff=float(np.abs(ref - ours.qnr).max()),
            same_best=bool(list(ours.best) == [a.sensitivities[i], a.radii[j]]),
        )
    if not a.no_memory:
        result["livesr_peak_mb"] = _peak_mb(lambda: _ours(stack, a))
        if run_nanopyx:
            result["nanopyx_peak_mb"] = _peak_mb(lambda: _nanopyx(stack, a))
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    if a.json is not None:
        runs = json.loads(a.json.read_text()) if a.json.exists() else []
        runs.append(result)
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
