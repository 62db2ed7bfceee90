"""Run feedback hooks off the processing thread: :class:`HookRunner`, :class:`HookStats`.

The pipeline publishes one :class:`~livesr.stream.Result` per reconstructed window and
calls :meth:`HookRunner.submit` -- the only integration point (a
:class:`~livesr.stream.Sink`). ``submit`` never blocks: every hook has a newest-only
slot served by its own worker thread; a result arriving while the hook is still busy
replaces the pending one (the replaced result is counted as a drop). Failures are
logged with their traceback and counted; calls longer than ``slow_call_s`` are counted
as slow; a hook stuck in a call is reported (logged once, :attr:`HookStats.stuck`) and
never holds up the pipeline or the other hooks.

>>> def log_drift(result, controller):
...     print(result.index, result.drift_px)
>>> runner = HookRunner([log_drift], controller)        # doctest: +SKIP
>>> runner.submit(Result(index=0, drift_px=(0.1, -0.2)))  # doctest: +SKIP
>>> runner.close()                                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from livesr.stream._protocols import Result

__all__ = ["HookRunner", "HookStats"]

logger = logging.getLogger(__name__)

#: the counters of each hook in :meth:`HookRunner.report`
_REPORTED = ("name", "calls", "failures", "drops", "slow_calls", "stuck", "last_error")


@dataclass(slots=True)
class HookStats:
    """Counters of one hook (a snapshot from :meth:`HookRunner.stats`).

    Attributes
    ----------
    name : str
    calls : int
        Completed calls (successful or not).
    failures : int
        Calls that raised.
    drops : int
        Results replaced in the slot before the hook took them.
    slow_calls : int
        Calls that ran longer than ``slow_call_s`` (a stuck call counts once).
    stuck : bool
        A call has been running longer than ``slow_call_s`` and is not finished.
    busy_s : float
        How long the current call has been running, s (0 when idle).
    last_error : str
        ``repr`` of the last exception ("" if none).
    """

    name: str
    calls: int = 0
    failures: int = 0
    drops: int = 0
    slow_calls: int = 0
    stuck: bool = False
    busy_s: float = 0.0
    last_error: str = ""


def _hook_name(hook: Any) -> str:
    name = getattr(hook, "name", None) or getattr(
        hook, "__qualname__", type(hook).__qualname__
    )
    return str(name)


def _callable_of(hook: Any) -> Callable[[Result, Any], None]:
    on_result = getattr(hook, "on_result", None)
    if callable(on_result):
        return on_result
    if callable(hook):
        return hook
    raise TypeError(
        f"hook {hook!r} is neither callable(result, controller) nor has an "
        "on_result(result, controller) method"
    )


class _Slot:
    """One hook's newest-only slot, worker thread and counters."""

    def __init__(
        self, hook: Any, controller: Any, slow_call_s: float, runner_name: str
    ) -> None:
        self.hook = hook
        self.fn = _callable_of(hook)
        self.stats = HookStats(name=_hook_name(hook))
        self.controller = controller
        self.slow_call_s = slow_call_s
        self.cond = threading.Condition()
        self.pending: Result | None = None
        self.closing = False
        self.started_at: float | None = None
        self.stuck_reported = False
        self.thread = threading.Thread(
            target=self._run,
            name=f"{runner_name}:{self.stats.name}",
            daemon=True,  # a hook that never returns must not block interpreter exit
        )
        self.thread.start()

    def put(self, result: Result) -> None:
        with self.cond:
            if self.pending is not None:
                self.stats.drops += 1
            self.pending = result
            self.cond.notify()
        self.check_stuck()

    def check_stuck(self) -> None:
        with self.cond:  # held only briefly by the worker, never during a call
            t0 = self.started_at
            if t0 is None or self.stuck_reported:
                return
            busy = time.monotonic() - t0
            if busy <= self.slow_call_s:
                return
            self.stuck_reported = True
            self.stats.slow_calls += 1
        logger.warning(
            "feedback hook %r has been running for %.2f s (> slow_call_s=%.2f s); "
            "newer results replace its pending one meanwhile",
            self.stats.name,
            busy,
            self.slow_call_s,
        )

    def snapshot(self) -> HookStats:
        self.check_stuck()
        with self.cond:
            s = HookStats(**{k: getattr(self.stats, k) for k in HookStats.__slots__})
        t0 = self.started_at
        s.busy_s = 0.0 if t0 is None else time.monotonic() - t0
        s.stuck = t0 is not None and s.busy_s > self.slow_call_s
        return s

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.pending is None and not self.closing:
                    self.cond.wait()
                if self.pending is None:  # closing and drained
                    return
                result, self.pending = self.pending, None
                self.started_at = time.monotonic()
                self.stuck_reported = False
            try:
                self.fn(result, self.controller)
            except Exception as exc:  # a hook's failure is reported, never raised
                with self.cond:
                    self.stats.failures += 1
                    self.stats.last_error = repr(exc)
                    n = self.stats.failures
                if n <= 3 or n % 100 == 0:  # a hook failing on every result: no flood
                    logger.exception(
                        "feedback hook %r failed on result %d (failure %d)",
                        self.stats.name,
                        result.index,
                        n,
                    )
            finally:
                busy = time.monotonic() - (self.started_at or 0.0)
                with self.cond:
                    self.stats.calls += 1
                    if busy > self.slow_call_s and not self.stuck_reported:
                        self.stats.slow_calls += 1
                        logger.warning(
                            "feedback hook %r took %.3f s (> slow_call_s=%.3f s)",
                            self.stats.name,
                            busy,
                            self.slow_call_s,
                        )
                    self.started_at = None
                    self.cond.notify_all()

    def idle(self) -> bool:
        with self.cond:
            return self.pending is None and self.started_at is None


