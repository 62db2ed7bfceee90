"""Data-chosen eSRRF parameters during acquisition: the QnR sweep on the newest
frames, within a time budget, on a background thread.

The pipeline (``livesr run --auto-params``) owns *when* to sweep and how to apply
the result; this module owns the sweep itself:

>>> auto = AutoParams(magnification=4, radii=(1.0, 1.5, 2.0), budget_s=2.0)
>>> auto.submit(newest_frames)          # returns at once; False if one is running
>>> ...
>>> choice = auto.latest()              # AutoChoice or None; never blocks
>>> if choice is not None and choice.serial != applied_serial:
...     apply(choice.sensitivity, choice.radius)
>>> auto.close(timeout=5.0)             # joins the worker thread

or synchronously, from a thread the caller owns: ``choice = auto.run(frames)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AutoChoice", "AutoParams"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoChoice:
    """One finished sweep.

    Attributes
    ----------
    sensitivity, radius : float
        The best pair (largest QnR).
    qnr : float
        Its QnR.
    qnr_map : (S, R) float32
        Every pair's QnR, indexed ``[sensitivity, radius]``.
    n_frames : int
        Frames the sweep used (the newest ones of the submitted block).
    seconds : float
        Wall time of the sweep.
    serial : int
        1 for the first finished sweep, then 2, 3, ... (to detect a new result).
    """

    sensitivity: float
    radius: float
    qnr: float
    qnr_map: np.ndarray
    n_frames: int
    seconds: float
    serial: int


class AutoParams:
    """Runs :func:`livesr.kernels.esrrf_sweep` on the newest raw frames within a
    time budget, synchronously (:meth:`run`) or on its own daemon thread
    (:meth:`submit` / :meth:`latest` / :meth:`close`).

    The number of frames used adapts to the budget: after each sweep the cost per
    frame is measured and the next sweep takes at most ``budget_s / cost``
    frames (never fewer than ``min_frames``, never more than ``max_frames``); a
    sweep that still overruns stops at the deadline and is discarded (the
    previous choice stays). The sweep runs the engine kernels in the calling
    (or worker) thread; on 2 CPU cores it competes with the live reconstruction,
    so keep ``budget_s`` well under the window period.

    Parameters
    ----------
    magnification : int
    sensitivities : sequence of float
    radii : sequence of float
    temporal : {"avg", "var"}
    use_decorr : bool
        Resolution by decorrelation instead of odd/even FRC (see
        :func:`livesr.kernels.esrrf_sweep`).
    budget_s : float > 0
        Wall-time budget of one sweep, seconds.
    min_frames, max_frames : int
        Bounds on the frames used (the newest ones of a submitted block);
        ``min_frames >= 2`` (odd and even).
    impl : str, optional
        Engine implementation (see :func:`livesr.kernels.esrrf`).

    Thread safety: :meth:`submit`, :meth:`latest`, :meth:`busy` and :meth:`close`
    may be called from any thread; one sweep runs at a time.
    """

    def __init__(
        self,
        *,
        magnification: int = 2,
        sensitivities: Sequence[float] = (1, 2),
        radii: Sequence[float] = (1.0, 1.5),
        temporal: str = "avg",
        use_decorr: bool = False,
        budget_s: float = 2.0,
        min_frames: int = 10,
        max_frames: int = 200,
        impl: str | None = None,
    ) -> None:
        from livesr.kernels._params import EsrrfParams, validate_temporal_in

        if not budget_s > 0:
            raise ValueError(f"budget_s must be > 0 seconds, got {budget_s!r}")
        if not 2 <= int(min_frames) <= int(max_frames):
            raise ValueError(
                f"need 2 <= min_frames <= max_frames, got {min_frames}, {max_frames}"
            )
        mode = validate_temporal_in(temporal, ("avg", "var"))
        self.sensitivities = tuple(float(s) for s in sensitivities)
        self.radii = tuple(float(r) for r in radii)
        if not self.sensitivities or not self.radii:
            raise ValueError("sensitivities and radii must not be empty")
        for s in self.sensitivities:
            for r in self.radii:
                EsrrfParams(magnification=magnification, radius=r, sensitivity=s)
        self.magnification = int(magnification)
        self.temporal = mode
        self.use_decorr = bool(use_decorr)
        self.budget_s = float(budget_s)
        self.min_frames = int(min_frames)
        self.max_frames = int(max_frames)
        self.impl = impl
        self._lock = threading.Lock()
        self._latest: AutoChoice | None = None
        self._serial = 0
        self._cost_per_frame: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- synchronous -----------------------------------------------------------
    def frames_for_budget(self) -> int:
        """How many frames the next sweep will use (before the block's own length)."""
        cost = self._cost_per_frame
        if cost is None or cost <= 0:
            return self.min_frames
        n = int(0.8 * self.budget_s / cost)
        return max(self.min_frames, min(self.max_frames, n))

    def run(self, frames: Any) -> AutoChoice | None:
        """Sweep the newest frames of ``frames`` now, in this thread.

        Parameters
        ----------
        frames : (N, H, W) array-like
            Raw frames, oldest first; N >= 2.

        Returns
        -------
        AutoChoice or None
            None when the sweep overran its budget (it is then discarded).
        """
        from livesr.kernels.sweep import esrrf_sweep

        block = np.asarray(frames)
        if block.ndim != 3 or block.shape[0] < 2:
            raise ValueError(f"frames must be (N >= 2, H, W), got shape {block.shape}")
        n = min(block.shape[0], self.frames_for_budget())
        block = block[-n:]
        start = time.monotonic()
        try:
            res = esrrf_sweep(
                block,
                magnification=self.magnification,
                sensitivities=self.sensitivities,
                radii=self.radii,
                temporal=self.temporal,
                use_decorr=self.use_decorr,
                impl=self.impl,
                deadline=start + self.budget_s,
            )
        except TimeoutError:
            elapsed = time.monotonic() - start
            self._cost_per_frame = elapsed / max(n // 2, 1)
            logger.warning(
                "auto-params: sweep of %d frames overran its %.2f s budget; "
                "next sweep uses %d frames",
                n,
                self.budget_s,
                self.frames_for_budget(),
            )
            return None
        elapsed = time.monotonic() - start
        self._cost_per_frame = elapsed / n
        with self._lock:
            self._serial += 1
            choice = AutoChoice(
                sensitivity=res.best[0],
                radius=res.best[1],
                qnr=res.best_qnr,
                qnr_map=res.qnr,
                n_frames=n,
                seconds=elapsed,
                serial=self._serial,
            )
            self._latest = choice
        logger.info(
            "auto-params: sensitivity %g radius %g (QnR %.3f) from %d frames in %.2f s",
            choice.sensitivity,
            choice.radius,
            choice.qnr,
            n,
            elapsed,
        )
        return choice

    # -- background ----------------------------------------------------------
    def submit(self, frames: Any) -> bool:
        """Start a sweep of ``frames`` (copied) on a daemon thread; returns at once.

        Returns False (and does nothing) while a sweep is running or after
        :meth:`close`.
        """
        with self._lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return False
            block = np.array(frames, copy=True)
            self._thread = threading.Thread(
                target=self._work, args=(block,), name="livesr-auto-params", daemon=True
            )
            self._thread.start()
        return True

    def _work(self, block: np.ndarray) -> None:
        try:
            self.run(block)
        except Exception:  # the live pipeline must keep running
            logger.exception("auto-params: sweep failed")

    def busy(self) -> bool:
        """True while a submitted sweep runs."""
        t = self._thread
        return t is not None and t.is_alive()

    def latest(self) -> AutoChoice | None:
        """The newest finished choice (None before the first); never blocks."""
        with self._lock:
            return self._latest

    def close(self, timeout: float = 10.0) -> bool:
        """Refuse new sweeps and join the running one; True if none is left."""
        with self._lock:
            self._closed = True
            t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True
