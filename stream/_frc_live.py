"""Even/odd FRC of one published window, live (issue 15).

A published SR image is the temporal statistic of one window of frames. Its
Fourier ring correlation needs two *independent* reconstructions of the same
field: the eSRRF images of the window's even-indexed and odd-indexed frames
(NanoPyx's FRC convention), each made exactly as the window's own image (same
eSRRF parameters, temporal statistic, macro-pixel correction, the drift shift
of every frame) by a :class:`~livesr.kernels.sliding.SlidingEsrrf` of half the
window. The resolution is the FIRE number of the two halves
(:func:`livesr.kernels.frc.fire_number`, numerically NanoPyx 2.1.5's
``FIRECalculator``): the first crossing of the smoothed FRC with 1/7.

Cost and schedule
    The sliding window keeps running sums, not halves, so the halves cost one
    eSRRF map per frame of the window again (about the window's own map cost),
    plus one FRC (a few ms at 256²). :class:`LiveFrc` therefore runs on the
    newest window only, on its own thread, and only while the analyses stay
    within ``cpu_share`` of the machine (:class:`~livesr.stream._newest_only.
    NewestOnly`, default 10 %): of a stream of windows it measures every k-th,
    k set by the machine's speed. ``every`` adds a fixed lower bound on k.

Resolved or not
    ``resolved`` only when the FRC crosses 1/7 before Nyquist and the value is
    at least ``min_resolved_px`` (default 2.5 SR px, 25 % above the 2-px Nyquist
    floor, as the live decorrelation's ``kc <= 0.8``); no crossing gives
    ``value_px`` None.

Wiring (the pipeline's publish step, beside ``LiveResolution``): offer the
window's raw frames and their drift shifts when an image is published, and
attach :meth:`LiveFrc.take` to the next published header::

    self._frc = LiveFrc(esrrf=dict(magnification=M, radius=R, ...))  # setup
    self._frc.offer(index, frames, shifts)      # at publish; frames (n, h, w)
    frc = self._frc.take()                      # next publish: None or FrcEstimate
    header["frc"] = None if frc is None else frc.to_json(sr_pixel_nm)
    self._frc.close()                           # at the end
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from livesr.stream._newest_only import DEFAULT_CPU_SHARE, NewestOnly

__all__ = [
    "FrcEstimate",
    "FrcHalves",
    "LiveFrc",
    "MAX_SR_PIXELS",
    "WindowFrames",
    "frc_memory_bytes",
    "MIN_RESOLVED_PX",
    "frc_of_halves",
    "frc_of_window",
    "window_halves",
]

logger = logging.getLogger(__name__)

METHOD = "frc-even-odd"
#: smallest FIRE value (SR px) counted as resolved: 25 % above the 2-px floor
MIN_RESOLVED_PX = 2.5
#: SR image side below which no FRC is attempted (the FRC's rings need room)
MIN_SIDE_PX = 32
#: frames of a half window mapped per call (bounds the maps held at once)
HALF_CHUNK = 4
#: SR images larger than this (pixels) get no live FRC: the two half windows are
#: reconstructed again in host memory (at 512² and M=5 that is 6.5 Mpx per map)
MAX_SR_PIXELS = 1600 * 1600


def frc_memory_bytes(
    shape: tuple[int, int], window: int, magnification: int, max_batch: int
) -> int:
    """Peak memory of the live FRC of one window, bytes: the collected frames
    (``window + max_batch``), the copy handed over, one half window's state (raw
    strategy: its frames and float64 running sums), the maps of one chunk
    (:data:`HALF_CHUNK`) with two in flight, and the two half images (float32)."""
    h, w = int(shape[0]), int(shape[1])
    frame = h * w * 4
    sr = frame * int(magnification) ** 2
    half = int(window) // 2 + 1
    state = half * frame + 6 * sr  # frames, S/Q/P hi+lo float64 at most
    return (2 * int(window) + int(max_batch)) * frame + state + (HALF_CHUNK + 2 + 2) * sr


class WindowFrames:
    """The raw frames and drift shifts of the newest window, collected lazily.

    The pipeline collects frames only while :class:`LiveFrc` could take a window
    (``collect=True``): a frame copy per frame is paid for one window before each
    analysis, not for every frame of the run.  Capacity: ``window + batch`` frames.
    """

    def __init__(self) -> None:
        self._buf: np.ndarray | None = None
        self._seq: np.ndarray | None = None
        self._shift: np.ndarray | None = None

    def push(
        self, seqs: np.ndarray, frames: np.ndarray, shifts: np.ndarray, window: int
    ) -> None:
        """Keep frames (n, h, w) with their seqs (n,) and shifts (n, 2), px."""
        n = int(frames.shape[0])
        cap = int(window) + n
        buf, old_seq, old_shift = self._buf, self._seq, self._shift
        if buf is None or buf.shape[0] < cap or buf.shape[1:] != frames.shape[1:]:
            self._buf = np.zeros((cap, *frames.shape[1:]), dtype=np.float32)
            self._seq = np.full(cap, -1, dtype=np.int64)
            self._shift = np.zeros((cap, 2))
            if buf is not None and old_seq is not None and old_shift is not None and (
                buf.shape[1:] == frames.shape[1:]
            ):  # a larger batch: keep what was collected
                keep = old_seq >= 0
                slots = old_seq[keep] % cap
                self._buf[slots] = buf[keep]
                self._seq[slots] = old_seq[keep]
                self._shift[slots] = old_shift[keep]
        assert self._buf is not None and self._seq is not None and self._shift is not None
        slots = np.asarray(seqs, dtype=np.int64) % self._buf.shape[0]
        self._buf[slots] = frames
        self._seq[slots] = seqs
        self._shift[slots] = shifts

    def window(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Frames ``first..last`` (inclusive) and their shifts, or None when any is
        missing (not collected, or overwritten)."""
        if self._buf is None or self._seq is None or self._shift is None:
            return None
        want = np.arange(first, last + 1, dtype=np.int64)
        slots = want % self._buf.shape[0]
        if want.size > self._buf.shape[0] or not np.array_equal(self._seq[slots], want):
            return None
        return self._buf[slots], self._shift[slots]

    def clear(self) -> None:
        """Forget what was collected (the next window starts afresh)."""
        if self._seq is not None:
            self._seq[:] = -1


