"""What the host and device sliding windows share: settings, counters, schedule.

:class:`SlidingBase` holds the emission schedule (module docstring of
:mod:`livesr.kernels.sliding`), the frame counters, the ``[lo, hi)`` range of
stored frames, the read-only properties, the checks at the start of ``push`` /
``push_many`` and the validation and split of ``set_params`` changes.  The host
window (:class:`~livesr.kernels.sliding.SlidingEsrrf`) and the device window
(:class:`~livesr.kernels.sliding.DeviceSlidingEsrrf`) add their storage and
arithmetic; they keep the same attribute names, so the schedule is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from livesr.kernels._params import EsrrfParams
from livesr.kernels.sliding._config import SlidingConfig

__all__ = ["ESRRF_FIELDS", "WINDOW_FIELDS", "SlidingBase"]

#: per-frame map settings (:class:`EsrrfParams` fields): changing one invalidates maps
ESRRF_FIELDS: tuple[str, ...] = (
    "magnification",
    "radius",
    "sensitivity",
    "intensity_weighting",
    "geometry",
)
#: window settings both windows accept in ``set_params`` (:class:`SlidingConfig`)
WINDOW_FIELDS: tuple[str, ...] = (
    "window",
    "stride",
    "temporal",
    "macro_pixel_correction",
)


class SlidingBase:
    """Emission schedule and settings shared by the host and device windows.

    Subclasses set :attr:`SETTABLE` (the ``set_params`` keywords they accept) and
    call :meth:`_reset_schedule` from their ``reset``.
    """

    #: ``set_params`` keywords (a subset of ``ESRRF_FIELDS + SlidingConfig`` fields)
    SETTABLE: ClassVar[frozenset[str]] = frozenset(ESRRF_FIELDS + WINDOW_FIELDS)
    #: appended to the "unsupported setting" error
    SETTABLE_HINT: ClassVar[str] = ""

    _cfg: SlidingConfig
    _params: EsrrfParams
    _shape: tuple[int, int] | None
    _frames_seen: int
    _windows_emitted: int
    _last_emit: int | None
    _next_emit: int
    _lo: int
    _hi: int

    def _reset_schedule(self) -> None:
        """Counters to 0, no frame stored, first emission at frame ``window - 1``."""
        self._frames_seen = 0
        self._windows_emitted = 0
        self._last_emit = None
        self._next_emit = self._cfg.window - 1
        self._lo = self._hi = 0
        self._shape = None

    # ------------------------------------------------------------- properties
    @property
    def frames_seen(self) -> int:
        """Frames pushed since creation or ``reset()`` (skipped ones included)."""
        return self._frames_seen

    @property
    def windows_emitted(self) -> int:
        """Images returned since creation or ``reset()``."""
        return self._windows_emitted

    @property
    def config(self) -> SlidingConfig:
        """Current window settings."""
        return self._cfg

    @property
    def params(self) -> EsrrfParams:
        """Current per-frame eSRRF parameters."""
        return self._params

    @property
    def window(self) -> int:
        """Frames per emitted image."""
        return self._cfg.window

    @property
    def stride(self) -> int:
        """Frames between emitted images."""
        return self._cfg.stride

    @property
    def temporal(self) -> str:
        """Temporal statistic, ``"avg"``, ``"var"`` or ``"tac2"``."""
        return self._cfg.temporal

    @property
    def next_emission(self) -> int:
        """Index of the frame whose arrival emits the next image."""
        return self._next_emit

    @property
    def n_stored(self) -> int:
        """Frames currently held in the window (at most ``window``)."""
        return self._hi - self._lo

    # ---------------------------------------------------------------- pushing
    def _check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise when a frame's ``shape`` differs from the earlier frames'."""
        if self._shape is not None and tuple(shape) != self._shape:
            raise ValueError(
                f"frame {self._frames_seen} has shape {tuple(shape)}, expected "
                f"{self._shape} like the earlier frames; call reset() before "
                "changing the frame size"
            )

    def _skip_if_between_windows(self, i: int) -> bool:
        """Whether frame ``i`` (the next one) belongs to no window (``stride >
        window``); it is then counted, never mapped or stored."""
        if i < self._next_emit - self._cfg.window + 1:
            self._frames_seen += 1
            return True
        return False

    def _emitted(self, i: int) -> None:
        """Book the emission at frame ``i`` and schedule the next one."""
        self._last_emit = i
        self._next_emit = i + self._cfg.stride
        self._windows_emitted += 1

    def _entering(self, n: int) -> list[int]:
        """Offsets of the next ``n`` frames that enter a window (the others,
        between windows when ``stride > window``, are counted, never mapped)."""
        i0, nxt = self._frames_seen, self._next_emit
        window, stride = self._cfg.window, self._cfg.stride
        need = []
        for k in range(n):
            if i0 + k >= nxt - window + 1:
                need.append(k)
            if i0 + k == nxt:
                nxt += stride
        return need

    @staticmethod
    def _batch(
        frames: Iterable[np.ndarray] | np.ndarray, shifts: Any
    ) -> tuple[Sequence[np.ndarray] | np.ndarray, np.ndarray]:
        """``push_many``'s arguments: the frames (a (N, H, W) array stays one, an
        iterable becomes a list) and the (N, 2) float64 shifts (zeros if None)."""
        frame_list = frames if isinstance(frames, np.ndarray) else list(frames)
        if isinstance(frame_list, np.ndarray) and frame_list.ndim != 3:
            raise ValueError(
                f"frames must be a (N, H, W) stack or a sequence of frames, got shape "
                f"{frame_list.shape}; use push() for a single frame"
            )
        n = len(frame_list)
        if shifts is None:
            return frame_list, np.zeros((n, 2), dtype=np.float64)
        shift_arr = np.asarray(shifts, dtype=np.float64)
        if shift_arr.shape != (n, 2):
            raise ValueError(
                f"shifts must have shape ({n}, 2) -- one (dy, dx) per frame -- "
                f"got {shift_arr.shape}"
            )
        return frame_list, shift_arr

    # ------------------------------------------------------------- set_params
    def _changed(self, changes: dict[str, Any]) -> tuple[SlidingConfig, EsrrfParams]:
        """The settings after ``changes`` (validated; nothing is changed yet)."""
        bad = sorted(set(changes) - self.SETTABLE)
        if bad:
            raise ValueError(
                f"set_params got unsupported setting(s) {bad}; allowed: "
                f"{sorted(self.SETTABLE)}{self.SETTABLE_HINT}"
            )
        cfg_changes = {k: v for k, v in changes.items() if k not in ESRRF_FIELDS}
        map_changes = {k: v for k, v in changes.items() if k in ESRRF_FIELDS}
        return replace(self._cfg, **cfg_changes), replace(self._params, **map_changes)

    def _schedule_after_change(self, old_cfg: SlidingConfig) -> int:
        """Next emission after ``window`` / ``stride`` changed from ``old_cfg``: the
        first frame index ``>= last emission + stride``, not yet pushed, for which
        the window can be full of contiguous frames."""
        cfg = self._cfg
        if cfg.window == old_cfg.window and cfg.stride == old_cfg.stride:
            return self._next_emit
        seen = self._frames_seen
        contiguous = self._hi > self._lo and self._hi == seen
        start = self._lo if contiguous else seen
        if contiguous:
            start = max(start, seen - cfg.window + 1)
        nxt = max(seen, start + cfg.window - 1)
        if self._last_emit is not None:
            nxt = max(nxt, self._last_emit + cfg.stride)
        return nxt

    def _restart_schedule(self) -> None:
        """Drop the stored frames; the next image needs ``window`` new frames."""
        self._lo = self._hi = self._frames_seen
        self._next_emit = self._frames_seen + self._cfg.window - 1
        self._last_emit = None
