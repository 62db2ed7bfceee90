"""A recorded stack as a source: frames read from a file, pushed over the lossless link.

::

    rec = open_recording("run/raw.ome.zarr")      # OME-TIFF, TIFF, OME-Zarr, .npy
    cfg = ReplayConfig(rate="recorded", start=100, stop=600)
    src = ReplaySource(rec, "ipc:///tmp/livesr.ipc", cfg)
    summary = src.run()            # blocking; or src.start() ... src.join()

The replay source behaves like the simulated camera
(:class:`~livesr.adapters.sources.simulated.SimulatedSource`):
frames go through a :class:`livesr.stream._source_link.SourceLink` (credit, ACK,
replay ring), and the link is closed cleanly (END, END_ACK) so the pipeline accounts
for every frame.  Each frame is read straight into a ring slot
(:meth:`~livesr.stream._source_link.SourceLink.reserve`), so a replay costs one
copy from the file's memory map or zarr chunk; the file is never loaded whole.

Rates (:attr:`ReplayConfig.rate`)
---------------------------------
``"recorded"``
    At the recorded timing: per-frame timestamps when the file has them (OME
    ``DeltaT``, a livesr raw store's ``frames/t_acq``), else the frame interval
    (``TimeIncrement``, NGFF ``scale``).  A file without timing is refused.
``float`` (frames per second)
    At a fixed rate.
``"asap"``
    As fast as the link accepts frames; with a ``throttle`` (see
    :func:`processing_throttle`) as fast as the pipeline *processes* them, so that no
    window is skipped and the result equals an offline reconstruction.

Header timestamps: with a rate, frame ``k`` of the replay carries
``t_acq = t0 + offset_k`` (the schedule: ``offset_k = k / fps`` or the recorded time
of the frame minus that of the first replayed frame), and is sent no earlier than
that; with ``"asap"`` ``t_acq`` is the time it is handed to the link.  The frame's
index in the file is ``meta["ImageNumber"]`` and its recorded time (relative to
frame 0 of the file, s) ``meta["recorded_t_s"]``; ``meta["interval_ms"]`` is the
recorded frame interval (else ``1000 / fps``; absent for ``"asap"`` without timing).

A frame range ``start:stop`` (stop exclusive) and a frame cap (``frames``) select what
is replayed; stream sequence numbers start at 0 whatever ``start`` is.  Frames are
never dropped by the source: when the link's ring is full it waits up to
``send_timeout_s``; only then is the frame reported as a gap and the replay stopped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import zmq

from livesr.adapters.sources._base import ThreadedSource
from livesr.stream import Recording, RecordingError, resolve_range

__all__ = [
    "RATE_MODES",
    "ReplayConfig",
    "ReplaySource",
    "check_replay",
    "parse_rate",
    "processing_throttle",
]

logger = logging.getLogger(__name__)

#: Named rates; any number > 0 is a rate in frames per second.
RATE_MODES = ("recorded", "asap")

#: Highest fixed rate accepted, frames per second.
MAX_FPS = 1e6

#: Memory of the link's replay ring when ``ring_frames`` is automatic.
AUTO_RING_BYTES = 64 * 2**20


def parse_rate(text: str | float) -> str | float:
    """``"recorded"``, ``"asap"`` or frames per second -> :attr:`ReplayConfig.rate`."""
    if isinstance(text, str) and text.strip().lower() in RATE_MODES:
        return text.strip().lower()
    try:
        fps = float(text)
    except (TypeError, ValueError):
        raise RecordingError(
            f"rate {text!r} is not valid; expected 'recorded', 'asap' or frames per "
            "second (a number > 0)"
        ) from None
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise RecordingError(
            f"rate {text!r} is not valid; expected frames per second in (0, "
            f"{MAX_FPS:g}]"
        )
    return fps


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayConfig:
    """What to replay and how fast.

    Attributes
    ----------
    rate : {"recorded", "asap"} or float
        See the module docstring; a float is frames per second.
    start, stop : int
        Frame range ``[start, stop)`` of the file (``stop=None``: to the end).
    frames : int
        Replay at most this many frames of the range (0: all).
    stream : str
        Stream id of the link.
    ring_frames : int
        Slots of the link's replay ring (0: automatic, about 64 MiB, 2..256 frames).
    send_timeout_s : float
        How long to wait for a free ring slot before the replay stops with a gap.
    """

    rate: str | float = "asap"
    start: int = 0
    stop: int | None = None
    frames: int = 0
    stream: str = "replay"
    ring_frames: int = 0
    send_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        r = self.rate
        if isinstance(r, str):
            if r not in RATE_MODES:
                raise RecordingError(
                    f"ReplayConfig rate={r!r}; expected one of {', '.join(RATE_MODES)} "
                    "or fps > 0"
                )
        elif (
            isinstance(r, bool)
            or not isinstance(r, (int, float))
            or not (math.isfinite(r) and 0 < r <= MAX_FPS)
        ):
            raise RecordingError(
                f"ReplayConfig rate={r!r}; expected frames per second in (0, "
                f"{MAX_FPS:g}]"
            )
        for name, lo in (("start", 0), ("frames", 0), ("ring_frames", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise RecordingError(
                    f"ReplayConfig {name}={v!r}; expected an integer >= {lo}"
                )
        if self.stop is not None and (
            isinstance(self.stop, bool)
            or not isinstance(self.stop, int)
            or self.stop <= self.start
        ):
            raise RecordingError(
                f"ReplayConfig stop={self.stop!r}; expected an integer > start "
                f"({self.start}) or None"
            )
        if not (
            isinstance(self.send_timeout_s, (int, float)) and self.send_timeout_s > 0
        ):
            raise RecordingError(
                f"ReplayConfig send_timeout_s={self.send_timeout_s!r}; expected a "
                "number > 0"
            )


def check_replay(recording: Recording, config: ReplayConfig) -> tuple[int, int]:
    """Check that ``config`` can replay ``recording``; returns frames ``(start, stop)``.

    Raises
    ------
    RecordingError
        The range is out of bounds (the message gives the valid range), or
        ``rate="recorded"`` for a file without timing metadata.
    """
    start, stop = resolve_range(
        config.start, config.stop, len(recording), what=str(recording.path)
    )
    if config.frames:
        stop = min(stop, start + config.frames)
    if config.rate == "recorded" and not recording.has_timing:
        raise RecordingError(
            f"recording {recording.path} has no timing metadata (frame interval or "
            "timestamps); "
            "replay it with rate 'asap' or a frame rate (--rate asap | --rate FPS)"
        )
    return start, stop


def processing_throttle(
    snapshot: Callable[[], Mapping[str, Any]],
    *,
    max_lag: int = 2,
    stop_event: threading.Event | None = None,
    stall_s: float = 10.0,
    poll_s: float = 0.002,
) -> Callable[[int], None]:
    """A :class:`ReplaySource` ``throttle`` keeping the replay just ahead of processing.

    ``throttle(sent)`` returns once the pipeline has dealt with (processed, dropped or
    not offered for processing) at least ``sent - max_lag`` frames, so the processing
    backlog stays at about ``max_lag`` frames and the pipeline never skips windows for
    latency.  When the pipeline's counters stop moving for ``stall_s`` (processing
    failed) the throttle gives up for the rest of the run, with a warning.

    Parameters
    ----------
    snapshot : callable
        The pipeline's counters (:meth:`livesr.stream._pipeline.Pipeline.snapshot`):
        ``frames_processed``, ``frames_dropped_for_processing``, ``frames_not_offered``.
    max_lag : int
        Frames sent but not yet dealt with, >= 1.
    """
    if max_lag < 1:
        raise ValueError(f"processing_throttle max_lag={max_lag}; expected >= 1")
    stop = stop_event if stop_event is not None else threading.Event()
    state = {"off": False}

    def done() -> int:
        s = snapshot()
        return (
            int(s.get("frames_processed", 0))
            + int(s.get("frames_dropped_for_processing", 0))
            + int(s.get("frames_not_offered", 0))
        )

    def throttle(sent: int) -> None:
        if state["off"]:
            return
        last, t_last = -1, time.monotonic()
        while not stop.is_set():
            if snapshot().get("processing_failed"):  # it will make no progress
                state["off"] = True
                return
            d = done()
            if d >= sent - max_lag:
                return
            now = time.monotonic()
            if d != last:
                last, t_last = d, now
            elif now - t_last > stall_s:
                logger.warning(
                    "replay: processing made no progress for %.0f s; no longer waiting "
                    "for it",
                    stall_s,
                )
                state["off"] = True
                return
            stop.wait(poll_s)

    return throttle


class ReplaySource(ThreadedSource):
    """Push the frames of a :class:`Recording` to a pipeline ingest.

    Parameters
    ----------
    recording : Recording
        The open file (see :func:`livesr.stream._rawread.open_recording`);
        used from the source's thread only, not closed here.
    endpoint : str
        Ingest endpoint to connect to.
    config : ReplayConfig
        Rate, range, stream.
    stop_event : threading.Event, optional
        The replay stops when it is set.
    context : zmq.Context, optional
        Shared context (required for ``inproc://``).
    throttle : callable, optional
        ``throttle(frames_sent)`` called before each frame; may block (see
        :func:`processing_throttle`).

    Raises
    ------
    RecordingError
        Range out of bounds, or ``rate="recorded"`` for a file without timing.
    """

    thread_name = "livesr-replay-source"
    label = "replay source"
    log_traceback = False  # a bad file is the user's error: the message says it all

    def __init__(
        self,
        recording: Recording,
        endpoint: str,
        config: ReplayConfig | None = None,
        *,
        stop_event: threading.Event | None = None,
        context: zmq.Context[Any] | None = None,
        throttle: Callable[[int], None] | None = None,
        curve: Any = None,
    ) -> None:
        super().__init__(stop_event)
        #: CURVE client keys for a non-loopback endpoint (``--keys``)
        self.curve = curve
        self.recording = recording
        self.endpoint = endpoint
        self.config = cfg = config if config is not None else ReplayConfig()
        #: frames ``[start, stop)`` of the file are replayed
        self.range = check_replay(recording, cfg)
        self._ctx = context
        self._throttle = throttle
        self.frames_sent = 0

    @property
    def n_frames(self) -> int:
        """Frames this replay delivers (the range, capped by ``frames``)."""
        return self.range[1] - self.range[0]

    def interval_ms(self) -> float | None:
        """Frame interval announced to the pipeline, ms (recorded, else from rate)."""
        rec = self.recording
        if rec.interval_s is not None:
            return rec.interval_s * 1e3
        if not isinstance(self.config.rate, str):
            return 1e3 / float(self.config.rate)
        return None

    def offset_s(self, k: int) -> float | None:
        """Scheduled time of replayed frame ``k`` after the first, s (None: asap)."""
        rate = self.config.rate
        if rate == "asap":
            return None
        if rate == "recorded":
            i0 = self.range[0]
            t = self.recording.frame_time(i0 + k)
            t0 = self.recording.frame_time(i0)
            assert t is not None and t0 is not None
            return max(0.0, t - t0)
        return k / float(rate)

    def _link_config(self) -> Any:
        from livesr.stream import SourceLinkConfig

        rec = self.recording
        ring = self.config.ring_frames or max(
            2, min(256, AUTO_RING_BYTES // max(1, rec.frame_nbytes))
        )
        return SourceLinkConfig(
            endpoint=self.endpoint,
            stream=self.config.stream,
            shape=(rec.shape[1], rec.shape[2]),
            dtype=rec.dtype.name,
            pixel_size_um=rec.pixel_size_um,
            ring_frames=ring,
            overflow="stop",
            curve=self.curve,
        )

    def run(self) -> dict[str, Any]:
        """Read and send (blocking); returns the link summary.

        Raises
        ------
        CorruptRecordingError
            A frame could not be read (the frames before it were delivered and the
            link was closed cleanly).
        """
        from livesr.stream import SourceLink

        rec = self.recording
        start, stop = self.range
        # the ingest's "stop" message (run ended, disk full) sets stop_event
        link = SourceLink(
            self._link_config(), context=self._ctx, stop_event=self.stop_event
        ).start()
        logger.info(
            "replaying frames %d..%d of %s (rate %s) to %s",
            start,
            stop - 1,
            rec.path,
            self.config.rate,
            self.endpoint,
        )
        try:
            self._send_frames(link)
        finally:
            self.summary = link.close(timeout=30.0)
        if self.stop_event.is_set() and self.frames_sent < stop - start:
            logger.warning(
                "replay stopped on request after %d of %d frame(s)",
                self.frames_sent,
                stop - start,
            )
        logger.info(
            "replay done: %d frame(s) sent, %d acknowledged",
            self.summary.get("frames_acquired", 0),
            self.summary.get("frames_acked", 0),
        )
        return self.summary

    def _meta_base(self) -> dict[str, Any]:
        """Metadata every replayed frame carries (plus its ``ImageNumber``)."""
        rec = self.recording
        base: dict[str, Any] = {
            "camera": "livesr-replay",
            "source": rec.path.name[-128:],
            "format": rec.format,
        }
        interval_ms = self.interval_ms()
        if interval_ms is not None:
            base["interval_ms"] = float(interval_ms)
        return base

    def _send_frames(self, link: Any) -> None:
        """Read the range frame by frame into the link's ring, paced by the rate."""
        from livesr.stream import RingOverflowError

        rec = self.recording
        start, stop = self.range
        base = self._meta_base()
        timeout = float(self.config.send_timeout_s)
        t0_mono = time.monotonic()
        t0_wall = time.time()
        for k in range(stop - start):
            if self.stop_event.is_set():
                break
            if self._throttle is not None:
                self._throttle(k)
                if self.stop_event.is_set():
                    break
            i = start + k
            meta = {**base, "ImageNumber": i}
            rt = rec.frame_time(i)
            if rt is not None:
                meta["recorded_t_s"] = rt
            buf = link.reserve(timeout)
            if buf is None:  # nothing freed a slot in time: send() reports the overflow
                try:
                    link.send(rec.read(i), t_acq=time.time(), meta=meta, timeout=0.0)
                except RingOverflowError as exc:
                    logger.error("replay source: %s", exc)
                    break
                self.frames_sent = k + 1
                continue
            rec.read_into(i, buf)
            off = self.offset_s(k)
            if off is None:
                t_acq = time.time()
            else:
                delay = t0_mono + off - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
                t_acq = t0_wall + off
            link.commit(buf, t_acq=t_acq, meta=meta)
            self.frames_sent = k + 1
