"""The results-stream codec: :func:`encode_result` / :func:`decode_result`.

The SR results stream (``Pipeline`` PUB -> viewers, hooks, subscribers) uses the two
parts of the wire format (:mod:`livesr.stream._wire`): ``[header, image]``, part 0 a
UTF-8 JSON object, part 1 the C-contiguous image.  The header is richer than a frame's
(``index``, ``first_frame``, ``last_frame``, ``shape``, ``dtype``, ``pixel_size_um`` of
the SR pixel, ``params``, ``drift``, ``quality``, ``resolution``, ``implementation``,
``timestamps``), hence its own size limit.  The pipeline encodes with
:func:`encode_result`; the napari viewer and :meth:`livesr.stream.Result.from_message`
decode with :func:`decode_result` (raw frames of the ingest format are read as
``kind="raw"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livesr.stream._wire import FRAME_DTYPES, WireError, _require

__all__ = [
    "MAX_RESULT_HEADER_BYTES",
    "RESULT_TIMESTAMPS",
    "ResultMessage",
    "decode_result",
    "encode_raw_frame",
    "encode_result",
    "finite_or_nan",
    "result_message",
]


#: largest results-message header accepted, bytes
MAX_RESULT_HEADER_BYTES = 65536
#: the ``timestamps`` keys of a results header -> the names hooks see (``Result``)
RESULT_TIMESTAMPS = {
    "acquired": "t_acq_last",
    "received": "t_recv",
    "processed": "t_proc",
    "published": "t_publish",
}


@dataclass(frozen=True, slots=True)
class ResultMessage:
    """One decoded message of the results stream (:func:`decode_result`).

    Attributes
    ----------
    kind : str
        ``"sr"`` or ``"raw"`` (a raw frame in the ingest wire format).
    image : numpy.ndarray or None
        2-D image (a read-only view of the received buffer); None only for a header
        decoded without its payload (:func:`result_message`).
    header : dict
        The full JSON header.
    index : int
        SR image index (``"sr"``) or frame ``seq`` (``"raw"``).
    pixel_size_um : float
        Pixel size of ``image``, micrometres.
    raw_pixel_size_um : float
        Raw (camera) pixel size in the sample plane, micrometres.
    magnification : int
        SR pixels per raw pixel per axis (1 for raw frames).
    geometry : str
        eSRRF sampling geometry (``"nanopyx"`` when the header does not say).
    timestamps : Mapping[str, float]
        The header's ``timestamps`` (``acquired``, ``received``, ``processed``,
        ``published``; seconds since the epoch), ``{"acquired": t_acq}`` for a raw frame.
    """

    kind: str
    image: np.ndarray | None
    header: dict[str, Any]
    index: int
    pixel_size_um: float
    raw_pixel_size_um: float
    magnification: int
    geometry: str = "nanopyx"
    timestamps: Mapping[str, float] = field(default_factory=dict)

    @property
    def first_frame(self) -> int | None:
        """First raw frame seq of the window (the frame's seq for ``"raw"``)."""
        v = self.header.get("first_frame", self.header.get("seq"))
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def last_frame(self) -> int | None:
        """Newest raw frame seq of the window (the frame's seq for ``"raw"``)."""
        v = self.header.get("last_frame", self.header.get("seq"))
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def drift(self) -> tuple[float, float] | None:
        """Displacement ``(dy, dx)`` in raw pixels, or None (no drift estimate)."""
        d = self.header.get("drift")
        if not isinstance(d, Mapping):
            return None
        try:
            dy, dx = float(d["dy"]), float(d["dx"])
        except (KeyError, TypeError, ValueError):
            return None
        return (dy, dx) if math.isfinite(dy) and math.isfinite(dx) else None

    @property
    def drift_sigma_px(self) -> float:
        """Standard uncertainty of :attr:`drift` per axis, raw px (NaN if unknown)."""
        d = self.header.get("drift")
        return finite_or_nan(d.get("sigma_px")) if isinstance(d, Mapping) else math.nan

    @property
    def quality(self) -> float:
        """The window's quality metric (NaN when the header has none)."""
        q = self.header.get("quality")
        return finite_or_nan(q.get("value")) if isinstance(q, Mapping) else math.nan


def finite_or_nan(v: Any) -> float:
    if isinstance(v, bool):
        return math.nan
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _json_scalar(obj: Any) -> Any:
    """``json.dumps`` default of a results header: numpy scalars as Python numbers."""
    if isinstance(obj, np.generic):
        return obj.item()
    return None


def encode_result(header: Mapping[str, Any], image: np.ndarray) -> list[Any]:
    """Build the two parts of a results message (the payload is the image's buffer).

    Parameters
    ----------
    header : Mapping
        The ``kind="sr"`` header (see :meth:`livesr.stream._processing.Processor`
        and ``Pipeline._publish``): ``index``, ``first_frame``, ``last_frame``,
        ``shape``, ``dtype``, ``pixel_size_um`` (SR pixel), ``params``, ``drift``,
        ``quality``, ``timestamps``... Numpy scalars are written as numbers.
    image : numpy.ndarray
        (H * M, W * M) SR image matching ``header["shape"]`` / ``["dtype"]``.

    Raises
    ------
    WireError
        A header that is not ``kind="sr"``, does not match ``image`` or is larger
        than :data:`MAX_RESULT_HEADER_BYTES`; a non-finite number in it.
    """
    _require(header.get("kind") == "sr", f"results kind={header.get('kind')!r}; expected 'sr'")
    shape = header.get("shape")
    dtype = header.get("dtype", "float32")
    _require(
        isinstance(shape, (list, tuple))
        and tuple(image.shape) == tuple(shape)
        and image.dtype == np.dtype(dtype),
        f"image {image.shape} {image.dtype} does not match header shape={shape!r} "
        f"dtype={dtype!r}",
    )
    try:
        raw = json.dumps(header, allow_nan=False, default=_json_scalar).encode()
    except ValueError as exc:
        raise WireError(f"results header is not valid JSON: {exc}") from None
    _require(
        len(raw) <= MAX_RESULT_HEADER_BYTES,
        f"results header is {len(raw)} bytes; at most {MAX_RESULT_HEADER_BYTES} allowed",
    )
    return [raw, np.ascontiguousarray(image)]


def encode_raw_frame(
    *,
    stream: str,
    seq: int,
    frame: np.ndarray,
    pixel_size_um: float,
    t_acq: float,
    t_recv: float,
    t_publish: float,
) -> list[Any]:
    """The two parts of a raw-frame message of the results stream (``kind="raw"``).

    Parameters
    ----------
    stream : str
        Stream id.
    seq : int
        The frame's sequence number in the pipeline (the ``index`` viewers show).
    frame : numpy.ndarray
        (H, W) camera frame, a dtype of :data:`livesr.stream._wire.FRAME_DTYPES`.
    pixel_size_um : float
        Camera pixel size in the sample plane, micrometres.
    t_acq, t_recv, t_publish : float
        Acquired, received by the pipeline, published; seconds since the epoch.

    Returns
    -------
    list
        ``[header bytes, frame]``, decoded by :func:`decode_result` as a
        :class:`ResultMessage` with ``kind == "raw"`` and ``index == seq``.
    """
    _require(frame.ndim == 2, f"raw frame has shape {frame.shape}; expected (rows, cols)")
    head = {
        "v": 1,
        "kind": "raw",
        "stream": stream,
        "seq": int(seq),
        "shape": [int(frame.shape[0]), int(frame.shape[1])],
        "dtype": str(frame.dtype),
        "pixel_size_um": float(pixel_size_um),
        "t_acq": float(t_acq),
        "timestamps": {
            "acquired": float(t_acq),
            "received": float(t_recv),
            "published": float(t_publish),
        },
    }
    result_message(head)  # the receiver's checks, here
    return [json.dumps(head).encode(), np.ascontiguousarray(frame)]


def _positive(h: Mapping[str, Any], key: str, what: str) -> float:
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
        math.isfinite(v) and v > 0
    ):
        raise WireError(f"results message: {key}={v!r} is not valid; expected {what}")
    return float(v)


