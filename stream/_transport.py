"""The lossless frame path (source -> pipeline ingest): shared pieces, public names.

Public names (imported lazily from their modules, so this import stays cheap)::

    from livesr.stream._transport import (
        SourceLink, SourceLinkConfig,    # camera/adapter side (DEALER, connect)
        Ingest, IngestConfig,            # pipeline side (ROUTER, bind)
        RingOverflowError, TransportError,
    )

Protocol (all messages are :mod:`livesr.stream._wire` two-part messages)
-----------------------------------------------------------------------
source -> ingest:

- ``hello {stream, session, n, first, shape, dtype}``: (re)handshake; ``n`` is a
  nonce, ``first`` the oldest unacknowledged seq, ``session`` random per SourceLink
- ``frame``: header + raw pixels, in seq order, only within the credit
- ``gap {stream, first, last}``: frames lost to a ring overflow (in seq order)
- ``end {stream, upto, n, gap_frames}``: all ``n`` frames sent and acknowledged

ingest -> source:

- ``ready {stream, session, n, upto, credit}``: answer to hello ``n``: resume after
  ``upto`` (replay), send up to ``upto + credit``; ``n=0``: replay after ``upto``
- ``ack {stream, upto, credit}``: cumulative, everything <= ``upto`` is persisted
  (or a reported gap); batched (every ``ack_every`` frames or 1 ms idle)
- ``end_ack {stream, upto, summary}``: the ingest's counters for the stream
- ``stop {stream, session, reason, final}``: stop acquiring (the pipeline ends: run
  finished, interrupted, disk full...).  ``final=false``: the ingest still persists
  and acknowledges what was acquired; finish with ``end`` as usual.  ``final=true``:
  the ingest is closing now; nothing more will be acknowledged (the source closes
  without waiting and reports its unacknowledged frames).

The source may send seq ``s`` only when ``s <= acked_upto + credit``; it keeps every
unacknowledged frame in a :class:`~livesr.stream._replay_ring.ReplayRing` and, after
each ``ready``, re-sends from ``upto + 1`` in seq order.  A (re)connection (socket
monitor) or ``ack_timeout_s`` of silence with frames in flight triggers a new hello.
The ingest persists frames in seq order exactly once per (stream, seq), and counts
duplicates, out-of-order frames and credit violations.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING, Any

import zmq

if TYPE_CHECKING:  # the lazy public names, for type checkers
    from livesr.stream._ingest import Ingest, IngestConfig
    from livesr.stream._source_link import (
        RingOverflowError,
        SourceLink,
        SourceLinkConfig,
    )

__all__ = [
    "Ingest",
    "IngestConfig",
    "RingOverflowError",
    "SourceLink",
    "SourceLinkConfig",
    "TransportError",
]

_LAZY = {
    "SourceLink": "livesr.stream._source_link",
    "SourceLinkConfig": "livesr.stream._source_link",
    "RingOverflowError": "livesr.stream._source_link",
    "Ingest": "livesr.stream._ingest",
    "IngestConfig": "livesr.stream._ingest",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def field_int(obj: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """An integer control-message field in ``[lo, hi]``, else :class:`WireError`."""
    from livesr.stream._wire import WireError

    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise WireError(
            f"control field {key!r}={value!r} must be an integer in [{lo}, {hi}]"
        )
    return value
