"""napari viewer sink: the newest SR image, raw frame and drift trace of a live run.

::

    sink = LiveViewerSink(viewer, "ipc:///tmp/livesr-results.ipc").start()  # GUI thread
    ...      # a QTimer polls the results stream, draws the newest only
    sink.stop()

    run_viewer(pipe.publish_endpoint, title="livesr")  # `livesr run --viewer`

How updates flow
----------------
The pipeline publishes every SR image on a PUB socket with a tiny send high-water
mark (:class:`livesr.stream._pubsub.ResultPublisher`); it never waits for a viewer.
Here a :class:`~livesr.stream._pubsub.LatestSubscriber` is drained continuously by a
small reader thread (it owns the socket) into a newest-only slot, and a ``QTimer`` in
the GUI thread (every ``interval_ms``, default 16 ms) draws what is in the slot.  A
slow GUI therefore never queues a backlog: messages it did not get to are replaced in
the slot (:attr:`StreamStats.dropped`), and the picture always shows the newest
image.  Because the socket is read even while the GUI is busy drawing, its queue never
fills: ZeroMQ does not drop the newest message, and the final image of a run (re-sent
by the publisher at close, :meth:`livesr.stream._pubsub.ResultPublisher.resend_latest`)
is taken off the connection before the publisher goes away.  Nothing blocks the
acquisition or the processing threads.

Messages (see :meth:`livesr.stream._pipeline.Pipeline._publish`)
------------------------------------------------------------------
Two parts: a UTF-8 JSON header and the C-contiguous image.  Header fields used:
``kind`` (``"sr"``; ``"raw"`` for raw frames), ``index``, ``first_frame``,
``last_frame``, ``shape``, ``dtype``, ``pixel_size_um`` (of this image: the SR pixel
for ``"sr"``), ``raw_pixel_size_um`` (optional; else ``pixel_size_um x
magnification``), ``params`` (``magnification``, ``stride``, optional ``geometry``),
``drift`` (``dy``/``dx`` displacement in raw pixels, or null), ``quality``,
``implementation`` (stage -> implementation), ``timestamps`` (``acquired``,
``received``, ``processed``, ``published``; seconds since the epoch) and optional
``counters`` (``windows_skipped``, ``frames_in_gaps``, ``fps``...).

The pipeline does not publish raw frames today: the ``"raw"`` layer then shows
nothing and the status says so.  A raw-frame stream (``kind`` ``"raw"``, the
:class:`livesr.stream._wire.FrameHeader` fields, on its own PUB endpoint so that
draining one kind never discards the other) can be given as ``raw_endpoint``.

Layers and the half-pixel mapping
---------------------------------
World coordinates are micrometres, pixel centres at ``translate + index x scale``.

``raw``
    ``scale`` = raw pixel size ``p``; raw pixel ``i`` is centred at ``i p``.
``SR``
    ``scale`` = ``p / M``.  With ``geometry = "corrected"`` SR pixel ``k`` is centred
    at raw position ``(k + 0.5)/M - 0.5`` raw pixels, so ``translate`` =
    ``(1/M - 1) p / 2`` (the SR pixels tile each raw pixel exactly).  With the NanoPyx
    geometry (``"nanopyx"``, the default) the image content additionally sits
    :data:`NANOPYX_DISPLACEMENT_PX` (+0.45) raw pixel towards +y/+x of the emitters
    (measured, ESRRF.md 2.3), so the layer is translated back by that amount:
    ``translate`` = ``((1/M - 1)/2 - 0.45) p``.  See :func:`sr_transform`.
    SR images are drift-corrected (registered to the start of the run).
``drift``
    A Shapes path: the published displacement of the sample (``dy``, ``dx`` raw px,
    times ``p``) drawn around the centre of the field of view, one vertex per SR image.

Status (dock widget text, :meth:`StreamStats.status_text`): SR images shown per
second, acquisition frames per second (from ``last_frame`` and the acquisition
timestamps), latency acquired -> published and acquired -> shown, implementation per
stage, windows not shown (skipped by the pipeline or dropped for the viewer), gaps.

napari and Qt are imported only inside functions: importing this module loads neither.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "NANOPYX_DISPLACEMENT_PX",
    "LiveViewerSink",
    "ResultMessage",
    "StreamStats",
    "ViewerUnavailableError",
    "decode_result",
    "run_viewer",
    "sr_transform",
    "viewer_unavailable_reason",
]

logger = logging.getLogger(__name__)

#: Displacement of NanoPyx-geometry eSRRF images towards +y/+x, raw px (ESRRF.md 2.3).
NANOPYX_DISPLACEMENT_PX = 0.45
#: Layer names.
RAW_LAYER, SR_LAYER, DRIFT_LAYER = "raw", "SR", "drift"
#: At most this many vertices in the drift trace (oldest forgotten).
DRIFT_TRACE_MAX = 4096
_DTYPES = ("uint8", "uint16", "uint32", "float32", "float64")
_INSTALL_HINT = 'install the viewer extra: python -m pip install "livesr[viewer]"'


class ViewerUnavailableError(RuntimeError):
    """napari, a Qt binding or a display is missing."""


# --------------------------------------------------------------------------- messages
@dataclass(frozen=True, slots=True)
class ResultMessage:
    """One decoded message of the results stream.

    Attributes
    ----------
    kind : str
        ``"sr"`` or ``"raw"``.
    image : numpy.ndarray
        2-D image (a read-only view of the received buffer).
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
    """

    kind: str
    image: np.ndarray
    header: dict[str, Any]
    index: int
    pixel_size_um: float
    raw_pixel_size_um: float
    magnification: int
    geometry: str = "nanopyx"
    timestamps: Mapping[str, float] = field(default_factory=dict)

    @property
    def last_frame(self) -> int | None:
        v = self.header.get("last_frame", self.header.get("seq"))
        return int(v) if isinstance(v, int) else None

    @property
    def drift(self) -> tuple[float, float] | None:
        """Displacement ``(dy, dx)`` in raw pixels, or None."""
        d = self.header.get("drift")
        if not isinstance(d, Mapping):
            return None
        try:
            dy, dx = float(d["dy"]), float(d["dx"])
        except (KeyError, TypeError, ValueError):
            return None
        return (dy, dx) if math.isfinite(dy) and math.isfinite(dx) else None


def _num(h: Mapping[str, Any], key: str, what: str) -> float:
    v = h.get(key)
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not math.isfinite(v)
        or v <= 0
    ):
        raise ValueError(f"results message: {key}={v!r} is not valid; expected {what}")
    return float(v)


def decode_result(parts: Sequence[Any]) -> ResultMessage:
    """Decode ``[header, image]`` of the results stream.

    Parameters
    ----------
    parts : sequence
        The two message parts (``bytes`` or ``zmq.Frame``).

    Raises
    ------
    ValueError
        When the message does not follow the format (the text says which field).
    """
    if len(parts) != 2:
        raise ValueError(
            f"results message has {len(parts)} part(s); expected 2 (header, image)"
        )
    try:
        h = json.loads(bytes(memoryview(parts[0])).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"results message header is not UTF-8 JSON: {exc}") from None
    if not isinstance(h, dict):
        raise ValueError("results message header is not a JSON object")
    kind = h.get("kind")
    if kind == "frame":  # a raw frame in the wire format of the ingest link
        kind = "raw"
    if kind not in ("sr", "raw"):
        raise ValueError(f"results message kind={kind!r}; expected 'sr' or 'raw'")
    shape = h.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
        )
    ):
        raise ValueError(f"results message shape={shape!r}; expected [rows, cols] > 0")
    dtype = h.get("dtype", "float32")
    if dtype not in _DTYPES:
        raise ValueError(
            f"results message dtype={dtype!r}; expected one of {', '.join(_DTYPES)}"
        )
    buf = memoryview(parts[1])
    need = shape[0] * shape[1] * np.dtype(dtype).itemsize
    if buf.nbytes != need:
        raise ValueError(
            f"results message image has {buf.nbytes} bytes; "
            f"shape {shape} {dtype} needs {need}"
        )
    image = np.frombuffer(buf, dtype=dtype).reshape(shape)
    px = _num(h, "pixel_size_um", "a pixel size in um > 0")
    params = h.get("params") if isinstance(h.get("params"), Mapping) else {}
    if kind == "sr":
        m = params.get("magnification", 1)
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(
                f"results message params.magnification={m!r}; expected an int >= 1"
            )
        raw_px = (
            _num(h, "raw_pixel_size_um", "a pixel size in um > 0")
            if "raw_pixel_size_um" in h
            else px * m
        )
        index = h.get("index")
    else:
        m, raw_px, index = 1, px, h.get("seq")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"results message index/seq={index!r}; expected an int")
    geometry = str(params.get("geometry", h.get("geometry", "nanopyx")))
    stamps = h.get("timestamps")
    if not isinstance(stamps, Mapping):
        stamps = (
            {"acquired": h["t_acq"]} if isinstance(h.get("t_acq"), (int, float)) else {}
        )
    return ResultMessage(kind, image, h, index, px, raw_px, m, geometry, dict(stamps))


def sr_transform(
    raw_pixel_size_um: float, magnification: int, geometry: str = "nanopyx"
) -> tuple[float, float]:
    """``(scale, translate)`` per spatial axis of the SR layer, micrometres.

    Places the SR image over a raw layer of scale ``raw_pixel_size_um`` and translate
    0 (see the module docstring, "half-pixel mapping").

    Parameters
    ----------
    raw_pixel_size_um : float
        Raw pixel size ``p``.
    magnification : int
        ``M``.
    geometry : {"nanopyx", "corrected"}
        eSRRF sampling geometry of the image.
    """
    p, m = float(raw_pixel_size_um), int(magnification)
    if not p > 0 or m < 1:
        raise ValueError(
            f"sr_transform: pixel size {p!r} um and magnification {m!r} "
            "must be > 0 and >= 1"
        )
    offset_px = (1.0 / m - 1.0) / 2.0
    if geometry == "nanopyx":
        offset_px -= NANOPYX_DISPLACEMENT_PX
    elif geometry != "corrected":
        raise ValueError(
            f"sr_transform: geometry={geometry!r}; expected 'nanopyx' or 'corrected'"
        )
    return p / m, offset_px * p


# --------------------------------------------------------------------------- statistics
class StreamStats:
    """What the viewer saw: rates, latency, drops, skips (no Qt; one thread).

    Parameters
    ----------
    window_s : float
        Rates and latency percentiles are computed over this recent period.
    """

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = float(window_s)
        #: SR images shown (drawn), raw frames shown
        self.shown = 0
        self.raw_shown = 0
        #: SR images skipped by the subscriber's drain (newer one queued behind)
        self.dropped = 0
        #: SR images never seen: index gaps (dropped by ZeroMQ for this slow viewer)
        self.missed = 0
        #: scheduled windows the pipeline did not produce (skips, gaps; frame numbers)
        self.not_produced = 0
        self.bad_messages = 0
        self.last: ResultMessage | None = None
        self.last_raw: ResultMessage | None = None
        self._shown_t: deque[float] = deque()
        self._lat_pub: deque[tuple[float, float]] = deque()
        self._lat_show: deque[tuple[float, float]] = deque()
        self._acq: deque[tuple[float, int]] = deque()

    def _trim(self, now: float) -> None:
        lo = now - self.window_s
        for dq in (self._lat_pub, self._lat_show):
            while dq and dq[0][0] < lo:
                dq.popleft()
        while self._shown_t and self._shown_t[0] < lo:
            self._shown_t.popleft()
        while len(self._acq) > 2 and self._acq[0][0] < self._acq[-1][0] - self.window_s:
            self._acq.popleft()

    def record_sr(
        self, msg: ResultMessage, now: float | None = None, *, drained: int = 0
    ) -> None:
        """Account for an SR image about to be drawn.

        ``drained``: messages the subscriber skipped to reach this one (they are part
        of the index gap; the rest of the gap never arrived).
        """
        now = time.time() if now is None else now
        prev = self.last
        self.dropped += drained
        if prev is not None and msg.index > prev.index:
            self.missed += max(0, msg.index - prev.index - 1 - drained)
            stride = (msg.header.get("params") or {}).get("stride")
            if (
                isinstance(stride, int)
                and stride > 0
                and msg.last_frame is not None
                and prev.last_frame is not None
            ):
                windows = (msg.last_frame - prev.last_frame) // stride
                self.not_produced += max(0, windows - (msg.index - prev.index))
        self.last = msg
        self.shown += 1
        self._shown_t.append(now)
        t = msg.timestamps
        acq, pub = t.get("acquired"), t.get("published")
        if isinstance(acq, (int, float)) and acq > 0:
            if isinstance(pub, (int, float)) and pub > 0:
                self._lat_pub.append((now, (pub - acq) * 1e3))
            self._lat_show.append((now, (now - acq) * 1e3))
            if msg.last_frame is not None:
                self._acq.append((float(acq), msg.last_frame))
        self._trim(now)

    def record_raw(self, msg: ResultMessage) -> None:
        self.last_raw = msg
        self.raw_shown += 1

    def display_rate(self, now: float | None = None) -> float:
        """SR images drawn per second over the recent window."""
        now = time.time() if now is None else now
        self._trim(now)
        n = len(self._shown_t)
        if n < 2:
            return 0.0
        return (n - 1) / max(1e-9, self._shown_t[-1] - self._shown_t[0])

    def acquisition_rate(self) -> float:
        """Camera frames per second, from the frame numbers and acquisition times."""
        if len(self._acq) < 2:
            return math.nan
        (t0, f0), (t1, f1) = self._acq[0], self._acq[-1]
        return (f1 - f0) / (t1 - t0) if t1 > t0 else math.nan

    @staticmethod
    def _p50(dq: deque[tuple[float, float]]) -> float:
        return float(np.median([v for _, v in dq])) if dq else math.nan

    def latency_ms(self) -> dict[str, float]:
        """Median latency from acquisition to ``published`` / ``shown``."""
        return {
            "published": self._p50(self._lat_pub),
            "shown": self._p50(self._lat_show),
        }

    def status_text(self, now: float | None = None) -> str:
        """Multi-line status for the dock widget."""
        msg = self.last
        if msg is None:
            return "waiting for the first SR image..."

        def f(x: float, fmt: str = ".0f") -> str:
            return "-" if not math.isfinite(x) else format(x, fmt)

        h = msg.header
        lat = self.latency_ms()
        impl = h.get("implementation") or {}
        impl_txt = (
            ", ".join(f"{k}={v}" for k, v in impl.items())
            if isinstance(impl, Mapping)
            else str(impl)
        )
        lines = [
            f"SR image {msg.index} "
            f"(frames {h.get('first_frame', '?')}-{h.get('last_frame', '?')}), "
            f"{msg.image.shape[1]}x{msg.image.shape[0]} px of "
            f"{msg.pixel_size_um:.4g} um (M={msg.magnification})",
            f"display {f(self.display_rate(now), '.1f')} images/s | "
            f"camera {f(self.acquisition_rate(), '.1f')} frames/s",
            f"latency p50: published {f(lat['published'])} ms, "
            f"shown {f(lat['shown'])} ms (from acquisition)",
            f"implementation: {impl_txt or '-'}",
            f"not shown: {self.missed + self.dropped} dropped for the viewer, "
            f"{self.not_produced} skipped by the pipeline",
        ]
        counters = h.get("counters")
        if isinstance(counters, Mapping):
            lines.append(" | ".join(f"{k} {v}" for k, v in counters.items()))
        d = msg.drift
        q = (
            (h.get("quality") or {}).get("value")
            if isinstance(h.get("quality"), Mapping)
            else None
        )
        lines.append(
            (
                "drift: off"
                if d is None
                else f"drift dy {d[0]:+.2f} dx {d[1]:+.2f} raw px"
            )
            + (f" | quality {q:.4g}" if isinstance(q, (int, float)) else "")
        )
        if self.last_raw is None:
            lines.append("raw: not published by this stream (SR only)")
        if self.bad_messages:
            lines.append(f"{self.bad_messages} malformed message(s) ignored")
        return "\n".join(lines)


# --------------------------------------------------------------------------- reader
class _NewestReader:
    """Drain a :class:`LatestSubscriber` on a thread into a newest-only slot.

    The thread creates, reads and closes the socket (ZeroMQ sockets belong to one
    thread); :meth:`take` (any thread) returns the newest message and how many were
    skipped to reach it.
    """

    def __init__(self, sub: Any, name: str) -> None:
        import threading

        self._sub = sub
        self._lock = threading.Lock()
        self._newest: Any = None
        self._skipped = 0
        self._stop = threading.Event()
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, timeout_s: float = 5.0) -> _NewestReader:
        self._thread.start()
        self._started.wait(timeout_s)
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        try:
            self._sub.start()
        except BaseException as exc:  # reported by start()
            self.error = exc
            self._started.set()
            return
        self._started.set()
        try:
            while not self._stop.is_set():
                before = self._sub.dropped
                parts = self._sub.latest(50)
                if parts is None:
                    continue
                skipped = self._sub.dropped - before
                with self._lock:
                    if self._newest is not None:
                        skipped += 1
                    self._newest = parts
                    self._skipped += skipped
        except Exception:  # a broken socket: the viewer stops updating, says why
            logger.exception("the viewer's results reader stopped")
        finally:
            self._sub.close()

    def take(self) -> tuple[Any, int]:
        """(newest message or None, messages skipped since the last take)."""
        with self._lock:
            parts, skipped = self._newest, self._skipped
            self._newest, self._skipped = None, 0
        return parts, skipped

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)


# --------------------------------------------------------------------------- layers
class LiveLayers:
    """Create and update the ``raw``, ``SR`` and ``drift`` layers (GUI thread).

    Every napari property assignment fires events and refreshes, so a property is set
    only when its value changes, and the drift trace (a Shapes rebuild) is redrawn at
    most every ``drift_refresh_s`` (:meth:`flush` draws a pending trace).
    """

    def __init__(self, viewer: Any, *, drift_refresh_s: float = 0.5) -> None:
        self.viewer = viewer
        self.sr: Any = None
        self.raw: Any = None
        self.drift: Any = None
        self.drift_refresh_s = float(drift_refresh_s)
        self._trace: deque[tuple[float, float]] = deque(maxlen=DRIFT_TRACE_MAX)
        self._trace_pending = False
        self._trace_drawn_t = -math.inf
        self._centre: tuple[float, float] = (0.0, 0.0)
        self._raw_px: float | None = None
        self._sr_geom: tuple[float, float] | None = None
        self._fitted = False

    @staticmethod
    def _limits(img: np.ndarray) -> tuple[float, float]:
        if img.size == 0:
            return 0.0, 1.0
        if img.dtype.kind == "f":
            with np.errstate(all="ignore"):
                lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
            if not (math.isfinite(lo) and math.isfinite(hi)):
                finite = img[np.isfinite(img)]
                if finite.size == 0:
                    return 0.0, 1.0
                lo, hi = float(finite.min()), float(finite.max())
        else:
            lo, hi = float(img.min()), float(img.max())
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    @staticmethod
    def _set_limits(layer: Any, limits: tuple[float, float]) -> None:
        lo, hi = layer.contrast_limits_range
        if limits[0] < lo or limits[1] > hi or (hi - lo) > 4 * (limits[1] - limits[0]):
            layer.contrast_limits_range = limits
        if tuple(layer.contrast_limits) != limits:
            layer.contrast_limits = limits

    def show_sr(self, msg: ResultMessage) -> None:
        scale, translate = sr_transform(
            msg.raw_pixel_size_um, msg.magnification, msg.geometry
        )
        img = msg.image
        limits = self._limits(img)
        if self.sr is None or self.sr not in self.viewer.layers:
            self.sr = self.viewer.add_image(
                img,
                name=SR_LAYER,
                scale=(scale, scale),
                translate=(translate, translate),
                units=("micrometer", "micrometer"),
                axis_labels=("y", "x"),
                colormap="magma",
                contrast_limits=limits,
                blending="additive",
            )
            self._sr_geom = (scale, translate)
        else:
            if self.sr.data.shape != img.shape:
                logger.info("SR image shape changed to %s", img.shape)
            self.sr.data = img
            if self._sr_geom != (
                scale,
                translate,
            ):  # magnification / pixel size changed
                self.sr.scale = (scale, scale)
                self.sr.translate = (translate, translate)
                self._sr_geom = (scale, translate)
            self._set_limits(self.sr, limits)
        self._raw_px = msg.raw_pixel_size_um
        h, w = img.shape
        self._centre = (
            (h / msg.magnification - 1) / 2 * self._raw_px,
            (w / msg.magnification - 1) / 2 * self._raw_px,
        )
        d = msg.drift
        if d is not None:
            self._trace.append((d[0], d[1]))
            self._trace_pending = True
            self.flush()
        if not self._fitted:
            self.viewer.reset_view()
            self._fitted = True

    def flush(self, now: float | None = None) -> bool:
        """Draw the drift trace if it changed and the last draw is old enough."""
        now = time.monotonic() if now is None else now
        if not self._trace_pending or now - self._trace_drawn_t < self.drift_refresh_s:
            return False
        if len(self._trace) < 2 or self._raw_px is None:
            return False
        path = self.drift_path_um()
        if self.drift is None or self.drift not in self.viewer.layers:
            self.drift = self.viewer.add_shapes(
                [path],
                shape_type="path",
                name=DRIFT_LAYER,
                edge_color="cyan",
                edge_width=max(self._raw_px / 10, 1e-6),
                units=("micrometer", "micrometer"),
            )
        else:
            self.drift.data = [path]
        self._trace_pending = False
        self._trace_drawn_t = now
        return True

    def drift_path_um(self) -> np.ndarray:
        """The drift trace in world µm, ``(n, 2)`` (the drift layer once flushed)."""
        p = self._raw_px or 1.0
        return np.asarray(self._trace, dtype=float).reshape(-1, 2) * p + np.asarray(
            self._centre
        )

    def show_raw(self, msg: ResultMessage) -> None:
        p = msg.pixel_size_um
        img = msg.image
        limits = self._limits(img)
        if self.raw is None or self.raw not in self.viewer.layers:
            self.raw = self.viewer.add_image(
                img,
                name=RAW_LAYER,
                scale=(p, p),
                units=("micrometer", "micrometer"),
                axis_labels=("y", "x"),
                colormap="gray",
                contrast_limits=limits,
                opacity=0.6,
            )
            # raw below SR in the layer list
            self.viewer.layers.move(self.viewer.layers.index(self.raw), 0)
        else:
            self.raw.data = img
            if tuple(self.raw.scale) != (p, p):
                self.raw.scale = (p, p)
            self._set_limits(self.raw, limits)


# --------------------------------------------------------------------------- the sink
class LiveViewerSink:
    """Show a livesr results stream in a napari viewer, newest only (module docstring).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer (its layers are created on the first message).
    endpoint : str
        Results PUB endpoint (``Pipeline.publish_endpoint``, ``livesr run`` log).
    raw_endpoint : str, optional
        A PUB endpoint publishing raw frames (none by default: SR only).
    interval_ms : int
        Poll period of the GUI-thread timer.
    hwm : int
        Receive high-water mark, messages (1..64).  ZeroMQ drops the *newest*
        message when a subscriber's queue is full, so the queue must hold what is
        published during one GUI draw, or the image drawn last can be older than the
        newest (at the end of a run it then stays stale).  Every tick drains the whole
        queue, so this never becomes a backlog; it bounds memory to ``hwm`` images.
    curve : CurveClientKeys, optional
        Client keys for a non-loopback TCP endpoint.
    on_status : callable, optional
        ``on_status(text)`` after every drawn update (status widget).
    """

    def __init__(
        self,
        viewer: Any,
        endpoint: str,
        *,
        raw_endpoint: str | None = None,
        interval_ms: int = 16,
        hwm: int = 8,
        curve: Any = None,
        on_status: Any = None,
    ) -> None:
        from livesr.stream._pubsub import LatestSubscriber

        if (
            isinstance(interval_ms, bool)
            or not isinstance(interval_ms, int)
            or not 0 <= interval_ms <= 10_000
        ):
            raise ValueError(
                f"interval_ms={interval_ms!r}; expected an int in 0..10000"
            )
        self.viewer = viewer
        self.endpoint = endpoint
        self.raw_endpoint = raw_endpoint
        self.interval_ms = interval_ms
        self.stats = StreamStats()
        self.layers = LiveLayers(viewer)
        self.on_status = on_status
        # validated here (bad endpoint / missing CURVE keys raise now, not in the timer)
        self._sub = LatestSubscriber(endpoint, hwm=hwm, curve=curve)
        self._raw_sub = (
            LatestSubscriber(raw_endpoint, hwm=hwm, curve=curve)
            if raw_endpoint
            else None
        )
        self._timer: Any = None
        self._reader: _NewestReader | None = None
        self._raw_reader: _NewestReader | None = None
        self._started = False

    def start(self) -> LiveViewerSink:
        """Connect and start the GUI-thread timer (call from the GUI thread)."""
        from qtpy.QtCore import QTimer

        if self._started:
            return self
        self._reader = _NewestReader(self._sub, "livesr-viewer-results").start()
        if self._raw_sub is not None:
            self._raw_reader = _NewestReader(self._raw_sub, "livesr-viewer-raw").start()
        self._timer = QTimer()
        self._timer.setInterval(self.interval_ms)
        self._timer.timeout.connect(self.poll)
        self._timer.start()
        self._started = True
        logger.info(
            "viewer subscribed to %s%s",
            self.endpoint,
            f" (raw frames from {self.raw_endpoint})" if self.raw_endpoint else "",
        )
        return self

    @property
    def running(self) -> bool:
        return self._started

    def poll(self) -> bool:
        """One tick: draw the newest queued SR image (and raw frame); True if drawn."""
        if not self._started:
            return False
        drew = False
        if self._raw_reader is not None:
            parts, _ = self._raw_reader.take()
            if parts is not None:
                msg = self._decode(parts)
                if msg is not None:
                    self.layers.show_raw(msg)
                    self.stats.record_raw(msg)
                    drew = True
        assert self._reader is not None
        parts, drained = self._reader.take()
        if parts is not None:
            msg = self._decode(parts)
            if msg is not None:
                if msg.kind == "raw":
                    self.layers.show_raw(msg)
                    self.stats.record_raw(msg)
                else:
                    self.stats.record_sr(msg, drained=drained)
                    self.layers.show_sr(msg)
                drew = True
        if not drew:
            self.layers.flush()  # a drift trace held back by the refresh limit
        elif self.on_status is not None:
            self.on_status(self.stats.status_text())
        return drew

    def _decode(self, parts: Sequence[Any]) -> ResultMessage | None:
        try:
            return decode_result(parts)
        except ValueError as exc:
            self.stats.bad_messages += 1
            if self.stats.bad_messages <= 3:
                logger.warning("ignoring a results message: %s", exc)
            return None

    def stop(self) -> None:
        """Stop the timer and close the sockets (idempotent)."""
        if self._timer is not None:
            self._timer.stop()
            try:
                self._timer.timeout.disconnect(self.poll)
            except (TypeError, RuntimeError):  # already disconnected
                pass
            self._timer = None
        for reader in (self._reader, self._raw_reader):
            if reader is not None:
                reader.stop()  # the reader thread closes its socket
        self._reader = self._raw_reader = None
        self._started = False


# ------------------------------------------------------------------------ entry point
def viewer_unavailable_reason() -> str | None:
    """Why a napari window cannot be opened here (None: it can).

    Checks that napari and a Qt binding import, and on Linux that a display is set.
    Call it before starting a run with ``--viewer`` to fail early with this text.
    """
    import importlib.util

    if importlib.util.find_spec("napari") is None:
        return f"napari is not installed; {_INSTALL_HINT}"
    if not any(
        importlib.util.find_spec(b) for b in ("PyQt6", "PySide6", "PyQt5", "PySide2")
    ):
        return f"no Qt binding is installed; {_INSTALL_HINT}"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "no display: DISPLAY is not set (run on a desktop, over ssh -X, or "
            "headless "
            "with xvfb-run -a livesr ...)"
        )
    return None


def run_viewer(
    publish_endpoint: str,
    *,
    title: str = "livesr",
    block: bool = True,
    raw_endpoint: str | None = None,
    interval_ms: int = 16,
    curve: Any = None,
) -> LiveViewerSink:
    """Open a napari viewer showing the results published at ``publish_endpoint``.

    Must run in the main thread (Qt).  The pipeline keeps running in its own threads;
    the viewer only subscribes.

    Parameters
    ----------
    publish_endpoint : str
        The pipeline's results endpoint (``Pipeline.publish_endpoint``).
    title : str
        Window title.
    block : bool
        True: run the Qt event loop until the window is closed, then disconnect and
        return.  False: return at once (the caller runs the event loop).
    raw_endpoint, interval_ms, curve
        See :class:`LiveViewerSink`.

    Returns
    -------
    LiveViewerSink
        The sink (``.viewer`` is the napari viewer); stopped when ``block`` is True.

    Raises
    ------
    ViewerUnavailableError
        napari, Qt or a display is missing (the message says what to do).
    """
    reason = viewer_unavailable_reason()
    if reason is not None:
        raise ViewerUnavailableError(f"cannot open the viewer: {reason}")
    import napari

    from livesr.adapters.sinks._napari_widget import LiveStreamWidget

    viewer = napari.Viewer(title=title)
    widget = LiveStreamWidget(
        viewer,
        endpoint=publish_endpoint,
        raw_endpoint=raw_endpoint,
        interval_ms=interval_ms,
        curve=curve,
    )
    viewer.window.add_dock_widget(widget, name="livesr", area="right")
    sink = widget.connect_stream()
    assert sink is not None
    if block:
        try:
            napari.run()
        finally:
            widget.shutdown()
    return sink
