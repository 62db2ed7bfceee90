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
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from livesr.stream._endpoints import parse_endpoint, require_secure
from livesr.stream._keys import CurveClientKeys, apply_client_keys
from livesr.stream._link_base import (
    RateLimitedLog,
    TransportError,
    check_range,
    set_common_options,
)
from livesr.stream._replay_ring import ReplayRing
from livesr.stream._wire import (
    _STREAM_RE,  # the one stream-id rule
    FRAME_DTYPES,
    MAX_SIDE,
    FrameHeaderEncoder,
    PreparedHeader,
    WireError,
    decode_control,
    encode_control,
)
from livesr.stream._wire_control import Credit, read_credit, read_end_ack, read_stop

logger = logging.getLogger(__name__)

OVERFLOW_POLICIES = ("stop", "continue")
_MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class RingOverflowError(RuntimeError):
    """The replay ring was full (policy ``stop``): acquisition must stop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceLinkConfig:
    """Configuration of a :class:`SourceLink`.

    Parameters
    ----------
    endpoint
        Ingest endpoint to connect to (``ipc://``, ``tcp://HOST:PORT``, ``inproc://``).
    stream
        Stream id (1-64 of ``[A-Za-z0-9_.:-]``).
    shape, dtype
        Shape and dtype of every frame (the ring is allocated for them).
    pixel_size_um
        Pixel size in the sample plane (written into every header).
    ring_frames
        Replay ring slots: frame rate x longest tolerated outage (1..1_000_000).
    max_ring_bytes
        Refuse a ring larger than this (default 8 GiB).
    overflow
        ``"stop"`` (default, like MMCore ``stopOnOverflow``): the overflowing frame is a
        reported gap and :meth:`SourceLink.send` raises :class:`RingOverflowError` from
        then on; ``"continue"``: frames are dropped while the ring is full and each
        dropped run is reported as one gap.
    curve
        Client CURVE keys; required for a non-loopback endpoint.
    hello_interval_s
        Re-send HELLO this often until the ingest answers READY.
    ack_timeout_s
        With frames in flight and nothing heard for this long, re-handshake (replay).
    zero_copy_min_bytes
        Frames at least this large are sent without copying (default 64 KiB).
    first_seq
        Sequence number of the first frame (default 0).  A restarted acquisition
        process that knows where the camera is (e.g. its frame counter) starts there:
        the ingest then records the frames in between as a gap of the stream.
    linger_ms, heartbeat_ivl_ms, heartbeat_timeout_ms, reconnect_ivl_ms
        ZeroMQ socket options.
    log_interval_s
        Seconds between two INFO summaries of the counters.
    """

    endpoint: str
    stream: str
    shape: tuple[int, int]
    dtype: str = "uint16"
    pixel_size_um: float = 0.1
    ring_frames: int = 256
    max_ring_bytes: int = 8 * 2**30
    overflow: str = "stop"
    curve: CurveClientKeys | None = None
    hello_interval_s: float = 0.1
    ack_timeout_s: float = 5.0
    zero_copy_min_bytes: int = 65536
    linger_ms: int = 0
    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 3000
    reconnect_ivl_ms: int = 50
    log_interval_s: float = 5.0
    first_seq: int = 0

    def __post_init__(self) -> None:
        name = "SourceLinkConfig"
        ep = parse_endpoint(self.endpoint)
        require_secure(ep, curve=self.curve is not None, role="connect to")
        if not isinstance(self.stream, str) or not _STREAM_RE.match(self.stream):
            raise ValueError(
                f"{name}.stream={self.stream!r} is not valid; expected 1-64 "
                "characters of "
                "[A-Za-z0-9_.:-]"
            )
        if (
            not isinstance(self.shape, tuple)
            or len(self.shape) != 2
            or not all(isinstance(s, int) and 1 <= s <= MAX_SIDE for s in self.shape)
        ):
            raise ValueError(
                f"{name}.shape={self.shape!r} is not valid; expected (rows, cols) "
                "ints in "
                f"[1, {MAX_SIDE}]"
            )
        if self.dtype not in FRAME_DTYPES:
            raise ValueError(
                f"{name}.dtype={self.dtype!r} is not valid; expected one of "
                f"{FRAME_DTYPES}"
            )
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"{name}.overflow={self.overflow!r} is not valid; expected one of "
                f"{OVERFLOW_POLICIES}"
            )
        check_range(name, "pixel_size_um", self.pixel_size_um, 1e-9, 1e9)
        check_range(name, "ring_frames", self.ring_frames, 1, 1_000_000)
        check_range(name, "hello_interval_s", self.hello_interval_s, 0.001, 60)
        check_range(name, "ack_timeout_s", self.ack_timeout_s, 0.01, 3600)
        check_range(name, "zero_copy_min_bytes", self.zero_copy_min_bytes, 0, 2**31)
        check_range(name, "linger_ms", self.linger_ms, 0, 600_000)
        check_range(name, "heartbeat_ivl_ms", self.heartbeat_ivl_ms, 0, 600_000)
        check_range(name, "heartbeat_timeout_ms", self.heartbeat_timeout_ms, 0, 600_000)
        check_range(name, "reconnect_ivl_ms", self.reconnect_ivl_ms, 1, 600_000)
        check_range(name, "log_interval_s", self.log_interval_s, 0.1, 3600)
        if not isinstance(self.first_seq, int) or not 0 <= self.first_seq < 2**62:
            raise ValueError(
                f"{name}.first_seq={self.first_seq!r} is not valid; expected an "
                "integer in [0, 2**62)"
            )
        if self.ring_bytes > self.max_ring_bytes:
            raise ValueError(
                f"{name}.ring_frames={self.ring_frames} x {self.frame_bytes} bytes = "
                f"{self.ring_bytes} bytes exceeds "
                f"max_ring_bytes={self.max_ring_bytes}; "
                "lower ring_frames or raise max_ring_bytes"
            )

    @property
    def frame_bytes(self) -> int:
        return int(self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize)

    @property
    def ring_bytes(self) -> int:
        return self.ring_frames * self.frame_bytes


class _Entry:
    """One unacknowledged item: a frame (slot >= 0) or a gap (slot == -1)."""

    __slots__ = ("first", "last", "slot", "head", "sent")

    def __init__(
        self, first: int, last: int, slot: int, head: PreparedHeader | None
    ) -> None:
        self.first = first
        self.last = last
        self.slot = slot
        self.head = head
        self.sent = False


class SourceLink:
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

    def _add_gap(self, first: int, last: int) -> None:
        self._pending.append(_Entry(first, last, -1, None))
        self._gaps.append([first, last])

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
    def _unacked_frames(self) -> int:
        return sum(1 for e in list(self._pending) if e.slot >= 0)

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

    # ------------------------------------------------------------------ I/O thread
    def _ring_bell(self) -> None:
        try:
            os.write(self._bell_w, b"x")
        except (BlockingIOError, OSError):
            pass  # already ringing (pipe full) or closed

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # pragma: no cover - a bug; make it visible
            logger.exception("source %s: I/O thread failed", self.config.stream)

    def _loop(self) -> None:
        cfg = self.config
        sock, monitor = self._sock, self._monitor
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._bell_r, zmq.POLLIN)
        next_hello = 0.0
        last_heard = time.monotonic()
        next_info = last_heard + cfg.log_interval_s
        retry_send = False
        while not self._abort:
            if self._finishing and self._ingest_closed:
                return  # the ingest closed after a stop: nothing more will be acked
            now = time.monotonic()
            if not self._ready:
                timeout = max(0.0, next_hello - now)
            elif retry_send:
                timeout = 0.005
            else:
                timeout = cfg.ack_timeout_s / 4
            self._io_idle = True  # from here on, a new frame rings the bell
            if self._has_work():
                timeout = 0.0
            events = dict(poller.poll(timeout * 1000.0))
            self._io_idle = False
            if self._bell_r in events:
                try:
                    while os.read(self._bell_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            if monitor in events and self._drain_monitor():
                self._ready = False
                next_hello = 0.0
            if sock in events:
                heard = self._read_controls()
                if heard:
                    last_heard = heard
                if self._end_acked:
                    return
            now = time.monotonic()
            if now >= next_info:
                next_info = now + cfg.log_interval_s
                self._log_counters()
            if (
                self._ready
                and self._has_inflight()
                and now - last_heard > cfg.ack_timeout_s
            ):
                logger.info(
                    "source %s: nothing heard for %.1f s with frames in flight; "
                    "re-handshake",
                    cfg.stream,
                    cfg.ack_timeout_s,
                )
                self._ready = False
                next_hello = 0.0
            if not self._ready and now >= next_hello:
                self._send_hello()
                next_hello = now + cfg.hello_interval_s
                last_heard = now
            retry_send = False
            if self._finishing:
                self._flush_open_gap()
            if self._ready:
                retry_send = not self._pump()
                if self._finishing and not self._end_sent:
                    self._maybe_send_end()

    def _drain_monitor(self) -> bool:
        """Read the socket monitor's events; True if there were any (re-handshake)."""
        any_event = False
        while True:
            try:
                msg = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return any_event
            any_event = True
            event = int.from_bytes(msg[0][:2], "little")
            if event == zmq.EVENT_DISCONNECTED:
                self._c["disconnects"] += 1
                logger.info("source %s: ingest disconnected", self.config.stream)
                if self._stop_reason is not None and not self._ingest_closed:
                    # it asked us to stop, then went away: it has closed (the
                    # final stop can be lost with the connection, IMMEDIATE=1)
                    self._on_stop(self._stop_reason, True)

    def _read_controls(self) -> float:
        """Handle up to 1024 control messages; the time of the last one (0: none)."""
        heard = 0.0
        for _ in range(1024):
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            heard = time.monotonic()
            self._on_control(parts)
            if self._end_acked:
                break
        return heard

    def _log_counters(self) -> None:
        if logger.isEnabledFor(logging.INFO):
            info = {
                k: v for k, v in self.summary().items() if k not in ("gaps", "ingest")
            }
            logger.info("source %s: %s", self.config.stream, info)

    def _has_work(self) -> bool:
        """A frame is queued and may go now (checked after setting ``_io_idle``)."""
        with self._lock:
            if not self._ready or self._send_idx >= len(self._pending):
                return False
            return self._pending[self._send_idx].first <= self._credit_limit

    def _has_inflight(self) -> bool:
        with self._lock:
            return self._send_idx > 0

    def _send_hello(self) -> None:
        cfg = self.config
        with self._lock:
            # the oldest unacknowledged seq.  Not "pending[0] or next_seq": send() takes
            # a seq before its entry is queued (the copy runs outside the lock), and
            # announcing that seq as "first" would let the ingest ack it unseen.
            first = self._acked_upto + 1
        self._nonce += 1
        msg = encode_control(
            "hello",
            stream=cfg.stream,
            session=self._session,
            n=self._nonce,
            first=first,
            shape=list(cfg.shape),
            dtype=cfg.dtype,
        )
        try:
            self._sock.send_multipart(msg, zmq.NOBLOCK)
            self._c["hellos_sent"] += 1
        except zmq.Again:
            pass  # not connected yet; retried every hello_interval_s

    def _on_control(self, parts: list[bytes]) -> None:
        cfg = self.config
        try:
            obj = decode_control(parts)
            if obj.get("stream") != cfg.stream:
                raise WireError(
                    f"control for stream {obj.get('stream')!r}, this link is "
                    f"{cfg.stream!r}"
                )
            kind = obj["kind"]
            if kind in ("ready", "ack", "credit"):
                self._on_credit(read_credit(obj))
            elif kind == "stop":
                stop = read_stop(obj)
                if stop.session != self._session:
                    return  # meant for an earlier run of this stream
                self._c["stops_received"] += 1
                self._on_stop(stop.reason, stop.final)
            elif kind == "end_ack":
                self._ingest_summary = read_end_ack(obj)
                with self._lock:
                    self._end_acked = not self._pending
            else:
                raise WireError(f"unexpected control kind {kind!r} at the source")
        except WireError as exc:
            self._c["control_rejected"] += 1
            self._rlog.log(
                logging.WARNING,
                "control",
                "source %s: rejected control message: %s",
                cfg.stream,
                exc,
            )

    def _on_credit(self, msg: Credit) -> None:
        """``ready`` (answer to a hello, or ``n=0``: replay) or ``ack``/``credit``."""
        if msg.kind != "ready":
            self._apply_ack(msg.upto, msg.credit, rewind=False)
            return
        if msg.session != self._session:
            return  # meant for an earlier run of this stream
        if msg.n == 0 and self._ready:  # the ingest asks for a replay
            self._apply_ack(msg.upto, msg.credit, rewind=True)
            self._end_sent = False
            return
        if msg.n != self._nonce:
            return  # answer to an older hello
        self._apply_ack(msg.upto, msg.credit, rewind=True)
        self._ready = True
        self._end_sent = False
        self._c["handshakes"] += 1
        logger.info(
            "source %s: ingest ready, resuming after seq %d (credit %d)",
            self.config.stream,
            msg.upto,
            msg.credit,
        )

    def _on_stop(self, reason: str, final: bool) -> None:
        cfg = self.config
        first = self._stop_reason is None
        if first:
            self._stop_reason = reason
            logger.warning(
                "source %s: the pipeline asks to stop acquiring: %s", cfg.stream, reason
            )
        if final and not self._ingest_closed:
            logger.warning(
                "source %s: the ingest closed; %d frame(s) stay unacknowledged",
                cfg.stream,
                self._unacked_frames(),
            )
            with self._acked_event:
                self._ingest_closed = True
                self._acked_event.notify_all()  # a send() waiting for a slot: give up
        self.stop_requested.set()

    def _apply_ack(self, upto: int, credit: int, *, rewind: bool) -> None:
        with self._acked_event:
            pending = self._pending
            while pending and pending[0].last <= upto:
                e = pending.popleft()
                if e.slot >= 0:
                    self._ring.release(e.slot)
                    self._c["frames_acked"] += 1
                else:
                    self._c["frames_in_acked_gaps"] += e.last - e.first + 1
                self._send_idx = max(0, self._send_idx - 1)
            if upto > self._acked_upto:
                self._acked_upto = upto
            self._credit_limit = self._acked_upto + credit
            if rewind:
                self._send_idx = 0
            self._acked_event.notify_all()

    def _pump(self) -> bool:
        """Send pending entries within credit; False when the socket refused (retry)."""
        cfg = self.config
        sock = self._sock
        zc_min = cfg.zero_copy_min_bytes
        with self._lock:
            pending = self._pending
            while self._send_idx < len(pending):
                e = pending[self._send_idx]
                if e.first > self._credit_limit:
                    return True
                if e.slot < 0 and e.last > self._credit_limit:
                    # the ingest accepts a gap only within the credit it gave: send
                    # the part up to the credit limit now, the rest as more comes
                    cut = self._credit_limit
                    pending[self._send_idx] = _Entry(e.first, cut, -1, None)
                    pending.insert(
                        self._send_idx + 1, _Entry(cut + 1, e.last, -1, None)
                    )
                    e = pending[self._send_idx]
                try:
                    if e.slot < 0:
                        sock.send_multipart(
                            encode_control(
                                "gap", stream=cfg.stream, first=e.first, last=e.last
                            ),
                            zmq.NOBLOCK,
                        )
                    else:
                        assert e.head is not None
                        raw = FrameHeaderEncoder.finish(e.head, time.time())
                        sock.send(raw, zmq.NOBLOCK | zmq.SNDMORE)
                        view = self._ring.view(e.slot)
                        big = view.nbytes >= zc_min
                        sock.send(view, 0, copy=not big)
                        self._c["frames_sent"] += 1
                        if e.sent:
                            self._c["frames_replayed"] += 1
                except zmq.Again:
                    return False
                e.sent = True
                self._send_idx += 1
        return True

    def _flush_open_gap(self) -> None:
        with self._lock:
            if self._open_gap is not None:
                self._add_gap(*self._open_gap)
                self._open_gap = None

    def _maybe_send_end(self) -> None:
        cfg = self.config
        with self._lock:
            if self._pending or self._open_gap is not None:
                return
            msg = encode_control(
                "end",
                stream=cfg.stream,
                upto=self._next_seq - 1,
                n=self._next_seq,  # seqs of the stream so far (first_seq + acquired)
                gap_frames=self._c["frames_in_gaps"],
            )
        try:
            self._sock.send_multipart(msg, zmq.NOBLOCK)
            self._end_sent = True
        except zmq.Again:
            pass
