"""The livesr wire format: two-part ZeroMQ messages ``[header, payload]``.

Part 0 is a small UTF-8 JSON object (at most :data:`MAX_HEADER_BYTES`); part 1 is the raw
C-contiguous frame (sent zero-copy by the transport) or empty for control messages.
No pickle anywhere: a header is plain JSON and every field is checked here, so a
malformed, inconsistent or oversized message is rejected with a :class:`WireError`
naming what was wrong, and the stream goes on.

Header fields of a ``frame`` message
------------------------------------
``v``             protocol version (int, :data:`PROTOCOL_VERSION`)
``kind``          ``"frame"``
``stream``        stream id (str, 1-64 printable characters)
``seq``           sequence number within the stream (int, 0 <= seq < 2**63)
``t_acq``         acquisition time, seconds since the epoch (float)
``t_send``        send time, seconds since the epoch (float)
``shape``         ``[rows, cols]`` (ints, 1..65536)
``dtype``         one of :data:`FRAME_DTYPES`
``pixel_size_um`` pixel size in the sample plane, micrometres (float > 0)
``meta``          acquisition metadata (JSON object; pymmcore-plus keys allowed)

Control messages (``kind`` in :data:`CONTROL_KINDS`) carry their own small set of
fields (see :func:`decode_control`) and an empty payload.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 4096
MAX_SIDE = 65536
FRAME_DTYPES = ("uint8", "uint16", "uint32", "float32", "float64")
CONTROL_KINDS = ("hello", "credit", "ack", "gap", "end", "end_ack", "ready", "stop")
#: longest ``reason`` text a ``stop`` message may carry (characters)
MAX_REASON_CHARS = 256
_STREAM_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_SEQ_MAX = 2**63 - 1


class WireError(ValueError):
    """A message that does not follow the livesr wire format."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameHeader:
    """Validated header of one frame message (see the module docstring)."""

    stream: str
    seq: int
    shape: tuple[int, int]
    dtype: str
    pixel_size_um: float
    t_acq: float
    t_send: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Payload size in bytes implied by ``shape`` and ``dtype``."""
        return int(self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "kind": "frame",
            "stream": self.stream,
            "seq": self.seq,
            "t_acq": self.t_acq,
            "t_send": self.t_send,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "pixel_size_um": self.pixel_size_um,
            "meta": dict(self.meta),
        }


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise WireError(message)


def _int_field(obj: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    _require(
        isinstance(value, int) and not isinstance(value, bool),
        f"header field {key!r} must be an integer, got {value!r}",
    )
    _require(lo <= value <= hi, f"header field {key!r}={value} outside [{lo}, {hi}]")
    return int(value)


def _float_field(obj: Mapping[str, Any], key: str, *, positive: bool = False) -> float:
    value = obj.get(key)
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool),
        f"header field {key!r} must be a number, got {value!r}",
    )
    value = float(value)
    _require(math.isfinite(value), f"header field {key!r} must be finite, got {value}")
    if positive:
        _require(value > 0, f"header field {key!r} must be > 0, got {value}")
    return value


def _stream_field(obj: Mapping[str, Any]) -> str:
    value = obj.get("stream")
    _require(
        isinstance(value, str) and bool(_STREAM_RE.match(value)),
        f"header field 'stream' must be 1-64 characters of [A-Za-z0-9_.:-], got {value!r}",
    )
    return str(value)


def _no_constant(name: str) -> Any:
    """``json.loads`` hook: ``NaN``/``Infinity`` are not JSON; refuse them."""
    raise WireError(
        f"header holds {name}, which is not valid JSON (numbers must be finite)"
    )


def _parse_json(raw: bytes | memoryview) -> dict[str, Any]:
    _require(
        len(raw) <= MAX_HEADER_BYTES,
        f"header is {len(raw)} bytes; at most {MAX_HEADER_BYTES} allowed",
    )
    try:
        obj = json.loads(bytes(raw).decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not UTF-8 JSON: {exc}") from None
    except RecursionError:  # e.g. 2000 nested '[': the parser recurses per level
        raise WireError("header JSON is nested too deeply") from None
    _require(isinstance(obj, dict), f"header must be a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    _require(
        version == PROTOCOL_VERSION and not isinstance(version, bool),
        f"protocol version {version!r} not supported; expected {PROTOCOL_VERSION}",
    )
    return obj


def decode_header(raw: bytes | memoryview) -> dict[str, Any]:
    """Parse part 0 of any message into a JSON dict with a checked ``v`` and ``kind``."""
    obj = _parse_json(raw)
    kind = obj.get("kind")
    _require(
        kind == "frame" or kind in CONTROL_KINDS,
        f"unknown message kind {kind!r}; expected 'frame' or one of {', '.join(CONTROL_KINDS)}",
    )
    return obj


def decode_frame(parts: Sequence[bytes | memoryview | Any]) -> tuple[FrameHeader, np.ndarray]:
    """Validate a ``[header, payload]`` frame message and return the header and a view.

    Parameters
    ----------
    parts
        The message parts (bytes, memoryviews or ``zmq.Frame`` objects with ``.buffer``).

    Returns
    -------
    header, frame
        The checked header and a read-only ``(rows, cols)`` array viewing the payload
        (no copy).

    Raises
    ------
    WireError
        If anything about the message is wrong; the message says what.
    """
    _require(len(parts) == 2, f"frame message must have 2 parts, got {len(parts)}")
    raw_header, raw_payload = (getattr(p, "buffer", p) for p in parts)
    obj = _parse_json(raw_header)
    _require(obj.get("kind") == "frame", f"expected kind 'frame', got {obj.get('kind')!r}")
    shape = obj.get("shape")
    _require(
        isinstance(shape, list) and len(shape) == 2,
        f"header field 'shape' must be [rows, cols], got {shape!r}",
    )
    rows, cols = (
        _int_field({"shape[0]": shape[0]}, "shape[0]", 1, MAX_SIDE),
        _int_field({"shape[1]": shape[1]}, "shape[1]", 1, MAX_SIDE),
    )
    dtype = obj.get("dtype")
    _require(
        dtype in FRAME_DTYPES,
        f"header field 'dtype'={dtype!r} not supported; expected one of {', '.join(FRAME_DTYPES)}",
    )
    meta = obj.get("meta", {})
    _require(isinstance(meta, dict), f"header field 'meta' must be an object, got {meta!r}")
    header = FrameHeader(
        stream=_stream_field(obj),
        seq=_int_field(obj, "seq", 0, _SEQ_MAX),
        shape=(rows, cols),
        dtype=str(dtype),
        pixel_size_um=_float_field(obj, "pixel_size_um", positive=True),
        t_acq=_float_field(obj, "t_acq"),
        t_send=_float_field(obj, "t_send") if "t_send" in obj else 0.0,
        meta=meta,
    )
    payload = memoryview(raw_payload)
    _require(
        payload.nbytes == header.nbytes,
        f"payload is {payload.nbytes} bytes; header {rows}x{cols} {dtype} implies {header.nbytes}",
    )
    frame = np.frombuffer(payload, dtype=dtype).reshape(rows, cols)
    return header, frame


def encode_frame(header: FrameHeader, frame: np.ndarray) -> list[Any]:
    """Build the two parts of a frame message (the payload is the array's own buffer).

    Raises
    ------
    WireError
        If ``frame`` does not match ``header`` (shape, dtype) or is not C-contiguous.
    """
    _require(
        frame.shape == tuple(header.shape) and frame.dtype == np.dtype(header.dtype),
        f"frame {frame.shape} {frame.dtype} does not match header {header.shape} {header.dtype}",
    )
    _require(frame.flags.c_contiguous, "frame must be C-contiguous (use np.ascontiguousarray)")
    raw = json.dumps(header.to_json(), separators=(",", ":"), allow_nan=False).encode()
    _require(len(raw) <= MAX_HEADER_BYTES, f"header is {len(raw)} bytes; metadata too large")
    return [raw, frame]


def encode_control(kind: str, **fields: Any) -> list[bytes]:
    """Build a control message (``hello``, ``credit``, ``ack``, ``gap``, ``end``, ...)."""
    _require(kind in CONTROL_KINDS, f"unknown control kind {kind!r}")
    body = {"v": PROTOCOL_VERSION, "kind": kind, **fields}
    raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    _require(len(raw) <= MAX_HEADER_BYTES, f"control message is {len(raw)} bytes; too large")
    return [raw, b""]


def decode_control(parts: Sequence[bytes | memoryview | Any], kind: str | None = None) -> dict[str, Any]:
    """Validate a control message; check ``kind`` when given.  Integer fields named
    ``seq``, ``first``, ``last``, ``n``, ``upto``, ``credit`` must be non-negative ints."""
    _require(len(parts) in (1, 2), f"control message must have 1-2 parts, got {len(parts)}")
    obj = decode_header(getattr(parts[0], "buffer", parts[0]))
    _require(obj["kind"] != "frame", "expected a control message, got a frame")
    if kind is not None:
        _require(obj["kind"] == kind, f"expected control kind {kind!r}, got {obj['kind']!r}")
    for key in ("seq", "first", "last", "n", "upto", "credit"):
        if key in obj and obj[key] is not None:
            _int_field(obj, key, -1 if key == "upto" else 0, _SEQ_MAX)
    if "stream" in obj:
        _stream_field(obj)
    if obj["kind"] == "stop":
        reason = obj.get("reason")
        _require(
            isinstance(reason, str) and 1 <= len(reason) <= MAX_REASON_CHARS,
            f"stop: 'reason' must be a 1-{MAX_REASON_CHARS} character string, "
            f"got {reason!r}",
        )
        _require(
            isinstance(obj.get("final", False), bool),
            f"stop: 'final' must be true or false, got {obj.get('final')!r}",
        )
    return obj
