"""Live resolution of the published SR images (decorrelation analysis).

Each published image may carry a resolution estimate: decorrelation analysis
(Descloux, Grussmayer & Radenovic 2019, Nat. Methods 16:918) of the image alone,
computed by :func:`livesr.kernels.decorr.decorrelation_analysis` (equal to NanoPyx
2.1.5's ``DecorrAnalysis``).  Even/odd FRC is *not* computed live: the sliding
window keeps one running sum per window, not two half-window images, so no pair of
independent half images exists at publish time (the stop-when-converged hook builds
its own halves from non-overlapping results).

Schedule (the processing thread publishes up to hundreds of images per second, and
the analysis costs 30 ms to seconds per image on a CPU)
    :class:`LiveResolution` runs the analysis on a thread of its own, on the
    **newest image only**: :meth:`LiveResolution.offer` hands an image over when at
    least ``min_interval_s`` (default 1 s) has passed since the last one was taken
    and the thread is idle and rested (the analyses use at most ``cpu_share``, 10 %,
    of the machine's CPU time: :mod:`livesr.stream._newest_only`), otherwise it
    does nothing (no copy, no wait).  A finished
    estimate is handed out **once**, by :meth:`LiveResolution.take`, to the next
    image published; it names the image it was measured on (``image_index``).
    Every other image carries ``resolution: null``.

Resolved or not
    ``kc_max`` is the highest decorrelation peak frequency (Nyquist = 1); the
    resolution is ``2 / kc_max`` SR pixels.  An estimate is ``resolved`` only when
    a peak exists and lies clearly inside the band, ``kc_max <= kc_resolved``
    (default 0.8, i.e. at least 2.5 px, 25 % above the 2-px Nyquist floor).  A peak
    at or near Nyquist means the curve never turned down before the sampling limit:
    the value is a floor, not a measurement, and is published with ``resolved:
    false``; with no peak at all ``value_px`` is null.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesr.stream._newest_only import DEFAULT_CPU_SHARE, NewestOnly, cpu_timed

__all__ = [
    "DEFAULT_KC_RESOLVED",
    "LiveResolution",
    "ResolutionEstimate",
    "estimate_resolution",
]

logger = logging.getLogger(__name__)

#: highest normalised peak frequency still counted as resolved (Nyquist = 1)
DEFAULT_KC_RESOLVED = 0.8
#: the analysis needs more than 2 x 20 px (NanoPyx's edge apodisation)
MIN_SIDE_PX = 41
METHOD = "decorrelation"


@dataclass(frozen=True, slots=True)
class ResolutionEstimate:
    """One resolution estimate of one SR image.

    Attributes
    ----------
    image_index : int
        Index of the published image measured.
    method : str
        ``"decorrelation"``.
    value_px : float or None
        Resolution, SR pixels (None: no peak found).
    kc_max : float
        Peak frequency, normalised (Nyquist = 1; 0: none).
    resolved : bool
        The peak lies clearly below Nyquist (module docstring).
    seconds : float
        Time the analysis took, s.
    """

    image_index: int
    method: str
    value_px: float | None
    kc_max: float
    resolved: bool
    seconds: float = 0.0

    def to_json(self, sr_pixel_size_nm: float | None) -> dict[str, Any]:
        """The header's ``resolution``: strict JSON (null, never NaN)."""
        nm = px_to_nm(self.value_px, sr_pixel_size_nm)
        return {
            "method": self.method,
            "value_px": self.value_px,
            "value_nm": nm,
            "resolved": self.resolved,
            "image_index": self.image_index,
        }


def px_to_nm(value_px: float | None, sr_pixel_size_nm: float | None) -> float | None:
    """A resolution in SR pixels as nm, or None when either is unknown (strict
    JSON: never NaN)."""
    if value_px is None or sr_pixel_size_nm is None or not math.isfinite(sr_pixel_size_nm):
        return None
    return value_px * sr_pixel_size_nm


def estimate_resolution(
    image: np.ndarray, index: int = 0, *, kc_resolved: float = DEFAULT_KC_RESOLVED
) -> ResolutionEstimate:
    """Decorrelation resolution of one SR image, in its pixels.

    Parameters
    ----------
    image : (H, W) array
        SR image, finite, each side >= 41 px.
    index : int
        The image's index (recorded).
    kc_resolved : float
        Resolved when ``0 < kc_max <= kc_resolved``, in (0, 1).

    Returns
    -------
    ResolutionEstimate
    """
    from livesr.kernels.decorr import decorrelation_analysis

    if not 0 < kc_resolved < 1:
        raise ValueError(f"kc_resolved={kc_resolved!r}; expected in (0, 1)")
    t0 = time.perf_counter()
    res = decorrelation_analysis(np.asarray(image, dtype=np.float32), pixel_size=1.0)
    kc = float(res.kc_max)
    value = 2.0 / kc if kc > 0 else None
    return ResolutionEstimate(
        image_index=int(index),
        method=METHOD,
        value_px=value,
        kc_max=kc,
        resolved=bool(0 < kc <= kc_resolved),
        seconds=time.perf_counter() - t0,
    )