@dataclass(frozen=True, slots=True)
class FrcEstimate:
    """Even/odd FRC resolution of one window.

    Attributes
    ----------
    image_index : int
        Index of the published image whose window was measured.
    method : str
        ``"frc-even-odd"``.
    value_px : float or None
        FIRE resolution, SR pixels (None: the FRC never crosses 1/7).
    resolved : bool
        Crossing found and ``value_px >= min_resolved_px`` (module notes).
    frames : int
        Frames of the window (even + odd halves).
    seconds : float
        Time the halves and the FRC took, s.
    """

    image_index: int
    method: str
    value_px: float | None
    resolved: bool
    frames: int
    seconds: float = 0.0

    def to_json(self, sr_pixel_size_nm: float | None) -> dict[str, Any]:
        """Strict JSON (null, never NaN), like the decorrelation's ``resolution``."""
        from livesr.stream._resolution import px_to_nm

        nm = px_to_nm(self.value_px, sr_pixel_size_nm)
        return {
            "method": self.method,
            "value_px": self.value_px,
            "value_nm": nm,
            "resolved": self.resolved,
            "image_index": self.image_index,
            "frames": self.frames,
        }


def window_halves(
    frames: np.ndarray,
    shifts: np.ndarray | None = None,
    **esrrf: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """eSRRF images of the even- and odd-indexed frames of one window.

    Parameters
    ----------
    frames : numpy.ndarray
        (n, h, w) raw frames of the window, n >= 4 (>= 2 per half; TAC2 needs 2).
    shifts : numpy.ndarray, optional
        (n, 2) drift shift (dy, dx) of each frame, input px, as the window got them.
    **esrrf
        :class:`~livesr.kernels.sliding.SlidingEsrrf` parameters of the window
        (``magnification``, ``radius``, ``sensitivity``, ``temporal``, ...).

    Returns
    -------
    even, odd : numpy.ndarray
        (h*M, w*M) float32 images of frames 0, 2, 4, ... and 1, 3, 5, ...
    """
    from livesr.kernels.sliding import SlidingEsrrf

    a = np.asarray(frames)
    if a.ndim != 3 or a.shape[0] < 4:
        raise ValueError(
            f"window_halves needs (n, h, w) frames with n >= 4; got shape {a.shape}"
        )
    s = np.zeros((a.shape[0], 2)) if shifts is None else np.asarray(shifts, float)
    if s.shape != (a.shape[0], 2):
        raise ValueError(f"shifts must be ({a.shape[0]}, 2); got {s.shape}")
    out = []
    for parity in (0, 1):
        half = a[parity::2]
        # raw strategy: the half keeps its frames, not 25 maps (half the memory and
        # time of stored maps for a window that emits once)
        win = SlidingEsrrf(
            len(half), len(half), strategy="raw", shadow_sums=False, **esrrf
        )
        sh = s[parity::2]
        res = []
        for k in range(0, len(half), HALF_CHUNK):  # a few magnified maps at a time
            res += win.push_many(half[k : k + HALF_CHUNK], sh[k : k + HALF_CHUNK])
        assert len(res) == 1, "one window of the half's length emits one image"
        out.append(res[0].image)
    return out[0], out[1]


def frc_of_halves(
    even: np.ndarray,
    odd: np.ndarray,
    index: int = 0,
    *,
    frames: int,
    min_resolved_px: float = MIN_RESOLVED_PX,
) -> FrcEstimate:
    """:func:`frc_of_window` of a window whose half images are already made (the
    pipeline's host window sums them from its stored maps: ``SlidingResult.halves``)."""
    from livesr.kernels.frc import fire_number

    t0 = time.perf_counter()
    value = fire_number(even, odd, pixel_size=1.0)
    ok = value > 0 and math.isfinite(value)
    return FrcEstimate(
        image_index=int(index),
        method=METHOD,
        value_px=float(value) if ok else None,
        resolved=bool(ok and value >= min_resolved_px),
        frames=int(frames),
        seconds=time.perf_counter() - t0,
    )


def frc_of_window(
    frames: np.ndarray,
    shifts: np.ndarray | None = None,
    index: int = 0,
    *,
    min_resolved_px: float = MIN_RESOLVED_PX,
    **esrrf: Any,
) -> FrcEstimate:
    """Even/odd FRC (FIRE, NanoPyx-equal) of one window's frames (module notes)."""
    t0 = time.perf_counter()
    even, odd = window_halves(frames, shifts, **esrrf)
    est = frc_of_halves(
        even, odd, index, frames=len(frames), min_resolved_px=min_resolved_px
    )
    return replace(est, seconds=time.perf_counter() - t0)


class FrcHalves(NamedTuple):
    """A window's even/odd half images, already made (the pipeline's host window
    sums them from its stored maps: ``SlidingResult.halves``): offered to
    :meth:`LiveFrc.offer` in place of the window's raw frames, nothing is mapped
    again.  ``frames``: the window's length."""

    even: np.ndarray
    odd: np.ndarray
    frames: int


class LiveFrc(NewestOnly):
    """Background even/odd FRC of the newest window (module notes).

    Parameters
    ----------
    esrrf : mapping
        The window's :class:`~livesr.kernels.sliding.SlidingEsrrf` parameters
        (not ``window`` / ``stride``).
    every : int
        Offer at most every this many published images, >= 1 (the CPU share
        may skip more).
    min_interval_s : float
        At most one window taken per this many seconds, >= 0.
    min_resolved_px : float
        See :func:`frc_of_window`.
    background : bool
        False: :meth:`offer` analyses at once on the caller's thread (tests).
    cpu_share : float
        Share of the machine's CPU time the analyses may use, in (0, 1].
    clock : callable
        Monotonic seconds (tests).
    """

    def __init__(
        self,
        esrrf: Mapping[str, Any],
        *,
        every: int = 1,
        min_interval_s: float = 0.0,
        min_resolved_px: float = MIN_RESOLVED_PX,
        background: bool = True,
        cpu_share: float = DEFAULT_CPU_SHARE,
        clock: Any = time.monotonic,
    ) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"LiveFrc every={every!r}; expected an integer >= 1")
        super().__init__("livesr-frc", cpu_share=cpu_share, clock=clock)
        self.esrrf = dict(esrrf)
        self.every = every
        self.min_resolved_px = float(min_resolved_px)
        self._background = background
        self._offers = 0
        #: at most one window taken per this many seconds (the pipeline passes
        #: ``[stream] resolution_interval_s``): on a many-core host the CPU share
        #: alone would let the analysis, and the frame copies feeding it, run
        #: back to back in the pipeline's process
        if not (math.isfinite(min_interval_s) and min_interval_s >= 0):
            raise ValueError(f"min_interval_s={min_interval_s!r}; expected >= 0")
        self.min_interval_s = float(min_interval_s)
        self._last_take = -math.inf
        #: the newest estimate, estimates made, analyses that failed
        self.latest: FrcEstimate | None = None
        self.estimates = 0
        self.failures = 0
        #: frames the analyses mapped again (the cost: one map per frame)
        self.frames_mapped = 0

    def idle(self) -> bool:
        """Nothing waits and nothing is being measured (an estimate finished is set
        before this turns true: :func:`livesr.stream._resolution.publish_step`)."""
        with self._lock:
            return self._idle()

    def wants_frames(self) -> bool:
        """Whether a window offered now could be taken (idle and rested): the
        pipeline collects the window's frames only then."""
        if self._closed:
            return False
        with self._lock:
            return (
                self._idle()
                and self._rested()
                and self._clock() - self._last_take >= self.min_interval_s
            )

    def offer(
        self, index: int, frames: np.ndarray | FrcHalves, shifts: np.ndarray | None = None
    ) -> bool:
        """Hand one window's frames over if the schedule allows; whether taken.

        ``frames`` (n, h, w) are copied only when taken; or the window's
        :class:`FrcHalves` (``shifts`` None), already made.
        """
        self._offers += 1
        if (self._offers - 1) % self.every:
            return False
        if isinstance(frames, FrcHalves):  # made by the window: nothing mapped again
            a: Any = frames
            if self._closed or frames.frames < 4 or min(frames.even.shape) < MIN_SIDE_PX:
                return False
        else:
            a = np.asarray(frames)
            m = int(self.esrrf.get("magnification", 5))
            if self._closed or a.ndim != 3 or a.shape[0] < 4:
                return False
            if min(a.shape[1:]) * m < MIN_SIDE_PX:
                return False
        with self._lock:
            now = self._clock()
            if not (self._idle() and self._rested()) or (
                now - self._last_take < self.min_interval_s
            ):
                return False
            self._last_take = now
            job = (
                int(index),
                a if isinstance(a, FrcHalves) else np.array(a, copy=True),
                None if shifts is None else np.array(shifts, dtype=np.float64),
            )
            if self._background:
                self._hand_over(job)
                return True
            self._busy = True
        try:
            self._timed_analyse(*job)
        finally:
            with self._lock:
                self._busy = False
        return True

    def _analyse(
        self, index: int, frames: Any, shifts: np.ndarray | None
    ) -> None:
        """The FRC of one window: of its half images made by the window
        (:class:`FrcHalves`, nothing mapped again), else of its raw frames."""
        try:
            if isinstance(frames, FrcHalves):
                mapped = 0
                est = frc_of_halves(
                    frames.even, frames.odd, index,
                    frames=frames.frames, min_resolved_px=self.min_resolved_px,
                )  # fmt: skip
            else:
                mapped = len(frames)
                est = frc_of_window(
                    frames, shifts, index, min_resolved_px=self.min_resolved_px,
                    **self.esrrf,
                )  # fmt: skip
        except Exception as exc:  # never stops processing
            self.failures += 1
            logger.warning("even/odd FRC of image %d failed: %s", index, exc)
            return
        with self._lock:
            self._set_ready(est)
            self.latest = est
            self.estimates += 1
            self.frames_mapped += mapped

    def report(self) -> dict[str, Any]:
        """``summary.json``-ready state."""
        last = self.latest
        return {
            "method": METHOD,
            "every": self.every,
            "cpu_share": self.cpu_share,
            "min_resolved_px": self.min_resolved_px,
            "estimates": self.estimates,
            "published": self.published,
            "failures": self.failures,
            "frames_mapped": self.frames_mapped,
            "latest": None if last is None else last.to_json(None),
        }