def result_message(h: Mapping[str, Any], payload: Any = None) -> ResultMessage:
    """Validate a results header (already parsed) and view ``payload`` as its image.

    Parameters
    ----------
    h : Mapping
        The JSON header (``kind`` ``"sr"``, or ``"frame"``/``"raw"`` for raw frames).
    payload : buffer or numpy.ndarray, optional
        Part 1 of the message; None: header only (``image`` is then None).

    Raises
    ------
    WireError
        The header does not follow the format, or the payload does not match it
        (the text names the field).
    """
    kind = h.get("kind")
    if kind == "frame":  # a raw frame in the wire format of the ingest link
        kind = "raw"
    _require(kind in ("sr", "raw"), f"results message kind={kind!r}; expected 'sr' or 'raw'")
    shape = h.get("shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise WireError(f"results message shape={shape!r}; expected [rows, cols] > 0")
    dtype = h.get("dtype", "float32")
    _require(
        dtype in FRAME_DTYPES,
        f"results message dtype={dtype!r}; expected one of {', '.join(FRAME_DTYPES)}",
    )
    image = None
    if payload is not None:
        buf = memoryview(payload)
        need = shape[0] * shape[1] * np.dtype(dtype).itemsize
        _require(
            buf.nbytes == need,
            f"results message image has {buf.nbytes} bytes; shape {shape} {dtype} "
            f"needs {need}",
        )
        image = np.frombuffer(buf, dtype=dtype).reshape(shape)
    px = _positive(h, "pixel_size_um", "a pixel size in um > 0")
    p = h.get("params")
    params: Mapping[str, Any] = p if isinstance(p, Mapping) else {}
    if kind == "sr":
        m = params.get("magnification", 1)
        _require(
            not isinstance(m, bool) and isinstance(m, int) and m >= 1,
            f"results message params.magnification={m!r}; expected an int >= 1",
        )
        raw_px = (
            _positive(h, "raw_pixel_size_um", "a pixel size in um > 0")
            if "raw_pixel_size_um" in h
            else px * m
        )
        index = h.get("index")
    else:
        m, raw_px, index = 1, px, h.get("seq")
    if isinstance(index, bool) or not isinstance(index, int):
        raise WireError(f"results message index/seq={index!r}; expected an int")
    geometry = str(params.get("geometry", h.get("geometry", "nanopyx")))
    stamps = h.get("timestamps")
    if not isinstance(stamps, Mapping):
        t_acq = h.get("t_acq")
        stamps = {"acquired": t_acq} if isinstance(t_acq, (int, float)) else {}
    return ResultMessage(
        str(kind), image, dict(h), int(index), px, raw_px, int(m), geometry, dict(stamps)
    )


def decode_result(parts: Sequence[Any]) -> ResultMessage:
    """Decode ``[header, image]`` of the results stream (the inverse of
    :func:`encode_result`; raw frames of the ingest format are accepted as ``"raw"``).

    Parameters
    ----------
    parts : sequence
        The two message parts (``bytes``, ``memoryview`` or ``zmq.Frame``).

    Raises
    ------
    WireError
        When the message does not follow the format (the text says which field).
    """
    _require(
        len(parts) == 2,
        f"results message has {len(parts)} part(s); expected 2 (header, image)",
    )
    raw = memoryview(getattr(parts[0], "buffer", parts[0]))
    _require(
        raw.nbytes <= MAX_RESULT_HEADER_BYTES,
        f"results header is {raw.nbytes} bytes; at most {MAX_RESULT_HEADER_BYTES} allowed",
    )
    try:
        h = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"results message header is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise WireError("results message header JSON is nested too deeply") from None
    _require(isinstance(h, dict), "results message header is not a JSON object")
    return result_message(h, getattr(parts[1], "buffer", parts[1]))
