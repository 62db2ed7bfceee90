"""napari viewer sink: the newest SR image, raw frame and drift trace of a live run.

::

    sink = LiveViewerSink(viewer, "ipc:///tmp/livesr-results.ipc").start()  # GUI thread
    ...      # a QTimer polls the results stream, draws the newest only
    sink.stop()

    run_viewer(pipe.publish_endpoint, title="livesr")  # in this process (Qt main thread)

    # its own process, as `livesr run --viewer` starts it (_viewer_process.py):
    python -m livesr.adapters.sinks.napari_viewer ENDPOINT --raw RAW_ENDPOINT

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

Messages (:func:`livesr.stream.encode_result` / :func:`livesr.stream.decode_result`)
-------------------------------------------------------------------------------------
Two parts: a UTF-8 JSON header and the C-contiguous image, decoded by the stream's
results codec into a :class:`livesr.stream.ResultMessage`.  Header fields used:
``kind`` (``"sr"``; ``"raw"`` for raw frames), ``index``, ``first_frame``,
``last_frame``, ``shape``, ``dtype``, ``pixel_size_um`` (of this image: the SR pixel
for ``"sr"``), ``raw_pixel_size_um`` (optional; else ``pixel_size_um x
magnification``), ``params`` (``magnification``, ``stride``, optional ``geometry``),
``drift`` (``dy``/``dx`` displacement in raw pixels, or null), ``quality``,
``implementation`` (stage -> implementation), ``timestamps`` (``acquired``,
``received``, ``processed``, ``published``; seconds since the epoch) and optional
``counters`` (``windows_skipped``, ``frames_in_gaps``, ``fps``...).

The pipeline publishes the newest raw frame at display rate on a second PUB endpoint
(``Pipeline.raw_publish_endpoint``, :mod:`livesr.stream._raw_publish`; ``kind``
``"raw"``, its ``seq`` as ``index``, timestamps), its own so that draining one kind
never discards the other: give it as ``raw_endpoint`` (``--raw``).  Without it the
``"raw"`` layer shows nothing and the status says so.

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

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from livesr.adapters.sinks._draw_pacer import DrawPacer
from livesr.adapters.sinks._viewer_layers import (
    DRIFT_LAYER,
    DRIFT_TRACE_MAX,
    NANOPYX_DISPLACEMENT_PX,
    RAW_LAYER,
    SR_LAYER,
    LiveLayers,
    sr_transform,
)
from livesr.adapters.sinks._viewer_stats import StreamStats
from livesr.stream import ResultMessage, decode_result

__all__ = [
    "DRIFT_LAYER",
    "DRIFT_TRACE_MAX",
    "NANOPYX_DISPLACEMENT_PX",
    "RAW_LAYER",
    "SR_LAYER",
    "LiveLayers",
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

_INSTALL_HINT = 'install the viewer extra: python -m pip install "livesr[viewer]"'


class ViewerUnavailableError(RuntimeError):
    """napari, a Qt binding or a display is missing."""


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

    Attributes
    ----------
    min_draw_interval_s : float
        Shortest time between two drawn updates (default 0: every tick that has
        news).  Each update repaints the canvas, which costs CPU (tens of ms with
        software OpenGL); ticks in between leave the newest messages in their slots,
        and the next update draws the newest raw frame and SR image together.
    pacer : DrawPacer or None
        When set, it gives the shortest time between drawn updates instead of
        ``min_draw_interval_s``, and backs off while the pipeline skips windows
        (:mod:`livesr.adapters.sinks._draw_pacer`).
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
        from livesr.stream import LatestSubscriber  # zmq: only when a sink is made

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
        #: ``on_tick(drew, seconds)`` at the end of every timer tick (``seconds``:
        #: spent in it) (the viewer process's
        #: GUI probe, :class:`~livesr.adapters.sinks._viewer_process.GuiProbe`)
        self.on_tick: Any = None
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
        self.min_draw_interval_s = 0.0
        self.pacer: DrawPacer | None = None
        self._drawn_t = -float("inf")

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
        t0 = time.perf_counter()
        drew = False
        pause = self.pacer.interval_s if self.pacer is not None else self.min_draw_interval_s
        if t0 - self._drawn_t < pause:  # news wait in their slots
            if self.on_tick is not None:
                self.on_tick(drew, time.perf_counter() - t0)
            return drew
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
                    if self.pacer is not None:
                        counters = msg.header.get("counters")
                        if isinstance(counters, Mapping):
                            self.pacer.observe(counters.get("windows_skipped"))
                drew = True
        if not drew:
            self.layers.flush()  # a drift trace held back by the refresh limit
        else:
            self._drawn_t = t0
            if self.on_status is not None:
                self.on_status(self.stats.status_text())
        if self.on_tick is not None:
            self.on_tick(drew, time.perf_counter() - t0)
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
    widget: Any = LiveStreamWidget(  # a Qt widget class made on first use
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


if __name__ == "__main__":  # the viewer process of `livesr run --viewer`
    from livesr.adapters.sinks._viewer_process import main

    sys.exit(main())
