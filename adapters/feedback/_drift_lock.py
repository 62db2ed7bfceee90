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
with ``t_acq_first < last_move + settle_s`` is skipped; else, with
``"t_acq_last"`` (the newest frame, what the live pipeline gives: its drift is
the rolling estimate at the newest frame), every result with ``t_acq_last <
last_move + settle_s``; with neither, the next ``settle_results`` results.

Lead (``lead_s > 0``, needs ``t_acq_last``): the drift keeps going while a result
is processed and until the next correction. The hook tracks the absolute drift
(measured displacement + its own corrections, px) against acquisition time,
fits its velocity over the last ``velocity_window_s`` and corrects the
displacement predicted for ``now + lead_s`` instead of the one measured at the
newest frame: the latency is compensated and the residual swings around zero
(half the sawtooth of a plain lock for ``lead_s`` = half the correction period).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesr.adapters.feedback._limits import LimitError
from livesr.stream import Result

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
        Results whose first frame (``t_acq_first``; else newest frame,
        ``t_acq_last``) was acquired less than this after a move are ignored,
        s (>= 0). With ``t_acq_last`` it is the time the drift estimate needs to
        see the move (a few drift blocks).
    settle_results : int
        Without acquisition timestamps: results skipped after a move (>= 0).
    lead_s : float
        Correct the displacement predicted this far ahead of now, s (>= 0; 0: the
        measured one, no velocity prediction).
    velocity_window_s : float
        Span of the velocity fit, s (> 0).
    n_sigma : float
        Do not act on a displacement within ``n_sigma`` times its uncertainty
        of zero: the correction needs ``hypot(dy, dx) > n_sigma *
        drift_sigma_px`` (per-axis sigma) as well as the threshold (>= 0; 0 =
        threshold only). With 3, a sample at rest is moved by noise in about 1
        estimate in 90 (Rayleigh tail ``exp(-n_sigma^2 / 2)``).
    """

    threshold_px: float = 0.2
    gain: float = 1.0
    max_sigma_px: float = 0.5
    settle_s: float = 0.0
    settle_results: int = 2
    lead_s: float = 0.0
    velocity_window_s: float = 3.0
    n_sigma: float = 3.0

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
        _check(
            _fin(self.lead_s) and self.lead_s >= 0,
            "lead_s",
            self.lead_s,
            "a number of s >= 0",
        )
        w = self.velocity_window_s
        _check(_fin(w) and w > 0, "velocity_window_s", w, "a number of s > 0")
        _check(
            _fin(self.n_sigma) and self.n_sigma >= 0,
            "n_sigma",
            self.n_sigma,
            "a finite number >= 0",
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
    within_sigma : int
        Results not acted on because their displacement was within
        ``n_sigma`` of their uncertainty of zero.
    corrected_um : (float, float)
        Total stage correction (x, y) commanded, um.
    """

    name = "drift_lock"

    def __init__(self, config: DriftLockConfig | None = None) -> None:
        self.config = config if config is not None else DriftLockConfig()
        self.moves = 0
        self.refused = 0
        self.skipped = 0
        self.within_sigma = 0
        self.corrected_um = (0.0, 0.0)
        self._last_move_wall: float | None = None
        self._skip_left = 0
        self._lock = threading.Lock()
        # lead: (t_acq_last, absolute drift dy, dx px) of the results used
        self._track: deque[tuple[float, float, float]] = deque()
        self._corrected_px = (0.0, 0.0)

    def on_result(self, result: Result, controller: Any) -> None:
        """Correct the stage if ``result.drift_px`` is beyond the threshold."""
        cfg = self.config
        with self._lock:
            t_first = result.timestamps.get("t_acq_first")
            if t_first is None:
                t_first = result.timestamps.get("t_acq_last")
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
            t_last = result.timestamps.get("t_acq_last")
            if cfg.lead_s > 0 and t_last is not None:
                dy, dx = self._predict(float(t_last), dy, dx)
            if math.hypot(dy, dx) <= cfg.threshold_px:
                return
            if math.isfinite(sig) and math.hypot(dy, dx) <= cfg.n_sigma * sig:
                self.within_sigma += 1
                logger.debug(
                    "result %d: drift (%.3f, %.3f) px within %.1f sigma (%.3f px) of 0",
                    result.index,
                    dy,
                    dx,
                    cfg.n_sigma,
                    sig,
                )
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
            py, px = self._corrected_px
            self._corrected_px = (py + step_y / ps, px + step_x / ps)
            logger.debug(
                "result %d: drift (%.3f, %.3f) px -> stage by (%.4f, %.4f) um",
                result.index,
                dy,
                dx,
                step_x,
                step_y,
            )

    def _predict(self, t: float, dy: float, dx: float) -> tuple[float, float]:
        """Displacement expected at ``now + lead_s`` from the velocity of the
        absolute drift (measured + corrected, px) over ``velocity_window_s``."""
        cfg = self.config
        cy, cx = self._corrected_px
        track = self._track
        track.append((t, dy + cy, dx + cx))
        while track and track[0][0] < t - cfg.velocity_window_s:
            track.popleft()
        if len(track) < 3:
            return dy, dx
        arr = np.asarray(track)
        tt = arr[:, 0] - arr[:, 0].mean()
        den = float(tt @ tt)
        if den <= 0:
            return dy, dx
        vy = float(tt @ arr[:, 1]) / den
        vx = float(tt @ arr[:, 2]) / den
        ahead = max(0.0, time.time() - t) + cfg.lead_s
        return dy + vy * ahead, dx + vx * ahead

    __call__ = on_result

    def report(self) -> dict[str, Any]:
        """JSON-ready counters: ``moves``, ``refused``, ``skipped``, ``within_sigma``,
        ``corrected_um`` (total (x, y) stage correction commanded)."""
        with self._lock:
            return {
                "moves": self.moves,
                "refused": self.refused,
                "skipped": self.skipped,
                "within_sigma": self.within_sigma,
                "corrected_um": list(self.corrected_um),
            }
