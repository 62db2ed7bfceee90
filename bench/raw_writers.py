"""Raw-frame writer candidates, each with "on the OS when append returns" semantics.

``python bench/raw_writers.py [--frames N]`` writes N frames of 256x256 and of 2048x2048
uint16 with each candidate into a temporary folder and prints frames/s (JSON lines):

``zarr-chunk1``  zarr-python 3, one chunk per frame (livesr before 2026-12).
``zarr-shard``   zarr-python 3, chunk (1,H,W) inside shards of (K,H,W): every frame
                 written rewrites its shard (a partial shard write is read-modify-
                 write).
``tensorstore``  tensorstore zarr3 driver, chunk (K,H,W), one write per frame.
``append-*``     livesr's own zarr v3 writer (:mod:`livesr.stream._rawstore`):
                 chunk (K,H,W), frames appended to the open chunk file with os.write,
                 buffered (page cache) or O_DIRECT (aligned staging buffer).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _frames(shape: tuple[int, int], n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4000, size=(min(n, 8), *shape), dtype=np.uint16)
    return [base[i % len(base)] for i in range(n)]


def bench_zarr(path: Path, frames: list[np.ndarray], k: int, shard: bool) -> float:
    import zarr

    h, w = frames[0].shape
    n = len(frames)
    kw = {"shards": (k, h, w), "chunks": (1, h, w)} if shard else {"chunks": (1, h, w)}
    a = zarr.create_array(
        str(path), shape=(n, h, w), dtype="uint16", fill_value=0, **kw
    )
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        a[i] = f
    return n / (time.perf_counter() - t0)


def bench_tensorstore(path: Path, frames: list[np.ndarray], k: int) -> float:
    import tensorstore as ts

    h, w = frames[0].shape
    n = len(frames)
    arr = ts.open(
        {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {
                "shape": [n, h, w],
                "chunk_grid": {
                    "name": "regular",
                    "configuration": {"chunk_shape": [k, h, w]},
                },
                "data_type": "uint16",
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            },
            "create": True,
        }
    ).result()
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        arr[i].write(f).result()
    return n / (time.perf_counter() - t0)


def bench_append(path: Path, frames: list[np.ndarray], direct: bool) -> float:
    from livesr.stream._rawstore import OmeZarrRawStore

    st = OmeZarrRawStore(path, direct=direct)
    st.open(frames[0].shape, "uint16", pixel_size_um=0.1, interval_s=0.001)
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        st.append(i, f, t_acq=float(i), t_recv=float(i))
    rate = len(frames) / (time.perf_counter() - t0)
    st.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--frames", type=int, default=0, help="frames of the append writer (0: auto)"
    )
    ap.add_argument("--out", default="", help="also write the results here (JSON)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape, k in (((256, 256), 256), ((2048, 2048), 4)):
            big = shape[0] > 256
            n_fast = args.frames or (400 if big else 20000)
            n_slow = max(8, n_fast // 10)  # the read-modify-write writers are slow
            mb = shape[0] * shape[1] * 2 / 2**20
            cases = {
                "zarr-chunk1": (n_slow, lambda p, f, k=k: bench_zarr(p, f, k, False)),
                "zarr-shard": (n_slow, lambda p, f, k=k: bench_zarr(p, f, k, True)),
                "tensorstore": (n_slow, lambda p, f, k=k: bench_tensorstore(p, f, k)),
                "append-buffered": (n_fast, lambda p, f: bench_append(p, f, False)),
                "append-direct": (n_fast, lambda p, f: bench_append(p, f, True)),
            }
            for name, (n, fn) in cases.items():
                p = Path(tmp) / f"{name}-{shape[0]}.zarr"
                fps = fn(p, _frames(shape, n))
                shutil.rmtree(p, ignore_errors=True)
                os.sync()  # each writer starts with no dirty pages
                r = {
                    "writer": name,
                    "shape": list(shape),
                    "chunk_frames": k if not name.startswith("append") else None,
                    "frames": n,
                    "frames_per_s": round(fps, 1),
                    "MB_per_s": round(fps * mb, 1),
                }
                results.append(r)
                sys.stdout.write(json.dumps(r) + "\n")
                sys.stdout.flush()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
