#!/usr/bin/env python3
"""Multi-GPU tiled eSRRF: correctness against one GPU, and throughput 1 vs N GPUs.

Self-contained: needs numpy and cupy; imports livesr from the installed package or
straight from this source tree (the loader of ``bench/gpu_esrrf.py``: no install,
no Mako, no platformdirs; a missing ``livesr.engine`` dependency is replaced by a
no-op registration decorator).  Run from anywhere::

    python3 bench/multi_gpu_tiling.py [--sizes 2048 4096] [--frames 20] [--json OUT]

1. Correctness, per frame size (default 2048² and 4096², M=5, R=1.5, S=1,
   intensity weighting, NanoPyx geometry): the single-GPU untiled map
   (``esrrf_map_cupy`` on device 0) against ``livesr.kernels.tiling.
   esrrf_frame_tiled(..., n_tiles=(n, 1), devices=[0 .. n-1])`` with n = number of
   visible GPUs (at most ``--gpus``), and against the same tiling on device 0
   alone.  Reported: bitwise equality and the largest difference relative to the
   map maximum; with ``--shift`` also a shifted frame.  Pass: bitwise equal (the
   tiles use the frame's own Catmull-Rom tap tables, re-based; see the module
   docstring of ``livesr.kernels.tiling``); a non-bitwise result within 1e-6
   of the maximum is reported as ``close`` and fails.
2. Throughput in input frames/s, streaming AVG over ``--frames`` frames: one
   GPU maps the whole frame; N GPUs each map their strip (one host thread per
   device, frames uploaded per tile, maps accumulated on the device, one
   download at the end).  Both include the host->device upload of every frame;
   neither downloads per-frame maps (a 4096² map at M=5 is 1.7 GB).

Exit status 0 when every correctness check is bitwise equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np

log = logging.getLogger("multi_gpu_tiling")
ROOT = Path(__file__).resolve().parents[1]


def import_livesr() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType, str]:
    """Return (tiling, _cupy, _params) modules and where livesr came from."""
    try:
        t = importlib.import_module("livesr.kernels.tiling")
        c = importlib.import_module("livesr.kernels.esrrf_map._cupy")
        p = importlib.import_module("livesr.kernels._params")
        return t, c, p, "installed livesr"
    except Exception as exc:  # noqa: BLE001 - fall back to the source tree
        log.info("installed livesr not usable (%s); loading from %s", exc, ROOT)
    spec = importlib.util.spec_from_file_location(
        "_gpu_esrrf_loader", ROOT / "bench" / "gpu_esrrf.py"
    )
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    _, c, origin = loader.import_livesr()  # livesr, engine, kernels namespaces
    if origin != "installed livesr":  # bare namespaces: load the numpy modules only
        for sub in ("catmull_rom", "rgc", "roberts_cross"):
            loader._load_tree_module(
                f"livesr.kernels.{sub}", None, ROOT / "kernels" / sub
            )
    t = importlib.import_module("livesr.kernels.tiling")
    p = importlib.import_module("livesr.kernels._params")
    return t, c, p, origin


def test_frame(n: int, seed: int = 0) -> np.ndarray:
    """Blinking-emitter-like frame: Gaussian spots on a noisy background, float32."""
    rng = np.random.default_rng(seed)
    img = rng.normal(100.0, 5.0, (n, n)).astype(np.float32)
    k = n * n // 400
    ys, xs = rng.uniform(0, n, k), rng.uniform(0, n, k)
    amp = rng.uniform(200, 1000, k)
    yy, xx = np.mgrid[-4:5, -4:5]
    for y, x, a in zip(ys, xs, amp, strict=True):
        iy, ix = int(y), int(x)
        if 4 <= iy < n - 4 and 4 <= ix < n - 4:
            g = a * np.exp(
                -((yy - (y - iy)) ** 2 + (xx - (x - ix)) ** 2) / (2 * 1.3**2)
            )
            img[iy - 4 : iy + 5, ix - 4 : ix + 5] += g.astype(np.float32)
    return img


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    scale = float(np.abs(a).max()) or 1.0
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {
        "bitwise": bool(np.array_equal(a, b)),
        "max_abs_diff": float(diff.max()),
        "max_rel_to_max": float(diff.max() / scale),
        "n_diff": int(np.count_nonzero(diff)),
    }


def check_size(tiling, cmap, params_mod, cp, n, m, r, gpus, shift) -> dict:
    params = params_mod.EsrrfParams(magnification=m, radius=r)
    frame = test_frame(n, seed=n)
    with cp.cuda.Device(0):
        ref = cmap.esrrf_map_cupy(frame, m, r, 1.0, True, shift)
        cp.get_default_memory_pool().free_all_blocks()
    out = {"size": n, "shift": list(shift), "gpus": gpus}
    t0 = time.perf_counter()
    tiled = tiling.esrrf_frame_tiled(
        frame, params, n_tiles=(gpus, 1), devices=list(range(gpus)), shift=shift
    )
    out["tiled_multi_gpu_s"] = time.perf_counter() - t0
    out["multi_gpu_vs_single"] = compare(ref, tiled)
    del tiled
    one = tiling.esrrf_frame_tiled(
        frame, params, n_tiles=(max(gpus, 2), 1), devices=[0], shift=shift
    )
    out["tiled_one_gpu_vs_single"] = compare(ref, one)
    out["margin_zero"] = bool(
        (ref[: params.margin] == 0).all() and (ref[:, : params.margin] == 0).all()
    )
    for d in range(gpus):
        with cp.cuda.Device(d):
            cp.get_default_memory_pool().free_all_blocks()
    log.info("check %d² shift %s: %s", n, shift, out)
    return out


def throughput(tiling, cmap, params_mod, cp, n, m, r, gpus, frames) -> dict:
    """Streaming AVG throughput (input frames/s) on 1 GPU untiled vs ``gpus`` strips."""
    params = params_mod.EsrrfParams(magnification=m, radius=r)
    host = [test_frame(n, seed=s) for s in range(min(frames, 4))]
    res: dict = {"size": n, "frames": frames}

    # one GPU, whole frame
    with cp.cuda.Device(0):
        runner = cmap.CupyEsrrfMap((n, n), m, r, 1.0, True, (0.0, 0.0), batch=1)
        buf = cp.empty((1, n * m, n * m), dtype=cp.float32)
        acc = cp.zeros((n * m, n * m), dtype=cp.float32)
        for i in range(2):  # warm-up (compile, allocate)
            runner.maps(cp.asarray(host[i % len(host)])[None], out=buf)
        cp.cuda.Device(0).synchronize()
        t0 = time.perf_counter()
        for i in range(frames):
            runner.maps(cp.asarray(host[i % len(host)])[None], out=buf)
            acc += buf[0]
        cp.cuda.Device(0).synchronize()
        dt = time.perf_counter() - t0
        single = cp.asnumpy(acc)
        del runner, buf, acc
        cp.get_default_memory_pool().free_all_blocks()
    res["one_gpu_fps"] = frames / dt

    # N GPUs, one strip each, one host thread per device
    tiles = tiling.plan_tiles((n, n), params, n_tiles=(gpus, 1))
    state = []
    for d, t in enumerate(tiles):
        with cp.cuda.Device(d):
            run = tiling._cupy_tile_runner((n, n), t, params, (0.0, 0.0))
            hm, wm = run.out_shape
            b = cp.empty((1, hm, wm), dtype=cp.float32)
            a = cp.zeros((t.output[0].stop - t.output[0].start, n * m), cp.float32)
            sub = [np.ascontiguousarray(f[t.input]) for f in host]
            for i in range(2):
                run.maps(cp.asarray(sub[i % len(sub)])[None], out=b)
            cp.cuda.Device(d).synchronize()
            state.append((d, t, run, b, a, sub))
    barrier = threading.Barrier(len(state) + 1)

    def work(d, t, run, b, a, sub) -> None:
        with cp.cuda.Device(d):
            barrier.wait()
            for i in range(frames):
                run.maps(cp.asarray(sub[i % len(sub)])[None], out=b)
                a += b[0][t.crop]
            cp.cuda.Device(d).synchronize()

    threads = [threading.Thread(target=work, args=s) for s in state]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    dt = time.perf_counter() - t0
    res["multi_gpu_fps"] = frames / dt
    res["speedup"] = res["multi_gpu_fps"] / res["one_gpu_fps"]
    stitched = np.empty((n * m, n * m), dtype=np.float32)
    for d, t, _, _, a, _ in state:
        with cp.cuda.Device(d):
            stitched[t.output] = cp.asnumpy(a)
    res["avg_sums_equal"] = compare(single, stitched)
    del state
    for d in range(gpus):
        with cp.cuda.Device(d):
            cp.get_default_memory_pool().free_all_blocks()
    log.info("throughput %d²: %s", n, res)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--magnification", type=int, default=5)
    ap.add_argument("--radius", type=float, default=1.5)
    ap.add_argument("--gpus", type=int, default=2, help="use at most this many GPUs")
    ap.add_argument("--frames", type=int, default=20, help="frames per throughput run")
    ap.add_argument("--shift", type=float, nargs=2, default=[0.37, -1.6])
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import cupy as cp

    tiling, cmap, params_mod, origin = import_livesr()
    ngpu = cp.cuda.runtime.getDeviceCount()
    gpus = max(1, min(args.gpus, ngpu))
    names = [
        cp.cuda.runtime.getDeviceProperties(d)["name"].decode() for d in range(ngpu)
    ]
    report: dict = {
        "livesr": origin,
        "devices": names,
        "gpus_used": gpus,
        "magnification": args.magnification,
        "radius": args.radius,
        "checks": [],
        "throughput": [],
    }
    if gpus < 2:
        log.warning("only %d GPU visible: the multi-GPU part runs on 1 device", ngpu)
    ok = True
    for n in args.sizes:
        for shift in ((0.0, 0.0), tuple(args.shift)):
            c = check_size(
                tiling,
                cmap,
                params_mod,
                cp,
                n,
                args.magnification,
                args.radius,
                gpus,
                shift,
            )
            report["checks"].append(c)
            ok &= c["multi_gpu_vs_single"]["bitwise"]
            ok &= c["tiled_one_gpu_vs_single"]["bitwise"]
        t = throughput(
            tiling,
            cmap,
            params_mod,
            cp,
            n,
            args.magnification,
            args.radius,
            gpus,
            args.frames,
        )
        report["throughput"].append(t)
    report["passed"] = bool(ok)
    for t in report["throughput"]:
        log.info(
            "%5d²  M=%d: 1 GPU %.1f frames/s, %d GPUs %.1f frames/s (x%.2f)",
            t["size"],
            args.magnification,
            t["one_gpu_fps"],
            gpus,
            t["multi_gpu_fps"],
            t["speedup"],
        )
    log.info("correctness: %s", "PASS (bitwise)" if ok else "FAIL")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
