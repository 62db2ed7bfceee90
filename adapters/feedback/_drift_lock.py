"""Drift lock: move the stage to cancel the measured sample drift.

:class:`DriftLock` reads ``Result.drift_px`` (the displacement the camera sees,
which includes the corrections already made) and, once its length passes
``threshold_px``, moves the XY stage by ``gain * drift * pixel_size`` so the
sample returns to the reference position: moving the stage by +dx um moves the
sample in the image by -dx / pixel_size px, so a sample displaced by (dy, dx)
px is brought back by a stage move of (+dx, +dy) * pixel_size um.

Results whose frames were (partly) acquired before the last move still show
the old displacement; they are ignored: when ``Result.timestamps`` has
``"t_acq_first"`` (``time.time()`` of the window's first frame), every result
with ``t_acq_first < last_move + settle_s`` is skipped; without it the next
``settle_results`` results are skipped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from livesr.adapters.feedback._api import Result
from livesr.adapters.feedback._limits import LimitError

__all__ = ["DriftLock", "DriftLockConfig"]

logger = logging.getLogger(__name__)


def _check(ok: bool, name: str, v: Any, expected: str) -> None:
    if not ok:
        raise ValueError(
            f"DriftLockConfig.{name}={v!r} is out of range; expected {expected}"
        )


def _fin(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftLockConfig:
    """Parameters of :class:`DriftLock`.

    Attributes
    ----------
    threshold_px : float
        Correct once the displacement length exceeds this, camera px (> 0).
    gain : float
        Fraction of the displacement corrected per move, in (0, 1].
    max_sigma_px : float
        Ignore estimates less certain than this (``drift_sigma_px``), px (> 0);
        NaN sigmas are accepted.
    settle_s : float
        Frames acquired less than this after a move are ignored, s (>= 0).
    settle_results : int
        Without ``"t_acq_first"`` timestamps: results skipped after a move (>= 0).
    """

    threshold_px: float = 0.2
    gain: float = 1.0
    max_sigma_px: float = 0.5
    settle_s: float = 0.0
    settle_results: int = 2

    def __post_init__(self) -> None:
        t, g, s = self.threshold_px, self.gain, self.max_sigma_px
        _check(_fin(t) and t > 0, "threshold_px", t, "a finite number of px > 0")
        _check(_fin(g) and 0 < g <= 1, "gain", g, "a number in (0, 1]")
        _check(_fin(s) and s > 0, "max_sigma_px", s, "a finite number of px > 0")
        _check(
            _fin(self.settle_s) and self.settle_s >= 0,
            "settle_s",
            self.settle_s,
            "a number of s >= 0",
        )
        n = self.settle_results
        _check(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0,
            "settle_results",
            n,
            "an integer >= 0",
        )


class DriftLock:
    """Feedback hook keeping the sample at its reference position.

    Parameters
    ----------
    config : DriftLockConfig, optional

    Attributes
    ----------
    moves : int
        Corrections made.
    refused : int
        Corrections the controller's limits refused (logged; retried on later
        results).
    corrected_um : (float, float)
        Total stage correction (x, y) commanded, um.
    """

    name = "drift_lock"

    def __init__(self, config: DriftLockConfig | None = None) -> None:
        self.config = config if config is not None else DriftLockConfig()
        self.moves = 0
        self.refused = 0
        self.skipped = 0
        self.corrected_um = (0.0, 0.0)
        self._last_move_wall: float | None = None
        self._skip_left = 0
        self._lock = threading.Lock()

    def on_result(self, result: Result, controller: Any) -> None:
        """Correct the stage if ``result.drift_px`` is beyond the threshold."""
        cfg = self.config
        with self._lock:
            t_first = result.timestamps.get("t_acq_first")
            # any accepted move (by this or another hook) invalidates older frames
            last_move = getattr(controller, "last_move_wall", None)
            if last_move is None:
                last_move = self._last_move_wall
            if last_move is not None:
                if t_first is not None:
                    if t_first < last_move + cfg.settle_s:
                        self.skipped += 1
                        return
                elif self._skip_left > 0:
                    self._skip_left -= 1
                    self.skipped += 1
                    return
            dy, dx = (float(v) for v in result.drift_px)
            sig = float(result.drift_sigma_px)
            ps = float(result.pixel_size_um)
            if not (math.isfinite(dy) and math.isfinite(dx)):
                logger.debug("result %d: non-finite drift, ignored", result.index)
                return
            if math.isfinite(sig) and sig > cfg.max_sigma_px:
                logger.debug(
                    "result %d: drift sigma %.3g px too large", result.index, sig
                )
                return
            if not (math.isfinite(ps) and ps > 0):
                raise ValueError(
                    f"DriftLock needs Result.pixel_size_um (camera px in um); result "
                    f"{result.index} has {result.pixel_size_um!r}"
                )
            if math.hypot(dy, dx) <= cfg.threshold_px:
                return
            step_x, step_y = cfg.gain * dx * ps, cfg.gain * dy * ps
            try:
                controller.move_xy_by(step_x, step_y)
            except LimitError:
                self.refused += 1  # the controller logged why
                return
            self._last_move_wall = time.time()
            self._skip_left = cfg.settle_results
            self.moves += 1
            cx, cy = self.corrected_um
            self.corrected_um = (cx + step_x, cy + step_y)
            logger.debug(
                "result %d: drift (%.3f, %.3f) px -> stage by (%.4f, %.4f) um",
                result.index,
                dy,
                dx,
                step_x,
                step_y,
            )

    __call__ = on_result
