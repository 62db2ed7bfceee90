"""Lossy results fan-out: a PUB that never blocks and a SUB that keeps only the newest.

Usage::

    pub = ResultPublisher("ipc:///tmp/results.ipc").start()
    pub.publish([header_bytes, image])          # never blocks; drops for slow viewers

    sub = LatestSubscriber("ipc:///tmp/results.ipc").start()
    parts = sub.latest(timeout_ms=100)          # newest message or None
    sub.dropped                                 # messages skipped by draining

A viewer can never slow the pipeline: the PUB has a tiny send high-water mark and drops
messages for a subscriber whose queue is full (ZeroMQ PUB semantics); the subscriber
drains everything queued and returns only the last complete multipart message.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from livesr.stream._endpoints import parse_endpoint, require_secure
from livesr.stream._keys import (
    CurveClientKeys,
    CurveServerKeys,
    apply_client_keys,
    secure_server,
)
from livesr.stream._link_base import TransportError

logger = logging.getLogger(__name__)


class ResultPublisher:
    """PUB socket (bind) with ``SNDHWM`` ``hwm`` (2-4 recommended).

    Parameters
    ----------
    endpoint
        Where to bind; non-loopback TCP requires ``curve``.
    curve
        Server CURVE keys and allow-list.  A ZAP authenticator is started on the
        context unless one already runs there (e.g. the ingest's, same allow-list).
    hwm
        Send high-water mark in messages (1..64).
    zero_copy_min_bytes
        Parts at least this large are sent without copying.
    context
        ZeroMQ context (default: a private one, terminated by :meth:`close`).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        hwm: int = 2,
        zero_copy_min_bytes: int = 65536,
        linger_ms: int = 0,
        curve: CurveServerKeys | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        ep = parse_endpoint(endpoint, for_bind=True)
        require_secure(ep, curve=curve is not None, role="bind")
        self._curve = curve
        self._auth: Any = None
        if isinstance(hwm, bool) or not isinstance(hwm, int) or not 1 <= hwm <= 64:
            raise ValueError(
                f"ResultPublisher hwm={hwm!r} is not valid; expected an int in [1, 64]"
            )
        self.endpoint = endpoint
        self.hwm = hwm
        self._zc = zero_copy_min_bytes
        self._linger = linger_ms
        self._ctx = context
        self._own_ctx = context is None
        self._sock: zmq.Socket[Any] | None = None
        #: messages handed to ZeroMQ (it may still drop them for slow subscribers)
        self.published = 0
        self._latest: list[Any] | None = None
        #: topics with at least one subscriber (from XPUB subscription messages)
        self._topics: set[bytes] = set()

    def start(self) -> ResultPublisher:
        """Bind the PUB socket; returns self (``endpoint`` is the bound address)."""
        if self._ctx is None:
            self._ctx = zmq.Context()
        # XPUB sends exactly like PUB and also reports (un)subscriptions, so the
        # publisher knows whether anyone listens (see resend_latest)
        sock = self._ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.LINGER, self._linger)
        sock.setsockopt(zmq.SNDHWM, self.hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, 4096)  # subscribers only send subscriptions
        try:
            if self._curve is not None:
                self._auth = secure_server(self._ctx, sock, self._curve)
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._stop_auth()
            if self._own_ctx:
                self._ctx.term()
                self._ctx = None
            raise TransportError(
                f"cannot bind the result publisher to {self.endpoint!r}: {exc}"
            ) from exc
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        return self

    def __enter__(self) -> ResultPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(self, parts: list[Any]) -> None:
        """Send a multipart message to every subscriber that keeps up; never blocks."""
        sock = self._sock
        if sock is None:
            raise TransportError("ResultPublisher.publish(): call start() first")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            nbytes = (
                memoryview(part).nbytes if not isinstance(part, bytes) else len(part)
            )
            flags = zmq.NOBLOCK | (zmq.SNDMORE if i < last else 0)
            sock.send(part, flags, copy=nbytes < self._zc)
        self.published += 1
        self._latest = parts
        self._read_subscriptions()

    def _read_subscriptions(self) -> None:
        sock = self._sock
        while sock is not None and sock.poll(0, zmq.POLLIN):
            msg = sock.recv(zmq.NOBLOCK)
            if msg[:1] == b"\x01":
                self._topics.add(bytes(msg[1:]))
            elif msg[:1] == b"\x00":
                self._topics.discard(bytes(msg[1:]))

    @property
    def has_subscribers(self) -> bool:
        """Whether a subscriber is connected (as last reported by ZeroMQ)."""
        self._read_subscriptions()
        return bool(self._topics)

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def resend_latest(self, *, timeout_s: float = 10.0, poll_s: float = 0.01) -> int:
        """Re-send the newest message until it has left this process for every
        subscriber (or ``timeout_s`` passes).

        A PUB drops the *newest* message for a subscriber whose queue is full, so a
        viewer busy drawing when the last image of a run was published would keep
        showing an older one -- and a message still queued in this process when the
        socket closes is lost with it.  Here the socket is switched to
        ``XPUB_NODROP`` (a send that finds a subscriber's queue full fails with
        ``EAGAIN`` instead of being dropped) and the message is sent ``hwm + 2``
        times, each retried every ``poll_s`` until queued: the send queue holds at
        most ``hwm`` messages and the connection's encoder one more, so once the
        last copy is queued the first has been handed to the operating system
        (ipc/tcp socket buffer, readable by the subscriber after this socket has
        closed).  Subscribers see the message again (same header): a redraw, and
        their newest-only drain collapses the copies.  Nothing is sent (and no time
        spent) when no subscriber is connected.

        Returns
        -------
        int
            Copies sent (``hwm + 2`` when the message surely left; fewer when a
            subscriber did not read for ``timeout_s``).
        """
        sock = self._sock
        if sock is None or self._latest is None or not self.has_subscribers:
            return 0
        import time

        copies = self.hwm + 2
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        deadline = time.monotonic() + timeout_s
        sent = 0
        try:
            while sent < copies:
                try:
                    self.publish(self._latest)
                except zmq.Again:
                    if time.monotonic() >= deadline:
                        logger.warning(
                            "a results subscriber did not read for %.1f s; it may "
                            "miss the final image",
                            timeout_s,
                        )
                        break
                    time.sleep(poll_s)
                    continue
                self.published -= 1  # a repeat is not a new message
                sent += 1
        finally:
            sock.setsockopt(zmq.XPUB_NODROP, 0)
        logger.info(
            "newest results message re-sent %d time(s) in %.2f s at close",
            sent,
            time.monotonic() - deadline + timeout_s,
        )
        return sent

    def close(self, *, resend_latest: bool = False, timeout_s: float = 10.0) -> None:
        """Close the socket.

        With ``resend_latest`` (and a subscriber connected) the newest message is
        re-sent first until it has left the process (see :meth:`resend_latest`,
        at most ``timeout_s``); the copies still queued get 1 s to follow.
        """
        if self._sock is not None:
            if resend_latest and self.resend_latest(timeout_s=timeout_s):
                self._sock.setsockopt(zmq.LINGER, max(self._linger, 1000))
            self._sock.close()
            self._sock = None
        self._stop_auth()
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None


