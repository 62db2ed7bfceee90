"""Pipeline side of the lossless frame path: a ROUTER that persists, ACKs and dedups.

Usage::

    def on_frame(header, frame):       # persist (copy!) the frame; return when durable
        store.write(header.seq, frame)

    cfg = IngestConfig(endpoint="ipc:///tmp/livesr.ipc", window=16)
    with Ingest(cfg, on_frame, resume=store.last_seq) as ingest:  # bind + thread
        ...
    ingest.summary()["streams"]["cam0"]

``on_frame`` runs on the ingest thread, once per (stream, seq), in seq order; the
frame it gets is a read-only view of the received buffer, valid only during the call.
The ACK (cumulative, batched) is sent after it returns.  ``resume(stream, session) ->
int`` (optional) returns the last seq already persisted for that stream and source
session (-1 if none; :meth:`Ingest.session` tells ``on_frame`` the session): with it,
a restarted ingest resumes exactly where the store left off (exactly-once across
restarts); without it, frames persisted but not yet acknowledged when the ingest died
are delivered again (at most ``window`` of them).

Every message is validated; a malformed, inconsistent or unexpected one is counted
under its reason, logged (rate-limited) and dropped, and the stream goes on.

Stopping the sources: :meth:`Ingest.request_stop` (or a set ``stop_event``) sends a
``stop`` message to every live source, which stops acquiring and ends its stream
(``end``) as usual; ``close(stop_reason=..., drain_s=...)`` does the same and waits
up to ``drain_s`` for those streams to end before it closes (``stop final=true`` to
any still open).  A plain :meth:`Ingest.close` is abrupt (no message at all).

The module holds the lifecycle, the serving loop and the frames; control messages
are handled in :mod:`~livesr.stream._ingest_control`, per-stream state is in
:mod:`~livesr.stream._ingest_streams` and the configuration in
:mod:`~livesr.stream._ingest_config`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from livesr.stream._ingest_config import IngestConfig, OnEnd, OnFrame, OnGap
from livesr.stream._ingest_control import _IngestControl
from livesr.stream._ingest_streams import _Reject, _Stale, _Stream
from livesr.stream._keys import apply_server_keys, start_authenticator
from livesr.stream._link_base import (
    RateLimitedLog,
    TransportError,
    check_range,
    set_common_options,
)
from livesr.stream._wire import (
    MAX_REASON_CHARS,
    WireError,
    decode_control,
    decode_frame,
)

__all__ = ["Ingest", "IngestConfig", "OnEnd", "OnFrame", "OnGap"]

logger = logging.getLogger(__name__)

_EVENT_COUNTERS: dict[int, str] = {
    zmq.EVENT_DISCONNECTED: "disconnects",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake_failed_auth",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failed_protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed_other",
}
_MONITOR_EVENTS = sum(_EVENT_COUNTERS)


class Ingest(_IngestControl):
    """The pipeline end of the lossless frame path (see the module docstring).

    Parameters
    ----------
    config
        See :class:`IngestConfig`.
    on_frame
        ``on_frame(header, frame) -> None``: persist the frame; called once per
        (stream, seq) in seq order.  An exception leaves the frame unacknowledged (it
        will be sent again) and is counted as ``on_frame_errors``.
    on_gap
        ``on_gap(stream, first, last)``: frames the source lost to a ring overflow.
    on_end
        ``on_end(stream, summary)``: the source finished the stream.
    resume
        ``resume(stream, session) -> int``: last seq already persisted for ``stream``
        from the source session ``session`` (-1: none).  Sessions matter: a restarted
        source starts a new session at seq 0.
    context
        ZeroMQ context (default: a private one, terminated by :meth:`close`).
    stop_event
        When it is set (e.g. the pipeline's ``stop_requested``), every source is sent
        ``stop`` (reason: the one given to :meth:`request_stop`, else a generic one).
    """

    def __init__(
        self,
        config: IngestConfig,
        on_frame: OnFrame,
        *,
        on_gap: OnGap | None = None,
        on_end: OnEnd | None = None,
        resume: Callable[[str, str], int] | None = None,
        context: zmq.Context[Any] | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.config = config
        self._on_frame = on_frame
        self._stop_event = stop_event
        self._stop_reason: str | None = None
        self._stop_pending = False
        self._on_gap = on_gap
        self._on_end = on_end
        self._resume = resume
        self._ctx = context
        self._own_ctx = context is None
        self._sock: zmq.Socket[Any] | None = None
        self._monitor: zmq.Socket[Any] | None = None
        self._auth: Any = None
        self._thread: threading.Thread | None = None
        self._stop = False
        self._bell_r = self._bell_w = -1
        self._streams: dict[str, _Stream] = {}
        self._previous: list[dict[str, Any]] = []  # summaries of replaced sessions
        self._peers: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._rlog = RateLimitedLog(logger, min(1.0, config.log_interval_s))
        self._rejected: dict[str, int] = {}
        self._c = {
            "messages": 0,
            "stale": 0,
            "on_frame_errors": 0,
            "control_send_failed": 0,
            "disconnects": 0,
            "handshake_failed_auth": 0,
            "handshake_failed_protocol": 0,
            "handshake_failed_other": 0,
            "stop_sent": 0,
        }
        self._last_info = time.monotonic()
        self.endpoint = config.endpoint
        #: the serving thread died (a bug): nothing more is persisted or acknowledged
        self.failed = False
        #: what killed it (``None`` while it runs); see :attr:`failed`
        self.error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Ingest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bind(self) -> str:
        """Create and bind the ROUTER (no thread); returns the bound endpoint.

        Use with :meth:`serve` to run the ingest on your own thread, or call
        :meth:`start` instead.
        """
        if self._sock is not None:
            raise TransportError("Ingest is already bound")
        cfg = self.config
        if self._ctx is None:
            self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            set_common_options(
                sock,
                linger_ms=cfg.linger_ms,
                heartbeat_ivl_ms=cfg.heartbeat_ivl_ms,
                heartbeat_timeout_ms=cfg.heartbeat_timeout_ms,
            )
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.MAXMSGSIZE, cfg.effective_max_message_bytes)
            sock.setsockopt(zmq.RCVHWM, cfg.rcvhwm or 4 * cfg.window + 64)
            sock.setsockopt(zmq.SNDHWM, 1000)
            if cfg.curve is not None:
                self._auth = start_authenticator(self._ctx, cfg.curve)
                apply_server_keys(sock, cfg.curve)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
            monitor.setsockopt(zmq.LINGER, 0)
            self._monitor = monitor
            sock.bind(cfg.endpoint)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self._close_monitor(sock)
            sock.close(linger=0)
            self._teardown()
            raise TransportError(
                f"cannot bind the ingest to {cfg.endpoint!r}: {exc}"
            ) from exc
        except Exception:
            self._close_monitor(sock)
            sock.close(linger=0)
            self._teardown()
            raise
        self._sock = sock
        logger.info(
            "ingest bound to %s (window %d, curve %s)",
            self.endpoint,
            cfg.window,
            cfg.curve is not None,
        )
        return self.endpoint

    def start(self) -> Ingest:
        """Bind and serve on a background thread."""
        if self._thread is not None:
            raise TransportError("Ingest.start() called twice")
        if self._sock is None:
            self.bind()
        self._bell_r, self._bell_w = os.pipe()
        os.set_blocking(self._bell_r, False)
        self._thread = threading.Thread(
            target=self._run, name="livesr-ingest", daemon=True
        )
        self._thread.start()
        return self

    def request_stop(self, reason: str) -> None:
        """Ask every source to stop acquiring (a ``stop`` message; thread-safe).

        Sources connected now get it at once, sources that (re)connect later in
        answer to their hello.  The first reason given is the one sent.

        Parameters
        ----------
        reason
            Why (shown in the source's summary), e.g. ``"raw store failed: ..."``;
            cut to :data:`~livesr.stream._wire.MAX_REASON_CHARS` characters.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(
                f"Ingest.request_stop(reason={reason!r}): expected a non-empty string"
            )
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason.strip()[:MAX_REASON_CHARS]
            self._stop_pending = True
        if self._thread is not None:
            try:
                os.write(self._bell_w, b"s")
            except OSError:
                pass  # closing

    def _check_stop(self) -> None:
        """On the serving thread: send ``stop`` to every live stream not told yet."""
        ev = self._stop_event
        if ev is not None and ev.is_set() and self._stop_reason is None:
            self.request_stop("the pipeline stopped acquisition")
        if not self._stop_pending:
            return
        for st in list(self._streams.values()):
            self._send_stop(st, final=False)
        # cleared only once every stream is marked told: close(drain_s=...) waits
        # while a stop is pending or a told stream has not ended; cleared before
        # the sends, it saw neither and closed before the source's ``end`` came
        # (``source_ended`` false in the summary; seen beside a CPU hog)
        with self._lock:
            self._stop_pending = False


    def close(
        self, *, stop_reason: str | None = None, drain_s: float = 0.0
    ) -> dict[str, Any]:
        """Stop serving and close the socket.

        Parameters
        ----------
        stop_reason
            ``None`` (default): close at once, with no protocol goodbye (the sources
            keep their unacknowledged frames and reconnect to a restarted ingest).
            A text: first ask every live source to stop (:meth:`request_stop`), keep
            serving up to ``drain_s`` seconds until their streams ended (``end``),
            then tell the sources still open that nothing more will be acknowledged
            (``stop`` with ``final=true``).
        drain_s
            Seconds to wait for the stopped sources to end (0..600).

        Returns :meth:`summary`.  Safe to call twice.
        """
        check_range("Ingest.close", "drain_s", drain_s, 0.0, 600.0)
        if stop_reason is not None and self._thread is not None:
            self.request_stop(stop_reason)
            deadline = time.monotonic() + drain_s
            while time.monotonic() < deadline and self._thread.is_alive():
                with self._lock:
                    told = [
                        st
                        for st in self._streams.values()
                        if st.stop_sent and not st.ended
                    ]
                    quiet = not self._stop_pending
                if quiet and not told:
                    break
                time.sleep(0.01)
        if self._thread is not None:
            self._stop = True
            os.write(self._bell_w, b"x")
            self._thread.join(10.0)
            if self._thread.is_alive():  # pragma: no cover - on_frame stuck
                logger.error(
                    "ingest thread did not stop within 10 s (on_frame blocked?)"
                )
            self._thread = None
            os.close(self._bell_r)
            os.close(self._bell_w)
        if self._sock is not None and stop_reason is not None:
            for st in list(self._streams.values()):
                self._send_stop(st, final=True)  # best effort: the sources end now
        if self._sock is not None:
            self._close_monitor(self._sock)
            self._sock.close()
            self._sock = None
        self._teardown()
        summary = self.summary()
        logger.info("ingest closed: %s", str(summary))
        return summary

    def _close_monitor(self, sock: zmq.Socket[Any]) -> None:
        if self._monitor is not None:
            sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None

    def _drain_monitor(self) -> None:
        """Count connection events; log failed handshakes (rate-limited)."""
        monitor = self._monitor
        if monitor is None:
            return
        while True:
            try:
                msg = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = int.from_bytes(msg[0][:2], "little")
            key = _EVENT_COUNTERS.get(event)
            if key is None:
                continue
            with self._lock:
                self._c[key] += 1
            if key != "disconnects":
                peer = msg[1].decode(errors="replace") if len(msg) > 1 else "?"
                self._rlog.log(
                    logging.WARNING,
                    key,
                    "ingest %s: %s from %s (unauthorised or misconfigured client)",
                    self.endpoint,
                    key.replace("_", " "),
                    peer,
                )

    def _teardown(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def session(self, stream: str) -> str | None:
        """The source session now feeding ``stream`` (for ``on_frame``, ``resume``)."""
        st = self._streams.get(stream)
        return st.session if st is not None else None

    # ------------------------------------------------------------------ counters
    def summary(self) -> dict[str, Any]:
        """Counters: ``streams`` (per stream), ``rejected`` (total) and by reason."""
        with self._lock:
            return {
                "endpoint": self.endpoint,
                "streams": {name: st.summary() for name, st in self._streams.items()},
                "previous_sessions": [dict(p) for p in self._previous],
                "rejected": sum(self._rejected.values()),
                "rejected_by_reason": dict(self._rejected),
                **self._c,
                "failed": self.failed,
                "error": self.error,
            }

    # ------------------------------------------------------------------ serving
    def _run(self) -> None:
        assert self._sock is not None
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._bell_r, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self._stop:
                # ACK every ack_every frames, or once the socket is idle for 1 ms
                waiting = any(st.unacked for st in self._streams.values())
                events = dict(poller.poll(1 if waiting else 100))
                if self._bell_r in events:
                    try:
                        os.read(self._bell_r, 4096)
                    except BlockingIOError:
                        pass
                self._check_stop()
                if not events:
                    self._flush_acks()
                    continue
                if self._stop:
                    break
                self.serve(0, flush=False)
        except BaseException as exc:  # a bug: make it visible to the pipeline
            self.error = f"{type(exc).__name__}: {exc}"
            self.failed = True
            logger.exception("ingest thread failed; nothing more is persisted")

    def serve(self, timeout_ms: int = 100, *, flush: bool = True) -> int:
        """Handle every message available (waiting up to ``timeout_ms`` for the first).

        Returns the number of messages handled.  Only for a bound ingest that was not
        started with :meth:`start` (or from its own thread).  With ``flush`` (default),
        pending ACKs are sent before returning.
        """
        sock = self._sock
        if sock is None:
            raise TransportError("Ingest.serve(): call bind() first")
        self._drain_monitor()
        if timeout_ms and not sock.poll(timeout_ms, zmq.POLLIN):
            self._periodic_log()
            return 0
        handled = 0
        ack_every = self.config.effective_ack_every
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            handled += 1
            self._c["messages"] += 1
            self._handle(parts, ack_every)
            if handled >= 4096 or self._stop:
                break
        self._check_stop()
        if flush:
            self._flush_acks()
        self._periodic_log()
        return handled

    def _flush_acks(self) -> None:
        for st in list(self._streams.values()):
            if st.unacked:
                self._send_ack(st)

    def _periodic_log(self) -> None:
        now = time.monotonic()
        if now - self._last_info >= self.config.log_interval_s:
            self._last_info = now
            if logger.isEnabledFor(logging.INFO):
                logger.info("ingest %s: %s", self.endpoint, self.summary())

    def _reject(self, key: str, message: str) -> None:
        with self._lock:
            self._rejected[key] = self._rejected.get(key, 0) + 1
        self._rlog.log(
            logging.WARNING, key, "ingest: dropped a message (%s): %s", key, message
        )

    def _handle(self, parts: list[Any], ack_every: int) -> None:
        try:
            if len(parts) not in (2, 3):
                raise _Reject(
                    "parts", f"expected [header, payload], got {len(parts) - 1} part(s)"
                )
            peer = parts[0].bytes
            body = parts[1:]
            try:
                if (
                    len(body) == 2 and len(body[1]) > 0
                ):  # frames carry pixels, controls none
                    self._on_frame_msg(peer, body, ack_every)
                else:
                    self._on_control_msg(peer, decode_control(body))
            except WireError as exc:
                raise _Reject("malformed", str(exc)) from None
        except _Reject as rej:
            self._reject(rej.key, str(rej))
        except Exception as exc:  # never let one message kill the ingest
            with self._lock:
                self._rejected["internal-error"] = (
                    self._rejected.get("internal-error", 0) + 1
                )
            self._rlog.log(
                logging.ERROR,
                "internal-error",
                "ingest: dropped a message after an unexpected error: %r",
                exc,
            )


    def _on_frame_msg(self, peer: bytes, body: list[Any], ack_every: int) -> None:
        if len(body) != 2:
            raise _Reject("parts", "frame message without payload")
        header, frame = decode_frame(body)
        try:
            st = self._owner(peer, header.stream)
        except _Stale:
            return
        if header.shape != st.shape or header.dtype != st.dtype:
            raise _Reject(
                "inconsistent",
                f"stream {st.name!r} seq {header.seq}: frame {header.shape} "
                f"{header.dtype} "
                f"differs from the hello's {st.shape} {st.dtype}",
            )
        seq = header.seq
        if st.ended and seq >= st.expected:
            raise _Reject(
                "after-end",
                f"stream {st.name!r} seq {seq}: the stream ended at seq "
                f"{st.expected - 1} (a new acquisition starts a new session)",
            )
        if seq > st.granted:  # the source must never exceed its credit
            with self._lock:
                st.credit_violations += 1
        if seq < st.expected:
            with self._lock:
                st.duplicates += 1
            st.unacked = max(st.unacked, 1)  # re-ACK so the source frees it
            return
        if seq > st.expected:
            with self._lock:
                st.out_of_order += 1
            if st.resync_at != st.expected:  # once per hole: ask for a replay
                st.resync_at = st.expected
                self._ask_replay(peer, st)
            return
        try:
            stored = self._on_frame(header, frame)
        except Exception as exc:
            self._c["on_frame_errors"] += 1
            self._rlog.log(
                logging.ERROR,
                "on_frame",
                "ingest: on_frame failed for %s seq %d: %r (not acknowledged; it "
                "will be sent again)",
                st.name,
                seq,
                exc,
            )
            return
        with self._lock:
            st.expected = seq + 1
            if stored is False:
                # the pipeline could not write it and recorded it as a gap: it is
                # acknowledged (resending cannot help) but never counted as persisted
                st.lost_at_pipeline += 1
            else:
                st.persisted += 1
        st.unacked += 1
        if st.unacked >= ack_every:
            self._send_ack(st)
