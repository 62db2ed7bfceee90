"""The viewer's layers (``raw``, ``SR``, ``drift``) and the SR half-pixel mapping
(:func:`sr_transform`); part of :mod:`livesr.adapters.sinks.napari_viewer`, whose
docstring describes the mapping.  napari is never imported here: the layers are made
through the viewer object passed in."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

import numpy as np

from livesr.stream import ResultMessage

__all__ = [
    "DRIFT_LAYER",
    "DRIFT_TRACE_DRAWN",
    "DRIFT_TRACE_MAX",
    "NANOPYX_DISPLACEMENT_PX",
    "RAW_LAYER",
    "SR_LAYER",
    "LiveLayers",
    "decimate_path",
    "sr_transform",
]

logger = logging.getLogger("livesr.adapters.sinks.napari_viewer")

#: Displacement of NanoPyx-geometry eSRRF images towards +y/+x, raw px (ESRRF.md 2.3).
NANOPYX_DISPLACEMENT_PX = 0.45
#: Layer names.
RAW_LAYER, SR_LAYER, DRIFT_LAYER = "raw", "SR", "drift"
#: At most this many vertices in the drift trace (oldest forgotten).
DRIFT_TRACE_MAX = 4096
#: vertices of the drift trace drawn at most (evenly spaced, first and last kept): a
#: napari path re-triangulates every vertex on each update, so a long run's trace
#: would cost the GUI more with every image (the whole trace stays in drift_path_um)
DRIFT_TRACE_DRAWN = 256
#: a layer's thumbnail (the layer list's icon) is recomputed at most this often, s
THUMBNAIL_PERIOD_S = 1.0
#: contrast limits follow the image only when an end moved by more than this share
#: of the shown span: every change re-renders the thumbnail and fires events, and a
#: display that pulses by a few percent at 10 updates/s helps no one
LIMITS_HYSTERESIS = 0.05


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


class LiveLayers:
    """Create and update the ``raw``, ``SR`` and ``drift`` layers (GUI thread).

    Every napari property assignment fires events and refreshes, so a property is set
    only when its value changes, and the drift trace (a Shapes rebuild) is redrawn at
    most every ``drift_refresh_s`` (:meth:`flush` draws a pending trace; the sink
    calls it in ticks that draw no image).
    """

    def __init__(self, viewer: Any, *, drift_refresh_s: float = 1.0) -> None:
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
        self._thumbnail_t: dict[int, float] = {}

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
        shown = tuple(layer.contrast_limits)
        tol = LIMITS_HYSTERESIS * max(shown[1] - shown[0], 0.0)
        if abs(shown[0] - limits[0]) > tol or abs(shown[1] - limits[1]) > tol:
            layer.contrast_limits = limits

    def _replace_data(self, layer: Any, img: np.ndarray) -> None:
        """Show ``img`` in ``layer``: in place when its shape and dtype are unchanged.

        Assigning ``layer.data`` makes napari re-check the viewer's dimensions, the
        layer's extent and its thumbnail: ``Layer._update_dims`` alone was 40 % of
        the sink's poll time in the viewer process on the 2-core VM, and some ticks
        took 80-110 ms.  The pixels
        are copied into the layer's own array instead, and the layer re-sliced (its
        extent cannot have changed; the thumbnail at most every
        :data:`THUMBNAIL_PERIOD_S`).
        """
        data = layer.data
        if (
            isinstance(data, np.ndarray)
            and data.shape == img.shape
            and data.dtype == img.dtype
            and data.flags.writeable
        ):
            np.copyto(data, img)
            now = time.monotonic()
            thumbnail = (
                now - self._thumbnail_t.get(id(layer), -math.inf) >= THUMBNAIL_PERIOD_S
            )
            if thumbnail:
                self._thumbnail_t[id(layer)] = now
            _refresh_pixels(layer, thumbnail=thumbnail)
        else:  # a new shape or dtype (or a read-only message buffer): a copy of its own
            layer.data = np.array(img, copy=True)

    def show_sr(self, msg: ResultMessage) -> None:
        scale, translate = sr_transform(
            msg.raw_pixel_size_um, msg.magnification, msg.geometry
        )
        img = msg.image
        assert img is not None  # decode_result always gives the image
        limits = self._limits(img)
        if self.sr is None or self.sr not in self.viewer.layers:
            self.sr = self.viewer.add_image(
                np.array(img, copy=True),  # its own pixels: updated in place
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
            self._replace_data(self.sr, img)
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
            if self.drift is None:
                # with the first image: creating a napari Shapes layer takes 0.25-0.7 s
                # (software OpenGL), a stall that must not fall in the live stream
                self._drift_layer(np.repeat(self.drift_path_um(), 2, axis=0)[:2])
            # the trace is redrawn by flush() in a tick that draws no image: a Shapes
            # update (~10 ms, re-triangulation) and an image update (~10 ms) in one
            # tick, then the repaint, made the longest GUI gaps
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
        self._drift_layer(decimate_path(self.drift_path_um(), DRIFT_TRACE_DRAWN))
        self._trace_pending = False
        self._trace_drawn_t = now
        return True

    def _drift_layer(self, path: np.ndarray) -> None:
        """Show ``path`` (world µm, ``(n >= 2, 2)``) in the drift layer (made once)."""
        if self.drift is None or self.drift not in self.viewer.layers:
            self.drift = self.viewer.add_shapes(
                [path],
                shape_type="path",
                name=DRIFT_LAYER,
                edge_color="cyan",
                edge_width=max((self._raw_px or 1.0) / 10, 1e-6),
                units=("micrometer", "micrometer"),
            )
        else:
            self.drift.data = [path]

    def drift_path_um(self) -> np.ndarray:
        """The drift trace in world µm, ``(n, 2)`` (the drift layer once flushed)."""
        p = self._raw_px or 1.0
        return np.asarray(self._trace, dtype=float).reshape(-1, 2) * p + np.asarray(
            self._centre
        )

    def show_raw(self, msg: ResultMessage) -> None:
        p = msg.pixel_size_um
        img = msg.image
        assert img is not None  # decode_result always gives the image
        limits = self._limits(img)
        if self.raw is None or self.raw not in self.viewer.layers:
            self.raw = self.viewer.add_image(
                np.array(img, copy=True),  # its own pixels: updated in place
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
            self._replace_data(self.raw, img)
            if tuple(self.raw.scale) != (p, p):
                self.raw.scale = (p, p)
            self._set_limits(self.raw, limits)


def _refresh_pixels(layer: Any, *, thumbnail: bool) -> None:
    """Re-slice ``layer`` after its pixels changed in place (napari >= 0.5.5 takes
    ``thumbnail=`` / ``extent=``; older ones refresh everything)."""
    try:
        layer.refresh(thumbnail=thumbnail, extent=False)
    except TypeError:
        layer.refresh()


def decimate_path(path: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` (>= 2) vertices of ``path`` ``(n, 2)``, evenly spaced by
    index, the first and the last always kept; ``path`` itself when it is short."""
    n = len(path)
    if n <= limit:
        return path
    keep = np.unique(np.linspace(0, n - 1, limit).round().astype(np.intp))
    return path[keep]
