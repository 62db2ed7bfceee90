"""The parameter-sweep measurement of ``livesr bench --report``: seconds per
(sensitivity, radius) pair of :func:`livesr.kernels.esrrf_sweep` on every CPU
implementation of the engine, and of NanoPyx 2.1.5's ``run_esrrf_parameter_sweep``
on the same frames, interleaved (:func:`measure_sweep`).

The stack is the one ``bench/sweep_bench.py`` simulates (:func:`sweep_stack`, same
seed), so a GPU run of that script on the same case compares with these figures.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from livesr.stream.cli._measure_esrrf import nanopyx_environment

logger = logging.getLogger(__name__)

#: Engine backends that run on the CPU (OpenCL is left out: it may be a GPU).
CPU_BACKENDS = ("cython", "numba", "numpy")
#: The engine kernels every sweep pair goes through.
SWEEP_KERNELS = (
    "livesr.kernels.catmull_rom",
    "livesr.kernels.roberts_cross",
    "livesr.kernels.rgc",
)
#: Frames of the untimed warm-up sweep of each implementation (compile, load).
WARM_FRAMES = 4

__all__ = [
    "CPU_BACKENDS",
    "SWEEP_KERNELS",
    "cpu_sweep_impls",
    "measure_sweep",
    "sweep_stack",
]


def sweep_stack(size: int, frames: int, seed: int = 1) -> np.ndarray:
    """The simulated blinking stack of ``bench/sweep_bench.py``: (frames, size, size)."""
    from livesr.sim import CameraConfig, SimConfig, simulate_stack

    cfg = SimConfig(camera=CameraConfig(shape=(size, size)), seed=seed)
    return np.asarray(simulate_stack(frames, cfg)[0])


def cpu_sweep_impls() -> tuple[list[str], list[str]]:
    """Ids of the CPU implementations every sweep kernel has available.

    Returns
    -------
    ids : list of str
        In :data:`CPU_BACKENDS` order.
    notes : list of str
        One line per CPU implementation left out, with the reason.
    """
    from livesr.engine import load_kernel

    notes: list[str] = []
    available: set[str] | None = None
    for name in SWEEP_KERNELS:
        kernel = load_kernel(name)
        ids = set()
        for info in kernel.implementations(include_unavailable=True):
            if info.backend.value not in CPU_BACKENDS:
                continue
            if info.available:
                ids.add(info.id)
            else:
                notes.append(f"`{info.id}` ({name}) unavailable: {info.reason}")
        available = ids if available is None else available & ids
    order = {b: i for i, b in enumerate(CPU_BACKENDS)}
    found = sorted(available or (), key=lambda i: (order.get(i.split("-")[0], 9), i))
    return found, notes


def _nanopyx_sweep() -> tuple[Callable[..., np.ndarray] | None, str]:
    """NanoPyx's ``run_esrrf_parameter_sweep`` (QnR map), or ``(None, why not)``.

    Call inside :func:`nanopyx_environment`.
    """
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),  # its notes on optional deps
        ):
            warnings.simplefilter("ignore")
            nanopyx = importlib.import_module("nanopyx")
            from nanopyx.methods.esrrf.parameter_sweep import (
                run_esrrf_parameter_sweep,
            )
    except Exception as exc:  # ImportError, or a broken install
        return None, f"nanopyx not importable ({type(exc).__name__}: {exc})"

    def run(stack: np.ndarray, case: dict[str, Any]) -> np.ndarray:
        # its Liquid Engine prints every choice and tqdm draws a bar: keep the
        # report's output clean
        quiet = io.StringIO()
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
        ):
            warnings.simplefilter("ignore")
            return np.asarray(
                run_esrrf_parameter_sweep(
                    stack,
                    magnification=case["magnification"],
                    sensitivities=list(case["sensitivities"]),
                    radii=list(case["radii"]),
                    temporal_correlation="AVG",
                    use_decorr=False,
                    return_qnr=True,
                )
            )

    return run, str(getattr(nanopyx, "__version__", "?"))


def _ours(stack: np.ndarray, case: dict[str, Any], impl: str) -> Any:
    from livesr.kernels import esrrf_sweep

    return esrrf_sweep(
        stack,
        magnification=case["magnification"],
        sensitivities=case["sensitivities"],
        radii=case["radii"],
        temporal="avg",
        impl=impl,
    )


def measure_sweep(
    *,
    size: int,
    frames: int,
    magnification: int,
    sensitivities: Sequence[float],
    radii: Sequence[float],
    rounds: int,
    nanopyx: bool = True,
) -> dict[str, Any]:
    """Seconds per (sensitivity, radius) pair, livesr (each CPU implementation)
    and NanoPyx, on one simulated stack; their best pairs and QnR maps compared.

    Every implementation first sweeps :data:`WARM_FRAMES` frames untimed (compiles,
    NanoPyx's Liquid Engine picks its run type); then ``rounds`` rounds, each
    sweeping the whole stack once with every implementation, in a rotating order.
    Seconds per pair = the best round / number of pairs.

    Returns
    -------
    dict
        ``case`` (size, frames, magnification, sensitivities, radii, pairs);
        ``rows``: per livesr implementation ``{impl, seconds, s_per_pair, best,
        qnr}``; ``fastest``: id of the fastest; ``nanopyx``: version or None and,
        with it, ``nanopyx_seconds``, ``nanopyx_s_per_pair``, ``nanopyx_best``,
        ``nanopyx_qnr``, ``ratio`` (NanoPyx / fastest livesr seconds per pair),
        ``same_best`` and ``max_abs_qnr_diff`` (fastest livesr vs NanoPyx);
        ``notes``: lines for the report.
    """
    pairs = len(sensitivities) * len(radii)
    case: dict[str, Any] = {
        "size": size,
        "frames": frames,
        "magnification": magnification,
        "sensitivities": [float(s) for s in sensitivities],
        "radii": [float(r) for r in radii],
        "pairs": pairs,
    }
    impls, notes = cpu_sweep_impls()
    if not impls:
        raise RuntimeError(
            "no CPU implementation of the sweep kernels is available; run "
            "'livesr backends' to see why"
        )
    stack = sweep_stack(size, frames)
    runners: dict[str, Callable[[np.ndarray], Any]] = {
        impl: functools.partial(_ours, case=case, impl=impl) for impl in impls
    }
    npx_version: str | None = None
    with contextlib.ExitStack() as ctx:
        if nanopyx:
            home = ctx.enter_context(
                tempfile.TemporaryDirectory(prefix="nanopyx-home-")
            )
            ctx.enter_context(nanopyx_environment(home))
            npx, why = _nanopyx_sweep()
            if npx is None:
                notes.append(f"NanoPyx skipped: {why}.")
            else:
                runners["nanopyx"] = functools.partial(npx, case=case)
                npx_version = why
        else:
            notes.append("NanoPyx skipped: --no-nanopyx given.")
        for run in runners.values():  # untimed warm-up
            run(stack[:WARM_FRAMES])
        seconds, results = _interleaved(runners, stack, rounds)
    return _summary(case, seconds, results, npx_version, notes)


def _interleaved(
    runners: dict[str, Callable[[np.ndarray], Any]], stack: np.ndarray, rounds: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """``rounds`` rounds, each running every runner once on ``stack``, starting one
    further each round; seconds per run and each runner's last result."""
    names = list(runners)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, Any] = {}
    for r in range(max(1, rounds)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            results[name] = runners[name](stack)
            seconds[name].append(time.perf_counter() - start)
            logger.info("sweep: %s %.3f s", name, seconds[name][-1])
    return seconds, results


def _summary(
    case: dict[str, Any],
    seconds: dict[str, list[float]],
    results: dict[str, Any],
    npx_version: str | None,
    notes: list[str],
) -> dict[str, Any]:
    pairs = case["pairs"]
    rows = [
        {
            "impl": name,
            "seconds": ts,
            "s_per_pair": min(ts) / pairs,
            "best": [float(v) for v in results[name].best],
            "qnr": np.asarray(results[name].qnr, dtype=np.float64).tolist(),
        }
        for name, ts in seconds.items()
        if name != "nanopyx"
    ]
    fastest = min(rows, key=lambda r: r["s_per_pair"])
    out: dict[str, Any] = {
        "case": case,
        "rows": rows,
        "fastest": fastest["impl"],
        "nanopyx": npx_version,
        "notes": notes,
    }
    if "nanopyx" in seconds:
        ref = np.asarray(results["nanopyx"], dtype=np.float64)
        i, j = np.unravel_index(int(np.argmax(ref)), ref.shape)
        npx_best = [case["sensitivities"][i], case["radii"][j]]
        npx_per_pair = min(seconds["nanopyx"]) / pairs
        out.update(
            nanopyx_seconds=seconds["nanopyx"],
            nanopyx_s_per_pair=npx_per_pair,
            nanopyx_best=npx_best,
            nanopyx_qnr=ref.tolist(),
            ratio=npx_per_pair / fastest["s_per_pair"],
            same_best=fastest["best"] == npx_best,
            max_abs_qnr_diff=float(np.abs(ref - np.asarray(fastest["qnr"])).max()),
        )
        for row in rows:  # every implementation against NanoPyx, for the table
            row["ratio"] = npx_per_pair / row["s_per_pair"]
            row["same_best"] = row["best"] == npx_best
            row["max_abs_qnr_diff"] = float(np.abs(ref - np.asarray(row["qnr"])).max())
    return out
