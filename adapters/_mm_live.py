"""livesr inside a running pymmcore-plus session: an MDA output handler and a listener.

Both stream every frame into the same lossless pipeline as ``livesr run``
(:class:`~livesr.stream._pipeline.Pipeline` bound on an in-process endpoint, the
frames pushed over a :class:`~livesr.stream._source_link.SourceLink`), so the
output folder holds the raw frames, the live reconstructions and ``summary.json``.

MDA output handler (:func:`mda_output`)::

    from livesr.adapters import mda_output
    handler = mda_output("run-1", config)           # LivesrConfig, TOML path or None
    core.mda.run(sequence, output=handler)          # reconstructs while acquiring
    handler.summary["windows_published"]

pymmcore-plus calls ``sequenceStarted`` / ``frameReady`` / ``sequenceFinished``
on its relay thread (not the acquisition thread), so a frame waiting for room in
the link's replay ring slows only the relay, never the camera, and ``run``
returns after ``sequenceFinished`` processed the last window.

Listener on a running sequence acquisition (:func:`attach`)::

    core.startContinuousSequenceAcquisition(0)      # e.g. live mode
    listener = attach(core, "run-2", config)        # takes frames, does not start
    ...
    summary = listener.close()                      # detaches; acquisition goes on

Frames the circular buffer overwrote before the listener took them are gaps in
the summary (``frames_in_gaps``, ``gaps``).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AcquisitionListener", "MDAOutput", "attach", "mda_output"]

logger = logging.getLogger(__name__)

#: longest wait for the pipeline to process what it received, s
DRAIN_TIMEOUT_S = 600.0


def _config(config: Any) -> Any:
    from livesr.stream import LivesrConfig, load_config

    if config is None:
        return LivesrConfig()
    if isinstance(config, LivesrConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise TypeError(
        "config must be a LivesrConfig, a TOML path or None, got "
        f"{type(config).__name__}"
    )


class _PipelineRun:
    """A pipeline on an in-process endpoint with its own ZeroMQ context."""

    def __init__(
        self, output_dir: Any, config: Any, frame_shape: tuple[int, int] | None
    ) -> None:
        import zmq

        from livesr.stream import READY_TIMEOUT_S, Pipeline

        self.ctx = zmq.Context()
        self.pipe = Pipeline(
            _config(config),
            output=output_dir,
            endpoint=f"inproc://livesr-mm-{secrets.token_hex(4)}",
            context=self.ctx,
            frame_shape=frame_shape,
        )
        try:
            self.pipe.start()
        except BaseException:
            self.ctx.term()
            raise
        if not self.pipe.ready.wait(READY_TIMEOUT_S):
            logger.warning("pipeline not warmed up after %.0f s", READY_TIMEOUT_S)

    def finish(self, source_closed: bool) -> dict[str, Any]:
        """Wait for the pipeline to process what the source sent; close; summary."""
        pipe = self.pipe
        if source_closed and pipe.source_ended.wait(5.0):
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while not pipe.wait(0.5) and time.monotonic() < deadline:
                pass
        try:
            return pipe.close()
        finally:
            self.ctx.term()


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class MDAOutput:
    """pymmcore-plus MDA output handler streaming frames into a livesr pipeline.

    Use :func:`mda_output` to make one. One handler serves one MDA run.

    Parameters
    ----------
    output_dir : path-like
        Output folder of the run (created; must not hold a previous run).
    config : LivesrConfig, path-like or None
        Run configuration (eSRRF window, stride, magnification, ...); a TOML file
        is read with :func:`livesr.stream._config.load_config`; None: defaults.
    ring_frames : int
        Replay-ring slots of the link (frames held for a slow pipeline).
    send_timeout_s : float
        How long a frame may wait for a free ring slot before it is reported as
        lost, s.

    Attributes
    ----------
    summary : dict or None
        The pipeline's summary once the sequence finished (``frames_persisted``,
        ``windows_published``, ``frames_in_gaps``, ...).
    error : BaseException or None
        Why the pipeline could not start or a frame could not be sent.
    frames_sent : int
        Frames handed to the link.
    """

    def __init__(
        self,
        output_dir: str | Path,
        config: Any = None,
        *,
        ring_frames: int = 256,
        send_timeout_s: float = 30.0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.config = _config(config)
        self.ring_frames = int(ring_frames)
        self.send_timeout_s = float(send_timeout_s)
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.frames_sent = 0
        self._run: _PipelineRun | None = None
        self._link: Any = None
        self._shape: tuple[int, int] | None = None
        self._px: float | None = None
        self._lock = threading.Lock()
        self._done = False

    @property
    def publish_endpoint(self) -> str | None:
        """Where the pipeline publishes its SR images (None before it started)."""
        return self._run.pipe.publish_endpoint if self._run is not None else None

    @property
    def control_endpoint(self) -> str | None:
        """The pipeline's control channel (``livesr ctl ENDPOINT ...``; None before
        it started)."""
        return self._run.pipe.control_endpoint if self._run is not None else None

    # ------------------------------------------------------------------ MDA signals
    def sequenceStarted(  # noqa: N802 (pymmcore-plus signal name)
        self, sequence: Any = None, summary_meta: Any = None
    ) -> None:
        """Start the pipeline (shape and pixel size from the summary metadata)."""
        infos = (summary_meta or {}).get("image_infos") or []
        if infos:
            info = infos[0]
            if info.get("height") and info.get("width"):
                self._shape = (int(info["height"]), int(info["width"]))
            self._px = _num(info.get("pixel_size_um")) or None
        self._ensure_pipeline()

    def frameReady(  # noqa: N802 (pymmcore-plus signal name)
        self, img: np.ndarray, event: Any = None, meta: Any = None
    ) -> None:
        """Send one frame into the pipeline (blocks while the link's ring is full)."""
        if self._done or self.error is not None:
            return
        fm = dict(meta) if meta is not None else {}
        try:
            if self._run is None:  # connected mid-sequence: start now
                self._ensure_pipeline()
                if self._run is None:
                    return
            if self._link is None:
                self._open_link(img, fm)
            self._link.send(
                np.asarray(img),
                t_acq=self._t_acq(fm),
                meta=self._head(event, fm),
                timeout=self.send_timeout_s,
            )
            self.frames_sent += 1
        except Exception as exc:
            self.error = exc
            logger.error("livesr MDA output: frame not sent, streaming stops: %s", exc)

    def sequenceFinished(self, sequence: Any = None) -> None:  # noqa: N802
        """Close the link and wait until every window is processed."""
        self.close()

    # ------------------------------------------------------------------ internals
    def _ensure_pipeline(self) -> None:
        with self._lock:
            if self._run is not None or self.error is not None:
                return
            try:
                self._run = _PipelineRun(self.output_dir, self.config, self._shape)
            except Exception as exc:
                self.error = exc
                logger.error("livesr MDA output: pipeline did not start: %s", exc)

    def _open_link(self, img: np.ndarray, fm: dict[str, Any]) -> None:
        from livesr.stream import SourceLink, SourceLinkConfig

        assert self._run is not None
        px = _num(fm.get("pixel_size_um")) or self._px
        if not px or px <= 0:
            raise ValueError(
                "the MDA frames carry no pixel size (pixel_size_um 0); define a pixel "
                "size configuration in Micro-Manager"
            )
        if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
            raise ValueError(
                f"MDA frame {img.shape} {img.dtype}; expected a 2-D uint8 or uint16 "
                "image"
            )
        self._link = SourceLink(
            SourceLinkConfig(
                endpoint=self._run.pipe.endpoint,
                stream="mda",
                shape=(int(img.shape[0]), int(img.shape[1])),
                dtype=str(img.dtype),
                pixel_size_um=float(px),
                ring_frames=self.ring_frames,
                overflow="stop",
            ),
            context=self._run.ctx,
        ).start()

    @staticmethod
    def _t_acq(fm: dict[str, Any]) -> float:
        cam = fm.get("camera_metadata") or {}
        s = cam.get("TimeReceivedByCore") if hasattr(cam, "get") else None
        if s:
            try:
                return datetime.fromisoformat(str(s)).timestamp()
            except ValueError:
                pass
        return time.time()

    @staticmethod
    def _head(event: Any, fm: dict[str, Any]) -> dict[str, Any]:
        pos = fm.get("position") or {}
        index = getattr(event, "index", None) or {}
        return {
            "camera": fm.get("camera_device"),
            "exposure_ms": _num(fm.get("exposure_ms")),
            "x_um": _num(pos.get("x")),
            "y_um": _num(pos.get("y")),
            "z_um": _num(pos.get("z")),
            "runner_time_ms": _num(fm.get("runner_time_ms")),
            "mda_index": {str(k): int(v) for k, v in dict(index).items()},
        }

    def close(self) -> dict[str, Any] | None:
        """Finish the run (idempotent; ``sequenceFinished`` calls it); the summary."""
        with self._lock:
            if self._done:
                return self.summary
            self._done = True
        link_closed = False
        if self._link is not None:
            self._link.close(timeout=30.0)
            link_closed = True
        if self._run is not None:
            self.summary = self._run.finish(link_closed)
            logger.info(
                "livesr MDA output: %d frames persisted, %d images published in %s",
                self.summary.get("frames_persisted", 0),
                self.summary.get("windows_published", 0),
                self.output_dir,
            )
        return self.summary


def mda_output(output_dir: str | Path, config: Any = None) -> MDAOutput:
    """A pymmcore-plus MDA output handler that reconstructs the MDA live.

    Parameters
    ----------
    output_dir : path-like
        Output folder (raw frames, SR images, ``summary.json``).
    config : LivesrConfig, path-like or None
        Run configuration; a path is a livesr TOML file; None: defaults.

    Returns
    -------
    MDAOutput
        Pass it as ``core.mda.run(sequence, output=handler)`` (or connect its
        ``sequenceStarted`` / ``frameReady`` / ``sequenceFinished`` methods to
        ``core.mda.events``); ``handler.summary`` once the run returned.

    Examples
    --------
    >>> import useq                                              # doctest: +SKIP
    >>> cfg = LivesrConfig().replace("esrrf", window=20)         # doctest: +SKIP
    >>> handler = mda_output("out", cfg)                         # doctest: +SKIP
    >>> core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 200}),
    ...              output=handler)                             # doctest: +SKIP
    """
    return MDAOutput(output_dir, config)


class AcquisitionListener:
    """Streams a running sequence acquisition into a livesr pipeline (:func:`attach`).

    Parameters
    ----------
    core : pymmcore_plus.CMMCorePlus
        A core whose sequence acquisition is running.
    output_dir : path-like
        Output folder of the run.
    config : LivesrConfig, path-like or None
        Run configuration.
    ring_frames : int
        Replay-ring slots of the link.
    on_frame : callable, optional
        ``on_frame(image_number, frame, meta)`` before each frame is sent.

    Attributes
    ----------
    source : MMCorePushSource
        The listening source (``source.camera``: frames taken, gaps).
    summary : dict or None
        The pipeline's summary after :meth:`close`.
    """

    def __init__(
        self,
        core: Any,
        output_dir: str | Path,
        config: Any = None,
        *,
        ring_frames: int = 256,
        on_frame: Any = None,
    ) -> None:
        from livesr.adapters.sources.mmcore_push import MMCorePushSource

        if not core.isSequenceRunning():
            raise RuntimeError(
                "attach(): no sequence acquisition is running on this core; start one "
                "(live mode, startContinuousSequenceAcquisition) first"
            )
        self.core = core
        self.output_dir = Path(output_dir)
        self.summary: dict[str, Any] | None = None
        shape = (int(core.getImageHeight()), int(core.getImageWidth()))
        self._run = _PipelineRun(output_dir, config, shape)
        self.source = MMCorePushSource(
            core,
            self._run.pipe.endpoint,
            frames=0,
            stream="mm-attach",
            ring_frames=ring_frames,
            stop_event=self._run.pipe.stop_requested,
            context=self._run.ctx,
            on_frame=on_frame,
            attach=True,
        ).start()
        self._closed = False

    @property
    def publish_endpoint(self) -> str:
        """Where the pipeline publishes its SR images (a results PUB endpoint)."""
        return str(self._run.pipe.publish_endpoint)

    @property
    def control_endpoint(self) -> str:
        """The pipeline's control channel (``livesr ctl ENDPOINT set|status|stop``)."""
        return str(self._run.pipe.control_endpoint)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the acquisition stopped (the listener ended); True if it did."""
        return self.source.join(timeout) is not None

    def close(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Detach (the acquisition keeps running), finish the run; the summary."""
        if self._closed:
            return self.summary or {}
        self._closed = True
        self.source.stop()
        ended = self.source.join(timeout_s) is not None
        if not ended:
            logger.error("the listener did not end within %.0f s", timeout_s)
        self.summary = self._run.finish(ended)
        return self.summary

    def __enter__(self) -> AcquisitionListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(
    core: Any, output_dir: str | Path, config: Any = None, *, on_frame: Any = None
) -> AcquisitionListener:
    """Reconstruct a sequence acquisition that is already running on ``core``, live.

    Frames are popped from the core's circular buffer; the acquisition is neither
    started nor stopped. Returns the started listener;
    :meth:`~AcquisitionListener.close` detaches and returns the pipeline's summary
    (overwritten frames are gaps).
    ``on_frame(image_number, frame, meta)``, optional, sees every frame taken before
    it is sent (on the listener's thread; keep it short).
    """
    return AcquisitionListener(core, output_dir, config, on_frame=on_frame)
