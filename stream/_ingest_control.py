"""Control-message handling of the ingest (mixed into :class:`~livesr.stream._ingest.Ingest`).

``hello`` (handshake, session takeover, restart gaps), ``gap`` and ``end`` from the
sources; ``ready``, ``ack``, ``end_ack`` and ``stop`` to them.  Every field is read
through :mod:`livesr.stream._wire_control` and written through
:func:`~livesr.stream._wire.encode_control`.  The serving loop and the frames are in
:mod:`livesr.stream._ingest`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from livesr.stream._ingest_config import IngestConfig, OnEnd, OnGap
from livesr.stream._ingest_streams import _Reject, _Stale, _Stream
from livesr.stream._link_base import RateLimitedLog
from livesr.stream._wire import WireError, encode_control
from livesr.stream._wire_control import Hello, read_end, read_gap, read_hello

logger = logging.getLogger("livesr.stream._ingest")


class _IngestControl:
    """Control messages of an ingest (see the module docstring)."""

    # state shared with Ingest (set in Ingest.__init__/bind)
    config: IngestConfig
    _sock: zmq.Socket[Any] | None
    _streams: dict[str, _Stream]
    _peers: dict[bytes, str]
    _previous: list[dict[str, Any]]
    _lock: threading.Lock
    _resume: Callable[[str, str], int] | None
    _on_gap: OnGap | None
    _on_end: OnEnd | None
    _stop_reason: str | None
    _c: dict[str, int]
    _rlog: RateLimitedLog

    def _send_stop(self, st: _Stream, *, final: bool) -> None:
        if st.ended or not st.peer or (st.stop_sent and not final):
            return
        reason = self._stop_reason or "the ingest is closing"
        if self._send(
            st.peer,
            "stop",
            stream=st.name,
            session=st.session,
            reason=reason,
            final=final,
        ):
            st.stop_sent = True
            self._c["stop_sent"] += 1
            logger.info(
                "ingest: asked stream %s to stop%s: %s",
                st.name,
                " (final)" if final else "",
                reason,
            )

    # --- frames
    def _owner(self, peer: bytes, stream: Any) -> _Stream:
        st = self._streams.get(stream) if isinstance(stream, str) else None
        if st is None:
            raise _Reject(
                "unknown-stream", f"message for stream {stream!r} before its hello"
            )
        if st.peer != peer:
            if peer in st.old_peers:
                self._c["stale"] += 1
                raise _Stale
            raise _Reject(
                "wrong-peer", f"stream {stream!r} belongs to another connection"
            )
        st.last_seen = time.monotonic()
        return st

    # --- control
    def _on_control_msg(self, peer: bytes, obj: dict[str, Any]) -> None:
        kind = obj["kind"]
        if kind == "hello":
            self._on_hello(peer, obj)
            return
        if kind not in ("gap", "end"):
            raise _Reject(
                "unexpected", f"control kind {kind!r} is not sent to an ingest"
            )
        try:
            st = self._owner(peer, obj.get("stream"))
        except _Stale:
            return
        try:
            if kind == "gap":
                gap = read_gap(obj)
                first, last = gap.first, gap.last
                if st.ended and last >= st.expected:
                    raise _Reject(
                        "after-end",
                        f"stream {st.name!r}: gap {first}-{last} after the stream "
                        f"ended at seq {st.expected - 1}",
                    )
                if last > st.granted:
                    # the source may only report seqs within the credit it was given
                    # (a longer gap comes in credit-sized parts)
                    raise _Reject(
                        "gap-beyond-credit",
                        f"stream {st.name!r}: gap {first}-{last} reaches past seq "
                        f"{st.granted}, the last one the source was allowed to send",
                    )
                self._on_gap_msg(peer, st, first, last)
            else:
                end = read_end(obj)
                upto, acquired, gap_frames = end.upto, end.n, end.gap_frames
                if not st.reported_gap_frames <= gap_frames <= acquired:
                    raise _Reject(
                        "inconsistent",
                        f"stream {st.name!r}: end says {gap_frames} frame(s) in gaps; "
                        f"expected between the {st.reported_gap_frames} the source "
                        f"reported and the {acquired} it acquired",
                    )
                self._on_end_msg(peer, st, upto, acquired, gap_frames)
        except WireError as exc:
            raise _Reject("malformed", str(exc)) from None

    def _on_hello(self, peer: bytes, obj: dict[str, Any]) -> None:
        cfg = self.config
        hello = read_hello(obj)
        stream = hello.stream
        if hello.frame_bytes > cfg.max_frame_bytes:
            raise _Reject(
                "oversized",
                f"hello for {stream!r} declares {hello.shape[0]}x{hello.shape[1]} "
                f"{hello.dtype} = {hello.frame_bytes} bytes per frame > "
                f"max_frame_bytes={cfg.max_frame_bytes} (raise "
                "IngestConfig.max_frame_bytes)",
            )
        st = self._streams.get(stream)
        if st is not None and st.session != hello.session:
            self._check_takeover(st, peer, hello.session)
        elif st is not None and hello.first > st.expected:
            # the source's oldest unacknowledged seq lies beyond what was persisted
            # here: it would skip frames nobody acknowledged
            raise _Reject(
                "inconsistent",
                f"hello for {stream!r} (same session) resumes at seq {hello.first}, "
                f"but seq {st.expected} was never acknowledged",
            )
        st, restart_gap = self._adopt(peer, hello)
        if restart_gap is not None:
            logger.warning(
                "ingest: stream %s restarted at seq %d: frames %d-%d were never "
                "delivered (recorded as a gap)",
                stream,
                restart_gap[1] + 1,
                *restart_gap,
            )
            if self._on_gap is not None:
                self._on_gap(stream, *restart_gap)
        self._send(
            peer,
            "ready",
            stream=stream,
            session=hello.session,
            n=hello.n,
            upto=st.expected - 1,
            credit=cfg.window,
        )
        st.unacked = 0
        logger.info(
            "ingest: hello from stream %s, resuming at seq %d", stream, st.expected
        )
        if self._stop_reason is not None:  # stopping: tell a (re)connected source too
            st.stop_sent = False
            self._send_stop(st, final=False)

    def _adopt(
        self, peer: bytes, hello: Hello
    ) -> tuple[_Stream, tuple[int, int] | None]:
        """The stream's state after ``hello`` from ``peer``, and the frames skipped by
        a session that restarted further on (a gap), if any."""
        stream, session, first = hello.stream, hello.session, hello.first
        st = self._streams.get(stream)
        restart_gap: tuple[int, int] | None = None
        with self._lock:
            if st is None or st.session != session:
                if st is not None:
                    logger.info(
                        "ingest: stream %s restarted with a new session", stream
                    )
                    self._previous.append(st.summary())
                base = first
                if self._resume is not None:
                    base = max(base, int(self._resume(stream, session)) + 1)
                old = st
                st = _Stream(stream, session, base)
                if old is not None and base > old.expected:
                    # the source restarted further on (e.g. at the camera's frame
                    # counter): what lies between was never delivered, it is a gap
                    restart_gap = (old.expected, base - 1)
                    st.resumed_from = old.expected
                    st.gaps.append(list(restart_gap))
                    st.gap_frames += base - old.expected
                self._streams[stream] = st
            else:
                st.expected = max(st.expected, first)
            if st.peer and st.peer != peer:
                st.old_peers = (st.old_peers + [st.peer])[-8:]
                self._peers.pop(st.peer, None)
            st.peer = peer
            st.last_seen = time.monotonic()
            st.shape = hello.shape
            st.dtype = hello.dtype
            st.resync_at = -1
        self._peers[peer] = stream
        return st, restart_gap

    def _check_takeover(self, st: _Stream, peer: bytes, session: str) -> None:
        """Refuse a new session for ``st`` while its current session is alive.

        Alive: not ended, heard from within ``takeover_after_s``, and its connection
        still routable (ZeroMQ drops a disconnected peer's route, so a probe, a
        harmless repeat of the last ACK, fails with EHOSTUNREACH).
        """
        if st.ended or not st.peer or st.peer == peer:
            return
        silent = time.monotonic() - st.last_seen
        if silent >= self.config.takeover_after_s:
            return
        assert self._sock is not None
        try:
            self._sock.send_multipart(
                [
                    st.peer,
                    *encode_control(
                        "ack",
                        stream=st.name,
                        upto=st.expected - 1,
                        credit=self.config.window,
                    ),
                ],
                zmq.NOBLOCK,
            )
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return  # the current session's connection is gone
        raise _Reject(
            "session-conflict",
            f"hello for stream {st.name!r} with session {session!r}: session "
            f"{st.session!r} is still connected (last message {silent:.1f} s ago); "
            "a second source for a live stream is refused",
        )

    def _on_gap_msg(self, peer: bytes, st: _Stream, first: int, last: int) -> None:
        if last < st.expected:
            with self._lock:
                st.duplicates += 1
            st.unacked = max(st.unacked, 1)
            return
        if first != st.expected:
            with self._lock:
                st.out_of_order += 1
            if first > st.expected and st.resync_at != st.expected:
                st.resync_at = st.expected
                self._ask_replay(peer, st)
            return
        with self._lock:
            if st.gaps and st.gaps[-1][1] == first - 1:
                st.gaps[-1][1] = last  # a long gap arrives in credit-sized parts
            else:
                st.gaps.append([first, last])
            st.gap_frames += last - first + 1
            st.reported_gap_frames += last - first + 1
            st.expected = last + 1
        self._rlog.log(
            logging.WARNING,
            "gap",
            "ingest: stream %s lost frames %d-%d at the source (ring overflow)",
            st.name,
            first,
            last,
        )
        if self._on_gap is not None:
            self._on_gap(st.name, first, last)
        self._send_ack(st)

    def _ask_replay(self, peer: bytes, st: _Stream) -> None:
        """``ready`` with n=0: the source resends everything after what is persisted."""
        self._send(
            peer,
            "ready",
            stream=st.name,
            session=st.session,
            n=0,
            upto=st.expected - 1,
            credit=self.config.window,
        )

    def _on_end_msg(
        self, peer: bytes, st: _Stream, upto: int, acquired: int, gap_frames: int
    ) -> None:
        if st.expected - 1 != upto:
            # not everything arrived: ask for a replay from our point
            self._ask_replay(peer, st)
            return
        first_end = not st.ended
        with self._lock:
            st.ended = True
            st.acquired = acquired
            st.source_gap_frames = gap_frames
        summary = st.summary()
        brief = {k: v for k, v in summary.items() if k != "gaps"}  # fits in one header
        brief["n_gaps"] = len(summary["gaps"])
        self._send(peer, "end_ack", stream=st.name, upto=upto, summary=brief)
        if first_end:
            logger.info("ingest: stream %s ended: %s", st.name, summary)
            if self._on_end is not None:
                self._on_end(st.name, summary)

    # --- sending
    def _send_ack(self, st: _Stream) -> None:
        st.unacked = 0
        self._send(
            st.peer,
            "ack",
            stream=st.name,
            upto=st.expected - 1,
            credit=self.config.window,
        )

    def _send(self, peer: bytes, kind: str, **fields: Any) -> bool:
        """Send a control message to ``peer`` (no wait); False when it could not go."""
        assert self._sock is not None
        try:
            self._sock.send_multipart(
                [peer, *encode_control(kind, **fields)], zmq.NOBLOCK
            )
            if "credit" in fields:
                st = self._streams.get(fields["stream"])
                if st is not None:
                    st.granted = max(st.granted, fields["upto"] + fields["credit"])
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH (peer gone) or EAGAIN (HWM)
            self._c["control_send_failed"] += 1
            self._rlog.log(
                logging.INFO,
                "send",
                "ingest: could not send %s to a peer: %s",
                kind,
                exc,
            )
            return False
