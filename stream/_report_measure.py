"""Measurements of ``livesr bench --report``: eSRRF maps, transport, pipeline, agent.

Each ``measure_*`` function runs one experiment and returns plain data (numbers,
lists, short strings) that :mod:`livesr.stream._report` turns into Markdown and
:mod:`livesr.stream._report_plots` into PNG figures.  Nothing runs at import; every
heavy import (numba/Cython/OpenCL backends, nanopyx, the pipeline) is inside a
function.

The per-frame eSRRF map implementations are the engine kernel ``esrrf_map``'s
(``kernel.using(id)``) when ``livesr.kernels.esrrf_map`` declares it, else the
registered backend functions themselves (same code, timed to device completion by
the engine's :func:`~livesr.engine._timing.timed_call`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: eSRRF parameters of every timing in the report (NanoPyx's defaults).
M, R, S, IW = 5, 1.5, 1.0, True
ESRRF_PACKAGE = "livesr.kernels.esrrf_map"
NANOPYX_ID = "nanopyx-threaded"


# --------------------------------------------------------------------------- inputs
def emitter_frame(size: int, seed: int = 0) -> np.ndarray:
    """A ``size``² float32 frame of Poisson-noisy Gaussian emitters."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    im = np.full((size, size), 100.0)
    n = max(4, int(150 * (size / 256) ** 2))
    for py, px in rng.uniform(2, size - 2, size=(n, 2)):
        im += 800 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * 1.3**2))
    return rng.poisson(im).astype(np.float32)


# --------------------------------------------------------------------------- eSRRF
@dataclasses.dataclass
class MapImpl:
    """One per-frame eSRRF map implementation: ``run(frame)`` returns when done."""

    id: str
    backend: str
    run: Callable[[np.ndarray], Any]
    via: str  # "kernel.using" | "backend function" | "nanopyx"


def esrrf_map_impls() -> tuple[list[MapImpl], list[str]]:
    """Every available ``esrrf_map`` implementation and notes on the unavailable ones.

    Returns
    -------
    impls : list of MapImpl
        Sorted by id.
    notes : list of str
        One line per unavailable implementation (with the reason) and how the
        implementations are called.
    """
    from livesr.engine import load_kernel, probe
    from livesr.engine._registry import discover_modules, registrations
    from livesr.engine._timing import timed_call

    notes: list[str] = []
    kernel = None
    try:
        kernel = load_kernel(ESRRF_PACKAGE)
    except (ImportError, AttributeError) as exc:
        notes.append(
            f"`{ESRRF_PACKAGE}` declares no engine Kernel yet ({exc}); the registered "
            "backend functions are called directly (same code, timed to completion)."
        )
    args_tail = (M, R, S, IW, (0.0, 0.0))
    impls: list[MapImpl] = []
    if kernel is not None:
        for info in kernel.implementations(include_unavailable=True):
            if not info.available:
                notes.append(f"`{info.id}` unavailable: {info.reason}")
                continue
            fn = kernel.using(info.id)
            impls.append(
                MapImpl(
                    info.id,
                    info.backend.value,
                    lambda frame, fn=fn: fn(frame, *args_tail),
                    "kernel.using",
                )
            )
        return impls, notes
    for failure in discover_modules(ESRRF_PACKAGE):
        notes.append(f"`{failure.id}` unavailable: {failure.reason}")
    for rid, reg in sorted(registrations("esrrf_map").items()):
        avail = probe(reg.backend)
        if not avail.ok:
            notes.append(f"`{rid}` unavailable: {avail.reason}")
            continue
        impls.append(
            MapImpl(
                rid,
                reg.backend.value,
                lambda frame, reg=reg: timed_call(reg, (frame, *args_tail), {})[0],
                "backend function",
            )
        )
    return impls, notes


