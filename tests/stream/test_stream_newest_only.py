"""The newest-only background schedule: one job at a time, results once, CPU share."""

from __future__ import annotations

import time
from typing import Any

import pytest

from livesr.stream import _newest_only
from livesr.stream._newest_only import NewestOnly, core_share


class _Sleeper(NewestOnly):
    """Analysis = sleep ``seconds``; the result is the job's value."""

    def __init__(self, seconds: float, **kw: Any) -> None:
        super().__init__("test-sleeper", **kw)
        self.seconds = seconds

    def offer(self, value: int) -> bool:
        with self._lock:
            if not (self._idle() and self._rested()):
                return False
            self._hand_over((value,))
        return True

    def _analyse(self, value: int) -> None:
        time.sleep(self.seconds)
        with self._lock:
            self._set_ready(value)


@pytest.mark.parametrize(
    ("share", "cpus", "expected"),
    [(0.1, 2, 0.2), (0.1, 16, 1.0), (0.5, 1, 0.5), (1.0, 1, 1.0)],
)
def test_core_share(share: float, cpus: int, expected: float) -> None:
    assert core_share(share, cpus) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_core_share_rejects(bad: float) -> None:
    with pytest.raises(ValueError, match="cpu_share"):
        core_share(bad, 2)


def test_rest_after_an_analysis_keeps_the_cpu_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """On 2 CPUs with a 10 % share (a fifth of a core), an analysis of >= 50 ms is
    followed by a rest of >= 4 x 50 ms during which nothing is taken."""
    monkeypatch.setattr(_newest_only.os, "cpu_count", lambda: 2)
    t = [0.0]
    w = _Sleeper(0.05, cpu_share=0.1, clock=lambda: t[0])
    try:
        assert w.offer(1)
        assert w.wait_idle(30.0)
        assert w.take() == 1 and w.take() is None  # handed out once
        t[0] = 0.19  # rest >= 0.05 * (1 / 0.2 - 1) = 0.2 s
        assert not w.offer(2)
        t[0] = 60.0
        assert w.offer(3) and w.wait_idle(30.0) and w.take() == 3
    finally:
        w.close(timeout_s=10.0)


def test_no_rest_with_a_whole_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_newest_only.os, "cpu_count", lambda: 16)
    t = [0.0]
    w = _Sleeper(0.02, cpu_share=0.1, clock=lambda: t[0])
    try:
        assert w.offer(1) and w.wait_idle(30.0)
        assert w.offer(2) and w.wait_idle(30.0)  # same instant: no rest
        assert w.take() == 2  # the newest result
    finally:
        w.close(timeout_s=10.0)


def test_cpu_timed_counts_cpu_not_waiting() -> None:
    from livesr.stream._newest_only import cpu_timed

    out, cpu = cpu_timed(time.sleep, 0.2)
    assert out is None and 0 <= cpu < 0.1  # asleep: no CPU used
    out, cpu = cpu_timed(sum, range(2_000_000))
    assert out == 1999999000000 and cpu > 0


def test_rest_follows_the_cpu_time_an_analysis_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker-process analysis that waited 50 ms for the CPU but used none (the
    rest counts CPU time when the analysis reports it) leaves no rest."""
    monkeypatch.setattr(_newest_only.os, "cpu_count", lambda: 2)

    class _Waiting(_Sleeper):
        def _analyse(self, value: int) -> None:
            super()._analyse(value)
            self._cpu_s = 0.0

    t = [0.0]
    w = _Waiting(0.05, cpu_share=0.1, clock=lambda: t[0])
    try:
        assert w.offer(1) and w.wait_idle(30.0)
        assert w.offer(2) and w.wait_idle(30.0) and w.take() == 2
    finally:
        w.close(timeout_s=10.0)
