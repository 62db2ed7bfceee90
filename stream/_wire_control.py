"""The control half of the livesr wire codec: typed readers of control messages.

:func:`livesr.stream._wire.decode_control` checks what every control message shares
(version, kind, integer fields non-negative, the stream id, a ``stop``'s reason); the
readers here check the fields of one kind and return them typed.  A receiver calls
the reader after it dispatched on ``kind`` and checked who sent the message, so each
rejection keeps its own reason.  A missing or wrong field raises
:class:`~livesr.stream._wire.WireError` naming it.  Both ends of the link
(:mod:`~livesr.stream._source_link`, :mod:`~livesr.stream._ingest`) read control
messages only through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesr.stream._wire import (
    _STREAM_RE,
    FRAME_DTYPES,
    MAX_CREDIT,
    MAX_SIDE,
    SEQ_MAX,
    _require,
    _stream_field,
    field_int,
)


@dataclass(frozen=True, slots=True)
class Hello:
    """``hello``: a source (re)handshakes; ``first`` is its oldest unacknowledged seq."""

    stream: str
    session: str
    n: int
    first: int
    shape: tuple[int, int]
    dtype: str

    @property
    def frame_bytes(self) -> int:
        return int(self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize)


@dataclass(frozen=True, slots=True)
class Credit:
    """``ready``, ``ack`` or ``credit``: everything <= ``upto`` is persisted; the source
    may send up to ``upto + credit``.  ``session`` and ``n`` come with ``ready`` only."""

    kind: str
    stream: str
    upto: int
    credit: int
    session: str | None
    n: int | None


@dataclass(frozen=True, slots=True)
class Gap:
    """``gap``: frames ``first..last`` were lost at the source."""

    stream: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class End:
    """``end``: the source acquired ``n`` seqs (``upto + 1``), ``gap_frames`` lost."""

    stream: str
    upto: int
    n: int
    gap_frames: int


@dataclass(frozen=True, slots=True)
class Stop:
    """``stop``: the pipeline asks the source to stop acquiring (``final``: closing)."""

    stream: str
    session: str | None
    reason: str
    final: bool


def _session_field(obj: Mapping[str, Any], kind: str) -> str:
    session = obj.get("session")
    _require(
        isinstance(session, str) and 1 <= len(session) <= 64,
        f"{kind}: 'session' must be a 1-64 character string, got {session!r}",
    )
    return str(session)


def read_hello(obj: Mapping[str, Any]) -> Hello:
    """The fields of a ``hello`` (see :class:`Hello`)."""
    stream = obj.get("stream")
    _require(
        isinstance(stream, str) and bool(_STREAM_RE.match(stream)),
        f"hello: 'stream' must be 1-64 of [A-Za-z0-9_.:-], got {stream!r}",
    )
    session = _session_field(obj, "hello")
    nonce = field_int(obj, "n", 0, SEQ_MAX)
    first = field_int(obj, "first", 0, SEQ_MAX)
    shape: Any = obj.get("shape")
    _require(
        isinstance(shape, list)
        and len(shape) == 2
        and all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SIDE
            for s in shape
        ),
        f"hello: 'shape' must be [rows, cols] in [1, {MAX_SIDE}], got {shape!r}",
    )
    dtype = obj.get("dtype")
    _require(dtype in FRAME_DTYPES, f"hello: 'dtype'={dtype!r} not in {FRAME_DTYPES}")
    return Hello(str(stream), session, nonce, first, (shape[0], shape[1]), str(dtype))


def read_credit(obj: Mapping[str, Any]) -> Credit:
    """The fields of a ``ready``, ``ack`` or ``credit`` (see :class:`Credit`)."""
    kind = obj.get("kind")
    _require(kind in ("ready", "ack", "credit"), f"expected ready/ack/credit, got {kind!r}")
    upto = field_int(obj, "upto", -1, SEQ_MAX)
    credit = field_int(obj, "credit", 1, MAX_CREDIT)
    session = obj.get("session")
    nonce = obj.get("n")
    return Credit(
        str(kind),
        _stream_field(obj),
        upto,
        credit,
        session if isinstance(session, str) else None,
        nonce if isinstance(nonce, int) and not isinstance(nonce, bool) else None,
    )


def read_gap(obj: Mapping[str, Any]) -> Gap:
    """The fields of a ``gap`` (``first <= last``)."""
    first = field_int(obj, "first", 0, SEQ_MAX)
    last = field_int(obj, "last", first, SEQ_MAX)
    return Gap(_stream_field(obj), first, last)


def read_end(obj: Mapping[str, Any]) -> End:
    """The fields of an ``end`` (``n == upto + 1``)."""
    upto = field_int(obj, "upto", -1, SEQ_MAX)
    acquired = field_int(obj, "n", 0, SEQ_MAX)
    gap_frames = field_int(obj, "gap_frames", 0, SEQ_MAX)
    _require(acquired == upto + 1, f"end: n={acquired} must be upto + 1 = {upto + 1}")
    return End(_stream_field(obj), upto, acquired, gap_frames)


def read_end_ack(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ingest's summary carried by an ``end_ack`` (``None`` when it has none)."""
    summary = obj.get("summary")
    return summary if isinstance(summary, dict) else None


def read_stop(obj: Mapping[str, Any]) -> Stop:
    """The fields of a ``stop`` (``reason`` and ``final`` checked by decode_control)."""
    session = obj.get("session")
    return Stop(
        _stream_field(obj),
        session if isinstance(session, str) else None,
        str(obj.get("reason")),
        bool(obj.get("final", False)),
    )
