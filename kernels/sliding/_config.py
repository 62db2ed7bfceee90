"""Settings, results and memory estimate of the sliding windows (host and device)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from livesr.kernels._params import (
    EsrrfParams,
    validate_flag,
    validate_int,
    validate_temporal,
)
from livesr.kernels._window import WindowMoments

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "COMPACT_DTYPES",
    "BatchMap",
    "FrameMap",
    "SlidingConfig",
    "SlidingResult",
    "Strategy",
    "estimate_memory",
    "validate_shape",
]

#: Default ``memory_budget_bytes`` (512 MiB).
DEFAULT_MEMORY_BUDGET: int = 512 * 2**20

Strategy = Literal["maps", "raw"]
_STRATEGIES: tuple[str, ...] = ("auto", "maps", "raw")
#: raw frames of these dtypes are stored as they are (exact in float32)
COMPACT_DTYPES = (
    np.dtype(np.uint8),
    np.dtype(np.int8),
    np.dtype(np.uint16),
    np.dtype(np.int16),
)
class FrameMap(Protocol):
    """Signature of a per-frame map function (:func:`livesr.kernels.esrrf_frame`'s)."""

    def __call__(
        self,
        frame: np.ndarray,
        params: EsrrfParams,
        *,
        shift: tuple[float, float] = ...,
        out: np.ndarray | None = ...,
    ) -> np.ndarray: ...


#: ``fn(frames (N, H, W) float32, params, shifts (N, 2) px, deadline_s) -> maps``
BatchMap = Callable[..., np.ndarray]


@dataclass(frozen=True, slots=True)
class SlidingResult:
    """One emitted image of a sliding-window eSRRF stream.

    Attributes
    ----------
    image : ndarray, float32, shape (H*M, W*M)
        eSRRF image of the window (temporal statistic, then macro-pixel correction
        when enabled). A fresh array owned by the caller.
    first_frame, last_frame : int
        Indices (arrival order, from 0) of the first and last frame of the window.
    n_frames : int
        Frames in the window, ``last_frame - first_frame + 1``.
    quality : float or None
        :func:`livesr.stream._quality.quality_metric` of the image, when computed
        by the producer (None: compute it from ``image``).
    halves : (ndarray, ndarray) or None
        The images of the window's even- and odd-indexed frames (made as
        ``image``), when asked for (``SlidingEsrrf.want_halves``) and the window
        could sum them from its stored maps; else None.
    """

    image: np.ndarray
    first_frame: int
    last_frame: int
    n_frames: int
    #: ``normalized_gradient_energy`` of the image when the producer computed it
    #: where the image was made (the GPU window: no host pass over a large image)
    quality: float | None = None
    #: even / odd half images of the window (even/odd FRC), or None
    halves: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlidingConfig:
    """Window and bookkeeping settings of :class:`SlidingEsrrf` (validated).

    Parameters
    ----------
    window : int
        Frames per image, ``>= 1`` (``>= 2`` for ``temporal="tac2"``).
    stride : int
        Frames between two emitted images, ``>= 1``.
    temporal : {"avg", "var", "tac2"}
        Temporal statistic (case-insensitive).
    macro_pixel_correction : bool
        Apply NanoPyx's macro-pixel correction to each emitted image.
    memory_budget_bytes : int
        Memory the object may hold, ``> 0``; decides the strategy under ``"auto"``.
    strategy : {"auto", "maps", "raw"}
        Storage strategy (module docstring).
    resync_every : int
        Recompute the running sums from the stored window after this many stored
        frames, ``>= 0`` (default ``0`` = never). Not needed for accuracy: the
        compensated sums do not drift (tested over 10 000 frames), and the residue
        of a non-deterministic map function under the raw strategy is better
        handled by ``shadow_sums``. A resync costs, on the frame
        that triggers it, ``n`` additions (maps) or ``n`` map computations (raw): a
        latency spike in a live stream.
    shadow_sums : bool or None
        Keep a second set of sums that restarts empty and only ever adds frames;
        when it holds exactly the window (every ``window`` frames) it replaces the
        running sums. Any residue left by removals -- nonzero only when a
        recomputed map differs from the original, i.e. a non-deterministic map
        function under the raw strategy -- is thereby discarded every ``window``
        frames, with no extra map computation and no latency spike, for one more
        sum update per frame and one more set of sums in memory. ``None``
        (default): on with the raw strategy, off with the maps strategy (where a
        removed map is always the stored original).
    """

    window: int
    stride: int
    temporal: str = "avg"
    macro_pixel_correction: bool = True
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    strategy: str = "auto"
    resync_every: int = 0
    shadow_sums: bool | None = None

    def __post_init__(self) -> None:
        for name in ("window", "stride"):
            value = validate_int(name, getattr(self, name), 1, ">= 1 (frames)")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "temporal", validate_temporal(self.temporal))
        if self.temporal == "tac2" and self.window < 2:
            raise ValueError(
                "temporal='tac2' needs window >= 2 (a lag-1 pair), "
                f"got window={self.window}"
            )
        mpc = validate_flag("macro_pixel_correction", self.macro_pixel_correction)
        object.__setattr__(self, "macro_pixel_correction", mpc)
        budget = validate_int(
            "memory_budget_bytes", self.memory_budget_bytes, 1, "> 0 (bytes)"
        )
        object.__setattr__(self, "memory_budget_bytes", budget)
        if self.strategy not in _STRATEGIES:
            raise ValueError(
                f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}"
            )
        resync = validate_int(
            "resync_every", self.resync_every, 0, ">= 0 (frames, 0 = never)"
        )
        object.__setattr__(self, "resync_every", resync)
        if self.shadow_sums is not None:
            shadow = validate_flag(
                "shadow_sums", self.shadow_sums, "None (automatic), True or False"
            )
            object.__setattr__(self, "shadow_sums", shadow)

    def shadow_for(self, strategy: str) -> bool:
        """Whether shadow sums are kept with ``strategy`` (``None`` = raw only)."""
        if self.shadow_sums is not None:
            return self.shadow_sums
        return strategy == "raw"


