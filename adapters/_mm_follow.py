"""Follow a pymmcore-plus core: reconstruct every MDA and live-mode run it makes.

:class:`MicroscopeFollower` listens to a core someone else drives (napari-micromanager,
a script, pymmcore-widgets) and, without starting or stopping anything itself:

- when an MDA starts (``core.mda.events.sequenceStarted``), streams it into a new
  livesr pipeline through :class:`~livesr.adapters._mm_live.MDAOutput` (the same
  handler as ``core.mda.run(seq, output=mda_output(...))``), in ``<root>/mda-NNN``;
- when live mode starts (``core.events.continuousSequenceAcquisitionStarted``),
  attaches an :class:`~livesr.adapters._mm_live.AcquisitionListener` to it, in
  ``<root>/live-NNN``, and closes it when the acquisition stops.

Each new run is announced through ``on_run(run)`` (a :class:`FollowedRun`: its kind,
folder and results endpoint), so a viewer can subscribe to its SR images; the napari
dock widget (:mod:`livesr.adapters.sinks._napari_widget`) does that.

The core's signals only enqueue: frames are copied and handed to the pipeline by the
follower's own thread, so the acquisition thread never waits for livesr (unless the
queue of ``max_queued`` frames is full, when it waits rather than lose a frame).

Live mode note: the listener takes frames out of the circular buffer
(``popNextImage``), so a live preview that shows ``getLastImage`` only while images
remain in the buffer (napari-micromanager's) refreshes less often while livesr
follows live mode; MDA previews are unaffected.

::

    follower = MicroscopeFollower(core, "runs", config).start()
    core.run_mda(sequence)            # reconstructed into runs/mda-001
    ...
    follower.stop()                   # finishes a run in progress; follower.runs
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FollowedRun", "MicroscopeFollower", "microscope_core"]

logger = logging.getLogger(__name__)

#: how long :meth:`MicroscopeFollower.stop` waits for a run to be written, s
STOP_TIMEOUT_S = 120.0


def microscope_core(viewer: Any = None) -> Any:
    """The core to follow: napari-micromanager's in ``viewer``, else the singleton.

    napari-micromanager (0.3) keeps its own core (not ``CMMCorePlus.instance()``) and
    replaces it by a ``UniMMCore`` when a configuration with ``#py`` devices is
    loaded, so the core of its main window docked in ``viewer`` is asked first;
    without one, ``pymmcore_plus.CMMCorePlus.instance()``.
    """
    if viewer is not None:
        try:
            from napari_micromanager.main_window import MainWindow
        except ImportError:
            MainWindow = None  # noqa: N806 (a class)
        qt_window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        if MainWindow is not None and qt_window is not None:
            win = qt_window.findChild(MainWindow)
            if win is not None:
                return win.core
    from pymmcore_plus import CMMCorePlus

    return CMMCorePlus.instance()


@dataclass
class FollowedRun:
    """One acquisition the follower reconstructs.

    Attributes
    ----------
    kind : str
        ``"mda"`` or ``"live"``.
    output : Path
        Its livesr output folder (raw frames, SR images, ``summary.json``).
    endpoint : str
        Results PUB endpoint of its pipeline (subscribe to see the SR images).
    control_endpoint : str
        Its pipeline's control channel: live parameter changes (``livesr ctl
        ENDPOINT set window=30``, the napari widget's *Apply*), recorded in its
        summary's ``param_changes``.
    summary : dict or None
        The pipeline's summary once the run ended.
    error : str or None
        Why the run could not be reconstructed (the acquisition itself went on).
    """

    kind: str
    output: Path
    endpoint: str = ""
    control_endpoint: str = ""
    summary: dict[str, Any] | None = None
    error: str | None = None
    _handle: Any = field(default=None, repr=False)

    @property
    def frames_sent(self) -> int:
        """Frames handed to this run's pipeline so far."""
        h = self._handle
        if h is None:
            return 0
        src = getattr(h, "source", None)  # a live-mode listener
        return int(src.frames_sent if src is not None else h.frames_sent)