#: longest one analysis may take in the worker process, s
WORKER_TIMEOUT_S = 120.0
_WORKER: Any = None
_WORKER_LOCK = threading.Lock()


def _lower_priority() -> None:
    """The worker yields the CPU to the pipeline (nice +10): on a 2-core machine
    an analysis competing at equal priority delayed the images published meanwhile."""
    import os

    try:
        os.nice(10)
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        pass


def worker() -> Any:
    """The process-wide analysis worker (one process, started on first use, shared
    by every pipeline of this process, shut down at exit)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _WORKER = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        return _WORKER


def warm_worker(timeout_s: float = 60.0) -> None:
    """Start the worker process and run one small analysis in it (imports, plans):
    called by the pipeline's warm-up, before acquisition."""
    img = np.random.default_rng(0).poisson(100.0, (64, 64)).astype(np.float32)
    worker().submit(estimate_resolution, img).result(timeout=timeout_s)


class LiveResolution(NewestOnly):
    """Background decorrelation analysis of the newest image (module docstring).

    With ``background`` the analysis runs in a worker process (the GIL stays with
    the pipeline's threads); a thread of this object hands the newest image over
    and waits for the result.

    Parameters
    ----------
    min_interval_s : float
        At most one image is taken per this many seconds, >= 0.
    kc_resolved : float
        See :func:`estimate_resolution`.
    background : bool
        False: :meth:`offer` analyses the image at once on the caller's thread
        (tests, offline use); the schedule still applies.
    clock : callable
        Monotonic seconds (tests).
    enabled : bool
        False: never takes an image.
    cpu_share : float
        Share of the machine's CPU time the analyses may use
        (:mod:`livesr.stream._newest_only`).
    """

    def __init__(
        self,
        *,
        min_interval_s: float = 1.0,
        kc_resolved: float = DEFAULT_KC_RESOLVED,
        background: bool = True,
        clock: Any = time.monotonic,
        enabled: bool = True,
        cpu_share: float = DEFAULT_CPU_SHARE,
    ) -> None:
        #: False: :meth:`offer` never takes an image (``resolution_interval_s = 0``)
        self.enabled = bool(enabled)
        if not (math.isfinite(min_interval_s) and min_interval_s >= 0):
            raise ValueError(f"min_interval_s={min_interval_s!r}; expected >= 0")
        self.min_interval_s = float(min_interval_s)
        self.kc_resolved = float(kc_resolved)
        super().__init__("livesr-resolution", cpu_share=cpu_share, clock=clock)
        self._background = background
        self._last_take: float | None = None
        #: the newest estimate (status line, summary)
        self.latest: ResolutionEstimate | None = None
        self.estimates = 0
        self.failures = 0
        self.skipped_small = False

    def offer(self, index: int, image: np.ndarray) -> bool:
        """Hand ``image`` over if the schedule allows; whether it was taken."""
        if not self.enabled:
            return False
        if self._closed or image.ndim != 2 or min(image.shape) < MIN_SIDE_PX:
            if not self.skipped_small and image.ndim == 2:
                self.skipped_small = True
                logger.info(
                    "live resolution off: SR images of %s are smaller than %d px",
                    image.shape, MIN_SIDE_PX,
                )
            return False
        now = self._clock()
        with self._lock:
            if not (self._idle() and self._rested()):
                return False
            last = self._last_take
            if last is not None and now - last < self.min_interval_s:
                return False
            self._last_take = now
            if not self._background:
                self._busy = True
            else:
                self._hand_over((int(index), np.array(image, dtype=np.float32)))
                return True
        try:
            self._timed_analyse(int(index), np.asarray(image, dtype=np.float32))
        finally:
            with self._lock:
                self._busy = False
        return True

    def _analyse(self, index: int, image: np.ndarray) -> None:
        try:
            if self._background:
                # in a worker process: the analysis holds the GIL for long numpy
                # stretches, which delayed the images published meanwhile (p99 x5
                # on 2 cores); here this thread only waits on a pipe
                est, self._cpu_s = worker().submit(
                    cpu_timed, estimate_resolution, image, index,
                    kc_resolved=self.kc_resolved,
                ).result(timeout=WORKER_TIMEOUT_S)
            else:
                est = estimate_resolution(image, index, kc_resolved=self.kc_resolved)
        except Exception as exc:  # never stops processing
            self.failures += 1
            logger.warning("resolution of image %d failed: %s", index, exc)
            return
        with self._lock:
            self._set_ready(est)
            self.latest = est
            self.estimates += 1

    def report(self) -> dict[str, Any]:
        """``summary.json``-ready state."""
        last = self.latest
        return {
            "method": METHOD,
            "min_interval_s": self.min_interval_s,
            "cpu_share": self.cpu_share,
            "kc_resolved": self.kc_resolved,
            "estimates": self.estimates,
            "published": self.published,
            "failures": self.failures,
            "latest": None if last is None else last.to_json(None),
        }
