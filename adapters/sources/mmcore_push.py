"""A pymmcore-plus core as a pipeline source: sequence acquisition pushed over the link.

::

    src = MMCorePushSource(core, pipe.endpoint, frames=500, context=ctx).start()
    ...                                   # hooks may move the core's stages meanwhile
    summary = src.join()                  # link summary once acquisition ended

Frames come from :class:`~livesr.adapters.sources.mmcore.MMCoreSource` (sequence
acquisition, ``stopOnOverflow``: a full circular buffer stops the camera instead of
overwriting frames, so no acquired frame is ever lost unreported) and are sent in
order through a :class:`livesr.stream._source_link.SourceLink` (replay ring,
credit, ACK; a full ring is a reported gap and stops acquisition). The camera
paces the acquisition (``[sim.camera] interval_ms`` for the simulated core).

Acquisition ends after ``frames`` frames (0: until stopped), on :meth:`stop`, when
``stop_event`` is set (the pipeline's ``stop_requested``) or when the core's
sequence acquisition is stopped by someone else (a feedback hook's
``MicroscopeController.stop_acquisition``); the link is then closed cleanly
(END, END_ACK) so the pipeline accounts for every frame.

With ``attach=True`` the source listens to a sequence acquisition that is already
running (started by someone else, e.g. live mode): it neither starts nor stops it,
ends when it stops or on :meth:`stop`, and frames the circular buffer overwrote
before they were taken (``ImageNumber`` jumps) are reported to the link as gaps
(:meth:`SourceLink.report_gap`), so the pipeline's summary counts them.

Each frame's header ``meta`` carries ``ImageNumber``, ``camera``, ``exposure_ms``,
``interval_ms`` and the stage position read when the frame was taken
(``x_um``, ``y_um``, ``z_um``); ``on_frame(seq, frame, meta)`` (optional) sees the
full :class:`MMCoreSource` metadata (with the simulator's ``livesr_*`` ground
truth under ``meta["mm"]``) before the frame is sent.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from livesr.adapters.sources._base import ThreadedSource

__all__ = ["MMCorePushSource"]

logger = logging.getLogger(__name__)

_DTYPES = {1: "uint8", 2: "uint16"}


class MMCorePushSource(ThreadedSource):
    """Push a pymmcore-plus core's sequence acquisition to a pipeline ingest.

    Parameters
    ----------
    core : pymmcore_plus.CMMCorePlus
        A ready core (camera, pixel size set); not owned (not shut down here).
    endpoint : str
        Ingest endpoint to connect to.
    frames : int
        Frames to acquire, >= 0 (0: continuous, until stopped).
    interval_ms : float, optional
        Frame interval written into every header, ms (> 0; default the camera's
        exposure).
    stream : str
        Stream id.
    ring_frames : int
        Replay ring slots of the link (>= 1).
    stop_event : threading.Event, optional
        Acquisition stops when it is set.
    context : zmq.Context, optional
        Shared context (required for ``inproc://``).
    send_timeout_s : float
        How long a frame may wait for a free ring slot (the camera's circular
        buffer holds the frames behind it meanwhile), s (>= 0).
    on_frame : callable, optional
        ``on_frame(seq, frame, meta)`` for every frame, before it is sent (on the
        source thread; keep it short).
    attach : bool
        Listen to the core's running sequence acquisition instead of starting one
        (``frames`` must be 0).
    mda : useq.MDASequence or path-like, optional
        Run this MDA (a sequence or a useq YAML/JSON file) instead of a sequence
        acquisition (``frames`` must be 0: the sequence sets the length); frames come
        from the runner's ``frameReady`` (``MMCoreSource`` mode ``"mda"``).
    """

    thread_name = "livesr-mm-source"
    label = "Micro-Manager source"

    def __init__(
        self,
        core: Any,
        endpoint: str,
        *,
        frames: int,
        interval_ms: float | None = None,
        stream: str = "mm",
        ring_frames: int = 256,
        stop_event: threading.Event | None = None,
        context: Any = None,
        send_timeout_s: float = 10.0,
        on_frame: Callable[[int, np.ndarray, dict[str, Any]], None] | None = None,
        attach: bool = False,
        mda: Any = None,
    ) -> None:
        if mda is not None and (frames != 0 or attach):
            raise ValueError(
                "MMCorePushSource(mda=...): the MDA sequence sets the frames; expected "
                "frames=0 and attach=False"
            )
        if attach and frames != 0:
            raise ValueError(
                f"MMCorePushSource(attach=True, frames={frames!r}): a listener takes "
                "what the running acquisition produces; expected frames=0"
            )
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
            raise ValueError(
                f"MMCorePushSource frames={frames!r}; expected an integer >= 0 "
                "(0 = until stopped)"
            )
        if interval_ms is not None and not (
            isinstance(interval_ms, (int, float))
            and math.isfinite(interval_ms)
            and interval_ms > 0
        ):
            raise ValueError(
                f"MMCorePushSource interval_ms={interval_ms!r}; expected a number of "
                "ms > 0"
            )
        if not (isinstance(ring_frames, int) and ring_frames >= 1):
            raise ValueError(
                f"MMCorePushSource ring_frames={ring_frames!r}; expected an integer "
                ">= 1"
            )
        if not (math.isfinite(send_timeout_s) and send_timeout_s >= 0):
            raise ValueError(
                f"MMCorePushSource send_timeout_s={send_timeout_s!r}; expected "
                "seconds >= 0"
            )
        super().__init__(stop_event)
        self.core = core
        self.endpoint = endpoint
        self.frames = frames
        self.interval_ms = interval_ms
        self.stream = stream
        self.ring_frames = ring_frames
        self._ctx = context
        self._send_timeout = float(send_timeout_s)
        self._on_frame = on_frame
        self.attach = bool(attach)
        self.mda = mda
        self._src: Any = None
        self._done = threading.Event()
        self.frames_sent = 0
        #: camera-side counters of the last run (MMCoreSource)
        self.camera: dict[str, Any] = {}

    def stop(self) -> None:
        """Stop acquiring: the camera stops, frames already taken are still sent."""
        self.stop_event.set()

    def _watch_stop(self) -> None:
        """Stop the camera as soon as ``stop_event`` is set (the loop may be
        waiting for a frame)."""
        while not self._done.is_set():
            if self.stop_event.wait(0.05):
                src = self._src
                if src is not None:
                    src.close()
                return

    def run(self) -> dict[str, Any]:
        """Acquire and send (blocking); returns the link summary."""
        from livesr.adapters.sources.mmcore import MMCoreSource
        from livesr.stream import SourceLink

        core = self.core
        link = SourceLink(self._link_config(), context=self._ctx).start()
        if self.attach:
            src = MMCoreSource(core, attach=True)
        elif self.mda is not None:
            src = MMCoreSource(core, mda=self.mda)
        else:
            src = MMCoreSource(core, frames=self.frames or None, stop_on_overflow=True)
        self._src = src
        watcher = threading.Thread(
            target=self._watch_stop, name="livesr-mm-source-stop", daemon=True
        )
        try:
            if self.stop_event.is_set():  # stopped before the first frame
                src.close()
            watcher.start()
            self._send_frames(src, link)
        finally:
            self._done.set()
            src.close()
            self.summary = link.close(timeout=30.0)
            self.camera = {
                "frames_acquired": src.frames_acquired,
                "frames_delivered": src.frames_delivered,
                "gaps": [list(g) for g in src.gaps],
                "overflowed": src.overflowed,
            }
        self._log_end(src)
        return self.summary

    def _link_config(self) -> Any:
        """The link of the core's camera: shape, dtype and pixel size checked."""
        from livesr.stream import SourceLinkConfig

        core = self.core
        bpp = int(core.getBytesPerPixel())
        if bpp not in _DTYPES:
            raise ValueError(
                f"camera {core.getCameraDevice()!r} has {bpp} bytes per pixel; "
                "expected 1 (uint8) or 2 (uint16)"
            )
        px = float(core.getPixelSizeUm() or 0.0)
        if not (math.isfinite(px) and px > 0):
            raise ValueError(
                "the core has no pixel size (getPixelSizeUm() == 0); define a pixel "
                "size configuration"
            )
        return SourceLinkConfig(
            endpoint=self.endpoint,
            stream=self.stream,
            shape=(int(core.getImageHeight()), int(core.getImageWidth())),
            dtype=_DTYPES[bpp],
            pixel_size_um=px,
            ring_frames=self.ring_frames,
            overflow="stop",
        )

    def _send_frames(self, src: Any, link: Any) -> None:
        """Send every frame ``src`` delivers; camera-side gaps go to the link."""
        from livesr.stream import RingOverflowError

        interval = (
            float(self.interval_ms)
            if self.interval_ms is not None
            else float(self.core.getExposure())
        )
        reported = 0
        for seq, frame, meta in src:
            if len(src.gaps) > reported:  # overwritten before we took them
                lost = sum(b - a + 1 for a, b in src.gaps[reported:])
                reported = len(src.gaps)
                link.report_gap(lost)
            if self._on_frame is not None:
                self._on_frame(seq, frame, meta)
            head = {
                "ImageNumber": meta["ImageNumber"],
                "camera": meta["camera"],
                "exposure_ms": meta["exposure_ms"],
                "interval_ms": interval,
                "x_um": meta["x_um"],
                "y_um": meta["y_um"],
                "z_um": meta["z_um"],
            }
            try:
                link.send(
                    frame, t_acq=meta["t_acq"], meta=head, timeout=self._send_timeout
                )
            except RingOverflowError as exc:
                logger.error("Micro-Manager source: %s", exc)
                break
            self.frames_sent += 1

    def _log_end(self, src: Any) -> None:
        """Report camera-side losses (gaps, a full circular buffer) and the counts."""
        if src.gaps and self.attach:
            logger.warning(
                "%d frame(s) in %d gap(s) were overwritten in the circular buffer "
                "before they were taken (reported to the pipeline as gaps)",
                src.frames_in_gaps,
                len(src.gaps),
            )
        elif src.gaps:  # cannot happen with stopOnOverflow; never pass silently
            logger.error(
                "the camera lost %d frame(s) before they reached the link: %s",
                src.frames_in_gaps,
                src.gaps,
            )
        if src.overflowed and not self.attach:
            logger.error(
                "the camera's circular buffer filled up (the pipeline fell behind); "
                "acquisition stopped after %d frame(s)",
                src.frames_acquired,
            )
        logger.info(
            "Micro-Manager source done: %d frames acquired, %d sent",
            src.frames_acquired,
            self.frames_sent,
        )
