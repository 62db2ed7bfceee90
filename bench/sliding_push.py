"""Push throughput of the host sliding window, this tree against another one.

    python bench/sliding_push.py --base-tree /tmp/base --rounds 4 --map fixed

``--base-tree`` is a source tree of livesr (e.g. ``git archive <commit> | tar -x``,
with the compiled ``_cython*.so`` files copied in); each round runs one process on
the base tree and one on this checkout, alternately (the machine is noisy: compare
the ratios, not the times).  Each process pushes ``--pushes`` frames of 256x256
(M=5, window 50, stride 10, AVG, uint16, one shift) through ``SlidingEsrrf`` after a
warm-up and prints the seconds.  ``--map cython``: the Cython ``esrrf_map``
(the fastest CPU map here); ``--map fixed``: a precomputed map copied into place,
so the time is the window's own (sums, bookkeeping, emission).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("stream", "engine", "kernels", "adapters", "sim")


def worker(map_mode: str, pushes: int, temporal: str) -> float:
    import numpy as np

    from livesr.kernels import SlidingEsrrf
    from livesr.kernels.esrrf_map._cython import esrrf_map_cython

    h = w = 256
    rng = np.random.default_rng(0)
    frames = rng.poisson(100.0, (40, h, w)).astype(np.uint16)
    cache: dict[int, np.ndarray] = {}

    def cython_map(frame, params, *, shift=(0.0, 0.0), out=None):  # type: ignore[no-untyped-def]
        img = esrrf_map_cython(frame, params.magnification, params.radius,
                               params.sensitivity, params.intensity_weighting,
                               tuple(shift), "static")
        if out is None:
            return np.asarray(img, dtype=np.float32)
        out[...] = img
        return out

    def fixed_map(frame, params, *, shift=(0.0, 0.0), out=None):  # type: ignore[no-untyped-def]
        k = int(frame[0, 0]) % 7
        if k not in cache:
            cache[k] = cython_map(frame, params, shift=shift)
        if out is None:
            return cache[k].copy()
        out[...] = cache[k]
        return out

    fm = cython_map if map_mode == "cython" else fixed_map
    sr = SlidingEsrrf(50, 10, magnification=5, frame_map=fm, frame_shape=(h, w),
                      temporal=temporal)
    sr.warm_up()
    for i in range(60):
        sr.push(frames[i % 40], shift=(0.1, -0.2))
    sr.reset()
    t0 = time.perf_counter()
    emitted = sum(sr.push(frames[i % 40], shift=(0.1, -0.2)) is not None
                  for i in range(pushes))
    dt = time.perf_counter() - t0
    assert emitted == (pushes - 50) // 10 + 1, emitted
    return dt


def _links(tree: Path) -> str:
    root = Path(tempfile.mkdtemp(prefix="livesr-base-"))
    (root / "livesr").mkdir()
    for d in PACKAGES:
        (root / "livesr" / d).symlink_to(tree / d)
    return str(root)


def _run(env_path: str | None, args: argparse.Namespace) -> float:
    env = dict(os.environ)
    if env_path is not None:  # PathFinder runs before the editable install's finder
        env["PYTHONPATH"] = env_path
    cmd = [sys.executable, __file__, "--worker", "--map", args.map,
           "--pushes", str(args.pushes), "--temporal", args.temporal]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                         timeout=600)
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-tree", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--map", choices=("fixed", "cython"), default="fixed")
    ap.add_argument("--pushes", type=int, default=300)
    ap.add_argument("--temporal", default="avg")
    ap.add_argument("--worker", action="store_true")
    a = ap.parse_args()
    if a.worker:
        import livesr.kernels

        print(Path(livesr.kernels.__file__).resolve(), worker(a.map, a.pushes, a.temporal))
        return
    if a.base_tree is None:
        ap.error("--base-tree is required")
    links = _links(a.base_tree.resolve())
    ratios = []
    for r in range(a.rounds):
        base, new = _run(links, a), _run(None, a)
        ratios.append(new / base)
        print(f"round {r + 1}: base {base:.3f} s, this tree {new:.3f} s, "
              f"ratio {new / base:.3f}", flush=True)
    print(f"median ratio (this tree / base): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