@contextlib.contextmanager
def nanopyx_environment(home: str) -> Iterator[None]:
    """``HOME`` -> ``home``, ``NANOPYX_DISABLE_OPENCL=1`` while inside (then restored).

    NanoPyx writes its Liquid Engine benchmark files under ``~`` on every call; a
    private HOME keeps the user's untouched and avoids races with other processes.
    """
    saved = {k: os.environ.get(k) for k in ("HOME", "NANOPYX_DISABLE_OPENCL")}
    os.environ["HOME"] = home
    os.environ["NANOPYX_DISABLE_OPENCL"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def nanopyx_impl() -> tuple[MapImpl | None, str]:
    """NanoPyx 2.1.5's ``eSRRF_ST`` threaded run type, or ``(None, why not)``.

    Call inside :func:`nanopyx_environment`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nanopyx = importlib.import_module("nanopyx")
            from nanopyx.core.transform import eSRRF_ST
    except Exception as exc:  # ImportError, or a broken install
        return None, f"nanopyx not importable ({type(exc).__name__}: {exc})"
    version = getattr(nanopyx, "__version__", "?")

    def run(frame: np.ndarray) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return eSRRF_ST(verbose=False).run(
                frame[None],
                magnification=M,
                radius=R,
                sensitivity=S,
                doIntensityWeighting=IW,
                run_type="threaded",
            )

    return MapImpl(NANOPYX_ID, "cython (nanopyx)", run, "nanopyx"), version


def measure_esrrf(
    sizes: Sequence[int],
    rounds: int,
    *,
    nanopyx: bool = True,
    nanopyx_rounds: int = 2,
    slow_s: float = 2.0,
) -> dict[str, Any]:
    """Per-frame eSRRF map throughput, every implementation interleaved, per size.

    Per size: one untimed warm-up call of each implementation (JIT, OpenCL build,
    CuPy compile), then ``rounds`` rounds in which every implementation is timed
    once, in a rotating order (so load changes hit all alike).  NanoPyx takes part in
    the first ``nanopyx_rounds`` rounds only, as does any implementation whose
    warm-up took longer than ``slow_s`` (at least 2 rounds).

    Returns
    -------
    dict
        ``rows``: ``{impl, backend, via, size, n, median_s, min_s, fps}`` per timed
        pair; ``notes``: lines for the report; ``nanopyx``: version or ``None``.
    """
    impls, notes = esrrf_map_impls()
    npx_version: str | None = None
    with contextlib.ExitStack() as stack:
        if nanopyx:
            home = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="nanopyx-home-")
            )
            stack.enter_context(nanopyx_environment(home))
            npx, why = nanopyx_impl()
            if npx is None:
                notes.append(f"NanoPyx skipped: {why}.")
            else:
                impls.append(npx)
                npx_version = why
        else:
            notes.append("NanoPyx skipped: --no-nanopyx given.")
        if not impls:
            raise RuntimeError(
                "no esrrf_map implementation is available; run 'livesr backends' to "
                "see why"
            )
        rows: list[dict[str, Any]] = []
        for size in sizes:
            frame = emitter_frame(size)
            limit: dict[str, int] = {}
            for impl in list(impls):
                start = time.perf_counter()
                try:
                    impl.run(frame)
                except Exception as exc:  # one broken implementation: note it, go on
                    logger.error("esrrf %d²: %s failed: %s", size, impl.id, exc)
                    notes.append(
                        f"`{impl.id}` failed at {size}² and was left out: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    impls.remove(impl)
                    continue
                warm = time.perf_counter() - start
                if impl.via == "nanopyx":
                    limit[impl.id] = max(1, nanopyx_rounds)
                elif warm > slow_s:
                    limit[impl.id] = max(2, min(rounds, nanopyx_rounds))
                logger.info("esrrf %d²: %s warm-up %.3f s", size, impl.id, warm)
            if not impls:
                raise RuntimeError(
                    "every esrrf_map implementation failed (see the notes)"
                )
            times: dict[str, list[float]] = {i.id: [] for i in impls}
            for r in range(rounds):
                order = impls[r % len(impls) :] + impls[: r % len(impls)]
                for impl in order:
                    if len(times[impl.id]) >= limit.get(impl.id, rounds):
                        continue
                    start = time.perf_counter()
                    impl.run(frame)
                    times[impl.id].append(time.perf_counter() - start)
            for impl in impls:
                ts = times[impl.id]
                med = statistics.median(ts)
                rows.append(
                    {
                        "impl": impl.id,
                        "backend": impl.backend,
                        "via": impl.via,
                        "size": size,
                        "n": len(ts),
                        "median_s": med,
                        "min_s": min(ts),
                        "fps": 1.0 / med,
                    }
                )
                logger.info("esrrf %d²: %s median %.4f s", size, impl.id, med)
    return {"rows": rows, "notes": notes, "nanopyx": npx_version}


# --------------------------------------------------------------------------- transport
_INGEST_CHILD = r"""
import sys, time, threading
import numpy as np
from livesr.stream._ingest import Ingest, IngestConfig

endpoint, out = sys.argv[1], sys.argv[4]
n, frame_bytes = int(sys.argv[2]), int(sys.argv[3])
lat = np.zeros(n); age = np.zeros(n); seen = np.zeros(n, np.int64); bad = [0]
done = threading.Event()

def on_frame(header, frame):
    now = time.time()
    s = header.seq
    if int(frame[0, 0]) != (s & 0xFFFF) or int(frame[-1, -1]) != ((s >> 16) & 0xFFFF):
        bad[0] += 1
    lat[s] = now - header.t_send
    age[s] = now - header.t_acq
    seen[s] += 1

ingest = Ingest(IngestConfig(endpoint=endpoint, window=16, max_frame_bytes=frame_bytes),
                on_frame, on_end=lambda s, summary: done.set()).start()
sys.stdout.write("bound\n"); sys.stdout.flush()
done.wait(600)
ingest.close()
np.savez(out, lat=lat, age=age, seen=seen, bad=np.array(bad))
"""


def measure_transport(
    shape: tuple[int, int], fps: float, seconds: float, ring_frames: int = 256
) -> dict[str, Any]:
    """SourceLink (this process) -> Ingest (a child process) over ``ipc://``, paced.

    The producer stamps each frame's seq into two pixels and sends ``fps`` frames/s
    for ``seconds``; the child checks the stamps and records, per frame, the wire
    latency ``receive - t_send`` and the age ``receive - t_acq``.

    Returns
    -------
    dict
        Counters (``frames``, ``received``, ``lost``, ``duplicates``, ``corrupted``,
        ``frames_in_gaps``, ``producer_late``), rates and the per-frame latency and
        age arrays in ms (``latency_ms``, ``age_ms``).
    """
    from livesr.stream._transport import SourceLink, SourceLinkConfig

    n = max(1, int(fps * seconds))
    frame_bytes = shape[0] * shape[1] * 2
    with tempfile.TemporaryDirectory(prefix="livesr-report-") as folder:
        endpoint = f"ipc://{folder}/transport.ipc"
        out = f"{folder}/transport.npz"
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _INGEST_CHILD,
                endpoint,
                str(n),
                str(frame_bytes),
                out,
            ],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        try:
            line = child.stdout.readline()
            if line != b"bound\n":
                raise RuntimeError(
                    f"the ingest child process did not start (said {line!r}); run "
                    "'python -c \"import livesr.stream._ingest\"' to see why"
                )
            link = SourceLink(
                SourceLinkConfig(
                    endpoint=endpoint,
                    stream="report",
                    shape=shape,
                    ring_frames=ring_frames,
                    overflow="continue",
                )
            ).start()
            frames = [
                np.random.default_rng(i).integers(0, 4000, shape, dtype=np.uint16)
                for i in range(2)
            ]
            try:
                if not link.wait_ready(10):
                    raise RuntimeError(
                        "the ingest did not answer the handshake in 10 s"
                    )
                period = 1.0 / fps
                late = 0
                t0 = time.perf_counter()
                for s in range(n):
                    wait = t0 + s * period - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    elif wait < -period:
                        late += 1
                    f = frames[s & 1]
                    f[0, 0] = s & 0xFFFF
                    f[-1, -1] = (s >> 16) & 0xFFFF
                    link.send(f, t_acq=time.time(), timeout=0.0)
                t_sent = time.perf_counter()
                summary = link.close(timeout=30)
                t_done = time.perf_counter()
            finally:
                link.close(timeout=0)
            if child.wait(60) != 0:
                raise RuntimeError(
                    f"the ingest child process exited with {child.returncode}"
                )
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            child.stdout.close()
        with np.load(out) as z:
            lat, age, seen, bad = z["lat"], z["age"], z["seen"], int(z["bad"][0])
    got = seen > 0
    gaps = int(summary["frames_in_gaps"])
    return {
        "shape": list(shape),
        "offered_fps": fps,
        "seconds": seconds,
        "frames": n,
        "received": int(got.sum()),
        "lost": int(n - got.sum() - gaps),
        "frames_in_gaps": gaps,
        "duplicates": int((seen > 1).sum()),
        "corrupted": bad,
        "producer_late": late,
        "producer_fps": n / (t_sent - t0),
        "achieved_fps": n / (t_done - t0),
        "MB_per_s": n * frame_bytes / (t_done - t0) / 1e6,
        "ring_peak": summary.get("ring_peak"),
        "latency_ms": (lat[got] * 1e3).tolist(),
        "age_ms": (age[got] * 1e3).tolist(),
    }


# --------------------------------------------------------------------------- pipeline
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
    from livesr.sim import SimConfig
    from livesr.stream._config import (
        DriftCorrectionConfig,
        EsrrfConfig,
        LivesrConfig,
        StreamConfig,
    )
    from livesr.stream._pipeline import Pipeline

    sim = SimConfig.blinking(shape=(size, size), seed=1)
    interval_ms = 1000.0 / fps
    sim = dataclasses.replace(
        sim,
        camera=dataclasses.replace(
            sim.camera, interval_ms=interval_ms, exposure_ms=min(10.0, interval_ms)
        ),
    )
    with tempfile.TemporaryDirectory(prefix="livesr-report-") as folder:
        out = Path(folder) / "run"
        cfg = LivesrConfig(
            esrrf=EsrrfConfig(
                window=window, stride=stride, magnification=M, radius=R, sensitivity=S
            ),
            drift=DriftCorrectionConfig(enabled=False),
            stream=StreamConfig(
                output=str(out), latency_budget_ms=budget_ms, ring_mb=16.0
            ),
        )
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


# --------------------------------------------------------------------------- agent
def _empty_package() -> str:
    """An in-memory package with no modules (engine discovery finds nothing in it)."""
    name = f"_livesr_report_toy_{uuid.uuid4().hex[:8]}"
    pkg = types.ModuleType(name)
    pkg.__path__ = []  # type: ignore[attr-defined]
    sys.modules[name] = pkg
    return name


def measure_agent(
    impls: Sequence[MapImpl],
    *,
    size: int,
    calls: int,
    delayed: range,
    warm_runs: int = 12,
    delay_factor: float = 3.0,
    seed: int = 42,
) -> dict[str, Any]:
    """The delay agent vs "always the benchmark favourite" under an induced delay.

    A private toy kernel gets two implementations that run real ``esrrf_map``
    backends (the two fastest of ``impls``, which must be sorted fastest first) on
    a ``size``² frame.  After ``warm_runs`` benchmark runs of each, the favourite is
    the one with the lower median.  During calls ``delayed`` the favourite is slowed
    by a hook: ``time.sleep(delay_factor × the other's median)`` (its device being
    busy with someone else's work, as the NanoPyx paper's overloaded GPU).  The two
    sequences of ``calls`` calls (the favourite every time; the dispatcher with a
    :class:`~livesr.engine.DelayAgent`) are interleaved call by call.

    Returns
    -------
    dict
        Per-call seconds ``always_s`` and ``agent_s``, the agent's choices
        ``agent_impl``, the two ids, the medians, the extra sleep, mean times and
        their ratio (``ratio`` = always / agent), and the means over the delayed
        stretch.
    """
    import random

    from livesr.engine import DelayAgent, Kernel, implementation
    from livesr.engine._registry import registrations, unregister
    from livesr.engine._timing import timed_call

    if len(impls) < 2:
        raise RuntimeError(
            "the agent experiment needs two esrrf_map implementations; run "
            "'livesr backends --kernel esrrf_map' to see which are missing"
        )
    regs = registrations("esrrf_map")
    pair = [i for i in impls if i.id in regs][:2]
    if len(pair) < 2:
        raise RuntimeError("fewer than two esrrf_map backends are registered")
    package = _empty_package()
    name = package.lstrip("_")
    state = {"call": -1, "extra": 0.0, "slowed": ""}
    frame = emitter_frame(size, seed=1)
    try:
        kernel = Kernel(name, package=package)
        for impl in pair:
            reg = regs[impl.id]

            def run(x: np.ndarray, reg: Any = reg) -> Any:
                result, _ = timed_call(reg, (x, M, R, S, IW, (0.0, 0.0)), {})
                if reg.id == state["slowed"] and state["call"] in delayed:
                    time.sleep(state["extra"])
                return result

            implementation(name, backend=reg.backend, variant=reg.variant)(run)
        kernel.configure(agent=DelayAgent(name, rng=random.Random(seed)), store=None)
        bench = kernel.benchmark(frame, repeats=warm_runs)
        medians = {k: statistics.median(v) for k, v in bench.items()}
        favourite = min(medians, key=medians.__getitem__)
        other = next(k for k in medians if k != favourite)
        state["slowed"] = favourite
        state["extra"] = delay_factor * medians[other]
        always = kernel.using(favourite)
        always_s: list[float] = []
        agent_s: list[float] = []
        agent_impl: list[str] = []
        for i in range(calls):
            state["call"] = i
            for which in (0, 1) if i % 2 == 0 else (1, 0):
                start = time.perf_counter()
                if which == 0:
                    always(frame)
                    always_s.append(time.perf_counter() - start)
                else:
                    kernel(frame)
                    agent_s.append(time.perf_counter() - start)
                    decision = kernel.last_decision
                    agent_impl.append(decision.impl if decision else "?")
    finally:
        unregister(name)
        sys.modules.pop(package, None)
    stretch = [i for i in delayed if i < calls]
    mean_always, mean_agent = float(np.mean(always_s)), float(np.mean(agent_s))
    return {
        "size": size,
        "calls": calls,
        "delayed": [delayed.start, delayed.stop],
        "favourite": favourite,
        "other": other,
        "medians_s": medians,
        "extra_s": state["extra"],
        "delay_factor": delay_factor,
        "always_s": always_s,
        "agent_s": agent_s,
        "agent_impl": agent_impl,
        "mean_always_s": mean_always,
        "mean_agent_s": mean_agent,
        "ratio": mean_always / mean_agent,
        "stretch_mean_always_s": float(np.mean([always_s[i] for i in stretch])),
        "stretch_mean_agent_s": float(np.mean([agent_s[i] for i in stretch])),
        "agent_other_in_stretch": sum(agent_impl[i] == other for i in stretch),
        "agent_other_outside": sum(
            agent_impl[i] == other for i in range(calls) if i not in delayed
        ),
    }


# --------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    """CPU model, cores, GPUs (NVIDIA driver / CuPy), livesr version, Python, numpy."""
    import platform

    from livesr.engine._fingerprint import machine_description

    desc = dict(machine_description())
    gpus = list(desc.get("gpus") or [])
    if not gpus and "cupy" in sys.modules:
        with contextlib.suppress(Exception):
            cupy = sys.modules["cupy"]
            props = cupy.cuda.runtime.getDeviceProperties(0)
            gpus = [props["name"].decode()]
    return {
        "cpu": desc.get("cpu", "?"),
        "cores": desc.get("cpu_count", 0),
        "gpus": gpus,
        "livesr": desc.get("livesr", "?"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": threading.active_count(),
    }


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (NaN where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        nan = float("nan")
        return nan, nan, nan
