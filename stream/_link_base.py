"""Pieces both ends of the lossless frame path share (below both of them).

:mod:`livesr.stream._source_link` (the source's DEALER) and
:mod:`livesr.stream._ingest` (the pipeline's ROUTER) import these; the facade
:mod:`livesr.stream._transport` re-exports them with the two ends' public names.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq


class TransportError(RuntimeError):
    """The link cannot work as configured (bind/connect failure, closed link...)."""


class RateLimitedLog:
    """Log one message per key at most every ``interval_s`` seconds; count the rest.

    Parameters
    ----------
    logger
        Where to log.
    interval_s
        Minimum seconds between two messages with the same key.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._interval = float(interval_s)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        hidden = self._suppressed.pop(key, 0)
        if hidden:
            message += " (%d similar messages suppressed)"
            args = (*args, hidden)
        self._logger.log(level, message, *args)


def set_common_options(
    sock: zmq.Socket[Any],
    *,
    linger_ms: int,
    heartbeat_ivl_ms: int,
    heartbeat_timeout_ms: int,
) -> None:
    """LINGER and ZMTP heartbeats (so a dead TCP peer is noticed and reconnected)."""
    sock.setsockopt(zmq.LINGER, linger_ms)
    if heartbeat_ivl_ms > 0:
        sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, heartbeat_timeout_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, heartbeat_timeout_ms)


def check_range(owner: str, name: str, value: Any, lo: float, hi: float) -> None:
    """Raise ``ValueError`` naming ``owner.name``, its value and the valid range."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not lo <= value <= hi
    ):
        raise ValueError(
            f"{owner}.{name}={value!r} is not valid; expected a number in [{lo}, {hi}]"
        )