class LatestSubscriber:
    """SUB socket (connect) that returns only the newest message (conflate by draining).

    Parameters
    ----------
    endpoint
        Publisher endpoint.
    topic
        Subscription prefix of the first part (default: everything).
    hwm
        Receive high-water mark (messages).
    curve
        Client CURVE keys (required for a non-loopback endpoint).
    context
        ZeroMQ context (default: a private one, terminated by :meth:`close`).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        topic: bytes = b"",
        hwm: int = 2,
        curve: CurveClientKeys | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        require_secure(
            parse_endpoint(endpoint), curve=curve is not None, role="connect to"
        )
        self._curve = curve
        if isinstance(hwm, bool) or not isinstance(hwm, int) or not 1 <= hwm <= 64:
            raise ValueError(
                f"LatestSubscriber hwm={hwm!r} is not valid; expected an int in [1, 64]"
            )
        self.endpoint = endpoint
        self.topic = topic
        self.hwm = hwm
        self._ctx = context
        self._own_ctx = context is None
        self._sock: zmq.Socket[Any] | None = None
        #: messages received, and skipped because a newer one was queued behind them
        self.received = 0
        self.dropped = 0

    def start(self) -> LatestSubscriber:
        if self._ctx is None:
            self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self.hwm)
        sock.setsockopt(zmq.SUBSCRIBE, self.topic)
        if self._curve is not None:
            apply_client_keys(sock, self._curve)
        sock.connect(self.endpoint)
        self._sock = sock
        return self

    def __enter__(self) -> LatestSubscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def latest(self, timeout_ms: int = 0) -> list[zmq.Frame] | None:
        """Wait up to ``timeout_ms`` for a message, drain, return the newest or None."""
        sock = self._sock
        if sock is None:
            raise TransportError("LatestSubscriber.latest(): call start() first")
        if not sock.poll(timeout_ms, zmq.POLLIN):
            return None
        newest: list[zmq.Frame] | None = None
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if newest is not None:
                self.dropped += 1
            newest = parts
            self.received += 1
        return newest

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None
