"""The newest raw frame at display rate, for viewers: its own lossy PUB, never blocking.

::

    raw = RawFramePublisher("ipc:///tmp/raw.ipc", lambda: persist).start()  # binds
    raw.endpoint          # give it to a viewer (LiveViewerSink raw_endpoint)
    ...
    raw.close()           # before the processing ring is released

A thread wakes ``rate_hz`` times a second (default :data:`RAW_DISPLAY_HZ`); when a
subscriber is connected it copies the frame written last into the processing ring
(:meth:`ProcessingRing.newest_copy <livesr.stream._ring.ProcessingRing.newest_copy>`,
also when that frame was already processed) and, if it is newer than the one sent
before, publishes it (:func:`~livesr.stream._wire_result.encode_raw_frame`,
``kind="raw"``, its ``seq`` and timestamps) on a :class:`ResultPublisher` of its own,
so that a viewer draining the SR stream newest-only never discards a raw frame and
vice versa.  Without a subscriber it copies nothing.  The ingest and processing
threads never wait for it: it only reads the ring (one frame copy per tick), and the
PUB drops frames for a subscriber that does not keep up.

Frames refused by a full ring (persisted, not processed) are not shown: the newest
frame shown is the newest one offered to processing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from livesr.stream._pubsub import ResultPublisher
from livesr.stream._wire_result import encode_raw_frame

__all__ = ["RAW_DISPLAY_HZ", "RawFramePublisher"]

logger = logging.getLogger(__name__)

#: raw frames published per second at most (a display refresh, not the camera rate)
RAW_DISPLAY_HZ = 25.0


class RawFramePublisher:
    """Publish the newest raw frame at display rate (see the module docstring).

    Parameters
    ----------
    endpoint : str
        Where to bind the PUB (non-loopback TCP needs ``curve``).
    persist : callable
        Returns the pipeline's ingest-side state (a
        :class:`~livesr.stream._persist.PersistState`, or None before the ingest
        starts): its ``ring`` (None until the first frame), ``stream`` and
        ``pixel_size_um`` are read on every tick.
    rate_hz : float
        Frames published per second at most, in (0, 200].
    curve : CurveServerKeys, optional
        Server keys for a non-loopback endpoint.
    context : zmq.Context, optional
        ZeroMQ context (default: the publisher's own).
    """

    def __init__(
        self,
        endpoint: str,
        persist: Callable[[], Any],
        *,
        rate_hz: float = RAW_DISPLAY_HZ,
        curve: Any = None,
        context: Any = None,
    ) -> None:
        if not 0 < float(rate_hz) <= 200:
            raise ValueError(f"raw frame rate_hz={rate_hz!r}; expected a rate in (0, 200]")
        self._period = 1.0 / float(rate_hz)
        self._persist = persist
        self._pub = ResultPublisher(endpoint, hwm=2, curve=curve, context=context)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.endpoint = endpoint
        #: raw frames handed to ZeroMQ, and the seq of the last one (-1: none)
        self.published = 0
        self.last_seq = -1

    def start(self) -> RawFramePublisher:
        """Bind (``endpoint`` becomes the bound address) and start the thread."""
        self._pub.start()
        self.endpoint = self._pub.endpoint
        self._thread = threading.Thread(
            target=self._run, name="livesr-raw-publisher", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._period):
                self.tick()
        except Exception:  # the viewers lose the raw layer; the run goes on
            logger.exception("raw frame publisher stopped")

    def tick(self) -> bool:
        """Publish the newest raw frame if a subscriber listens and it is new."""
        p = self._persist()
        ring = p.ring if p is not None else None
        if ring is None or not self._pub.has_subscribers:
            return False
        item = ring.newest_copy()
        if item is None or item.seq <= self.last_seq:
            return False
        self._pub.publish(
            encode_raw_frame(
                stream=p.stream or "",
                seq=item.seq,
                frame=item.frame,
                pixel_size_um=p.pixel_size_um,
                t_acq=item.t_acq,
                t_recv=item.t_recv,
                t_publish=time.time(),
            )
        )
        self.published += 1
        self.last_seq = item.seq
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the socket (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # pragma: no cover - a stuck copy
                logger.error("raw frame publisher did not stop within %.0f s", timeout_s)
                return
            self._thread = None
        self._pub.close()
