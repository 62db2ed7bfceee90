"""The livesr dock widget for napari: connect to a results stream, or run the demo.

napari creates it from the plugin manifest (``napari.yaml``, widget "Live SR stream")
through :func:`make_live_widget`; ``livesr run --viewer`` builds the same widget
pre-connected (:func:`livesr.adapters.sinks.napari_viewer.run_viewer`).

- *Endpoint* field + *Connect*: subscribe to a running pipeline's results
  (``Pipeline.publish_endpoint``; the endpoint ``livesr run`` logs).
- *Start simulated demo*: runs :class:`livesr.stream._pipeline.Pipeline` with the
  simulated microscope (:class:`livesr.adapters.sources.simulated.SimulatedSource`)
  in background threads, as ``livesr run --source sim`` does, writing into a fresh
  temporary folder (shown in the status), and connects to it.
- *Control* field + parameters (``window=30 radius=2``) + *Apply*: a live change
  sent through the run's control channel (``livesr ctl``'s channel,
  :mod:`livesr.stream._control`; the demo fills in its own); the reply's frame
  index is shown in the status.
- *Reconstruct the microscope's acquisitions*: follows the pymmcore-plus core of
  napari-micromanager docked in the same viewer (else ``CMMCorePlus.instance()``):
  every MDA or live-mode run started there is reconstructed live by its own pipeline
  (:class:`livesr.adapters._mm_follow.MicroscopeFollower`) and shown here.
- The status text (rates, latency, implementation per stage, skips) is refreshed
  after every drawn image.

Qt is imported inside the functions only (the widget class is built on first use),
so importing this module loads no GUI toolkit.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["SimulatedDemo", "make_live_widget"]

logger = logging.getLogger(__name__)


class SimulatedDemo:
    """Pipeline + simulated source in background threads (no Qt).

    Parameters
    ----------
    output : path-like, optional
        Result folder (default: a new temporary folder).
    frames : int
        Frames to acquire (0: until :meth:`stop`).
    shape : (int, int), optional
        Simulated sensor shape (default: the configuration's, else 64 x 64).
    esrrf : dict, optional
        eSRRF settings (``window``, ``stride``, ``magnification``...) applied on top
        of the configuration.
    config : LivesrConfig, optional
        Full configuration (default: livesr's defaults with ``window=20, stride=10,
        magnification=4``).
    pace : bool
        Acquire at the simulated camera's frame interval.
    """

    def __init__(
        self,
        *,
        output: str | Path | None = None,
        frames: int = 1000,
        shape: tuple[int, int] | None = None,
        esrrf: dict[str, Any] | None = None,
        config: Any = None,
        pace: bool = True,
    ) -> None:
        from livesr.stream import LivesrConfig

        if config is None:  # the demo's defaults; a given config keeps its own
            cfg = LivesrConfig().replace("esrrf", window=20, stride=10, magnification=4)
            shape = shape or (64, 64)
        else:
            cfg = config
        if esrrf:
            cfg = cfg.replace("esrrf", **esrrf)
        if shape is not None:
            camera = {**dict(cfg.sim).get("camera", {}), "shape": [*map(int, shape)]}
            cfg = cfg.replace("sim", camera=camera)
        self.config = cfg
        self.frames = int(frames)
        self.pace = bool(pace)
        self.output = (
            Path(output)
            if output is not None
            else Path(tempfile.mkdtemp(prefix="livesr-demo-"))
        )
        token = secrets.token_hex(4)
        self._ipc = (
            Path(tempfile.gettempdir())
            / f"livesr-demo-{os.getpid()}-{token}-results.ipc"
        )
        #: where the results are published (known before :meth:`start`)
        self.publish_endpoint = f"ipc://{self._ipc}"
        self._ctl_ipc = self._ipc.with_name(self._ipc.name.replace("results", "control"))
        #: the run's control channel (live parameter changes, ``livesr ctl``)
        self.control_endpoint = f"ipc://{self._ctl_ipc}"
        self._ingest = f"inproc://livesr-demo-ingest-{token}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set once the pipeline is started and warmed up
        self.started = threading.Event()
        self.summary: dict[str, Any] | None = None
        self.error: str | None = None

    def start(self) -> SimulatedDemo:
        """Start the background run; returns at once."""
        if self._thread is not None:
            raise RuntimeError("SimulatedDemo.start() called twice")
        self._thread = threading.Thread(
            target=self._run, name="livesr-demo", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        import zmq

        from livesr.adapters.sources._sim_config import sim_config_from
        from livesr.adapters.sources.simulated import SimulatedSource
        from livesr.stream import Pipeline

        ctx = zmq.Context()
        pipe = Pipeline(
            self.config,
            output=self.output,
            endpoint=self._ingest,
            publish=self.publish_endpoint,
            control=self.control_endpoint,
            context=ctx,
        )
        try:
            pipe.start()
            pipe.ready.wait(30.0)
            self.started.set()
            src = SimulatedSource(
                sim_config_from(self.config),
                pipe.endpoint,
                frames=self.frames,
                pace=self.pace,
                stop_event=pipe.stop_requested,
                context=ctx,
            ).start()
            while src.join(0.2) is None:
                if self._stop.is_set():
                    src.stop()
                    src.join(35.0)
                    break
            if src.error is not None:
                self.error = f"the simulated source failed: {src.error}"
            if pipe.source_ended.wait(5.0):
                pipe.wait(60.0)
        except (
            Exception
        ) as exc:  # reported in the widget; the thread must not die silently
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("the simulated demo failed")
        finally:
            self.started.set()
            try:
                self.summary = pipe.close()
            finally:
                ctx.term()
                self._ipc.unlink(missing_ok=True)
                self._ctl_ipc.unlink(missing_ok=True)
            logger.info("simulated demo finished; results in %s", self.output)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 60.0) -> dict[str, Any] | None:
        """Stop acquisition, wait for the run to be written; returns its summary."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.summary

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end (frames acquired and processed); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


_WIDGET_CLASS: Any = None


def _widget_class() -> Any:
    """Build the QWidget subclass on first use (Qt is imported here, not at import).

    Long because the QWidget subclass has to be defined inside this function (Qt is
    imported on first use, never at import); each of its methods is short.
    """
    global _WIDGET_CLASS
    if _WIDGET_CLASS is not None:
        return _WIDGET_CLASS
    from qtpy.QtCore import QTimer, Signal
    from qtpy.QtGui import QFont
    from qtpy.QtWidgets import (
        QHBoxLayout,
        QLabel,
        QLineEdit,
        QPushButton,
        QVBoxLayout,
        QWidget,
    )

    from livesr.adapters.sinks.napari_viewer import LiveViewerSink

    class _Resources:
        """What the widget owns; closed when the widget is destroyed."""

        def __init__(self) -> None:
            self.sink: LiveViewerSink | None = None
            self.demo: SimulatedDemo | None = None
            self.follower: Any = None

        def close(self) -> None:
            if self.follower is not None:
                self.follower.stop()
                self.follower = None
            if self.sink is not None:
                self.sink.stop()
                self.sink = None
            if self.demo is not None:
                self.demo.stop()
                self.demo = None

    class LiveStreamWidget(QWidget):
        """Endpoint field, Connect and demo buttons, status text."""

        #: a followed acquisition's pipeline started (emitted off the GUI thread)
        run_started = Signal(object)

        def __init__(
            self,
            napari_viewer: Any,
            *,
            endpoint: str | None = None,
            raw_endpoint: str | None = None,
            control_endpoint: str | None = None,
            interval_ms: int = 16,
            curve: Any = None,
            control_curve: Any = None,
            parent: Any = None,
        ) -> None:
            super().__init__(parent)
            self.viewer = napari_viewer
            self.raw_endpoint = raw_endpoint
            self.interval_ms = interval_ms
            self.curve = curve
            #: client CURVE keys for a control channel bound off loopback
            self.control_curve = control_curve
            self._res = _Resources()
            res = self._res
            self.destroyed.connect(lambda *_: res.close())

            self.endpoint_edit = QLineEdit(endpoint or "")
            self.endpoint_edit.setPlaceholderText(
                "results endpoint, e.g. ipc:///tmp/livesr-results.ipc"
            )
            self.connect_button = QPushButton("Connect")
            self.connect_button.clicked.connect(self._toggle_connect)
            self.demo_button = QPushButton("Start simulated demo")
            self.demo_button.clicked.connect(self._toggle_demo)
            self.follow_button = QPushButton("Reconstruct the microscope's acquisitions")
            self.follow_button.clicked.connect(self._toggle_follow)
            self.run_started.connect(self._show_run)
            self._core_check = QTimer(self)
            self._core_check.timeout.connect(self._check_core)
            self.status = QLabel("not connected")
            self.status.setWordWrap(True)
            font = QFont("monospace")
            font.setStyleHint(QFont.StyleHint.Monospace)
            self.status.setFont(font)
            row = QHBoxLayout()
            row.addWidget(self.endpoint_edit)
            row.addWidget(self.connect_button)
            self.control_edit = QLineEdit(control_endpoint or "")
            self.control_edit.setPlaceholderText(
                "control endpoint (livesr run prints it: livesr ctl ENDPOINT ...)"
            )
            self.params_edit = QLineEdit("")
            self.params_edit.setPlaceholderText("window=30 radius=2")
            self.apply_button = QPushButton("Apply")
            self.apply_button.clicked.connect(lambda *_: self.apply_params())
            ctl_row = QHBoxLayout()
            ctl_row.addWidget(self.params_edit)
            ctl_row.addWidget(self.apply_button)
            lay = QVBoxLayout(self)
            lay.addLayout(row)
            lay.addWidget(self.control_edit)
            lay.addLayout(ctl_row)
            lay.addWidget(self.demo_button)
            lay.addWidget(self.follow_button)
            lay.addWidget(self.status)
            lay.addStretch(1)

        # -- state
        @property
        def sink(self) -> LiveViewerSink | None:
            return self._res.sink

        @property
        def demo(self) -> SimulatedDemo | None:
            return self._res.demo

        def _set_status(self, text: str) -> None:
            self.status.setText(text)

        # -- stream
        def connect_stream(self, endpoint: str | None = None) -> LiveViewerSink | None:
            """Subscribe to ``endpoint`` (default: the field); None on error."""
            self.disconnect_stream()
            ep = (endpoint or self.endpoint_edit.text()).strip()
            if not ep:
                self._set_status(
                    "enter the results endpoint of a running pipeline "
                    "(livesr run logs it), or start the simulated demo"
                )
                return None
            self.endpoint_edit.setText(ep)
            try:
                sink = LiveViewerSink(
                    self.viewer,
                    ep,
                    raw_endpoint=self.raw_endpoint,
                    interval_ms=self.interval_ms,
                    curve=self.curve,
                    on_status=self._on_status,
                ).start()
            except Exception as exc:  # bad endpoint, missing keys: say so in the widget
                self._set_status(f"cannot connect to {ep!r}: {exc}")
                logger.warning("cannot connect to %r: %s", ep, exc)
                return None
            self._res.sink = sink
            self.connect_button.setText("Disconnect")
            self._set_status(f"connected to {ep}; waiting for the first SR image...")
            return sink

        def disconnect_stream(self) -> None:
            if self._res.sink is not None:
                self._res.sink.stop()
                self._res.sink = None
                self._set_status("disconnected")
            self.connect_button.setText("Connect")

        def _toggle_connect(self) -> None:
            if self._res.sink is not None:
                self.disconnect_stream()
            else:
                self.connect_stream()

        def _on_status(self, text: str) -> None:
            demo = self._res.demo
            if demo is not None:
                text += f"\ndemo results: {demo.output}"
                if demo.error:
                    text += f"\ndemo error: {demo.error}"
            self._set_status(text)

        # -- control channel
        def apply_params(self, text: str | None = None) -> dict[str, Any] | None:
            """Send ``text`` (default: the field; ``window=30 radius=2``) as a live
            change through the control channel; the reply (None: not sent)."""
            from livesr.stream import (
                ControlClient,
                ControlUnreachable,
                parse_assignments,
            )

            ep = self.control_edit.text().strip()
            items = (self.params_edit.text() if text is None else text).split()
            try:
                params = parse_assignments(items)
                with ControlClient(ep, curve=self.control_curve, timeout_s=3.0) as c:
                    reply = c.request({"cmd": "set", "params": params})
            except (ValueError, ControlUnreachable) as exc:
                self._set_status(f"parameters not sent: {exc}")
                return None
            if not reply.get("ok"):
                self._set_status(f"parameters refused: {reply.get('error')}")
            elif reply.get("applied"):
                self._set_status(f"{params} in force from frame {reply['frame_index']}")
            else:
                self._set_status(f"{params} pending (applied at the next batch)")
            return reply

        # -- demo
        def start_demo(self, **kwargs: Any) -> SimulatedDemo:
            """Start :class:`SimulatedDemo` (``kwargs`` go to it) and connect to it."""
            self.stop_demo()
            demo = SimulatedDemo(**kwargs).start()
            self._res.demo = demo
            self.demo_button.setText("Stop demo")
            self.control_edit.setText(demo.control_endpoint)
            self.connect_stream(demo.publish_endpoint)
            return demo

        def stop_demo(self) -> dict[str, Any] | None:
            demo = self._res.demo
            if demo is None:
                return None
            self._res.demo = None
            self.demo_button.setText("Start simulated demo")
            summary = demo.stop()
            if summary is not None:
                self._set_status(
                    f"{self.status.text()}\ndemo stopped: "
                    f"{summary.get('windows_published', 0)} images, "
                    f"results in {demo.output}"
                )
            return summary

        # -- the microscope's own acquisitions (napari-micromanager, pymmcore-plus)
        def follow_microscope(
            self, core: Any = None, output: Any = None, config: Any = None
        ) -> Any:
            """Reconstruct every MDA / live run of ``core`` (default: napari-micro-
            manager's core in this viewer, else ``CMMCorePlus.instance()``) into runs
            under ``output`` (default: a new temporary folder); the follower."""
            from livesr.adapters._mm_follow import MicroscopeFollower, microscope_core

            self.stop_following()
            root = output or tempfile.mkdtemp(prefix="livesr-microscope-")
            follower = MicroscopeFollower(
                core if core is not None else microscope_core(self.viewer),
                root,
                config,
                on_run=self.run_started.emit,
            ).start()
            self._res.follower = follower
            if core is None:  # napari-micromanager may swap its core: keep up
                self._core_check.start(500)
            self.follow_button.setText("Stop reconstructing the microscope")
            self._set_status(
                f"waiting for an MDA or live mode on the microscope; runs in {root}"
            )
            return follower

        def stop_following(self) -> Any:
            """Stop following (a run in progress is finished first); its runs."""
            follower, self._res.follower = self._res.follower, None
            self._core_check.stop()
            self.follow_button.setText("Reconstruct the microscope's acquisitions")
            return follower.stop() if follower is not None else None

        def _check_core(self) -> None:
            from livesr.adapters._mm_follow import microscope_core

            follower = self._res.follower
            if follower is not None and not follower.busy:
                follower.retarget(microscope_core(self.viewer))

        def _show_run(self, run: Any) -> None:
            if run.endpoint:
                self.connect_stream(run.endpoint)
                if run.control_endpoint:  # Apply changes the followed run
                    self.control_edit.setText(run.control_endpoint)
                self._set_status(f"reconstructing the {run.kind} into {run.output}")

        def _toggle_follow(self) -> None:
            if self._res.follower is not None:
                self.stop_following()
            else:
                self.follow_microscope()

        def _toggle_demo(self) -> None:
            if self._res.demo is not None:
                self.stop_demo()
            else:
                self.start_demo()

        def shutdown(self) -> None:
            """Disconnect and stop the demo (also done when the widget is destroyed)."""
            self._res.close()
            try:
                self.connect_button.setText("Connect")
                self.demo_button.setText("Start simulated demo")
                self.follow_button.setText("Reconstruct the microscope's acquisitions")
                self._core_check.stop()
            except (
                RuntimeError
            ):  # the window was closed: Qt already deleted the buttons
                pass

    _WIDGET_CLASS = LiveStreamWidget
    return LiveStreamWidget


class LiveStreamWidget:
    """The dock widget (see the module docstring): ``LiveStreamWidget(napari_viewer,
    endpoint=None, raw_endpoint=None, control_endpoint=None, interval_ms=16,
    curve=None, control_curve=None)``.

    Constructing it returns an instance of a ``QWidget`` subclass built on first use
    (Qt is not imported before); ``__init__`` carries the signature napari inspects to
    pass the viewer (npe2 widget contribution).
    """

    def __new__(cls, napari_viewer: Any, **kwargs: Any) -> Any:
        return _widget_class()(napari_viewer, **kwargs)

    def __init__(self, napari_viewer: Any, **kwargs: Any) -> None:  # pragma: no cover
        pass  # never called: __new__ returns the QWidget


def make_live_widget(napari_viewer: Any) -> Any:
    """The live-stream dock widget for ``napari_viewer``.

    The runs it starts share napari's process: on a machine with few cores their
    OpenMP workers are asked to sleep between batches, not spin
    (:mod:`livesr.stream._openmp`), so that the GUI thread keeps a core; without
    effect if a kernel loaded OpenMP already.
    """
    from livesr.stream._openmp import prefer_passive_openmp

    prefer_passive_openmp()
    return LiveStreamWidget(napari_viewer)
