"""Latency accounting with bounded memory: per-stage timestamps, p50/p99, counters.

Every published image carries the timestamps of its newest frame::

    acquired -> received -> processed -> published

(seconds since the epoch, ``time.time()``, comparable across processes of one host).
:class:`LatencyTracker` keeps, per path (``"end_to_end"`` = acquired -> published,
``"transport"`` = acquired -> received, ``"queue_and_process"`` = received ->
processed, ``"publish"`` = processed -> published):

- a whole-run log-bucket histogram (:class:`LogHistogram`, fixed size, ~1 % relative
  resolution from 1 us to ~1e4 s), for the end-of-run p50/p99;
- the most recent ``recent`` samples, for the live status line (so a recovery shows).

Memory does not grow with the run length.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["PATHS", "LatencyTracker", "LogHistogram", "Timestamps"]

#: Latency paths, in the order they are reported.
PATHS: tuple[str, ...] = ("end_to_end", "transport", "queue_and_process", "publish")


@dataclass(frozen=True, slots=True)
class Timestamps:
    """Timestamps of one frame, seconds since the epoch (0.0 = not reached)."""

    acquired: float
    received: float
    processed: float = 0.0
    published: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {
            "acquired": self.acquired,
            "received": self.received,
            "processed": self.processed,
            "published": self.published,
        }

    def paths_s(self) -> dict[str, float]:
        """Durations of every :data:`PATHS` entry that both ends reached, s."""
        out: dict[str, float] = {}
        if self.published and self.acquired:
            out["end_to_end"] = self.published - self.acquired
        if self.received and self.acquired:
            out["transport"] = self.received - self.acquired
        if self.processed and self.received:
            out["queue_and_process"] = self.processed - self.received
        if self.published and self.processed:
            out["publish"] = self.published - self.processed
        return out


class LogHistogram:
    """Fixed-size histogram of positive durations with ~1 % relative bucket width.

    Parameters
    ----------
    lo_s, hi_s : float
        Smallest and largest resolved value, s; values outside are clamped into the
        first / last bucket (negative values, from clock skew, count as ``lo_s``).
    growth : float
        Ratio between consecutive bucket edges (1.01: about 1 % resolution).
    """

    def __init__(
        self, lo_s: float = 1e-6, hi_s: float = 1e4, growth: float = 1.01
    ) -> None:
        if not (0 < lo_s < hi_s and growth > 1):
            raise ValueError(
                f"LogHistogram needs 0 < lo_s < hi_s and growth > 1, got {lo_s}, "
                f"{hi_s}, {growth}"
            )
        self._lo = lo_s
        self._log_g = math.log(growth)
        self._n = int(math.ceil(math.log(hi_s / lo_s) / self._log_g)) + 1
        self._counts = np.zeros(self._n, dtype=np.int64)
        self.count = 0
        self.max_s = 0.0

    def add(self, value_s: float) -> None:
        v = max(float(value_s), self._lo)
        i = min(int(math.log(v / self._lo) / self._log_g), self._n - 1)
        self._counts[i] += 1
        self.count += 1
        self.max_s = max(self.max_s, float(value_s))

    def quantile(self, q: float) -> float:
        """Value (bucket centre, s) below which a fraction ``q`` lies; NaN if empty."""
        if self.count == 0:
            return math.nan
        rank = max(1, int(math.ceil(q * self.count)))
        i = int(np.searchsorted(np.cumsum(self._counts), rank))
        return min(self._lo * math.exp((i + 0.5) * self._log_g), self.max_s)


def _quantiles_ms(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"p50": math.nan, "p99": math.nan, "n": 0}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": float(p50) * 1e3, "p99": float(p99) * 1e3, "n": int(values.size)}


class LatencyTracker:
    """Thread-safe latency statistics per path (see the module docstring).

    Parameters
    ----------
    recent : int
        Samples kept per path for the live (recent) percentiles.
    """

    def __init__(self, recent: int = 256) -> None:
        if recent < 1:
            raise ValueError(
                f"LatencyTracker recent={recent!r}; expected an integer >= 1"
            )
        self._lock = threading.Lock()
        self._hist = {p: LogHistogram() for p in PATHS}
        self._recent: dict[str, deque[float]] = {p: deque(maxlen=recent) for p in PATHS}

    def record(self, stamps: Timestamps) -> None:
        """Add the durations of one published image."""
        durations = stamps.paths_s()
        with self._lock:
            for path, d in durations.items():
                self._hist[path].add(d)
                self._recent[path].append(d)

    def recent_ms(self, path: str = "end_to_end") -> dict[str, float]:
        """p50/p99 (ms) and count of the recent samples of ``path``."""
        with self._lock:
            values = np.fromiter(self._recent[path], dtype=np.float64)
        return _quantiles_ms(values)

    def summary_ms(self) -> dict[str, Mapping[str, float]]:
        """Whole-run p50/p99/max (ms) and count per path."""
        out: dict[str, Mapping[str, float]] = {}
        with self._lock:
            for path, h in self._hist.items():
                out[path] = {
                    "p50": h.quantile(0.50) * 1e3,
                    "p99": h.quantile(0.99) * 1e3,
                    "max": h.max_s * 1e3 if h.count else math.nan,
                    "n": h.count,
                }
        return out