def estimate_memory(
    strategy: str,
    *,
    window: int,
    frame_shape: tuple[int, int],
    magnification: int,
    temporal: str,
    raw_itemsize: int = 4,
    sums_backend: str = "auto",
    shadow_sums: bool = False,
) -> int:
    """Bytes :class:`SlidingEsrrf` holds at most with ``strategy`` (maps or raw).

    Counts the stored raw frames, the stored maps (maps strategy) or the first/last/
    next maps (raw strategy), the float64 running sums and the temporaries of one
    emission (float64 mean and statistic, float32 output).
    """
    h, w = frame_shape
    map_px = h * w * magnification * magnification
    raw = window * h * w * raw_itemsize
    sums = WindowMoments.bytes_needed(
        (h * magnification, w * magnification), temporal, sums_backend
    ) * (2 if shadow_sums else 1)
    emission = map_px * (8 + 8 + 8 + 4) + window * 16  # + the stored shifts
    if strategy == "maps":
        maps = (window + 1) * map_px * 4
    elif strategy == "raw":
        maps = 4 * map_px * 4  # first, last, and two reused work maps
    else:
        raise ValueError(f"strategy must be 'maps' or 'raw', got {strategy!r}")
    return raw + maps + sums + emission


def validate_shape(shape: Any) -> tuple[int, int]:
    """``frame_shape`` as ``(rows, columns)`` of two ints >= 1, or a ValueError."""
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"frame_shape must be (rows, columns), got {shape!r}"
        ) from None
    if h < 1 or w < 1:
        raise ValueError(f"frame_shape must be two integers >= 1, got {shape!r}")
    return h, w
