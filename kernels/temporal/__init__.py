"""Temporal step of eSRRF: AVG, VAR (ddof 0), TAC2 over the per-frame maps.

``TemporalAccumulator(mode, shape)`` streams (float64 running sums, a few maps of
memory); ``temporal_two_pass(maps (n, Y, X), mode)`` is NanoPyx's float32 two-pass
version, kept for parity tests.
"""

from __future__ import annotations

from livesr.kernels.temporal._numpy import TemporalAccumulator, temporal_two_pass

__all__ = ["TemporalAccumulator", "temporal_two_pass"]
