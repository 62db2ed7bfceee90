"""``Kernel``: a dispatchable operation, its implementations and its dispatcher.

Declaring a kernel (``kernels/<name>/__init__.py``)::

    from livesr.engine import Case, Kernel, Tolerance

    kernel = Kernel(
        "esrrf_map",
        package=__name__,                # implementations are modules of this folder
        reference="numpy",               # the oracle of the equivalence tests
        tolerance=Tolerance(rtol=1e-5, atol=1e-6),
        signature=my_signature,          # optional: (args, kwargs) -> InputSignature
        validate=my_validate,            # optional: (args, kwargs) -> (args, kwargs) | None
        cases=lambda: [Case("small", (frames,), {"magnification": 2})],
        bench_cases=lambda size: [...],  # optional, for ``livesr bench --size``
    )

Adding an implementation is one file in that folder (``_numba.py``)::

    from livesr.engine import implementation

    @implementation("esrrf_map", backend="numba")
    def esrrf_map_numba(frames, magnification=2):
        ...

Calling: ``kernel(frames, magnification=2, deadline_s=0.02)`` validates once, asks
the delay agent, runs with a synchronising timer, records the time and returns the
result.  ``kernel.using("numba")(frames, magnification=2)`` runs one implementation.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from livesr.engine._agent import AgentConfig, Decision, DelayAgent
from livesr.engine._implementations import ImplementationSet
from livesr.engine._kernel_stats import DeadlineAccount, KernelStats
from livesr.engine._registry import Registration
from livesr.engine._timing import Clock, timed_call
from livesr.engine._types import (
    DeadlineMiss,
    ImplInfo,
    InputSignature,
    SignatureFn,
    Tolerance,
    default_signature,
)

if TYPE_CHECKING:
    from livesr.engine._store import BenchmarkStore

logger = logging.getLogger(__name__)

#: ``adapt(backend, args, kwargs) -> (args, kwargs)``: see :meth:`Kernel.__call__`.
AdaptFn = Callable[
    [str, tuple[Any, ...], dict[str, Any]], tuple[Sequence[Any], dict[str, Any]]
]

_MAX_SEEN = 4096
#: The sizes ``livesr bench --size`` offers to ``bench_cases``.
BENCH_SIZES: tuple[str, ...] = ("small", "medium", "large")


class Kernel:
    """A dispatchable operation with several implementations (see the module docs).

    Parameters
    ----------
    name : str
        Unique kernel name; implementations register under it.
    package : str
        Import name of the kernel's folder (``__name__`` in its ``__init__``).
    reference : str
        Implementation id of the oracle (default ``"numpy"``).
    tolerance : Tolerance
        Equivalence tolerance against the reference.
    signature : callable, optional
        ``(args, kwargs) -> InputSignature``: the problem size and the parameters that
        change the cost, e.g. ``lambda a, kw: InputSignature.of(a[0], magnification=
        kw["magnification"])``; default :func:`default_signature` (first array's shape
        and dtype plus every scalar argument).
    validate : callable, optional
        ``(args, kwargs) -> (args, kwargs)`` or ``None``: checks and normalises the
        inputs once per call (implementations do not re-validate).
    cases : sequence of Case or callable returning one, optional
        Small named inputs for the equivalence tests (built lazily if callable).
    bench_cases : callable ``(size) -> sequence of Case``, optional
        The ``livesr bench`` hook: realistic named inputs for ``size`` in
        :data:`BENCH_SIZES` (``"small"``, ``"medium"``, ``"large"``), built when called
        (never at import).  Default: the ``cases``.
    params : type, optional
        The kernel's parameter class, for documentation.
    """

    def __init__(
        self,
        name: str,
        *,
        package: str,
        reference: str = "numpy",
        tolerance: Tolerance | None = None,
        signature: SignatureFn | None = None,
        validate: Callable[[tuple[Any, ...], dict[str, Any]], Any] | None = None,
        cases: Sequence[Any] | Callable[[], Sequence[Any]] | None = None,
        bench_cases: Callable[[str], Sequence[Any]] | None = None,
        params: type | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Kernel name={name!r}: expected a Python identifier")
        if not isinstance(package, str) or not package:
            raise ValueError(f"Kernel {name}: package={package!r}: pass __name__")
        self.name = name
        self.package = package
        self.reference = reference
        self.tolerance = tolerance or Tolerance()
        self._signature = signature or default_signature
        self._validate = validate
        self._cases = cases
        self._bench_cases = bench_cases
        self.params = params
        self.stats = KernelStats()
        self.last_decision: Decision | None = None
        self._deadlines = DeadlineAccount(name, self.stats)
        self._lock = threading.RLock()
        self._impls = ImplementationSet(name, package, self._lock)
        # (impl, exact signature) pairs already run once in this process (insertion
        # ordered, capped at _MAX_SEEN: a forgotten pair only costs one unrecorded run)
        self._seen: dict[tuple[str, str], None] = {}
        self._agent: DelayAgent | None = None
        self._store: BenchmarkStore | None = None
        self._store_set = False
        self._clock: Clock = time.perf_counter
        self._defaults_source: (
            Callable[[str], Mapping[tuple[str, str], list[float]]] | None
        ) = None
        # (signature key, record) -> implementation id kept by fastest()
        self._fastest: dict[tuple[str, bool], str] = {}

    def __repr__(self) -> str:
        return f"Kernel({self.name!r}, package={self.package!r})"

    # -- configuration ------------------------------------------------------------
    def configure(
        self,
        *,
        agent: DelayAgent | None = None,
        store: BenchmarkStore | None | bool = True,
        clock: Clock | None = None,
        factory_defaults: Callable[[str], Mapping[tuple[str, str], list[float]]]
        | None = None,
    ) -> Kernel:
        """Inject the agent, benchmark store (``None``: no persistence), clock or defaults.

        Meant for pipelines and tests; resets the per-process first-call tracking.
        Returns the kernel.
        """
        with self._lock:
            if agent is not None:
                self._agent = agent
            if store is not True:
                self._store = store or None
                self._store_set = True
            if clock is not None:
                self._clock = clock
            if factory_defaults is not None:
                self._defaults_source = factory_defaults
            self._seen.clear()
            self._impls.invalidate()
            self._fastest.clear()
        return self

    @property
    def agent(self) -> DelayAgent:
        """The kernel's delay agent (created on first use)."""
        with self._lock:
            if self._agent is None:
                self._agent = DelayAgent(self.name, AgentConfig())
            return self._agent

    def _get_store(self) -> BenchmarkStore | None:
        if not self._store_set:
            from livesr.engine._store import default_store

            self._store = default_store()
            self._store_set = True
        return self._store

    # -- implementations ------------------------------------------------------------
    def implementations(self, include_unavailable: bool = True) -> list[ImplInfo]:
        """The kernel's implementations, sorted by id (discovers them on first call)."""
        return self._impls.infos(include_unavailable)

    def refresh(self) -> None:
        """Recompute which implementations are available (after changing the
        environment, e.g. ``LIVESR_DISABLE_BACKENDS``); discovery is not repeated."""
        self._impls.refresh()

    def _available(self) -> list[Registration]:
        return self._impls.available()

    def _registration(self, impl: str) -> Registration:
        return self._impls.get(impl)

    # -- inputs -----------------------------------------------------------------------
    def prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate and normalise the inputs (the kernel's ``validate``), once."""
        if self._validate is None:
            return args, kwargs
        out = self._validate(args, kwargs)
        if out is None:
            return args, kwargs
        new_args, new_kwargs = out
        return tuple(new_args), dict(new_kwargs)

    def signature(self, *args: Any, **kwargs: Any) -> InputSignature:
        """The input signature of a call with these arguments."""
        return self._signature(args, kwargs)

    def cases(self) -> list[Any]:
        """The kernel's small named equivalence-test inputs (``[]`` if none declared)."""
        cases = self._cases() if callable(self._cases) else self._cases
        return list(cases or [])

    def bench_cases(self, size: str = "small") -> list[Any]:
        """Named inputs for ``livesr bench``; ``size`` is one of :data:`BENCH_SIZES`."""
        if size not in BENCH_SIZES:
            raise ValueError(f"size={size!r}: expected one of {', '.join(BENCH_SIZES)}")
        if self._bench_cases is None:
            return self.cases()
        return list(self._bench_cases(size))

    def _mark_seen(self, impl: str, exact_key: str) -> None:
        self._seen[(impl, exact_key)] = None
        if len(self._seen) > _MAX_SEEN:
            del self._seen[next(iter(self._seen))]

    # -- running ----------------------------------------------------------------------
    def using(self, impl: str, *, record: bool = False) -> Callable[..., Any]:
        """A callable running exactly implementation ``impl`` (validated, synchronised).

        With ``record=True`` its run times are recorded like dispatched ones (the first
        call per input signature excepted).
        """
        reg = self._registration(impl)

        def run(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = self.prepare(args, kwargs)
            if not record:
                result, _ = timed_call(reg, args, kwargs, self._clock)
                return result
            sig = self._signature(args, kwargs)
            result, seconds = timed_call(reg, args, kwargs, self._clock)
            self._after_run(reg.id, sig, seconds)
            return result

        run.__name__ = f"{self.name}[{impl}]"
        run.__doc__ = reg.func.__doc__
        return run

    def warmup(
        self, *args: Any, impls: Iterable[str] | None = None, **kwargs: Any
    ) -> dict[str, float]:
        """Run each (or each given) available implementation once, unrecorded.

        Compiles JIT/OpenCL/CuPy code for this input signature and imports the delay
        agent's regression off the hot path.  Returns the warm-up seconds per id.
        """
        args, kwargs = self.prepare(args, kwargs)
        sig = self._signature(args, kwargs)
        wanted = set(impls) if impls is not None else None
        out: dict[str, float] = {}
        for reg in self._available():
            if wanted is not None and reg.id not in wanted:
                continue
            _, out[reg.id] = timed_call(reg, args, kwargs, self._clock)
            with self._lock:
                self._mark_seen(reg.id, sig.exact_key)
                self.stats.warmup_calls += 1
        self.agent.prepare()
        return out

    def fastest(self, *args: Any, record: bool = False, **kwargs: Any) -> str:
        """Id of the fastest available implementation on these inputs, chosen once per
        input signature (bucketed) and kept, so repeated calls use the same one.

        ``record=False``: each implementation runs twice (the first run compiles and
        is not counted), nothing is recorded (a plain batch call writes nothing).
        ``record=True`` (a stream before acquisition): implementations with no run
        time or prior for this input are benchmarked (3 runs, recorded to the agent
        and the store), then the agent's fast averages decide.  An implementation
        that raises is skipped with a warning.  :meth:`forget_fastest` (or
        :meth:`configure`) drops the kept choices.
        """
        args, kwargs = self.prepare(args, kwargs)
        sig = self._signature(args, kwargs)
        key = (sig.key, bool(record))
        with self._lock:
            chosen = self._fastest.get(key)
        if chosen is not None:
            return chosen
        times: dict[str, float] = {}
        if record:
            failed = set()
            for impl in self.untimed(*args, **kwargs):
                try:
                    self.benchmark(*args, repeats=3, impls=[impl], **kwargs)
                except Exception as exc:  # a broken backend must not stop the choice
                    failed.add(impl)
                    logger.warning("%s: %s failed (%s); not used", self.name, impl, exc)
            for info in self.implementations(include_unavailable=False):
                st = self.agent.stats(sig.key, info.id)
                if st is not None and info.id not in failed:
                    times[info.id] = st.fast_avg
        else:
            for reg in self._available():
                try:
                    timed_call(reg, args, kwargs, self._clock)
                    _, times[reg.id] = timed_call(reg, args, kwargs, self._clock)
                except Exception as exc:  # a broken backend must not stop the choice
                    logger.warning(
                        "%s: %s failed (%s: %s); not used",
                        self.name, reg.id, type(exc).__name__, exc,
                    )
        if not times:
            raise RuntimeError(
                f"{self.name}: no implementation ran on {sig}; see 'livesr backends'"
            )
        chosen = min(times, key=times.__getitem__)
        logger.info(
            "%s: %s chosen for %s (%s)",
            self.name,
            chosen,
            sig,
            ", ".join(f"{i} {t * 1e3:.3g} ms" for i, t in sorted(times.items())),
        )
        with self._lock:
            self._fastest[key] = chosen
        return chosen

    def forget_fastest(self) -> None:
        """Drop the choices kept by :meth:`fastest` (tests, a changed machine)."""
        with self._lock:
            self._fastest.clear()

    def untimed(self, *args: Any, **kwargs: Any) -> list[str]:
        """Available implementations with neither a run time nor a prior for this input.

        What the agent would have to explore blind; a stream can time them on its
        real frame shape before it starts (:meth:`benchmark` with ``impls=``).
        """
        args, kwargs = self.prepare(args, kwargs)
        sig = self._signature(args, kwargs)
        by_id = {r.id: r for r in self._available()}
        with self._lock:
            self._seed(sig, by_id)
            return [i for i in by_id if self.agent.stats(sig.key, i) is None]

    def benchmark(
        self,
        *args: Any,
        repeats: int = 5,
        impls: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, list[float]]:
        """Time every (or each given) available implementation ``repeats`` times.

        The first call per signature is a warm-up, never recorded; the timed runs go
        to the benchmark store and the agent.  Returns the seconds per id.
        """
        if repeats < 1:
            raise ValueError(f"repeats={repeats}: expected >= 1")
        args, kwargs = self.prepare(args, kwargs)
        sig = self._signature(args, kwargs)
        wanted = set(impls) if impls is not None else None
        out: dict[str, list[float]] = {}
        for reg in self._available():
            if wanted is not None and reg.id not in wanted:
                continue
            if (reg.id, sig.exact_key) not in self._seen:
                timed_call(reg, args, kwargs, self._clock)
                self._mark_seen(reg.id, sig.exact_key)
            times = []
            for _ in range(repeats):
                _, seconds = timed_call(reg, args, kwargs, self._clock)
                self._after_run(reg.id, sig, seconds)
                times.append(seconds)
            out[reg.id] = times
        return out

    def __call__(
        self,
        *args: Any,
        deadline_s: float | None = None,
        adapt: AdaptFn | None = None,
        **kwargs: Any,
    ) -> Any:
        """Dispatch: validate, choose (within ``deadline_s`` if given), run, time, record.

        ``adapt(backend, args, kwargs) -> (args, kwargs)``, when given, is applied to
        the validated inputs of the chosen implementation just before it runs (its
        time is not counted): the hook of a caller that holds the data on a device,
        e.g. swapping a host frame for its ``cupy`` copy when the ``cupy``
        implementation is chosen.  ``backend`` is the implementation's backend name
        (``"numpy"``, ``"cupy"``, ...).  The signature, hence the agent's choice, is
        computed from the un-adapted inputs.
        """
        if deadline_s is not None and not (
            deadline_s > 0 and math.isfinite(deadline_s)
        ):
            raise ValueError(
                f"{self.name}: deadline_s={deadline_s!r}: expected a finite value > 0"
            )
        args, kwargs = self.prepare(args, kwargs)
        sig = self._signature(args, kwargs)
        failed: list[tuple[str, Exception]] = []
        while True:
            candidates = self._available() if not failed else self._remaining(failed)
            by_id = {r.id: r for r in candidates}
            with self._lock:
                self._seed(sig, by_id)
                decision = self.agent.choose(sig.key, list(by_id), deadline_s)
                self.last_decision = decision
            reg = by_id[decision.impl]
            logger.debug(
                "%s: %s on %s (%s, expected %s)",
                self.name,
                reg.id,
                sig,
                decision.reason,
                "?"
                if decision.expected_s is None
                else f"{decision.expected_s * 1e3:.3g} ms",
            )
            run_args: Sequence[Any]
            try:
                if adapt is None:
                    run_args, run_kwargs = args, kwargs
                else:
                    run_args, run_kwargs = adapt(
                        reg.backend.value, args, dict(kwargs)
                    )
                result, seconds = timed_call(
                    reg, tuple(run_args), run_kwargs, self._clock
                )
            except Exception as exc:
                failed.append((reg.id, exc))
                if len(candidates) == 1:
                    # Every implementation failed on this input: the input is the
                    # problem, not a backend.  Disable nothing, raise the first error.
                    raise failed[0][1] from None
                continue
            break
        if failed:
            self._disable(failed, sig, reg.id)
        self._after_run(reg.id, sig, seconds, deadline_s, decision)
        return result

    def _remaining(self, failed: list[tuple[str, Exception]]) -> list[Registration]:
        ids = {f for f, _ in failed}
        return [r for r in self._available() if r.id not in ids]

    def _disable(
        self, failed: list[tuple[str, Exception]], sig: InputSignature, ok: str
    ) -> None:
        """Disable implementations that raised where ``ok`` succeeded (NanoPyx drops
        them too; unlike NanoPyx, an input every implementation rejects disables none)."""
        with self._lock:
            for impl, exc in failed:
                self.stats.failures += 1
                self._impls.disable(
                    impl, f"{impl}: failed on {sig} ({type(exc).__name__}: {exc})"
                )
                logger.error(
                    "%s: %s raised %s: %s where %s succeeded; disabled for this "
                    "process",
                    self.name,
                    impl,
                    type(exc).__name__,
                    exc,
                    ok,
                    exc_info=(type(exc), exc, exc.__traceback__)
                    if logger.isEnabledFor(logging.DEBUG)
                    else None,
                )

    def _seed(self, sig: InputSignature, by_id: Mapping[str, Registration]) -> None:
        agent = self.agent
        missing = [i for i in by_id if not agent.known(sig.key, i)]
        if not missing:
            return
        from livesr.engine._priors import find_prior, load_factory_defaults

        store = self._get_store()
        local = store.runs(self.name) if store is not None else {}
        defaults = (self._defaults_source or load_factory_defaults)(self.name)
        for impl in missing:
            runs = local.get((impl, sig.key), [])
            prior = find_prior(sig, impl, local, defaults, agent.config.min_runs)
            agent.seed(
                sig.key,
                impl,
                runs=runs[-agent.config.window :],
                prior=prior.times if prior else (),
                prior_source=prior.source if prior else "",
            )
            logger.debug(
                "%s: %s on %s seeded with %d local runs%s",
                self.name,
                impl,
                sig,
                len(runs),
                f", prior from {prior.source}" if prior else "",
            )

    def _after_run(
        self,
        impl: str,
        sig: InputSignature,
        seconds: float,
        deadline_s: float | None = None,
        decision: Decision | None = None,
    ) -> None:
        with self._lock:
            self.stats.calls += 1
            self.stats.by_impl[impl] += 1
            first = (impl, sig.exact_key) not in self._seen
            if first:
                # JIT / OpenCL build / CuPy compile: never a run-time sample
                self._mark_seen(impl, sig.exact_key)
                self.stats.warmup_calls += 1
                logger.debug(
                    "%s: first call of %s on %s not recorded (%.3g ms)",
                    self.name,
                    impl,
                    sig,
                    seconds * 1e3,
                )
            else:
                self.stats.recorded += 1
                if not self.agent.known(sig.key, impl):
                    self.agent.seed(sig.key, impl)
                self.agent.inform(sig.key, impl, seconds)
                store = self._get_store()
                if store is not None:
                    store.record(self.name, impl, sig.key, seconds)
            if deadline_s is not None:
                self._deadlines.account(impl, seconds, deadline_s, decision)

    @property
    def last_deadline_miss(self) -> DeadlineMiss | None:
        """The latest call that ran over its ``deadline_s`` (None if none did)."""
        return self._deadlines.last_miss

    @property
    def deadline_misses(self) -> int:
        """Calls in this process that ran over their ``deadline_s``."""
        return self.stats.deadline_misses
