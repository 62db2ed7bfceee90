"""Latency accounting: bounded histogram quantiles and per-path durations."""

from __future__ import annotations

import math

import numpy as np

from livesr.stream._latency import LatencyTracker, LogHistogram, Timestamps


def test_histogram_quantiles_within_one_percent() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=-4.0, sigma=1.0, size=20_000)
    h = LogHistogram()
    for v in values:
        h.add(v)
    for q in (0.5, 0.99):
        exact = float(np.quantile(values, q))
        assert abs(h.quantile(q) / exact - 1) < 0.011
    assert h.count == 20_000
    assert h.max_s == float(values.max())


def test_histogram_memory_is_fixed() -> None:
    h = LogHistogram()
    size = h._counts.nbytes
    for v in np.linspace(1e-7, 1e5, 50_000):
        h.add(v)
    assert h._counts.nbytes == size
    assert math.isnan(LogHistogram().quantile(0.5))


def test_tracker_paths_and_recent_window() -> None:
    tr = LatencyTracker(recent=4)
    for k in range(10):
        tr.record(
            Timestamps(
                acquired=100.0,
                received=100.001,
                processed=100.010 + k * 0.001,
                published=100.011 + k * 0.001,
            )
        )
    s = tr.summary_ms()
    assert s["end_to_end"]["n"] == 10
    assert abs(s["transport"]["p50"] - 1.0) < 0.02
    assert abs(s["end_to_end"]["max"] - 20.0) < 1e-6
    recent = tr.recent_ms()
    assert recent["n"] == 4
    assert abs(recent["p50"] - 18.5) < 1e-6  # the last 4: 17, 18, 19, 20 ms
    assert Timestamps(1.0, 2.0).paths_s() == {"transport": 1.0}
