"""The eSRRF map measurement of ``livesr bench --report``: the implementations
(every available ``esrrf_map`` backend, NanoPyx's ``eSRRF_ST``), the input frame,
and their interleaved throughput (:func:`measure_esrrf`).

The per-frame eSRRF map implementations are the engine kernel ``esrrf_map``'s
(``kernel.using(id)``) when ``livesr.kernels.esrrf_map`` declares it, else the
registered backend functions themselves (same code, timed to device completion by
the engine's :func:`~livesr.engine._timing.timed_call`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
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
            impls.append(
                MapImpl(
                    info.id,
                    info.backend.value,
                    functools.partial(_call_tail, kernel.using(info.id), args_tail),
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
                functools.partial(_call_timed, timed_call, reg, args_tail),
                "backend function",
            )
        )
    return impls, notes


def _call_tail(fn: Callable[..., Any], tail: tuple[Any, ...], frame: np.ndarray) -> Any:
    """``fn(frame, *tail)``: an engine dispatch with the report's eSRRF parameters."""
    return fn(frame, *tail)


def _call_timed(
    timed_call: Callable[..., Any], reg: Any, tail: tuple[Any, ...], frame: np.ndarray
) -> Any:
    """One registered backend function on ``frame``, timed to completion."""
    return timed_call(reg, (frame, *tail), {})[0]


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
            limit = _warm_up(impls, frame, notes, rounds, nanopyx_rounds, slow_s)
            times = _interleaved_times(impls, frame, rounds, limit)
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


def _warm_up(
    impls: list[MapImpl],
    frame: np.ndarray,
    notes: list[str],
    rounds: int,
    nanopyx_rounds: int,
    slow_s: float,
) -> dict[str, int]:
    """Call each implementation once, untimed; drop (and note) the ones that fail.

    Returns the number of timed rounds of the implementations that take part in
    fewer than ``rounds`` (NanoPyx, and those whose warm-up took over ``slow_s``).
    """
    size = frame.shape[0]
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
        raise RuntimeError("every esrrf_map implementation failed (see the notes)")
    return limit


def _interleaved_times(
    impls: list[MapImpl], frame: np.ndarray, rounds: int, limit: dict[str, int]
) -> dict[str, list[float]]:
    """Seconds per call of each implementation: ``rounds`` rounds, each calling every
    implementation once (until its ``limit``), starting one further each round."""
    times: dict[str, list[float]] = {i.id: [] for i in impls}
    for r in range(rounds):
        order = impls[r % len(impls) :] + impls[: r % len(impls)]
        for impl in order:
            if len(times[impl.id]) >= limit.get(impl.id, rounds):
                continue
            start = time.perf_counter()
            impl.run(frame)
            times[impl.id].append(time.perf_counter() - start)
    return times