class MicroscopeFollower:
    """Reconstruct every MDA and live-mode acquisition of ``core`` (module docstring).

    Parameters
    ----------
    core : pymmcore_plus.CMMCorePlus
        The core to follow (see :func:`microscope_core`).
    root : path-like
        Folder of the runs (``mda-001``, ``live-001``... are created in it).
    config : LivesrConfig, path-like or None
        Run configuration (eSRRF window, stride, magnification...); None: defaults.
    on_run : callable, optional
        ``on_run(run)`` when a run's pipeline started (on the follower's thread).
    max_queued : int
        Frames waiting for the pipeline before the acquisition thread waits.

    Attributes
    ----------
    runs : list of FollowedRun
        Every run so far, oldest first.
    """

    def __init__(
        self,
        core: Any,
        root: str | Path,
        config: Any = None,
        *,
        on_run: Callable[[FollowedRun], None] | None = None,
        max_queued: int = 4096,
    ) -> None:
        self.core = core
        self.root = Path(root)
        self.config = config
        self.on_run = on_run
        self.runs: list[FollowedRun] = []
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=int(max_queued))
        self._thread: threading.Thread | None = None
        self._current: FollowedRun | None = None
        self._counts = {"mda": 0, "live": 0}
        self._connected: list[tuple[Any, Callable[..., None]]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MicroscopeFollower:
        """Connect to the core's signals and start the follower's thread."""
        if self._thread is not None:
            raise RuntimeError("MicroscopeFollower.start() called twice")
        self._connect(self.core)
        self._thread = threading.Thread(
            target=self._loop, name="livesr-mm-follow", daemon=True
        )
        self._thread.start()
        return self

    def retarget(self, core: Any) -> None:
        """Follow ``core`` instead (napari-micromanager replaced its core)."""
        if core is self.core:
            return
        self._disconnect()
        self._q.put(("end", None))  # a run of the old core ends here
        self.core = core
        self._connect(core)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> list[FollowedRun]:
        """Disconnect, finish a run in progress, stop the thread; the runs."""
        self._disconnect()
        if self._thread is not None:
            self._q.put(("quit", None))
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("the follower did not finish within %.0f s", timeout_s)
        return self.runs

    @property
    def busy(self) -> bool:
        """True while a run is being reconstructed."""
        return self._current is not None

    # ------------------------------------------------------------------ signals
    def _connect(self, core: Any) -> None:
        pairs: list[tuple[Any, Callable[..., None]]] = [
            (core.mda.events.sequenceStarted, self._on_mda_started),
            (core.mda.events.frameReady, self._on_frame),
            (core.mda.events.sequenceFinished, self._on_mda_finished),
            (core.events.continuousSequenceAcquisitionStarted, self._on_live),
            (core.events.sequenceAcquisitionStopped, self._on_stopped),
        ]
        for signal, slot in pairs:
            signal.connect(slot)
        self._connected = pairs

    def _disconnect(self) -> None:
        for signal, slot in self._connected:
            try:
                signal.disconnect(slot)
            except (ValueError, RuntimeError, TypeError):  # gone with its core
                pass
        self._connected = []

    def _on_mda_started(self, sequence: Any = None, meta: Any = None) -> None:
        self._q.put(("mda", (sequence, meta)))

    def _on_frame(self, img: np.ndarray, event: Any = None, meta: Any = None) -> None:
        self._q.put(("frame", (np.array(img, copy=True), event, meta)))

    def _on_mda_finished(self, sequence: Any = None) -> None:
        self._q.put(("end", None))

    def _on_live(self, *_: Any) -> None:
        self._q.put(("live", None))

    def _on_stopped(self, *_: Any) -> None:
        self._q.put(("live-end", None))

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        while True:
            kind, item = self._q.get()
            try:
                if kind == "quit":
                    self._end_run()
                    return
                self._step(kind, item)
            except Exception as exc:  # a broken run must not end the follower
                logger.exception("livesr follower: %s failed", kind)
                if self._current is not None:
                    self._current.error = f"{type(exc).__name__}: {exc}"
                    self._current = None

    def _step(self, kind: str, item: Any) -> None:
        cur = self._current
        if kind == "mda":
            from livesr.adapters._mm_live import MDAOutput

            self._end_run()
            out = self._next_output("mda")
            handler = MDAOutput(out, self.config)
            run = self._add_run(FollowedRun("mda", out, _handle=handler))
            handler.sequenceStarted(*item)
            self._started(
                run, handler.error, handler.publish_endpoint, handler.control_endpoint
            )
        elif kind == "frame" and cur is not None and cur.kind == "mda":
            cur._handle.frameReady(*item)
        elif kind == "end" and cur is not None and cur.kind == "mda":
            self._end_run()
        elif kind == "live" and cur is None and not self.core.mda.is_running():
            from livesr.adapters._mm_live import AcquisitionListener

            out = self._next_output("live")
            try:
                listener = AcquisitionListener(self.core, out, self.config)
            except RuntimeError as exc:  # live mode already stopped again
                logger.warning("livesr follower: live mode not followed: %s", exc)
                return
            run = self._add_run(FollowedRun("live", out, _handle=listener))
            self._started(
                run, None, listener.publish_endpoint, listener.control_endpoint
            )
        elif kind in ("live-end", "end") and cur is not None and cur.kind == "live":
            self._end_run()

    def _next_output(self, kind: str) -> Path:
        self._counts[kind] += 1
        out = self.root / f"{kind}-{self._counts[kind]:03d}"
        while out.exists():  # a folder of an earlier session
            self._counts[kind] += 1
            out = self.root / f"{kind}-{self._counts[kind]:03d}"
        return out

    def _add_run(self, run: FollowedRun) -> FollowedRun:
        self._current = run
        self.runs.append(run)
        return run

    def _started(
        self, run: FollowedRun, error: Any, endpoint: str | None, control: str | None
    ) -> None:
        if error is not None:
            run.error = str(error)
            logger.error(
                "livesr follower: %s run not reconstructed: %s", run.kind, error
            )
            return
        run.endpoint = endpoint or ""
        run.control_endpoint = control or ""
        logger.info(
            "livesr follower: reconstructing the %s into %s", run.kind, run.output
        )
        if self.on_run is not None:
            self.on_run(run)

    def _end_run(self) -> None:
        run, self._current = self._current, None
        if run is None:
            return
        handle = run._handle
        if run.kind == "mda":
            run.summary = handle.close()
            if handle.error is not None and run.error is None:
                run.error = str(handle.error)
        else:
            run.summary = handle.close()
        s = run.summary or {}
        logger.info(
            "livesr follower: %s ended, %d frames persisted, %d images in %s",
            run.kind,
            s.get("frames_persisted", 0),
            s.get("windows_published", 0),
            run.output,
        )
