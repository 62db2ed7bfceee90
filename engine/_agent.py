"""The delay agent: which implementation to run next, NanoPyx's equations 1-5 plus deadlines.

A small class with no I/O, one per kernel, constructed by the dispatcher (or a
pipeline) and driven by run times it is told about; tests feed it synthetic timings.

Per (input signature, implementation) it keeps the last ``window`` (50) run times.
The statistics split them into the fastest and slowest halves (FastAverage,
FastStdDev, SlowAverage, SlowStdDev; population std), as in the paper:

1. a run is *delayed* when ``t > FastAverage + 4·FastStdDev`` (eq. 1);
2. ``DelayFactor = t / FastAverage`` (eq. 2);
3. ``P(delay persists)`` by logistic regression on consecutive pairs
   ``(delayed[k], delayed[k+1])`` of the history plus ``t``;
   ``Adjusted = FA·(1 − P) + FA·DelayFactor·P`` for flagged implementations (eq. 3);
4. when the fastest by FastAverage is not the fastest by Adjusted time, draw with
   probability ∝ ``1 / Adjusted²`` (eq. 4); otherwise choose deterministically;
5. a flagged implementation's delay is over when its run is
   ``t < SlowAverage − SlowStdDev`` or ``t < FastAverage + FastStdDev`` (eq. 5, as in
   NanoPyx's code and the paper's prose; the printed ">" is a typo).

Choices where NanoPyx's code and paper differ, and where livesr departs (ESRRF.md §4.4):

- Fewer than ``min_runs`` (3, the paper; the code uses 2) local runs: timings of the
  most similar benchmarked signature or the factory defaults (the dispatcher seeds
  them as a *prior*) are used instead.
- Delay detection needs ``min_runs_for_delay`` (10) own runs of that signature
  (code: 20, paper: none) so that FastStdDev means something, and a delay must also
  exceed ``min_delay_factor`` (1.25) × FastAverage: with near-constant histories
  ``4·FastStdDev`` is below timer jitter.
- The logistic regression (same objective as scikit-learn's, solved without it,
  see :func:`logistic_p_delay`) uses ``C = 100`` (sklearn's default is 1): with C = 1 two
  consecutive delayed runs after 30 normal ones give P = 0.14, so the favourite is
  kept for ~5 delayed calls; with C = 100 it is 0.94 and the switch happens on the
  third call.  One-class labels: all normal → P = 0.01 (as the code); all delayed →
  P = 0.99 (the code says 0.01, which is backwards).
- Flags are per (signature, implementation) of one kernel, never global across
  kernels or signatures (NanoPyx's one agent flags a run-type name process-wide).
  Implementations sharing a device (all CPU backends) do **not** share a busy flag:
  a sibling is judged by its own next run, so an implementation slowed for a reason
  its siblings do not share (its device, its library) is still escaped at once, and
  a sibling that is slowed too is flagged by its own first slow run.
- End of delay: the paper's stochastic rule re-tests a flagged favourite only when
  the draw happens to pick it (for a 10× delay vs a 2× alternative: 4 % per call).
  livesr also *probes* a flagged implementation that would be the favourite without
  its delay after ``2, 4, 8, …`` calls (doubling while the delay is confirmed,
  capped at ``max_probe_interval`` = 8), so recovery is noticed within 8 calls.
- Deadlines (beyond NanoPyx): with ``deadline_s`` the choice is restricted to the
  implementations whose probability of finishing in time, ``P(t ≤ deadline)`` under
  a normal (or, when flagged, the two-component delayed/normal mixture) model of
  FastAverage/FastStdDev, is at least ``deadline_confidence`` (0.9); if none is, the
  one with the highest probability is chosen and the decision says ``predicted_miss``
  -- unless even that is below ``hopeless_p`` (0.01; the frame is already late):
  then the fastest expected one is chosen, to be as little late as possible.
- Implementations without any timing are explored (in the caller's order) before
  a choice is made.  Under a deadline that a known implementation meets, exploring
  risks a miss, so it is rationed: one untimed implementation is tried once every
  ``explore_every`` calls of a signature, only while the best known one is expected
  to take at most ``explore_slack`` of the deadline, and at most
  ``max_explorations`` times each (the engine never records an implementation's
  first call on a signature -- JIT, build, compile -- so two tries give a timing).
  Without this rule an implementation with neither a local timing nor a prior
  (a GPU backend on a machine the factory defaults never saw) would never run
  while a CPU implementation meets the stream's deadline.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from livesr.engine._delay_model import (
    Stats,
    logistic_p_delay,
    phi,
    sklearn_p_delay,
)

logger = logging.getLogger(__name__)


class _Rng(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class AgentConfig:
    """Tuning of the delay agent; see the module docs for the meaning of each field."""

    window: int = 50
    min_runs: int = 3
    min_runs_for_delay: int = 10
    delay_sigmas: float = 4.0
    min_delay_factor: float = 1.25
    regularization_c: float = 100.0
    no_evidence_p: float = 0.01
    exponent: float = 2.0
    max_probe_interval: int = 8
    deadline_confidence: float = 0.9
    rel_std_floor: float = 0.02
    max_signatures: int = 64
    explore_every: int = 25
    hopeless_p: float = 0.01
    explore_slack: float = 0.5
    max_explorations: int = 3

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("window", self.window >= 4, ">= 4"),
            ("min_runs", 1 <= self.min_runs <= self.window, "1..window"),
            (
                "min_runs_for_delay",
                2 <= self.min_runs_for_delay <= self.window,
                "2..window",
            ),
            ("delay_sigmas", self.delay_sigmas > 0, "> 0"),
            ("min_delay_factor", self.min_delay_factor >= 1, ">= 1"),
            ("regularization_c", self.regularization_c > 0, "> 0"),
            ("no_evidence_p", 0 < self.no_evidence_p < 0.5, "in (0, 0.5)"),
            ("exponent", self.exponent > 0, "> 0"),
            ("max_probe_interval", self.max_probe_interval >= 1, ">= 1"),
            ("deadline_confidence", 0 < self.deadline_confidence < 1, "in (0, 1)"),
            ("rel_std_floor", 0 <= self.rel_std_floor < 1, "in [0, 1)"),
            ("max_signatures", self.max_signatures >= 1, ">= 1"),
            ("explore_every", self.explore_every >= 1, ">= 1"),
            ("hopeless_p", 0 <= self.hopeless_p < 1, "in [0, 1)"),
            ("explore_slack", 0 < self.explore_slack <= 1, "in (0, 1]"),
            ("max_explorations", self.max_explorations >= 0, ">= 0"),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise ValueError(
                    f"AgentConfig.{name}={getattr(self, name)!r}: expected {valid}"
                )


@dataclass
class _Track:
    runs: deque[float]
    prior: tuple[float, ...] = ()
    prior_source: str = ""
    delayed: bool = False
    delay_factor: float = 1.0
    p_delay: float = 0.0
    since_run: int = 0
    probe_interval: int = 2
    delay_since: float = 0.0
    explorations: int = 0  # times tried under a deadline while it had no timing
    cached: Stats | None = (
        None  # statistics of ``runs``/``prior``, reset when they change
    )


@dataclass(frozen=True)
class _Candidates:
    """One call's view of its implementations: tracks, timed (``known``) and untimed
    ones in the caller's order, FastAverage, Adjusted and ``P(meet deadline)``."""

    tracks: Mapping[str, _Track]
    known: list[str]
    unknown: list[str]
    fast: Mapping[str, float]
    adjusted: Mapping[str, float]
    p_meet: Mapping[str, float]


