"""``livesr bench --e2e DIR``: the highest camera rate the live path sustains.

For each frame size the benchmark

1. times the bare processing kernel in this process: the per-frame eSRRF map as the
   engine dispatches it (``map_fps``) and the sliding window the pipeline would run
   (host or GPU-resident, batches of ``[stream] max_batch`` frames, no drift, no I/O:
   ``window_fps``);
2. runs real end-to-end trials, each with two processes of its own: ``livesr run
   --listen`` (the pipeline, default settings: persistence to OME-Zarr, drift on) and
   ``livesr run --connect --bank N`` (the simulated camera, paced at the offered rate,
   cycling a bank of pre-rendered frames so the source is never the limit), for
   ``seconds`` at each rate;
3. raises the rate (x ``growth``) from ``start`` until a trial fails, then bisects
   once between the last pass and the first failure.

A trial passes when every frame was persisted (accounting identity, no gap), no
window was skipped, the end-to-end latency p99 (newest frame acquired -> image
published) is within ``budget_ms``, and the camera really ran at >= 95 % of the
offered rate.  Results: ``e2e.json`` (every trial), ``e2e.md`` (a table per size:
sustained rate beside the kernel rates) and ``e2e.png``; each trial's logs, summary
and tables stay under ``runs/`` (its raw and SR stores are deleted once read).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["E2eOptions", "kernel_rates", "run_e2e", "run_trial"]

logger = logging.getLogger(__name__)

#: seconds a pipeline may take to warm up (compiles, timings) before it listens
LISTEN_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class E2eOptions:
    """Settings of ``livesr bench --e2e`` (module docstring).

    Attributes
    ----------
    out_dir : Path
        Output folder (trial run folders under ``runs/``).
    sizes : tuple of int
        Square frame sizes, px.
    seconds : float
        Acquisition time per trial, s.
    start : float or None
        First offered rate, frames/s (None: a quarter of the window's kernel rate).
    max_rate : float or None
        Highest rate tried (None: 1.5 x the window's kernel rate).
    growth : float
        Rate factor between trials, > 1.
    budget_ms : float
        Latency p99 bar, ms.
    window, stride, magnification : int
    radius : float
    drift : bool
    bank : int
        Pre-rendered frames the simulated camera cycles.
    """

    out_dir: Path
    sizes: tuple[int, ...] = (256, 512, 2048)
    seconds: float = 30.0
    start: float | None = None
    max_rate: float | None = None
    growth: float = 1.5
    budget_ms: float = 100.0
    window: int = 50
    stride: int = 10
    magnification: int = 5
    radius: float = 1.5
    drift: bool = True
    bank: int = 200
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sizes or any(s < 16 for s in self.sizes):
            raise ValueError(f"--sizes {self.sizes}: expected sizes >= 16 px")
        if not self.seconds > 0:
            raise ValueError(f"--seconds {self.seconds}: expected > 0")
        if not self.growth > 1:
            raise ValueError(f"--growth {self.growth}: expected > 1")
        if self.start is not None and not self.start > 0:
            raise ValueError(f"--start-rate {self.start}: expected > 0 frames/s")


def _config_toml(
    opts: E2eOptions, size: int, rate: float, frames: int, out: Path
) -> str:
    interval = 1000.0 / rate
    return "\n".join(
        [
            "[esrrf]",
            f"window = {opts.window}",
            f"stride = {opts.stride}",
            f"magnification = {opts.magnification}",
            f"radius = {opts.radius}",
            "[drift]",
            f"enabled = {'true' if opts.drift else 'false'}",
            "[stream]",
            f"frames = {frames}",
            f'output = "{out.as_posix()}"',
            "[sim]",
            "seed = 1",
            "[sim.camera]",
            f"shape = [{size}, {size}]",
            f"interval_ms = {interval!r}",
            f"exposure_ms = {interval!r}",
            "",
        ]
    )


def kernel_rates(
    opts: E2eOptions, size: int, *, seconds: float = 3.0
) -> dict[str, Any]:
    """Bare processing rates at ``size``: engine map per frame, and the window."""
    from livesr.kernels.esrrf_map import kernel as map_kernel
    from livesr.kernels.framemap import MapStage
    from livesr.stream._config import (
        DriftCorrectionConfig,
        EsrrfConfig,
        LivesrConfig,
        StreamConfig,
    )
    from livesr.stream._processing import Processor

    cfg = LivesrConfig(
        esrrf=EsrrfConfig(
            window=opts.window,
            stride=opts.stride,
            magnification=opts.magnification,
            radius=opts.radius,
        ),
        drift=DriftCorrectionConfig(enabled=False),
        stream=StreamConfig(),
    )
    proc = Processor(cfg, MapStage(), lambda *a: None, shape_hint=(size, size))
    proc.warm_up()
    rng = np.random.default_rng(1)
    frames = rng.poisson(100.0, size=(64, size, size)).astype(np.uint16)
    # the engine's map, one frame per call
    e = cfg.esrrf
    kernel = map_kernel
    f32 = frames[0].astype(np.float32)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2 or n < 3:
        kernel(
            f32,
            e.magnification,
            e.radius,
            e.sensitivity,
            e.intensity_weighting,
            shift=(0.1, 0.2),
        )
        n += 1
    map_fps = n / (time.perf_counter() - t0)
    decision = getattr(kernel, "last_decision", None)
    impl = str(getattr(decision, "impl", "esrrf_map"))
    # the window the pipeline would run (warmed up at this shape), in batches
    sl = proc._new_sliding((size, size), frames[0])
    b = cfg.stream.max_batch
    shifts = np.zeros((b, 2))
    sl.push_many(frames[:b], shifts)  # first-call set-up
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2 or n < 2 * b:
        k = (n // b) % (len(frames) // b)
        sl.push_many(frames[k * b : (k + 1) * b], shifts)
        n += b
    window_fps = n / (time.perf_counter() - t0)
    return {
        "size": size,
        "map_fps": map_fps,
        "map_implementation": impl,
        "window_fps": window_fps,
        "window": type(sl).__name__,
        "batch": b,
    }


def _cli() -> list[str]:
    return [sys.executable, "-m", "livesr.stream.cli"]


class _Lines(threading.Thread):
    """Read a process's stderr lines; set ``listening`` when the pipeline listens."""

    def __init__(self, stream: Any, log: Path) -> None:
        super().__init__(daemon=True, name="livesr-e2e-stderr")
        self.stream = stream
        self.log = log
        self.listening = threading.Event()

    def run(self) -> None:
        with self.log.open("w") as fh:
            for raw in iter(self.stream.readline, b""):
                line = raw.decode(errors="replace")
                fh.write(line)
                if "listening on" in line:
                    self.listening.set()


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
            return None


def run_trial(opts: E2eOptions, size: int, rate: float) -> dict[str, Any]:
    """One end-to-end trial at ``rate`` frames/s (module docstring); its result."""
    frames = max(opts.window + opts.stride, math.ceil(rate * opts.seconds))
    name = f"{size}_{rate:.0f}fps"
    run_dir = opts.out_dir / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "out"
    cfg_path = run_dir / "config.toml"
    cfg_path.write_text(_config_toml(opts, size, rate, frames, out))
    endpoint = f"ipc://{run_dir.resolve() / 'ingest.ipc'}"
    env = {**os.environ, **opts.extra_env}
    pipe = subprocess.Popen(
        [
            *_cli(),
            "run",
            "--listen",
            endpoint,
            "--config",
            str(cfg_path),
            "--frame-shape",
            f"{size}x{size}",
            "--no-status",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    lines = _Lines(pipe.stderr, run_dir / "pipeline.log")
    lines.start()
    result: dict[str, Any] = {"size": size, "offered_fps": rate, "frames": frames}
    src = None
    try:
        if not lines.listening.wait(LISTEN_TIMEOUT_S):
            result["error"] = "the pipeline did not start listening"
            return result
        t0 = time.time()
        with (run_dir / "source.log").open("w") as src_log:
            src = subprocess.Popen(
                [
                    *_cli(),
                    "run",
                    "--connect",
                    endpoint,
                    "--config",
                    str(cfg_path),
                    "--bank",
                    str(opts.bank),
                    "--no-status",
                ],
                stderr=src_log,
                stdout=subprocess.DEVNULL,
                env=env,
            )
            src_rc = _reap(src, opts.seconds * 4 + 120)
        pipe_rc = _reap(pipe, 180)
        result.update(
            {"source_rc": src_rc, "pipeline_rc": pipe_rc, "wall_s": time.time() - t0}
        )
    finally:
        for p in (src, pipe):
            if p is not None and p.poll() is None:
                _reap(p, 1)
        lines.join(5)
    return _add_figures(result, out, opts)


def _add_figures(
    result: dict[str, Any], out: Path, opts: E2eOptions
) -> dict[str, Any]:
    """Add the run's figures from ``out/summary.json`` and ``windows.csv`` to a
    trial's ``result`` (an ``error`` without a summary), remove its image stores and
    judge it (``passed``)."""
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        result["error"] = "no summary.json"
        return result
    s = json.loads(summary_path.read_text())
    achieved = _achieved_rate(out / "windows.csv")
    import shutil

    for store in ("raw.ome.zarr", "sr.ome.zarr"):  # GBs per trial; the figures stay
        shutil.rmtree(out / store, ignore_errors=True)
    result.update(
        {
            "frames_acquired": s["frames_acquired"],
            "frames_persisted": s["frames_persisted"],
            "frames_in_gaps": s["frames_in_gaps"],
            "accounting_ok": s["accounting_ok"],
            "windows_published": s["windows_published"],
            "windows_skipped": s["windows_skipped"],
            "p50_ms": s["latency_ms"]["p50"],
            "p99_ms": s["latency_ms"]["p99"],
            "achieved_fps": achieved,
            "implementation": s.get("implementation"),
            "engine": s.get("engine"),
            "memory": s.get("memory"),
            "sr_saved": s.get("sr_saved"),
        }
    )
    result["passed"] = _passed(result, opts)
    return result


def _achieved_rate(windows_csv: Path) -> float | None:
    """Camera rate seen by the pipeline: frames between the first and last published
    image over their acquisition times, frames/s."""
    import csv

    if not windows_csv.is_file():
        return None
    with windows_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) < 2:
        return None
    a, b = rows[0], rows[-1]
    dt = float(b["t_acquired"]) - float(a["t_acquired"])
    n = int(b["last_frame"]) - int(a["last_frame"])
    return n / dt if dt > 0 else None


def _passed(r: dict[str, Any], opts: E2eOptions) -> bool:
    return bool(
        r.get("accounting_ok")
        and r.get("frames_in_gaps") == 0
        and r.get("frames_persisted") == r["frames"]
        and r.get("windows_skipped") == 0
        and r.get("p99_ms") is not None
        and r["p99_ms"] <= opts.budget_ms
        and r.get("achieved_fps") is not None
        and r["achieved_fps"] >= 0.95 * r["offered_fps"]
    )


def _ladder_search(
    opts: E2eOptions, size: int, rates: dict[str, Any]
) -> list[dict[str, Any]]:
    start = opts.start or max(10.0, round(rates["window_fps"] / 4, -1))
    top = opts.max_rate or 1.5 * rates["window_fps"]
    trials: list[dict[str, Any]] = []
    rate = start
    last_pass: float | None = None
    first_fail: float | None = None
    while rate <= top:
        logger.warning("e2e %dx%d: trying %.0f frames/s", size, size, rate)
        r = run_trial(opts, size, rate)
        trials.append(r)
        logger.warning("e2e %dx%d at %.0f frames/s: %s", size, size, rate, _brief(r))
        if r.get("passed"):
            last_pass = rate
            rate *= opts.growth
        else:
            first_fail = rate
            break
    if last_pass is not None and first_fail is not None:
        mid = math.sqrt(last_pass * first_fail)
        if mid - last_pass >= 0.05 * last_pass:
            r = run_trial(opts, size, mid)
            trials.append(r)
            logger.warning("e2e %dx%d at %.0f frames/s: %s", size, size, mid, _brief(r))
    return trials


def _brief(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    return (
        f"{'PASS' if r['passed'] else 'fail'}: {r['frames_persisted']}/{r['frames']} "
        f"persisted, {r['windows_published']} published / {r['windows_skipped']} "
        f"skipped, p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms, camera "
        f"{(r['achieved_fps'] or 0):.0f} frames/s"
    )


def run_e2e(opts: E2eOptions) -> tuple[Path, dict[str, Any]]:
    """Run the benchmark; the Markdown table's path and the results."""
    from livesr.engine._fingerprint import machine_description

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine_description(),
        "options": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()
        },
        "sizes": [],
    }
    for size in opts.sizes:
        rates = kernel_rates(opts, size)
        logger.warning(
            "e2e %dx%d: map %.0f frames/s (%s), window %.0f frames/s (%s)",
            size,
            size,
            rates["map_fps"],
            rates["map_implementation"],
            rates["window_fps"],
            rates["window"],
        )
        trials = _ladder_search(opts, size, rates)
        passed = [t["offered_fps"] for t in trials if t.get("passed")]
        results["sizes"].append(
            {
                **rates,
                "sustained_fps": max(passed) if passed else None,
                "trials": trials,
            }
        )
        _write(opts, results)
    return _write(opts, results), results


def _write(opts: E2eOptions, results: dict[str, Any]) -> Path:
    (opts.out_dir / "e2e.json").write_text(json.dumps(results, indent=2, default=str))
    md = opts.out_dir / "e2e.md"
    md.write_text(markdown(results))
    try:
        plot(results, opts.out_dir / "e2e.png")
    except ImportError:  # matplotlib is an extra ([report])
        logger.warning(
            "matplotlib not installed: no e2e.png (pip install livesr[report])"
        )
    return md


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    o = results["options"]
    lines = [
        "# livesr end-to-end benchmark",
        "",
        f"Machine: {results['machine']}",
        "",
        f"Source in its own process (simulated camera, bank of {o['bank']} frames), "
        f"pipeline `livesr run --listen` with default settings; window {o['window']}, "
        f"stride {o['stride']}, M={o['magnification']}, R={o['radius']}, drift "
        f"{'on' if o['drift'] else 'off'}, raw frames persisted as OME-Zarr; "
        f"{o['seconds']:g} s per trial.  Sustained = every frame persisted, 0 windows "
        f"skipped, p99 <= {o['budget_ms']:g} ms, camera at >= 95 % of the offered rate.",
        "",
        "| frame | sustained frames/s | map alone frames/s (impl) | window alone frames/s |",
        "|---|---|---|---|",
    ]
    for s in results["sizes"]:
        sus = f"{s['sustained_fps']:.0f}" if s["sustained_fps"] else "none tried passed"
        lines.append(
            f"| {s['size']}² | {sus} | {s['map_fps']:.0f} ({s['map_implementation']}) | "
            f"{s['window_fps']:.0f} ({s['window']}, batch {s['batch']}) |"
        )
    lines += [
        "",
        "## Trials",
        "",
        "| frame | offered | camera | persisted | published / skipped | p50 ms | p99 ms | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results["sizes"]:
        for t in s["trials"]:
            if "error" in t:
                lines.append(
                    f"| {s['size']}² | {t['offered_fps']:.0f} | | | | | | error: {t['error']} |"
                )
                continue
            lines.append(
                f"| {s['size']}² | {t['offered_fps']:.0f} | {(t['achieved_fps'] or 0):.0f} | "
                f"{t['frames_persisted']}/{t['frames']} | {t['windows_published']} / "
                f"{t['windows_skipped']} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | "
                f"{'pass' if t['passed'] else 'fail'} |"
            )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """p99 latency and published fraction against the offered rate, per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for s in results["sizes"]:
        ok = [t for t in s["trials"] if "error" not in t]
        if not ok:
            continue
        x = [t["offered_fps"] for t in ok]
        p99 = [max(t["p99_ms"], 1e-1) for t in ok]
        frac = [
            t["windows_published"]
            / max(1, t["windows_published"] + t["windows_skipped"])
            for t in ok
        ]
        (line,) = axes[0].plot(x, p99, "o-", label=f"{s['size']}²")
        axes[0].axvline(s["window_fps"], color=line.get_color(), ls=":", lw=1)
        axes[1].plot(x, frac, "o-", color=line.get_color(), label=f"{s['size']}²")
    axes[0].axhline(results["options"]["budget_ms"], color="k", ls="--", lw=1)
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="offered frames/s",
        ylabel="latency p99, ms",
        title="end to end (dotted: window alone)",
    )
    axes[1].set(
        xscale="log",
        xlabel="offered frames/s",
        ylabel="windows published",
        ylim=(0, 1.05),
        title="published / scheduled",
    )
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_sizes(values: Sequence[str] | None) -> tuple[int, ...]:
    """``--sizes 256 512`` -> (256, 512)."""
    if not values:
        return (256, 512, 2048)
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ValueError(
            f"--sizes {' '.join(values)}: expected integers (px)"
        ) from None
