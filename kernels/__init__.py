"""livesr.kernels: the numerical heart of livesr (eSRRF and drift correction).

Public API (names resolve lazily, so ``import livesr.kernels`` stays cheap):

- :func:`esrrf` -- batch eSRRF, numerically equal to NanoPyx 2.1.5.
- :func:`esrrf_frame` -- the per-frame radial-gradient-convergence map of eSRRF.
- :class:`SlidingEsrrf` -- incremental sliding-window eSRRF for streams.
- :func:`estimate_drift` -- batch drift estimation compatible with NanoPyx.
- :class:`RollingDrift` -- causal drift estimation for streams.
- :func:`esrrf_sweep` -- radius x sensitivity sweep scored by QnR (= NanoPyx).
- :class:`AutoParams` -- the sweep on the newest frames within a time budget.
- :func:`error_map` -- SQUIRREL error map, RSE, RSP (= NanoPyx ErrorMap).
- :func:`decorrelation_analysis`, :func:`fire_number` -- resolution (= NanoPyx).
"""

from __future__ import annotations

import importlib
from typing import Any

#: The engine kernels livesr ships (passed to ``livesr.engine.load_kernels``): each is
#: a folder whose ``__init__`` declares ``kernel = Kernel(...)``.  Plain strings, so
#: reading this imports nothing.
KERNEL_PACKAGES: tuple[str, ...] = (
    "livesr.kernels.catmull_rom",
    "livesr.kernels.roberts_cross",
    "livesr.kernels.rgc",
    "livesr.kernels.temporal",
    "livesr.kernels.macro_pixel",
    "livesr.kernels.esrrf_map",
    "livesr.kernels.esrrf_map_batch",
    "livesr.kernels.xcorr",
)

_EXPORTS: dict[str, str] = {
    "esrrf": "livesr.kernels.esrrf_stack",
    "esrrf_frame": "livesr.kernels.esrrf_stack",
    "EsrrfParams": "livesr.kernels.esrrf_stack",
    "macro_pixel_correction": "livesr.kernels.esrrf_stack",
    "SlidingEsrrf": "livesr.kernels.sliding",
    "esrrf_movie": "livesr.kernels.sliding",
    "estimate_drift": "livesr.kernels.drift",
    "RollingDrift": "livesr.kernels.drift",
    "esrrf_sweep": "livesr.kernels.sweep",
    "SweepResult": "livesr.kernels.sweep",
    "AutoParams": "livesr.kernels.auto_params",
    "error_map": "livesr.kernels.squirrel",
    "ErrorMapResult": "livesr.kernels.squirrel",
    "decorrelation_analysis": "livesr.kernels.decorr",
    "fire_number": "livesr.kernels.frc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(
            f"module 'livesr.kernels' has no attribute {name!r}"
        ) from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
