"""The pipeline measurement of ``livesr bench --report``: a short
:class:`~livesr.stream._pipeline.Pipeline` run from the simulated camera, with a
chosen per-frame eSRRF map implementation (:func:`frame_map_of`)."""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream.cli._measure_esrrf import M, MapImpl, R, S


def frame_map_of(impl: MapImpl) -> Callable[..., np.ndarray]:
    """An ``esrrf_frame``-compatible callable (``fn(frame, params, *, shift, out)``)
    running ``impl``'s backend at the params' M, R, S (shift (0, 0) only: drift off)."""
    from livesr.engine._registry import registrations
    from livesr.engine._timing import timed_call

    reg = registrations("esrrf_map").get(impl.id)
    if reg is None:
        raise RuntimeError(f"esrrf_map implementation {impl.id!r} is not registered")

    def fn(frame: np.ndarray, params: Any, *, shift: Any = (0.0, 0.0), out: Any = None):
        f32 = np.ascontiguousarray(frame, dtype=np.float32)
        args = (
            f32,
            params.magnification,
            params.radius,
            params.sensitivity,
            params.intensity_weighting,
            (float(shift[0]), float(shift[1])),
        )
        result, _ = timed_call(reg, args, {})
        get = getattr(result, "get", None)  # cupy -> numpy
        result = np.asarray(
            get() if get is not None and impl.backend == "cupy" else result
        )
        if out is not None:
            out[...] = result
            return out
        return result

    fn.implementation = impl.id  # type: ignore[attr-defined]
    return fn


def measure_pipeline(
    *,
    size: int,
    fps: float,
    frames: int,
    window: int,
    stride: int,
    frame_map: Callable[..., np.ndarray] | None,
    budget_ms: float = 500.0,
) -> dict[str, Any]:
    """A short :class:`~livesr.stream._pipeline.Pipeline` run, simulated source.

    Simulated camera (``size``², paced at ``fps``) -> lossless link (inproc) -> raw
    OME-Zarr -> processing ring -> sliding eSRRF (M=5, R=1.5, drift off) -> PUB, in a
    temporary output folder.  Latency is acquired -> published for the newest frame
    of every published window (``windows.csv``).

    Returns
    -------
    dict
        ``summary`` counters, ``by_path`` p50/p99 per latency path (ms), and
        ``latency_ms``: one end-to-end latency per published window.
    """
    import zmq

    from livesr.adapters.sources.simulated import SimulatedSource
    from livesr.stream._pipeline import Pipeline

    sim = _paced_sim(size, fps)
    with tempfile.TemporaryDirectory(prefix="livesr-report-") as folder:
        out = Path(folder) / "run"
        cfg = _run_config(out, window, stride, budget_ms)
        ctx = zmq.Context()
        pipe = Pipeline(
            cfg,
            endpoint=f"inproc://report-{uuid.uuid4().hex[:8]}",
            context=ctx,
            frame_map=frame_map,
        ).start()
        try:
            if not pipe.ready.wait(120.0):
                raise RuntimeError("the pipeline did not warm up within 120 s")
            src = SimulatedSource(
                sim,
                pipe.endpoint,
                frames=frames,
                pace=True,
                stop_event=pipe.stop_requested,
                context=ctx,
            ).start()
            if src.join(600.0) is None:
                raise RuntimeError("the simulated source did not finish within 600 s")
            if not pipe.wait(600.0):
                raise RuntimeError(
                    "the pipeline did not finish processing within 600 s"
                )
        finally:
            summary = pipe.close()
            ctx.term()
        latency = _window_latencies(out / "windows.csv")
    return {
        "size": size,
        "fps": fps,
        "frames": frames,
        "window": window,
        "stride": stride,
        "budget_ms": budget_ms,
        "implementation": summary["implementation"].get("esrrf", "?"),
        "windows_published": summary["windows_published"],
        "windows_skipped": summary["windows_skipped"],
        "frames_acquired": summary["frames_acquired"],
        "frames_persisted": summary["frames_persisted"],
        "frames_in_gaps": summary["frames_in_gaps"],
        "by_path": summary["latency_ms"]["by_path"],
        "latency_ms": latency,
    }


def _window_latencies(path: Path) -> list[float]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [float(row["latency_ms"]) for row in csv.DictReader(fh)]


def _paced_sim(size: int, fps: float) -> Any:
    """The blinking simulated microscope at ``size``², its camera paced at ``fps``."""
    from livesr.sim import SimConfig

    sim = SimConfig.blinking(shape=(size, size), seed=1)
    interval_ms = 1000.0 / fps
    return dataclasses.replace(
        sim,
        camera=dataclasses.replace(
            sim.camera, interval_ms=interval_ms, exposure_ms=min(10.0, interval_ms)
        ),
    )


def _run_config(out: Path, window: int, stride: int, budget_ms: float) -> Any:
    """The run configuration: M=5, R=1.5, S=1, drift off, results in ``out``."""
    from livesr.stream._config import (
        DriftCorrectionConfig,
        EsrrfConfig,
        LivesrConfig,
        StreamConfig,
    )

    return LivesrConfig(
        esrrf=EsrrfConfig(
            window=window, stride=stride, magnification=M, radius=R, sensitivity=S
        ),
        drift=DriftCorrectionConfig(enabled=False),
        stream=StreamConfig(output=str(out), latency_budget_ms=budget_ms, ring_mb=16.0),
    )
