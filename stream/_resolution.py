"""Live resolution of the published SR images (decorrelation analysis).

Each published image may carry a resolution estimate: decorrelation analysis
(Descloux, Grussmayer & Radenovic 2019, Nat. Methods 16:918) of the image alone,
computed by :func:`livesr.kernels.decorr.decorrelation_analysis` (equal to NanoPyx
2.1.5's ``DecorrAnalysis``), judged against the even/odd FRC of the same window
where one was measured (below: on eSRRF images the decorrelation alone is not
trusted).

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

Resolved or not: the live figure a microscopist may trust
    ``kc_max`` is the highest decorrelation peak frequency (Nyquist = 1); the
    value is ``2 / kc_max`` SR pixels.  On an eSRRF image that value is **not
    evidence on its own**: the analysis assumes a band-limited signal plus white
    noise, but an eSRRF image is interpolated to the SR grid (its noise is
    correlated over about M pixels) and made non-linearly (noise becomes sharp,
    PSF-like peaks).  On the simulator (``SimConfig.blinking``, PSF FWHM 306 nm,
    M = 4: 25 nm SR pixels) a linear x4 bicubic zoom of a window mean already
    reports 0.41-0.55 x its even/odd FRC; the eSRRF image of a 20-50 frame
    window 0.16-0.62 x (50-85 nm against 130-390 nm), and on a dense sample
    92-95 nm whatever the seed and the number of frames (the sharpness of
    eSRRF's own radial-gradient kernel, not of the data).  On the raw
    (camera-pixel) window means, where its assumptions hold, the two methods
    agree within 0.83-1.46 x.  NanoPyx 2.1.5's ``DecorrAnalysis`` gives the same
    values to the last digit: the method, not the port, fails on these images
    (a peak-amplitude gate cannot tell them apart either: ``a_max`` is 0.65-0.75
    on the eSRRF images, as high as on the raw means).

    So a decorrelation estimate is ``resolved`` only when the **even/odd FRC of
    the same window** (:mod:`livesr.stream._frc_live`) confirms it:
    :func:`confirm_with_frc` asks for (1) a peak clearly inside the band,
    ``0 < kc_max <= kc_resolved`` (default 0.8, i.e. at least 2.5 px, 25 % above
    the 2-px Nyquist floor), (2) that window's FRC resolved, and (3) the two
    within :data:`AGREEMENT_FACTOR` (1.5, the spread of the two methods where
    both are valid, above) of each other.  Otherwise ``resolved`` is false and
    ``reason`` says why: ``"no-peak"`` (``value_px`` null), ``"nyquist-floor"``,
    ``"no-frc"`` (no FRC of this window: the value is unconfirmed),
    ``"frc-unresolved"``, ``"disagrees-with-frc"``.  The FRC (``frc`` in the
    header) is the primary live figure; a resolved decorrelation is one the FRC
    of its own window supports.

Pairing
    :func:`publish_step` (the pipeline's publish step) offers each window to the
    FRC first; a window the FRC took is offered to the decorrelation as
    ``paired`` (outside its ``min_interval_s``), and its decorrelation estimate
    is held until that window's FRC arrives (or the FRC ends without one), then
    published judged, beside the FRC.  Other decorrelation estimates are
    published with ``reason: "no-frc"``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from livesr.stream._newest_only import DEFAULT_CPU_SHARE, NewestOnly, cpu_timed

__all__ = [
    "AGREEMENT_FACTOR",
    "DEFAULT_KC_RESOLVED",
    "LiveResolution",
    "REASONS",
    "ResolutionEstimate",
    "confirm_with_frc",
    "estimate_resolution",
    "publish_step",
]

logger = logging.getLogger(__name__)

#: highest normalised peak frequency still counted as resolved (Nyquist = 1)
DEFAULT_KC_RESOLVED = 0.8
#: a decorrelation value is confirmed when it lies within this factor of its
#: window's even/odd FRC (module docstring: the two methods' spread where both hold)
AGREEMENT_FACTOR = 1.5
#: the analysis needs more than 2 x 20 px (NanoPyx's edge apodisation)
MIN_SIDE_PX = 41
METHOD = "decorrelation"

NO_PEAK = "no-peak"
FLOOR = "nyquist-floor"
NO_FRC = "no-frc"
FRC_UNRESOLVED = "frc-unresolved"
DISAGREES = "disagrees-with-frc"
#: why an estimate is not resolved (``reason``; None when resolved)
REASONS = (NO_PEAK, FLOOR, NO_FRC, FRC_UNRESOLVED, DISAGREES)


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
        Confirmed by the even/odd FRC of the same window (module docstring).
    seconds : float
        Time the analysis took, s.
    reason : str or None
        Why not resolved, one of :data:`REASONS` (None when resolved).
    """

    image_index: int
    method: str
    value_px: float | None
    kc_max: float
    resolved: bool
    seconds: float = 0.0
    reason: str | None = None

    def to_json(self, sr_pixel_size_nm: float | None) -> dict[str, Any]:
        """The header's ``resolution``: strict JSON (null, never NaN)."""
        nm = px_to_nm(self.value_px, sr_pixel_size_nm)
        return {
            "method": self.method,
            "value_px": self.value_px,
            "value_nm": nm,
            "resolved": self.resolved,
            "image_index": self.image_index,
            "reason": self.reason,
        }


