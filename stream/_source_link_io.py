"""The I/O-thread half of :class:`~livesr.stream._source_link.SourceLink`.

The producer half (``send``/``reserve``/``commit``, lifecycle, counters) lives in
:mod:`livesr.stream._source_link`; this half owns the socket once the thread runs: it
handshakes, transmits within the ingest's credit, frees ring slots on cumulative ACKs,
replays after every (re)handshake and ends the stream.  Both halves share the state
declared on :class:`_LinkIO` under ``_lock``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import zmq

from livesr.stream._link_base import RateLimitedLog
from livesr.stream._replay_ring import ReplayRing
from livesr.stream._source_link_config import SourceLinkConfig
from livesr.stream._wire import (
    FrameHeaderEncoder,
    PreparedHeader,
    WireError,
    decode_control,
    encode_control,
)
from livesr.stream._wire_control import Credit, read_credit, read_end_ack, read_stop

logger = logging.getLogger("livesr.stream._source_link")


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


class _LinkIO:
    """The I/O thread of a source link (mixed into ``SourceLink``)."""

    # state shared with the producer half (set in SourceLink.__init__/start)
    config: SourceLinkConfig
    stop_requested: threading.Event
    _lock: threading.Lock
    _acked_event: threading.Condition
    _ring: ReplayRing
    _pending: deque[_Entry]
    _send_idx: int
    _next_seq: int
    _open_gap: list[int] | None
    _gaps: list[list[int]]
    _c: dict[str, int]
    _rlog: RateLimitedLog
    _session: str
    _sock: zmq.Socket[Any]
    _monitor: zmq.Socket[Any]
    _bell_r: int
    _bell_w: int
    _abort: bool
    _finishing: bool
    _io_idle: bool
    _stop_reason: str | None
    _ingest_closed: bool
    # protocol state (I/O thread)
    _ready: bool
    _nonce: int
    _acked_upto: int
    _credit_limit: int
    _end_sent: bool
    _end_acked: bool
    _ingest_summary: dict[str, Any] | None

    if TYPE_CHECKING:

        def summary(self) -> dict[str, Any]: ...

    def _add_gap(self, first: int, last: int) -> None:
        self._pending.append(_Entry(first, last, -1, None))
        self._gaps.append([first, last])

    def _unacked_frames(self) -> int:
        return sum(1 for e in list(self._pending) if e.slot >= 0)

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
            events = dict(poller.poll(math.ceil(timeout * 1000.0)))
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
                        # an ndarray is a buffer; pyzmq's stubs do not say so
                        sock.send(view, 0, copy=not big)  # type: ignore[call-overload]
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
