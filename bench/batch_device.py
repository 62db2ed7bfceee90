"""Batched GPU sliding window: parity checks and frames/s (run on a CUDA machine).

    python bench/batch_device.py --out results.json [--sizes 256,512,2048]

(a) parity: ``DeviceSlidingEsrrf.push_many`` in batches of 1..3*stride equals
frame-by-frame ``push`` (<= 1e-6 of the image maximum) and the host
``SlidingEsrrf`` (<= 1e-5), every window / stride / temporal mode case below,
``set_params`` and ``reset`` between batches; CuPy batch map vs the numpy
reference (``esrrf_map_batch`` cases).
(b) frames/s of ``push_many`` at M=5, R=1.5, window 50, stride 10 for batch
sizes 1 / 8 / 32 (pinned CuPy batch map, and the engine-dispatched one at the
smallest size), beside the per-frame ``push`` of the previous window
(``--old`` module, a previous ``kernels/sliding_device.py``), and the cost of the
host tap re-planning per new shift that the device taps removed
(``CupyEsrrfMap.set_shift`` + ``maps`` vs ``maps_shifted``).  Every frame has
its own shift (a random walk), uint16 frames from host memory, images
downloaded to the host.  Needs only numpy and cupy (no pytest).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import logging
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

logger = logging.getLogger("batch_device")


def _cupy_batch(host, dev, params, shifts, deadline_s, out=None):
    from livesr.kernels.esrrf_map_batch._cupy import esrrf_map_batch_cupy

    return esrrf_map_batch_cupy(dev, params.magnification, params.radius,
                                params.sensitivity, params.intensity_weighting,
                                shifts=shifts, out=out)


def _host_taps_map(n):
    """The previous per-frame CuPy map: host tap tables re-planned per new shift."""
    from livesr.kernels.esrrf_map._cupy import CupyEsrrfMap

    plan = CupyEsrrfMap((n, n), 5, 1.5, 1.0, True, batch=1)

    def fmap(host, dev, params, shift, deadline_s):
        plan.set_shift(tuple(shift))
        return plan.maps(dev[None])[0]

    return fmap


def _movie(n, h, w, seed=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w), np.uint16)
    for t in range(n):
        img = np.zeros((h, w))
        for cy, cx in ((h * 0.3 + 0.05 * t, w * 0.4), (h * 0.7, w * 0.6 - 0.03 * t)):
            img += 400 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
        frames[t] = rng.poisson(img + 20)
    shifts = np.cumsum(rng.normal(0, 0.05, (n, 2)), axis=0)
    return frames, shifts


def _rel(a, b):
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def parity() -> dict:
    from livesr.kernels import SlidingEsrrf
    from livesr.kernels.esrrf_map import kernel as one
    from livesr.kernels.esrrf_map_batch import kernel as many
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    out: dict = {"kernel_cases": {}, "push_many_vs_push": 0.0, "device_vs_host": 0.0,
                 "set_params_reset": 0.0, "checks": 0}
    for case in many.cases():
        ref = many.using("numpy")(*case.args, **case.kwargs)
        got = many.using("cupy")(*case.args, **case.kwargs)
        got = got.get() if hasattr(got, "get") else got
        out["kernel_cases"][case.name] = _rel(got, ref)
        assert _rel(got, ref) <= 1e-4, case.name
    frames, shifts = _movie(40, 12, 14)
    run_one = one.using("cupy")

    def frame_map(frame, params, *, shift=(0.0, 0.0), out=None):
        img = run_one(frame, params.magnification, params.radius, params.sensitivity,
                      params.intensity_weighting, shift=tuple(shift))
        img = img.get() if hasattr(img, "get") else img
        if out is None:
            return img
        out[...] = img
        return out

    def chunks(n, size):
        return [(c, min(n, c + size)) for c in range(0, n, size)]

    for (window, stride), temporal in itertools.product(
        [(2, 1), (5, 3), (4, 7), (6, 6), (10, 10)], ["avg", "var", "tac2"]
    ):
        host = SlidingEsrrf(window, stride, temporal=temporal, magnification=3,
                            frame_map=frame_map)
        want_host = host.push_many(frames, shifts)
        ref = DeviceSlidingEsrrf(window, stride, temporal=temporal, magnification=3,
                                 batch_map=_cupy_batch)
        want = [ref.push(frames[i], shift=shifts[i]) for i in range(len(frames))]
        want = [w for w in want if w is not None]
        assert len(want) == len(want_host) > 0
        for w, h in zip(want, want_host, strict=True):
            out["device_vs_host"] = max(out["device_vs_host"], _rel(w.image, h.image))
        for size in sorted({1, 2, stride, stride + 1, 3 * stride}):
            dev = DeviceSlidingEsrrf(window, stride, temporal=temporal,
                                     magnification=3, batch_map=_cupy_batch,
                                     max_batch=8, result_buffers=2)
            got = []
            for a, b in chunks(len(frames), size):
                got += [replace(r, image=np.array(r.image))
                        for r in dev.push_many(frames[a:b], shifts[a:b])]
            assert len(got) == len(want), (window, stride, temporal, size)
            for g, w in zip(got, want, strict=True):
                assert (g.first_frame, g.last_frame) == (w.first_frame, w.last_frame)
                out["push_many_vs_push"] = max(out["push_many_vs_push"],
                                               _rel(g.image, w.image))
                out["checks"] += 1
    # set_params and reset between batches, warm_up first
    one_w = DeviceSlidingEsrrf(6, 3, magnification=2, batch_map=_cupy_batch)
    many_w = DeviceSlidingEsrrf(6, 3, magnification=2, batch_map=_cupy_batch,
                                max_batch=4)
    many_w.warm_up(frames.shape[1:], 4)
    changes = {10: {"radius": 2.0, "window": 5}, 20: {"temporal": "tac2", "stride": 4}}
    want, got = [], []
    for a, b in chunks(len(frames), 5):
        if a in changes:
            for s in (one_w, many_w):
                s.set_params(recompute=True, **changes[a])
        if a == 30:
            one_w.reset()
            many_w.reset()
        want += [one_w.push(frames[i], shift=shifts[i]) for i in range(a, b)]
        got += many_w.push_many(frames[a:b], shifts[a:b])
    want = [w for w in want if w is not None]
    assert len(got) == len(want) > 5
    for g, w in zip(got, want, strict=True):
        assert (g.first_frame, g.last_frame) == (w.first_frame, w.last_frame)
        out["set_params_reset"] = max(out["set_params_reset"], _rel(g.image, w.image))
    assert out["push_many_vs_push"] <= 1e-6, out
    assert out["set_params_reset"] <= 1e-6, out
    assert out["device_vs_host"] <= 1e-5, out
    return out


def _rate(sl, frames, shifts, n_frames, batch) -> tuple[float, int]:
    import cupy as cp

    k = len(frames)
    idx = np.arange(n_frames) % k
    emitted = 0
    cp.cuda.get_current_stream().synchronize()
    t0 = time.perf_counter()
    for c in range(0, n_frames, batch):
        sel = idx[c : c + batch]
        if batch == 1:
            r = sl.push(frames[sel[0]], shift=shifts[c])
            emitted += r is not None
        else:
            emitted += len(sl.push_many(frames[sel], shifts[c : c + batch]))
    cp.cuda.get_current_stream().synchronize()
    return n_frames / (time.perf_counter() - t0), emitted


QUICK = False


def throughput(sizes, old_module, report=None, out=None) -> dict:
    res: dict = {}
    if report is not None:
        report["throughput"] = res
    for n in sizes:
        try:
            res[f"{n}x{n}"] = _throughput_one(n, old_module)
        except Exception:  # keep the other sizes
            res[f"{n}x{n}"] = {"error": traceback.format_exc()}
        logger.info("%dx%d: %s", n, n, res[f"{n}x{n}"])
        if out is not None:  # what is done so far, in case the run is cut short
            Path(out).write_text(json.dumps(report, indent=1))
    return res


def _throughput_one(n, old_module) -> dict:
    import cupy as cp

    from livesr.kernels.esrrf_map._cupy import CupyEsrrfMap
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    kw = {"magnification": 5, "radius": 1.5, "temporal": "avg"}
    if True:  # one frame size
        nf = {256: 1200, 512: 600, 2048: 160}.get(n, 200) // (2 if QUICK else 1)
        bank = 32 if n >= 2048 else 64
        rng = np.random.default_rng(0)
        frames = rng.poisson(100, (bank, n, n)).astype(np.uint16)
        shifts = np.cumsum(rng.normal(0, 0.02, (nf, 2)), axis=0)
        row: dict = {"frames": nf}
        frac = 0.9
        for batch in (1, 8, 32):
            sl = DeviceSlidingEsrrf(50, 10, batch_map=_cupy_batch, max_batch=batch,
                                    device_fraction=frac, result_buffers=4, **kw)
            sl.warm_up((n, n), batch)
            fps, emitted = _rate(sl, frames, shifts, nf, batch)
            row[f"push_many_b{batch}_fps"] = round(fps, 1)
            row[f"push_many_b{batch}_windows"] = emitted
            del sl
            cp.get_default_memory_pool().free_all_blocks()
        if n <= 512:  # the engine-dispatched batch map (agent + validation per call)
            sl = DeviceSlidingEsrrf(50, 10, max_batch=32, device_fraction=frac,
                                    result_buffers=4, **kw)
            sl.deadline_s = 1.0 / 2000
            sl.warm_up((n, n), 32)
            fps, _ = _rate(sl, frames, shifts, nf, 32)
            row["push_many_b32_engine_fps"] = round(fps, 1)
            from livesr.kernels.esrrf_map_batch import kernel

            row["engine_last_impl"] = getattr(kernel.last_decision, "impl", None)
            del sl
            cp.get_default_memory_pool().free_all_blocks()
        if old_module is not None and (not QUICK or n <= 256):
            # main's per-frame window with main's map path: taps planned on the host
            # for every new shift (CupyEsrrfMap.set_shift), one launch pair per frame
            old = old_module.DeviceSlidingEsrrf(50, 10, frame_shape=(n, n),
                                                device_fraction=frac,
                                                frame_map=_host_taps_map(n), **kw)
            old.push(frames[0])
            old.push(frames[1], shift=(0.3, 0.1))
            old.reset()
            fps, _ = _rate(old, frames, shifts, min(nf, 400), 1)
            row["old_push_fps"] = round(fps, 1)
            del old
            cp.get_default_memory_pool().free_all_blocks()
        # host tap re-planning per new shift (old CupyEsrrfMap path) vs device taps
        if QUICK:
            return row
        plan = CupyEsrrfMap((n, n), 5, 1.5, 1.0, True, batch=8)
        dev = cp.asarray(frames[:1].astype(np.float32))
        outb = cp.empty((1, 5 * n, 5 * n), cp.float32)
        reps = 50 if n < 2048 else 10
        for mode in ("host_taps", "device_taps"):
            cp.cuda.get_current_stream().synchronize()
            t0 = time.perf_counter()
            for r in range(reps):
                s = (0.01 * r + 0.001, -0.013 * r)
                if mode == "host_taps":
                    plan.set_shift(s)
                    plan.maps(dev, out=outb)
                else:
                    plan.maps_shifted(dev, cp.asarray(np.array([s])), out=outb)
            cp.cuda.get_current_stream().synchronize()
            row[f"map_{mode}_ms"] = round((time.perf_counter() - t0) / reps * 1e3, 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="256,512,2048")
    ap.add_argument("--old", default="", help="path of the previous sliding_device.py")
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--quick", action="store_true", help="half the frames, no map "
                    "micro-benchmark")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    import cupy as cp

    report: dict = {
        "device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "settings": "M=5, R=1.5, S=1, weighting on, AVG, window 50, stride 10, "
        "uint16 frames, per-frame random-walk shifts, macro-pixel on, images "
        "downloaded (pinned)",
    }
    t0 = time.perf_counter()
    if not a.skip_parity:
        try:
            report["parity"] = parity()
        except Exception:  # keep going: the timings still come back
            report["parity_error"] = traceback.format_exc()
        logger.info("parity: %s", report.get("parity") or report.get("parity_error"))
    report["parity_s"] = round(time.perf_counter() - t0, 1)
    old = None
    if a.old:
        spec = importlib.util.spec_from_file_location("livesr.kernels._old_sd", a.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    global QUICK
    QUICK = a.quick
    throughput([int(s) for s in a.sizes.split(",")], old, report, a.out)
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
