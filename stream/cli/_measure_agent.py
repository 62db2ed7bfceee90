"""The agent measurement of ``livesr bench --report``: the engine's
:class:`~livesr.engine.DelayAgent` against "always the benchmark favourite" while
the favourite is slowed down."""

from __future__ import annotations

import statistics
import sys
import time
import types
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from livesr.stream.cli._measure_esrrf import IW, M, MapImpl, R, S, emitter_frame


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
    from livesr.engine._registry import unregister

    pair = _registered_pair(impls)
    package = _empty_package()
    name = package.lstrip("_")
    state: dict[str, Any] = {"call": -1, "extra": 0.0, "slowed": ""}
    frame = emitter_frame(size, seed=1)
    try:
        kernel = _toy_kernel(name, package, pair, state, delayed, seed)
        bench = kernel.benchmark(frame, repeats=warm_runs)
        medians = {k: statistics.median(v) for k, v in bench.items()}
        favourite = min(medians, key=medians.__getitem__)
        other = next(k for k in medians if k != favourite)
        state["slowed"] = favourite
        state["extra"] = delay_factor * medians[other]
        always_s, agent_s, agent_impl = _race(
            kernel.using(favourite), kernel, frame, calls, state
        )
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


def _registered_pair(impls: Sequence[MapImpl]) -> list[Any]:
    """The engine registrations of the first two of ``impls`` that are registered."""
    from livesr.engine._registry import registrations

    if len(impls) < 2:
        raise RuntimeError(
            "the agent experiment needs two esrrf_map implementations; run "
            "'livesr backends --kernel esrrf_map' to see which are missing"
        )
    regs = registrations("esrrf_map")
    pair = [regs[i.id] for i in impls if i.id in regs][:2]
    if len(pair) < 2:
        raise RuntimeError("fewer than two esrrf_map backends are registered")
    return pair


def _toy_kernel(
    name: str,
    package: str,
    pair: Sequence[Any],
    state: dict[str, Any],
    delayed: range,
    seed: int,
) -> Any:
    """The private kernel ``name`` (discovering ``package``) with one implementation
    per registration in ``pair``, each running that ``esrrf_map`` backend and then
    sleeping ``state["extra"]`` s when it is ``state["slowed"]`` during a call in
    ``delayed``; dispatched by a :class:`~livesr.engine.DelayAgent`, no store."""
    import random

    from livesr.engine import DelayAgent, Kernel, implementation
    from livesr.engine._timing import timed_call

    kernel = Kernel(name, package=package)
    for reg in pair:

        def run(x: np.ndarray, reg: Any = reg) -> Any:
            result, _ = timed_call(reg, (x, M, R, S, IW, (0.0, 0.0)), {})
            if reg.id == state["slowed"] and state["call"] in delayed:
                time.sleep(state["extra"])
            return result

        implementation(name, backend=reg.backend, variant=reg.variant)(run)
    kernel.configure(agent=DelayAgent(name, rng=random.Random(seed)), store=None)
    return kernel


def _race(
    always: Any, kernel: Any, frame: np.ndarray, calls: int, state: dict[str, Any]
) -> tuple[list[float], list[float], list[str]]:
    """``calls`` calls of ``always`` (one implementation) and of ``kernel`` (the
    agent chooses), interleaved call by call, alternating which goes first.

    Returns the seconds per call of each and the agent's choice per call.
    """
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
    return always_s, agent_s, agent_impl