class HookRunner:
    """Run feedback hooks off the processing thread.

    Parameters
    ----------
    hooks : sequence of Hook
        Callables ``hook(result, controller)`` or objects with ``on_result``.
    controller : MicroscopeController or None
        Passed to every hook (None: hooks that only observe).
    slow_call_s : float
        A call longer than this is counted as slow and logged, s (> 0).
    name : str
        Thread-name prefix.
    """

    def __init__(
        self,
        hooks: Sequence[Any],
        controller: Any = None,
        *,
        slow_call_s: float = 0.5,
        name: str = "livesr-hook",
    ) -> None:
        if not (
            isinstance(slow_call_s, (int, float))
            and math.isfinite(slow_call_s)
            and slow_call_s > 0
        ):
            raise ValueError(
                f"HookRunner slow_call_s={slow_call_s!r} is out of range; expected a "
                "finite number of seconds > 0"
            )
        self.controller = controller
        self.slow_call_s = float(slow_call_s)
        self._slots = [_Slot(h, controller, float(slow_call_s), name) for h in hooks]
        self._closed = False
        self.submitted = 0

    def submit(self, result: Result) -> None:
        """Hand ``result`` to every hook; never blocks (newest-only slots).

        Ignored (with a debug log) after :meth:`close`.
        """
        if self._closed:
            logger.debug("HookRunner closed; result %d ignored", result.index)
            return
        self.submitted += 1
        for slot in self._slots:
            slot.put(result)

    def stats(self) -> list[HookStats]:
        """Per-hook counters, in hook order (also reports stuck hooks)."""
        return [s.snapshot() for s in self._slots]

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every hook has consumed its pending result (tests, shutdown).

        Returns False if some hook is still busy after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(s.idle() for s in self._slots):
                return True
            time.sleep(0.002)
        return all(s.idle() for s in self._slots)

    def close(self, timeout_s: float = 2.0) -> list[HookStats]:
        """Let every hook finish its pending result, then stop the workers.

        A hook still running after ``timeout_s`` is reported (logged) and left
        behind on its daemon thread. Returns the final :meth:`stats`.
        """
        self._closed = True
        for s in self._slots:
            with s.cond:
                s.closing = True
                s.cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for s in self._slots:
            s.thread.join(max(0.0, deadline - time.monotonic()))
            if s.thread.is_alive():
                logger.error(
                    "feedback hook %r did not finish within %.1f s of close(); left "
                    "running on a daemon thread",
                    s.stats.name,
                    timeout_s,
                )
        stats = self.stats()
        for st in stats:
            logger.info(
                "hook %s: %d calls, %d failures, %d drops, %d slow",
                st.name,
                st.calls,
                st.failures,
                st.drops,
                st.slow_calls,
            )
        return stats

    def report(
        self,
        *,
        frames_acquired: int | None = None,
        frames_planned: int = 0,
        frame_interval_s: float = math.nan,
    ) -> dict[str, Any]:
        """JSON-ready report of the run's hooks (the pipeline summary's ``hooks``).

        Parameters
        ----------
        frames_acquired : int, optional
            Frames the run acquired (for the frames saved by a stop).
        frames_planned : int
            Frames the run was asked for (0: until the source ends).
        frame_interval_s : float
            Camera frame interval, s (for the time saved).

        Returns
        -------
        dict
            ``submitted`` (results handed to the runner), ``slow_call_s``,
            ``hooks`` (per hook: ``name, calls, failures, drops, slow_calls,
            stuck, last_error`` and the hook's own ``report()`` under
            ``report`` when it has one), ``controller`` (the controller's
            ``report()`` or None) and ``stop``: None, or ``{by, reason,
            frames_acquired, frames_planned, frames_saved, time_saved_s}`` when a
            hook stopped the acquisition (``frames_saved`` is None without a
            planned frame count).
        """
        ctl = self.controller
        ctl_report = getattr(ctl, "report", None)
        return {
            "submitted": self.submitted,
            "slow_call_s": self.slow_call_s,
            "hooks": self._hook_reports(),
            "controller": ctl_report() if callable(ctl_report) else None,
            "stop": self._stop_report(frames_acquired, frames_planned, frame_interval_s),
        }

    def _hook_reports(self) -> list[dict[str, Any]]:
        """Per hook: its counters and its own ``report()`` (under ``report``)."""
        hooks = []
        for slot, st in zip(self._slots, self.stats(), strict=True):
            entry: dict[str, Any] = {k: getattr(st, k) for k in _REPORTED}
            own = getattr(slot.hook, "report", None)
            if callable(own):
                try:
                    entry["report"] = own()
                except Exception:  # a broken report must not lose the summary
                    logger.exception("report() of hook %r failed", st.name)
                    entry["report"] = None
            hooks.append(entry)
        return hooks

    def _stop_report(
        self, frames_acquired: int | None, frames_planned: int, frame_interval_s: float
    ) -> dict[str, Any] | None:
        """Who stopped the acquisition (the controller's ``stop_info``), None if no one."""
        info = getattr(self.controller, "stop_info", None)
        if info is None:
            return None
        by = str(info.get("by", ""))
        for slot in self._slots:
            if slot.thread.name == by:
                by = slot.stats.name
        planned = int(frames_planned or 0)
        saved = (
            max(0, planned - int(frames_acquired))
            if planned > 0 and frames_acquired is not None
            else None
        )
        return {
            "by": by,
            "reason": str(info.get("reason", "")),
            "frames_acquired": frames_acquired,
            "frames_planned": planned or None,
            "frames_saved": saved,
            "time_saved_s": (
                saved * frame_interval_s
                if saved is not None and math.isfinite(frame_interval_s)
                else None
            ),
        }

    def __enter__(self) -> HookRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hook_runner(hooks: Any) -> Any:
    """A pipeline's ``hooks`` argument as a started sink: a :class:`HookRunner` over
    callables (one or several), an object with ``submit`` as it is; None: no hooks."""
    if hooks is None:
        return None
    if callable(getattr(hooks, "submit", None)):
        return hooks
    return HookRunner([hooks] if callable(hooks) else list(hooks))