@dataclass(frozen=True)
class Decision:
    """What the agent chose and why (also kept as ``kernel.last_decision``)."""

    impl: str
    reason: str
    expected_s: float | None
    p_meet: float | None = None
    predicted_miss: bool = False
    expected: Mapping[str, float] = field(default_factory=dict)


class DelayAgent:
    """Chooses an implementation per call and tracks delays (see the module docs).

    Parameters
    ----------
    name : str
        Kernel name used in log messages.
    config : AgentConfig, optional
    rng : object with ``random() -> float``, optional
        Source of the stochastic choice (``random.Random(seed)`` in tests).
    clock : callable, optional
        Monotonic clock in seconds, used to time delays in log messages.
    p_delay : callable, optional
        ``(labels: list[bool], c: float) -> float``; default :func:`logistic_p_delay`
        (scikit-learn's L2 logistic regression, solved in closed-form Newton steps);
        :func:`sklearn_p_delay` fits it with scikit-learn itself.
    """

    def __init__(
        self,
        name: str = "kernel",
        config: AgentConfig | None = None,
        *,
        rng: _Rng | None = None,
        clock: Callable[[], float] = time.monotonic,
        p_delay: Callable[[list[bool], float], float] | None = None,
    ) -> None:
        self.name = name
        self.config = config or AgentConfig()
        self.rng: _Rng = rng if rng is not None else random.Random()
        self.clock = clock
        self._p_delay_fn = p_delay or logistic_p_delay
        self._tracks: OrderedDict[str, dict[str, _Track]] = OrderedDict()
        self._preferred: dict[str, str] = {}
        # signature -> calls under a deadline since an untimed implementation was tried
        self._since_explore: dict[str, int] = {}

    # -- state ------------------------------------------------------------------
    def prepare(self) -> None:
        """Import what the regression needs now, off the hot path (idempotent)."""
        if self._p_delay_fn is sklearn_p_delay:
            import sklearn.linear_model  # noqa: F401

    def _track(self, sig: str, impl: str) -> _Track:
        tracks = self._tracks.get(sig)
        if tracks is None:
            tracks = self._tracks[sig] = {}
            while len(self._tracks) > self.config.max_signatures:
                old, _ = self._tracks.popitem(last=False)
                self._preferred.pop(old, None)
        else:
            self._tracks.move_to_end(sig)
        track = tracks.get(impl)
        if track is None:
            track = tracks[impl] = _Track(deque(maxlen=self.config.window))
        return track

    def known(self, sig: str, impl: str) -> bool:
        """Whether ``impl`` has been seeded or informed for signature ``sig``."""
        return impl in self._tracks.get(sig, {})

    def seed(
        self,
        sig: str,
        impl: str,
        runs: Iterable[float] = (),
        prior: Iterable[float] = (),
        prior_source: str = "",
    ) -> None:
        """Give the agent local ``runs`` (oldest first) and a ``prior`` for a signature.

        The prior (factory defaults or a similar signature's timings, already scaled)
        is used while fewer than ``min_runs`` local runs exist.
        """
        track = self._track(sig, impl)
        track.runs.extend(float(t) for t in runs)
        track.prior = tuple(float(t) for t in prior)
        track.prior_source = prior_source
        track.cached = None

    def delayed(self, sig: str, impl: str) -> bool:
        """Whether ``impl`` is currently flagged as delayed for ``sig``."""
        track = self._tracks.get(sig, {}).get(impl)
        return bool(track and track.delayed)

    def stats(self, sig: str, impl: str) -> Stats | None:
        """The statistics the agent uses for ``impl`` (local, else prior, else few runs)."""
        track = self._tracks.get(sig, {}).get(impl)
        if track is None:
            return None
        return self._stats(track)

    def _stats(self, track: _Track) -> Stats | None:
        if track.cached is not None:
            return track.cached
        if len(track.runs) >= self.config.min_runs:
            track.cached = Stats.of(track.runs)
        elif track.prior:
            track.cached = Stats.of(track.prior[-self.config.window :])
        elif track.runs:
            track.cached = Stats.of(track.runs)
        return track.cached

    def _adjusted(self, track: _Track, st: Stats) -> float:
        if not track.delayed:
            return st.fast_avg
        p = track.p_delay
        return st.fast_avg * (1.0 - p) + st.fast_avg * track.delay_factor * p

    def p_meet(self, sig: str, impl: str, deadline_s: float) -> float | None:
        """``P(run time ≤ deadline_s)`` under the agent's model, or None if unknown."""
        track = self._tracks.get(sig, {}).get(impl)
        st = self._stats(track) if track else None
        if track is None or st is None:
            return None
        return self._p_meet(track, st, deadline_s)

    def _p_meet(self, track: _Track, st: Stats, deadline: float) -> float:
        sd = max(st.fast_std, self.config.rel_std_floor * st.fast_avg, 1e-9)
        normal = phi((deadline - st.fast_avg) / sd)
        if not track.delayed:
            return normal
        f = track.delay_factor
        slowed = phi((deadline - st.fast_avg * f) / (sd * f))
        return (1.0 - track.p_delay) * normal + track.p_delay * slowed

    # -- choosing ---------------------------------------------------------------
    def choose(
        self, sig: str, impls: Sequence[str], deadline_s: float | None = None
    ) -> Decision:
        """Pick one of ``impls`` (available implementations, in exploration order).

        In order: explore an untimed implementation, probe a flagged one that would
        be the favourite without its delay, else choose among the timed ones (those
        likely to meet ``deadline_s``, if given) by eq. 4.
        """
        if not impls:
            raise ValueError(f"{self.name}: no implementation to choose from")
        view = self._candidates(sig, impls, deadline_s)
        decision = self._explore(sig, view, deadline_s)
        if decision is None:
            decision = self._probe(view)
        if decision is None:
            decision = self._choose_timed(sig, view, deadline_s)
        return decision

    def _candidates(
        self, sig: str, impls: Sequence[str], deadline_s: float | None
    ) -> _Candidates:
        tracks = {i: self._track(sig, i) for i in impls}
        stats = {i: self._stats(t) for i, t in tracks.items()}
        timed = {i: st for i, st in stats.items() if st is not None}
        known = [i for i in impls if i in timed]
        p_meet: dict[str, float] = {}
        if deadline_s is not None:
            p_meet = {i: self._p_meet(tracks[i], timed[i], deadline_s) for i in known}
        return _Candidates(
            tracks=tracks,
            known=known,
            unknown=[i for i in impls if i not in timed],
            fast={i: timed[i].fast_avg for i in known},
            adjusted={i: self._adjusted(tracks[i], timed[i]) for i in known},
            p_meet=p_meet,
        )

    def _explore(
        self, sig: str, view: _Candidates, deadline_s: float | None
    ) -> Decision | None:
        """An untimed implementation: at once without a deadline or when no timed one
        is likely to meet it, else rationed (:meth:`_explore_under_deadline`)."""
        if not view.unknown:
            return None
        confidence = self.config.deadline_confidence
        if deadline_s is None or not any(p >= confidence for p in view.p_meet.values()):
            return Decision(
                view.unknown[0], "explore", None, expected=dict(view.adjusted)
            )
        return self._explore_under_deadline(
            sig, view.unknown, view.tracks, view.adjusted, view.p_meet, deadline_s
        )

    def _probe(self, view: _Candidates) -> Decision | None:
        """Probe a flagged implementation that would be the favourite without its
        delay, once its probe interval has passed."""
        known, tracks, adjusted = view.known, view.tracks, view.adjusted
        best_other = {
            i: min((adjusted[j] for j in known if j != i), default=math.inf)
            for i in known
        }
        due = [
            i
            for i in known
            if tracks[i].delayed
            and view.fast[i] < best_other[i]
            and tracks[i].since_run >= tracks[i].probe_interval
        ]
        if not due:
            return None
        impl = min(due, key=lambda i: view.fast[i])
        logger.debug(
            "%s: probing delayed %s after %d calls",
            self.name,
            impl,
            tracks[impl].since_run,
        )
        p = view.p_meet.get(impl)
        miss = p is not None and p < self.config.deadline_confidence
        return Decision(impl, "probe", adjusted[impl], p, miss, dict(adjusted))

    def _choose_timed(
        self, sig: str, view: _Candidates, deadline_s: float | None
    ) -> Decision:
        """Among the timed implementations: restricted to those likely to meet the
        deadline, the fastest, or a draw ∝ ``1 / Adjusted²`` when delays reorder
        them (eq. 4)."""
        cfg = self.config
        known, adjusted, p_meet = view.known, view.adjusted, view.p_meet
        pool = known
        hopeless = False
        if deadline_s is not None:
            meeting = [i for i in known if p_meet[i] >= cfg.deadline_confidence]
            if meeting:
                pool = meeting
            elif max(p_meet.values()) < cfg.hopeless_p:
                # nothing can make it (e.g. the frame is already late): choose as
                # without a deadline (fastest, delays weighed) rather than follow
                # noise in tiny probabilities; still a predicted miss
                hopeless = True
            else:
                impl = max(known, key=lambda i: (p_meet[i], -adjusted[i]))
                self._log_preference(sig, impl, adjusted, deadline_s, p_meet)
                return Decision(
                    impl, "deadline", adjusted[impl], p_meet[impl], True, dict(adjusted)
                )

        by_fast = min(pool, key=lambda i: view.fast[i])
        by_adjusted = min(pool, key=lambda i: adjusted[i])
        self._log_preference(sig, by_adjusted, adjusted, deadline_s, p_meet)
        if by_fast == by_adjusted or not any(view.tracks[i].delayed for i in pool):
            impl, reason = by_fast, "fastest"
        else:
            impl, reason = self._draw(pool, adjusted), "stochastic"
        return Decision(
            impl, reason, adjusted[impl], p_meet.get(impl), hopeless, dict(adjusted)
        )

    def _draw(self, pool: Sequence[str], adjusted: Mapping[str, float]) -> str:
        """Eq. 4: draw with probability ∝ ``1 / Adjusted^exponent`` (``self.rng``)."""
        weights = [max(adjusted[i], 1e-12) ** -self.config.exponent for i in pool]
        r = self.rng.random() * sum(weights)
        for i, w in zip(pool, weights, strict=True):
            r -= w
            if r < 0:
                return i
        return pool[-1]

    def _explore_under_deadline(
        self,
        sig: str,
        unknown: Sequence[str],
        tracks: Mapping[str, _Track],
        adjusted: Mapping[str, float],
        p_meet: Mapping[str, float],
        deadline_s: float,
    ) -> Decision | None:
        """The rationed exploration of untimed implementations (module docs)."""
        cfg = self.config
        calls = self._since_explore.get(sig, 0) + 1
        self._since_explore[sig] = calls
        if len(self._since_explore) > cfg.max_signatures:
            self._since_explore.pop(next(iter(self._since_explore)))
        todo = [i for i in unknown if tracks[i].explorations < cfg.max_explorations]
        if not todo or calls < cfg.explore_every:
            return None
        best = min(
            (adjusted[i] for i, p in p_meet.items() if p >= cfg.deadline_confidence),
            default=math.inf,
        )
        if best > cfg.explore_slack * deadline_s:
            return None
        impl = todo[0]
        tracks[impl].explorations += 1
        self._since_explore[sig] = 0
        logger.info(
            "%s: trying untimed %s under the %.3g ms deadline (best known expected "
            "%.3g ms; try %d of %d)",
            self.name,
            impl,
            deadline_s * 1e3,
            best * 1e3,
            tracks[impl].explorations,
            cfg.max_explorations,
        )
        return Decision(impl, "explore", None, expected=dict(adjusted))

    def _log_preference(
        self,
        sig: str,
        impl: str,
        adjusted: Mapping[str, float],
        deadline_s: float | None,
        p_meet: Mapping[str, float],
    ) -> None:
        old = self._preferred.get(sig)
        if old == impl:
            return
        self._preferred[sig] = impl
        if old is None:
            others = ", ".join(
                f"{i} {t * 1e3:.3g} ms"
                for i, t in sorted(adjusted.items())
                if i != impl
            )
            logger.info(
                "%s: %s chosen (expected %.3g ms%s)",
                self.name,
                impl,
                adjusted.get(impl, math.nan) * 1e3,
                f"; {others}" if others else "",
            )
            return
        track = self._tracks[sig][old] if old in self._tracks.get(sig, {}) else None
        why = []
        if track is not None and track.delayed:
            why.append(f"delay p={track.p_delay:.2f}")
        if deadline_s is not None and impl in p_meet and old in p_meet:
            why.append(
                f"deadline {deadline_s * 1e3:.3g} ms: P(meet) {p_meet[impl]:.2f} vs "
                f"{p_meet[old]:.2f}"
            )
        if old in adjusted:
            why.append(
                f"expected {adjusted[impl] * 1e3:.3g} ms vs {adjusted[old] * 1e3:.3g} ms"
            )
        logger.info("%s: %s → %s (%s)", self.name, old, impl, ", ".join(why))

    # -- learning ---------------------------------------------------------------
    def inform(self, sig: str, impl: str, seconds: float) -> None:
        """Record a run time of ``impl`` on ``sig`` and update its delay state."""
        cfg = self.config
        t = float(seconds)
        if not (t >= 0 and math.isfinite(t)):
            raise ValueError(
                f"{self.name}: run time {seconds!r} s: expected a finite value >= 0"
            )
        track = self._track(sig, impl)
        for other, tr in self._tracks[sig].items():
            tr.since_run = 0 if other == impl else tr.since_run + 1
        history = list(track.runs)
        own = track.cached if len(history) >= cfg.min_runs else None  # stats of runs
        if track.delayed:
            st = own or (Stats.of(history) if history else None)
            if (
                st is None
                or t < st.slow_avg - st.slow_std
                or t < st.fast_avg + st.fast_std
            ):
                track.delayed = False
                track.probe_interval = 2
                logger.info(
                    "%s: delay of %s over after %.3g s (%.3g ms)",
                    self.name,
                    impl,
                    self.clock() - track.delay_since,
                    t * 1e3,
                )
            else:
                track.delay_factor = t / st.fast_avg if st.fast_avg > 0 else 1.0
                track.p_delay = self._probability(history, t, st)
                track.probe_interval = min(
                    2 * track.probe_interval, cfg.max_probe_interval
                )
                logger.debug(
                    "%s: %s still delayed (%.3g ms, factor %.2f, p=%.2f)",
                    self.name,
                    impl,
                    t * 1e3,
                    track.delay_factor,
                    track.p_delay,
                )
        elif len(history) >= cfg.min_runs_for_delay:
            st = own or Stats.of(history)
            if t > self._threshold(st):
                track.delayed = True
                track.delay_factor = t / st.fast_avg if st.fast_avg > 0 else 1.0
                track.p_delay = self._probability(history, t, st)
                track.probe_interval = min(2, cfg.max_probe_interval)
                track.delay_since = self.clock()
                logger.info(
                    "%s: %s delayed (%.3g ms vs fast average %.3g ms, factor %.2f, p=%.2f)",
                    self.name,
                    impl,
                    t * 1e3,
                    st.fast_avg * 1e3,
                    track.delay_factor,
                    track.p_delay,
                )
        track.runs.append(t)
        track.cached = None

    def _threshold(self, st: Stats) -> float:
        cfg = self.config
        return st.fast_avg + max(
            cfg.delay_sigmas * st.fast_std, (cfg.min_delay_factor - 1.0) * st.fast_avg
        )

    def _probability(self, history: list[float], t: float, st: Stats) -> float:
        threshold = self._threshold(st)
        labels = [x > threshold for x in history[-(self.config.window - 1) :]] + [
            t > threshold
        ]
        return float(self._p_delay_fn(labels, self.config.regularization_c))