def px_to_nm(value_px: float | None, sr_pixel_size_nm: float | None) -> float | None:
    """A resolution in SR pixels as nm, or None when either is unknown (strict
    JSON: never NaN)."""
    if value_px is None or sr_pixel_size_nm is None or not math.isfinite(sr_pixel_size_nm):
        return None
    return value_px * sr_pixel_size_nm


def estimate_resolution(
    image: np.ndarray,
    index: int = 0,
    *,
    kc_resolved: float = DEFAULT_KC_RESOLVED,
    frc: Any = None,
    agreement: float = AGREEMENT_FACTOR,
) -> ResolutionEstimate:
    """Decorrelation resolution of one SR image, in its pixels, judged against the
    even/odd FRC of the same window (module docstring).

    Parameters
    ----------
    image : (H, W) array
        SR image, finite, each side >= 41 px.
    index : int
        The image's index (recorded).
    kc_resolved : float
        A peak counts only when ``0 < kc_max <= kc_resolved``, in (0, 1).
    frc : FrcEstimate, optional
        The even/odd FRC of this image's window (:mod:`livesr.stream._frc_live`,
        same ``image_index``); None: unconfirmed (``reason`` ``"no-frc"``).
    agreement : float
        See :func:`confirm_with_frc`.

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
    reason = NO_PEAK if kc <= 0 else (FLOOR if kc > kc_resolved else NO_FRC)
    est = ResolutionEstimate(
        image_index=int(index),
        method=METHOD,
        value_px=value,
        kc_max=kc,
        resolved=False,
        seconds=time.perf_counter() - t0,
        reason=reason,
    )
    return est if frc is None else confirm_with_frc(est, frc, agreement=agreement)


def confirm_with_frc(
    est: ResolutionEstimate, frc: Any, *, agreement: float = AGREEMENT_FACTOR
) -> ResolutionEstimate:
    """``est`` judged against the even/odd FRC of its own window.

    Parameters
    ----------
    est : ResolutionEstimate
        From :func:`estimate_resolution` without ``frc``.
    frc : FrcEstimate or None
        The window's FRC (``image_index`` equal to ``est``'s); None: no FRC.
    agreement : float
        Confirmed when ``frc / agreement <= value <= frc * agreement``, > 1.

    Returns
    -------
    ResolutionEstimate
        ``resolved`` True (``reason`` None) when a peak clearly inside the band is
        confirmed; otherwise ``resolved`` False with the reason.  The value is
        never changed.
    """
    if not (math.isfinite(agreement) and agreement > 1):
        raise ValueError(f"agreement={agreement!r}; expected a finite number > 1")
    if est.reason not in (None, NO_FRC):  # no peak, or at the floor: stays so
        return est
    if frc is not None and int(frc.image_index) != est.image_index:
        raise ValueError(
            f"the FRC of image {frc.image_index} cannot confirm the decorrelation of "
            f"image {est.image_index}; expected the same window"
        )
    value = est.value_px
    assert value is not None  # a peak inside the band
    if frc is None:
        reason: str | None = NO_FRC
    elif not frc.resolved or frc.value_px is None:
        reason = FRC_UNRESOLVED
    elif not frc.value_px / agreement <= value <= frc.value_px * agreement:
        reason = DISAGREES
    else:
        reason = None
    return replace(est, resolved=reason is None, reason=reason)


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
    """Background decorrelation analysis of the newest image, judged against the
    FRC of its window (module docstring).

    With ``background`` the analysis runs in a worker process (the GIL stays with
    the pipeline's threads); a thread of this object hands the newest image over
    and waits for the result.

    Parameters
    ----------
    min_interval_s : float
        At most one image is taken per this many seconds, >= 0 (windows offered
        ``paired`` excepted).
    kc_resolved : float
        See :func:`estimate_resolution`.
    agreement : float
        See :func:`confirm_with_frc`.
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

    #: FRC estimates kept for pairing (by image index)
    _FRC_KEPT = 16

    def __init__(
        self,
        *,
        min_interval_s: float = 1.0,
        kc_resolved: float = DEFAULT_KC_RESOLVED,
        agreement: float = AGREEMENT_FACTOR,
        background: bool = True,
        clock: Any = time.monotonic,
        enabled: bool = True,
        cpu_share: float = DEFAULT_CPU_SHARE,
    ) -> None:
        #: False: :meth:`offer` never takes an image (``resolution_interval_s = 0``)
        self.enabled = bool(enabled)
        if not (math.isfinite(min_interval_s) and min_interval_s >= 0):
            raise ValueError(f"min_interval_s={min_interval_s!r}; expected >= 0")
        if not (math.isfinite(agreement) and agreement > 1):
            raise ValueError(f"agreement={agreement!r}; expected a finite number > 1")
        self.min_interval_s = float(min_interval_s)
        self.kc_resolved = float(kc_resolved)
        self.agreement = float(agreement)
        super().__init__("livesr-resolution", cpu_share=cpu_share, clock=clock)
        self._background = background
        self._last_take: float | None = None
        #: images taken because the FRC took their window (their estimate waits
        #: for that FRC); recent FRC estimates by image index
        self._paired: set[int] = set()
        self._held: ResolutionEstimate | None = None
        self._frcs: dict[int, Any] = {}
        #: the newest estimate published, judged (status line, summary)
        self.latest: ResolutionEstimate | None = None
        self.estimates = 0
        self.failures = 0
        self.skipped_small = False
        #: estimates published resolved (confirmed by their window's FRC)
        self.confirmed = 0

    def _set_ready(self, result: Any) -> None:
        """A paired estimate waits in a slot of its own for its window's FRC (newer
        images are analysed meanwhile); any other is the next one handed out."""
        if result.image_index in self._paired:
            self._held = result
        else:
            self._ready = result

    def offer(self, index: int, image: np.ndarray, *, paired: bool = False) -> bool:
        """Hand ``image`` over if the schedule allows; whether it was taken.

        ``paired``: the FRC took this image's window; ``min_interval_s`` does not
        apply and the estimate waits for that FRC (:meth:`take`).
        """
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
            if not (self._idle() and self._rested()) or (paired and self._held):
                return False
            last = self._last_take
            if not paired and last is not None and now - last < self.min_interval_s:
                return False
            self._last_take = now
            if paired:
                self._paired.add(int(index))
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

    def note_frc(self, frc: Any) -> None:
        """An even/odd FRC estimate published (:mod:`livesr.stream._frc_live`): the
        decorrelation of the same window is judged against it."""
        with self._lock:
            self._frcs[int(frc.image_index)] = frc
            while len(self._frcs) > self._FRC_KEPT:
                del self._frcs[min(self._frcs)]

    def take(self, frc_idle: bool = True) -> ResolutionEstimate | None:
        """The next estimate finished, judged (each one given once).

        An estimate of a window the FRC took (``paired``) is held until that FRC
        was passed to :meth:`note_frc`, or until ``frc_idle``: the FRC analysis
        had nothing to do *before* its newest estimate was taken (it ended without
        one for this window).  A held estimate goes first once released, so
        estimates may come out of image order; each names its image.
        """
        with self._lock:
            est = self._held
            if est is not None and (est.image_index in self._frcs or frc_idle):
                self._held = None
                self._paired.discard(est.image_index)
            else:
                est, self._ready = self._ready, None
            if est is None:
                return None
            frc = self._frcs.get(est.image_index)
            self.published += 1
        judged = confirm_with_frc(est, frc, agreement=self.agreement)
        with self._lock:
            self.latest = judged
            self.confirmed += judged.resolved
        return judged

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
            with self._lock:
                self._paired.discard(index)
            return
        with self._lock:
            self._set_ready(est)
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


def publish_step(
    resolution: LiveResolution,
    frc: Any,
    index: int,
    image: np.ndarray,
    window: tuple[Any, np.ndarray | None] | None,
) -> tuple[ResolutionEstimate | None, Any]:
    """The live resolution of one published image (the pipeline's publish step).

    Parameters
    ----------
    resolution : LiveResolution
    frc : LiveFrc or None
        The live even/odd FRC (None: off).
    index : int
        Index of the image being published.
    image : (H, W) array
        The image.
    window : (frames (n, h, w), shifts (n, 2)), (FrcHalves, None) or None
        What the live FRC is offered for this image: the window's raw frames and
        drift shifts when collected, or its even/odd half images made by the
        sliding window (``livesr.stream._frc_live.FrcHalves``).

    Returns
    -------
    decorrelation, frc : ResolutionEstimate or None, FrcEstimate or None
        The estimates to publish with this image (each names the image it
        measured; the decorrelation judged against its window's FRC).
    """
    took = frc is not None and window is not None and frc.offer(index, *window)
    resolution.offer(index, image, paired=bool(took))
    frc_est = None
    frc_idle = True
    if frc is not None:
        frc_idle = frc.idle()  # before take: an estimate set before idle is taken
        frc_est = frc.take()
        if frc_est is not None:
            resolution.note_frc(frc_est)
    return resolution.take(frc_idle=frc_idle), frc_est
