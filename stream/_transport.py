"""The lossless frame path (source -> pipeline ingest): the protocol, public names.

A facade above both ends: the shared pieces live in :mod:`livesr.stream._link_base`
(re-exported here), the codec in :mod:`livesr.stream._wire`; neither end imports this
module.  Public names (the ends imported lazily, so this import stays cheap)::

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
from typing import TYPE_CHECKING, Any

from livesr.stream._link_base import (
    RateLimitedLog,
    TransportError,
    check_range,
    set_common_options,
)

if TYPE_CHECKING:  # the lazy public names, for type checkers
    from livesr.stream._ingest import Ingest, IngestConfig
    from livesr.stream._source_link import (
        RingOverflowError,
        SourceLink,
        SourceLinkConfig,
    )

__all__ = [
    "RateLimitedLog",
    "check_range",
    "set_common_options",
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
