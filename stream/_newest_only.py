"""One background analysis at a time, on the newest input only.

The live resolution (:mod:`livesr.stream._resolution`) and the live error map
(:mod:`livesr.stream._errormap_live`) both hand an image over only while their thread
is idle (no copy, no wait otherwise), analyse it on that thread, and hand the result
out **once** to the next image published.  :class:`NewestOnly` is that schedule;
subclasses implement :meth:`NewestOnly._analyse` and call :meth:`NewestOnly._set_ready`.

CPU share
    An analysis that used ``d`` CPU seconds (its worker process's CPU time when it
    ran in one, else its wall time) is followed by a rest of
    ``d * (1 / share - 1)`` seconds in which nothing is taken, with ``share =
    min(1, cpu_share * cpu_count)`` of one core: by default (``cpu_share`` 0.1) the
    analyses use at most a tenth of the machine's CPU time.  On a 2-core laptop a
    0.8 s decorrelation analysis of a 512² image is then followed by a 3.2 s rest
    (it used to run back to back and took a core from the eSRRF map, -12 % replay
    throughput); on a 16-core host there is no rest.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any

__all__ = ["DEFAULT_CPU_SHARE", "NewestOnly", "core_share", "cpu_timed"]

#: share of the machine's CPU time the background analyses may use
DEFAULT_CPU_SHARE = 0.1


def cpu_timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), CPU seconds of this process meanwhile)``: submitted to
    a worker process so the rest counts what the analysis used, not the time a
    low-priority worker waited for the CPU (beside a busy loop, wall time was many
    times the CPU time and the rest outlasted short runs)."""
    t0 = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t0


def core_share(cpu_share: float, cpus: int | None = None) -> float:
    """Share of one core that ``cpu_share`` of the machine's CPU time is, in (0, 1].

    Parameters
    ----------
    cpu_share : float
        Share of the whole machine, in (0, 1].
    cpus : int, optional
        Logical CPUs (default: ``os.cpu_count()``).
    """
    if not (math.isfinite(cpu_share) and 0 < cpu_share <= 1):
        raise ValueError(f"cpu_share={cpu_share!r}; expected a number in (0, 1]")
    n = cpus if cpus is not None else (os.cpu_count() or 1)
    return min(1.0, cpu_share * max(1, int(n)))

logger = logging.getLogger(__name__)


class NewestOnly:
    """Newest-only background worker thread (see the module docstring).

    Parameters
    ----------
    thread_name : str
        Name of the worker thread (started at the first hand-over).
    cpu_share : float
        Share of the machine's CPU time the analyses may use, in (0, 1] (module
        docstring).
    clock : callable
        Monotonic seconds (tests).
    """

    def __init__(
        self,
        thread_name: str,
        *,
        cpu_share: float = DEFAULT_CPU_SHARE,
        clock: Any = time.monotonic,
    ) -> None:
        self._thread_name = thread_name
        self._core_share = core_share(cpu_share)
        self.cpu_share = float(cpu_share)
        self._clock = clock
        self._rest_until = -math.inf
        #: CPU seconds of the analysis just run, set by :meth:`_analyse` when it is
        #: known (a worker process's); None: its wall time counts
        self._cpu_s: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: tuple[Any, ...] | None = None
        self._busy = False
        self._ready: Any = None
        self._closed = False
        self._thread: threading.Thread | None = None
        #: results handed to a published image (the last may finish after the last
        #: image: it is then in the summary only)
        self.published = 0

    def _idle(self) -> bool:
        """Nothing waits and nothing is analysed (call with ``_lock`` held)."""
        return not self._busy and self._pending is None

    def _rested(self) -> bool:
        """The rest after the last analysis is over (module docstring)."""
        return self._clock() >= self._rest_until

    def _timed_analyse(self, *job: Any) -> None:
        """:meth:`_analyse`, then the rest its duration asks for."""
        t0 = time.perf_counter()
        self._cpu_s = None
        try:
            self._analyse(*job)
        finally:
            took = time.perf_counter() - t0 if self._cpu_s is None else self._cpu_s
            rest = took * (1.0 / self._core_share - 1.0)
            with self._lock:
                self._rest_until = self._clock() + rest

    def _hand_over(self, job: tuple[Any, ...]) -> None:
        """Queue ``job`` for :meth:`_analyse` on the worker thread (call with ``_lock``
        held, after checking :meth:`_idle`)."""
        self._pending = job
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=self._thread_name, daemon=True
            )
            self._thread.start()
        self._wake.notify()

    def _analyse(self, *job: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_ready(self, result: Any) -> None:
        """Make ``result`` the one :meth:`take` hands out next (call with ``_lock``)."""
        self._ready = result

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._pending is None:
                    return
                job = self._pending
                self._pending = None
                self._busy = True
            try:
                self._timed_analyse(*job)
            finally:
                with self._lock:
                    self._busy = False

    def take(self) -> Any:
        """The result finished since the last call (each one is given once)."""
        with self._lock:
            result, self._ready = self._ready, None
            if result is not None:
                self.published += 1
        return result

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing waits or is analysed (tests); whether it became idle."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                if self._idle():
                    return True
            time.sleep(0.005)
        return False

    def close(self, timeout_s: float = 30.0, *, drop_pending: bool = True) -> None:
        """Stop the thread; the analysis under way is waited for up to ``timeout_s``
        (and the one waiting too, unless ``drop_pending``)."""
        with self._lock:
            self._closed = True
            if drop_pending:
                self._pending = None
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning(
                    "%s did not stop in %.0f s", self._thread_name, timeout_s
                )
            self._thread = None
