"""livesr.kernels.drift: sample-drift estimation.

- :func:`estimate_drift`: batch, NanoPyx-compatible options, displacement (dy, dx)
  per frame relative to frame 0.
- :class:`RollingDrift`: causal estimator for streams (one estimate per block of
  frames, key frames, outlier rejection, uncertainty).

Sign convention everywhere: (dy, dx) is the displacement of the *sample* in px,
positive towards larger row / column index. NanoPyx's drift table holds the
correction (the negative) as [magnitude, x, y]: see :func:`to_nanopyx_table`.
"""

from __future__ import annotations

from livesr.kernels.drift._batch import (
    estimate_drift,
    from_nanopyx_table,
    to_nanopyx_table,
)
from livesr.kernels.drift._rolling import (
    DriftEstimate,
    RollingDrift,
    RollingDriftParams,
)

__all__ = [
    "DriftEstimate",
    "RollingDrift",
    "RollingDriftParams",
    "estimate_drift",
    "from_nanopyx_table",
    "to_nanopyx_table",
]
