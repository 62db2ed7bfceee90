"""Source side of the lossless frame path: a DEALER with a replay ring and credit.

Usage::

    cfg = SourceLinkConfig(endpoint="ipc:///tmp/livesr.ipc", stream="cam0",
                           shape=(512, 512), dtype="uint16", ring_frames=512)
    with SourceLink(cfg) as link:          # start(): connect + I/O thread
        for frame in camera:
            link.send(frame, t_acq=time.time())   # copies into the ring, never blocks
    summary = link.summary()               # close() sent END and waited for END_ACK

``send`` copies the frame into a pre-touched ring slot and returns at once; a
background I/O thread owns the socket, transmits within the ingest's credit, frees
slots on cumulative ACKs and replays unacknowledged frames in seq order after every
(re)handshake.  When the ring is full, the frame is lost and reported as a gap (see
:class:`SourceLinkConfig.overflow`).  See :mod:`livesr.stream._transport` for the
protocol.

When the pipeline ends (run finished, interrupted, disk full) the ingest sends
``stop``: :attr:`SourceLink.stop_requested` is set and :meth:`SourceLink.summary`
says why (``stop_reason``); the producer should stop acquiring and :meth:`close` the
link (frames it still sends are delivered while the ingest listens).  After a
``final`` stop (the ingest closed) :meth:`close` returns at once and reports the
frames left unacknowledged.

The module holds the producer half (lifecycle, ``send``/``reserve``/``commit``,
counters); :mod:`~livesr.stream._source_link_io` the I/O thread and
:mod:`~livesr.stream._source_link_config` the configuration.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import zmq

from livesr.stream._keys import apply_client_keys
from livesr.stream._link_base import RateLimitedLog, TransportError, set_common_options
from livesr.stream._replay_ring import ReplayRing
from livesr.stream._source_link_config import (
    OVERFLOW_POLICIES,
    RingOverflowError,
    SourceLinkConfig,
)
from livesr.stream._source_link_io import _Entry, _LinkIO
from livesr.stream._wire import FrameHeaderEncoder, PreparedHeader

__all__ = ["OVERFLOW_POLICIES", "RingOverflowError", "SourceLink", "SourceLinkConfig"]

logger = logging.getLogger(__name__)

_MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class SourceLink(_LinkIO):
    """The camera/adapter end of the lossless frame path.

    Parameters
    ----------
    config
        See :class:`SourceLinkConfig`.
    context
        ZeroMQ context to use (default: a private one, terminated by :meth:`close`).
    stop_event
        Event to set when the ingest asks the source to stop acquiring (default: a
        private one); also :attr:`stop_requested`.

    Notes
    -----
    The ring is allocated and pre-touched in the constructor; sockets and the I/O
    thread start in :meth:`start` (or ``with``).  :meth:`send` may be called from one
    producer thread at a time.
    """

    def __init__(
        self,
        config: SourceLinkConfig,
        *,
        context: zmq.Context[Any] | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.config = config
        #: set when the ingest sent ``stop``: stop acquiring, then :meth:`close`
        self.stop_requested = (
            stop_event if stop_event is not None else threading.Event()
        )
        self._stop_reason: str | None = None
        self._ingest_closed = False  # a final stop: nothing more will be acked
        self._ring = ReplayRing(config.ring_frames, config.shape, config.dtype)
        self._headers = FrameHeaderEncoder(
            stream=config.stream,
            shape=config.shape,
            dtype=config.dtype,
            pixel_size_um=config.pixel_size_um,
        )
        self._ctx = context
        self._own_ctx = context is None
        self._lock = threading.Lock()
        self._pending: deque[_Entry] = deque()
        self._send_idx = 0
        self._next_seq = config.first_seq
        self._open_gap: list[int] | None = None
        self._stopped = False  # overflow with policy "stop"
        self._closed = False
        self._finishing = False
        self._abort = False
        self._thread: threading.Thread | None = None
        self._io_idle = True
        self._reserved: tuple[int, np.ndarray] | None = None
        self._bell_r = self._bell_w = -1
        self._session = secrets.token_hex(8)
        self._rlog = RateLimitedLog(logger)
        self._acked_event = threading.Condition(self._lock)
        # protocol state (I/O thread)
        self._ready = False
        self._nonce = 0
        self._acked_upto = config.first_seq - 1
        self._credit_limit = config.first_seq - 1
        self._end_sent = False
        self._end_acked = False
        self._ingest_summary: dict[str, Any] | None = None
        self._c: dict[str, int] = {
            "frames_acquired": 0,
            "frames_sent": 0,
            "frames_replayed": 0,
            "frames_acked": 0,
            "frames_in_gaps": 0,
            "frames_in_acked_gaps": 0,
            "handshakes": 0,
            "hellos_sent": 0,
            "disconnects": 0,
            "control_rejected": 0,
            "stops_received": 0,
        }
        self._gaps: list[list[int]] = []

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SourceLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> SourceLink:
        """Create the DEALER, connect, and start the I/O thread."""
        if self._thread is not None:
            raise TransportError("SourceLink.start() called twice")
        cfg = self.config
        if self._ctx is None:
            self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.DEALER)
        try:
            set_common_options(
                sock,
                linger_ms=cfg.linger_ms,
                heartbeat_ivl_ms=cfg.heartbeat_ivl_ms,
                heartbeat_timeout_ms=cfg.heartbeat_timeout_ms,
            )
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.RECONNECT_IVL, cfg.reconnect_ivl_ms)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(cfg.reconnect_ivl_ms, 1000))
            sock.setsockopt(zmq.SNDHWM, cfg.ring_frames * 2 + 64)
            sock.setsockopt(zmq.RCVHWM, 1000)
            if cfg.curve is not None:
                apply_client_keys(sock, cfg.curve)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
            monitor.setsockopt(zmq.LINGER, 0)
            sock.connect(cfg.endpoint)
        except Exception:
            sock.close(linger=0)
            if self._own_ctx:
                self._ctx.term()
            raise
        self._sock, self._monitor = sock, monitor
        self._bell_r, self._bell_w = os.pipe()
        os.set_blocking(self._bell_r, False)
        os.set_blocking(self._bell_w, False)
        self._thread = threading.Thread(
            target=self._run, name=f"livesr-source-{cfg.stream}", daemon=True
        )
        self._thread.start()
        logger.info(
            "source %s connecting to %s (ring %d frames)",
            cfg.stream,
            cfg.endpoint,
            cfg.ring_frames,
        )
        return self

    def close(self, timeout: float = 10.0) -> dict[str, Any]:
        """Finish the run: send what is pending, END, wait for END_ACK, close.

        Parameters
        ----------
        timeout
            Seconds to wait for every frame to be acknowledged and END_ACK; ``0``
            closes at once (no END).  Frames still unacknowledged then are reported
            as ``frames_unacked`` in the summary.

        Returns
        -------
        dict
            :meth:`summary`.
        """
        if self._closed:
            return self.summary()
        self._closed = True
        if self._thread is not None:
            self._finishing = True
            self._ring_bell()
            self._thread.join(timeout if timeout > 0 else 0.0)
            if self._thread.is_alive():
                if timeout > 0:
                    logger.warning(
                        "source %s: no END_ACK within %.1f s; closing with %d "
                        "frame(s) unacknowledged",
                        self.config.stream,
                        timeout,
                        self._unacked_frames(),
                    )
                self._abort = True
                self._ring_bell()
                self._thread.join(10.0)
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock.close()
            os.close(self._bell_r)
            os.close(self._bell_w)
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
        summary = self.summary()
        logger.info(
            "source %s closed: %s",
            self.config.stream,
            {k: v for k, v in summary.items() if k != "ingest"},
        )
        return summary

    # ------------------------------------------------------------------ producer API
    def send(
        self,
        frame: np.ndarray,
        *,
        t_acq: float | None = None,
        meta: dict[str, Any] | None = None,
        timeout: float = 0.0,
    ) -> int:
        """Queue one frame for lossless delivery; returns its seq.

        The frame is copied into the replay ring; with ``timeout=0`` (a live camera)
        this never waits for the network.

        Parameters
        ----------
        frame
            ``shape`` x ``dtype`` array (copied).
        t_acq
            Acquisition time (seconds since the epoch; default now).
        meta
            JSON-serialisable metadata for the header.
        timeout
            When the ring is full, wait up to this many seconds for a free slot
            before declaring an overflow (for sources that can wait, e.g. a replay).

        Raises
        ------
        RingOverflowError
            Policy ``stop``: the ring is full (this frame becomes a reported gap) or
            was full before; stop acquiring.
        TransportError
            The link is closed or not started.
        ValueError
            Wrong shape or dtype.
        """
        if self._closed or self._thread is None:
            raise TransportError(
                "SourceLink.send(): the link is not started or already closed"
            )
        cfg = self.config
        if frame.shape != self._ring.shape or frame.dtype != self._ring.dtype:
            raise ValueError(
                f"frame {frame.shape} {frame.dtype} does not match the stream's "
                f"{self._ring.shape} {self._ring.dtype}; every frame of a stream "
                "must have the same shape and dtype"
            )
        t = time.time() if t_acq is None else float(t_acq)
        with self._lock:
            if self._stopped:
                raise RingOverflowError(
                    f"stream {cfg.stream!r}: acquisition stopped after a ring overflow "
                    "(overflow='stop'); close the link"
                )
            self._wait_for_slot(timeout)
            seq = self._next_seq
            head = self._headers.prepare(seq, t, meta)  # WireError: nothing taken
            slot = self._ring.take()
            self._next_seq += 1
            self._c["frames_acquired"] += 1
            if slot is None:
                self._overflow(seq)  # raises with policy "stop"
                return seq
        # copy outside the lock: the I/O thread keeps sending meanwhile
        np.copyto(self._ring.view(slot), frame)
        return self._queue(seq, slot, head)

    def _overflow(self, seq: int) -> None:
        """With the lock held: the ring was full for ``seq``; apply the policy."""
        cfg = self.config
        self._c["frames_in_gaps"] += 1
        if cfg.overflow == "stop":
            self._stopped = True
            self._add_gap(seq, seq)
            self._rlog.log(
                logging.ERROR,
                "overflow",
                "source %s: ring of %d frames full at seq %d; stopping "
                "(overflow='stop')",
                cfg.stream,
                cfg.ring_frames,
                seq,
            )
            self._ring_bell()
            raise RingOverflowError(
                f"stream {cfg.stream!r}: replay ring ({cfg.ring_frames} "
                f"frames) full at seq {seq}: the pipeline is gone or too "
                "slow; frame reported as a gap, acquisition must stop (or use "
                "overflow='continue')"
            )
        if self._open_gap is None:
            self._open_gap = [seq, seq]
        else:
            self._open_gap[1] = seq
        self._rlog.log(
            logging.WARNING,
            "overflow",
            "source %s: ring full, dropping frames from seq %d (reported as a gap)",
            cfg.stream,
            self._open_gap[0],
        )

    def reserve(self, timeout: float = 0.0) -> np.ndarray | None:
        """A free ring slot to acquire the next frame into (zero-copy acquisition).

        Fill the returned array (e.g. ``camera.read_into(buf)``) and hand it to
        :meth:`commit`; this saves the copy :meth:`send` makes.  Returns ``None`` when
        the ring stays full for ``timeout`` seconds: acquire into your own buffer and
        call :meth:`send`, which reports the overflow per the policy.  Calling it again
        before :meth:`commit` returns the same slot.

        Raises
        ------
        RingOverflowError
            Policy ``stop`` after an overflow.
        TransportError
            The link is not started or already closed.
        """
        if self._closed or self._thread is None:
            raise TransportError(
                "SourceLink.reserve(): the link is not started or already closed"
            )
        with self._lock:
            if self._stopped:
                raise RingOverflowError(
                    f"stream {self.config.stream!r}: acquisition stopped after a ring "
                    "overflow (overflow='stop'); close the link"
                )
            if self._reserved is None:
                self._wait_for_slot(timeout)
                slot = self._ring.take()
                if slot is None:
                    return None
                self._reserved = (slot, self._ring.view(slot))
            return self._reserved[1]

    def commit(
        self,
        buf: np.ndarray,
        *,
        t_acq: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Queue the frame acquired into ``buf`` (from :meth:`reserve`); return seq.

        Raises
        ------
        WireError
            ``t_acq`` or ``meta`` cannot go into a header (the slot stays reserved).
        """
        t = time.time() if t_acq is None else float(t_acq)
        with self._lock:
            if self._reserved is None or buf is not self._reserved[1]:
                raise ValueError(
                    "SourceLink.commit(): buf is not the array returned by reserve(); "
                    "use send() for other buffers"
                )
            seq = self._next_seq
            head = self._headers.prepare(seq, t, meta)
            slot = self._reserved[0]
            self._reserved = None
            self._next_seq += 1
            self._c["frames_acquired"] += 1
        return self._queue(seq, slot, head)

    def report_gap(self, frames: int) -> None:
        """Record ``frames`` frames lost before they reached the link (>= 1).

        For a source that knows it missed frames (a camera's circular buffer
        overwrote them): they take the next seqs and travel to the ingest as a gap,
        so ``frames_acquired == frames_acked + frames_in_gaps + frames_unacked``
        still holds and the pipeline's summary counts them.
        """
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"report_gap(frames={frames!r}); expected an integer >= 1")
        if self._closed or self._thread is None:
            raise TransportError(
                "SourceLink.report_gap(): the link is not started or already closed"
            )
        with self._lock:
            first = self._next_seq
            last = first + frames - 1
            self._next_seq = last + 1
            self._c["frames_acquired"] += frames
            self._c["frames_in_gaps"] += frames
            if self._open_gap is not None and self._open_gap[1] == first - 1:
                self._open_gap[1] = last
            else:
                if self._open_gap is not None:
                    self._add_gap(*self._open_gap)
                self._open_gap = [first, last]
        self._ring_bell()

    def _wait_for_slot(self, timeout: float) -> None:
        """With the lock held: wait up to ``timeout`` s while the ring is full."""
        if timeout > 0 and self._ring.used == self._ring.capacity:
            deadline = time.monotonic() + timeout
            while (
                self._ring.used == self._ring.capacity
                and not self._closed
                and not self._ingest_closed
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._acked_event.wait(left)

    def _queue(self, seq: int, slot: int, head: PreparedHeader) -> int:
        """Append the frame in ``slot`` as ``seq`` (after any open gap) and wake I/O."""
        with self._lock:
            if self._open_gap is not None:
                self._add_gap(*self._open_gap)
                self._open_gap = None
            self._pending.append(_Entry(seq, seq, slot, head))
        if self._io_idle:  # else the I/O thread finds the frame on its next pass
            self._ring_bell()
        return seq


    def wait_ready(self, timeout: float) -> bool:
        """Wait until the ingest has answered the handshake; True on success."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def wait_acked(self, timeout: float) -> bool:
        """Wait until every queued frame is acknowledged; True on success."""
        deadline = time.monotonic() + timeout
        with self._acked_event:
            while self._pending or self._open_gap is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acked_event.wait(left)
        return True

    # ------------------------------------------------------------------ counters

    def summary(self) -> dict[str, Any]:
        """Counters of this link (safe to call from any thread).

        ``frames_acquired == frames_acked + frames_in_gaps + frames_unacked`` always.
        """
        with self._lock:
            out: dict[str, Any] = dict(self._c)
            out.update(
                stream=self.config.stream,
                session=self._session,
                overflow_policy=self.config.overflow,
                stopped_on_overflow=self._stopped,
                gaps=[list(g) for g in self._gaps]
                + ([list(self._open_gap)] if self._open_gap else []),
                frames_unacked=self._unacked_frames(),
                ring_capacity=self._ring.capacity,
                ring_used=self._ring.used,
                ring_peak=self._ring.peak_used,
                acked_upto=self._acked_upto,
                end_acked=self._end_acked,
                stop_reason=self._stop_reason,
                ingest_closed=self._ingest_closed,
                ingest=self._ingest_summary,
            )
        return out
