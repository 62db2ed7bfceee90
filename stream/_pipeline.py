"""The live pipeline: persist every frame first, then drift -> sliding eSRRF -> publish.

::

    pipe = Pipeline(config, output="out").start()     # binds the ingest, starts threads
    # a source connects to pipe.endpoint and pushes frames (lossless link)
    pipe.set_params(radius=2.0)                        # while streaming, between frames
    pipe.wait(timeout=60)                              # source ended, all processed
    summary = pipe.close()                             # result files written

Threads
-------
ingest (``Ingest``)
    ``on_frame``: write the frame to the raw store (OME-Zarr / OME-TIFF), then offer
    it to the :class:`~livesr.stream._ring.ProcessingRing` and return (the ingest then
    ACKs).  Processing never holds it back: a full ring means the frame is not
    processed (it is on disk) and the windows it belonged to are counted as skipped.
    A write error (``ENOSPC``...) stops acquisition (:attr:`Pipeline.stop_requested`),
    and the frames that arrive afterwards are recorded as a gap.
processing
    Takes frames from the ring in order: rolling drift estimate
    (:class:`livesr.kernels.RollingDrift`), then :class:`livesr.kernels.SlidingEsrrf`
    with the frame's drift as ``shift`` (undone inside the magnification); every
    completed window is published (PUB, tiny HWM) and appended to ``sr.ome.zarr``.

Skipping (never raw frames)
---------------------------
The emission schedule is kept in stream sequence numbers: images end at frames
``e_k = e_0 + k * stride``.  Before each frame the processing thread estimates the
time to work through the ring (backlog x smoothed cost per frame); when that exceeds
the latency budget it drops the oldest frames up to the window of ``e*``, the newest
scheduled emission already in the ring, restarts the sliding state there, and counts
the scheduled emissions before ``e*`` as ``windows_skipped``; it does not skip again
before that restarted window is out (otherwise a window longer than the budget allows
would never complete: after a skip the latency is at least ``window`` x cost).
A hole in the frames
(a source gap, a frame the full ring refused) restarts at the first scheduled window
that lies wholly after it, the same way.  The phase of the schedule never moves, so
``windows_published + windows_skipped`` equals the number of scheduled windows
(without parameter changes: ``(N - window) // stride + 1`` for ``N`` frames).

Frames dropped for processing (skips, holes) are not given to the drift estimator
either; it keeps its state, and the drift table maps its estimates back to sequence
numbers (``drift.csv``), so a skip shows as a jump in the table's ``frame`` column.

Memory: fixed ring slots, the sliding window's storage, O(1) latency statistics; the
only growing state is 8 bytes per processed frame (drift index -> seq) and the drift
estimator's per-block lists.

Engine hook
-----------
The per-frame map goes through :class:`MapStage`: any callable with the signature of
:func:`livesr.kernels.esrrf_frame` (a dispatched ``livesr.engine`` kernel when one is
registered); if it accepts ``deadline_s`` the remaining latency budget of the frame is
passed.  Its ``implementation`` (or the callable's name; ``"numpy"`` for the default)
is reported per stage.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import secrets
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from livesr.stream._config import EsrrfConfig, LivesrConfig
from livesr.stream._latency import LatencyTracker, Timestamps
from livesr.stream._rawstore import RawStore, RawStoreError, open_raw_store
from livesr.stream._ring import ProcessingRing, RingItem
from livesr.stream._transport import RateLimitedLog
from livesr.stream._wire import FrameHeader

__all__ = ["LIVE_PARAMS", "MapStage", "Pipeline", "engine_map", "quality_metric"]

logger = logging.getLogger(__name__)

#: Parameters :meth:`Pipeline.set_params` may change while streaming.
LIVE_PARAMS: tuple[str, ...] = ("window", "stride", "radius", "sensitivity", "temporal")

#: The processing ring never holds more frames than this (or 4 windows).
RING_MAX_FRAMES = 4096

#: longest a command waits for the warm-up (kernel compiles, timing of untimed
#: implementations at the camera's shape) before it starts acquiring, s
READY_TIMEOUT_S = 300.0

#: Name of the quality metric published with every image.
QUALITY_METRIC = "normalized_gradient_energy"


def quality_metric(image: np.ndarray) -> float:
    """Cheap sharpness of an SR image: ``mean(|grad I|^2) / mean(I)^2`` (finite pixels).

    Dimensionless, O(pixels), higher = more high-frequency content relative to the
    brightness (it rises as an eSRRF image sharpens and with noise; compare images of
    one run).  NaN for an empty or zero image.
    """
    img = np.asarray(image)
    if img.dtype not in (np.float32, np.float64):
        img = img.astype(np.float64)
    if img.ndim != 2 or min(img.shape) < 2:
        return math.nan
    finite = np.isfinite(img)
    if not finite.all():
        img = np.where(finite, img, 0)
    mean = float(img.mean(dtype=np.float64))
    if mean == 0.0:
        return math.nan
    # One pass per axis with BLAS dot products: ~6x faster than squaring in float64
    # on a 1280^2 SR image (it runs on the processing thread at every window).
    gy = np.diff(img, axis=0).ravel()
    gx = np.diff(img, axis=1).ravel()
    energy = float(np.dot(gy, gy)) / gy.size + float(np.dot(gx, gx)) / gx.size
    return energy / (mean * mean)


class MapStage:
    """The per-frame eSRRF map stage, the engine's hook (see the module docstring).

    Parameters
    ----------
    fn : callable, optional
        ``fn(frame, params, *, shift, out[, deadline_s])``; default
        :func:`livesr.kernels.esrrf_frame` (numpy).  For a dispatched
        ``livesr.engine`` kernel with the ``esrrf_map`` signature use
        :func:`engine_map`.
    name : str, optional
        Implementation name to report (default: the engine's last decision when
        ``fn`` (or ``fn.kernel``) has ``last_decision``, else ``fn.implementation``
        or the function's name).
    """

    #: smallest deadline handed to the engine (it requires > 0): "as fast as possible"
    MIN_DEADLINE_S = 1e-6

    def __init__(
        self, fn: Callable[..., np.ndarray] | None = None, name: str | None = None
    ) -> None:
        if fn is None:
            fn = default_map()
            name = name or "esrrf_map"  # until the engine's first decision
        self.fn = fn
        self._engine = getattr(fn, "kernel", fn)
        self._name = name or str(
            getattr(fn, "implementation", None) or getattr(fn, "__name__", "custom")
        )
        try:
            sig = inspect.signature(fn)
            self.accepts_deadline = "deadline_s" in sig.parameters or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
            )
        except (TypeError, ValueError):
            self.accepts_deadline = False
        #: remaining latency budget of the frame being mapped, s (None: no deadline)
        self.deadline_s: float | None = None
        self.calls = 0

    @property
    def name(self) -> str:
        """Implementation that ran the last call (engine decision when dispatched)."""
        decision = getattr(self._engine, "last_decision", None)
        impl = getattr(decision, "impl", None)
        return str(impl) if impl else self._name

    def __call__(
        self,
        frame: np.ndarray,
        params: Any,
        *,
        shift: Any = (0.0, 0.0),
        out: Any = None,
    ) -> np.ndarray:
        self.calls += 1
        if self.accepts_deadline:
            d = self.deadline_s
            deadline = None if d is None else max(float(d), self.MIN_DEADLINE_S)
            return self.fn(frame, params, shift=shift, out=out, deadline_s=deadline)
        return self.fn(frame, params, shift=shift, out=out)


def engine_map(kernel: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Adapt a dispatched ``esrrf_map(frame, magnification, radius, sensitivity,
    intensity_weighting, shift=, deadline_s=)`` kernel to the ``esrrf_frame``
    signature :class:`MapStage` and :class:`livesr.kernels.SlidingEsrrf` use.

    Only the ``"nanopyx"`` geometry is mapped (the engine kernels implement it).
    """

    def esrrf_map_stage(
        frame: np.ndarray,
        params: Any,
        *,
        shift: Any = (0.0, 0.0),
        out: np.ndarray | None = None,
        deadline_s: float | None = None,
    ) -> np.ndarray:
        if params.geometry != "nanopyx":
            raise ValueError(
                f"engine esrrf_map implements geometry 'nanopyx' only, got "
                f"{params.geometry!r}; use the default map (esrrf_frame) for it"
            )
        kw = {} if deadline_s is None else {"deadline_s": deadline_s}
        img = kernel(
            frame,
            params.magnification,
            params.radius,
            params.sensitivity,
            params.intensity_weighting,
            shift=tuple(shift),
            **kw,
        )
        if out is None:
            return np.asarray(img, dtype=np.float32)
        out[...] = img
        return out

    esrrf_map_stage.kernel = kernel  # type: ignore[attr-defined]
    return esrrf_map_stage


def default_map() -> Callable[..., np.ndarray]:
    """The pipeline's per-frame map: the engine-dispatched ``esrrf_map`` kernel (with
    the remaining latency budget as its deadline) for the ``"nanopyx"`` geometry, and
    :func:`livesr.kernels.esrrf_frame` (fastest stage implementations) otherwise."""
    from livesr.kernels import esrrf_frame
    from livesr.kernels.esrrf_map import kernel as esrrf_map_kernel

    dispatched = engine_map(esrrf_map_kernel)

    def esrrf_map_or_frame(
        frame: np.ndarray,
        params: Any,
        *,
        shift: Any = (0.0, 0.0),
        out: np.ndarray | None = None,
        deadline_s: float | None = None,
    ) -> np.ndarray:
        if params.geometry == "nanopyx":
            return dispatched(frame, params, shift=shift, out=out, deadline_s=deadline_s)
        return esrrf_frame(frame, params, shift=shift, out=out)

    esrrf_map_or_frame.kernel = esrrf_map_kernel  # type: ignore[attr-defined]
    return esrrf_map_or_frame


class _Gaps:
    """Frames acquired but never persisted, as ``[first, last, reason]`` runs."""

    def __init__(self) -> None:
        self.runs: list[list[Any]] = []
        self.frames = 0

    def add(self, first: int, last: int, reason: str) -> None:
        if self.runs and self.runs[-1][2] == reason and self.runs[-1][1] == first - 1:
            self.runs[-1][1] = last
        else:
            self.runs.append([first, last, reason])
        self.frames += last - first + 1


class Pipeline:
    """Persistence-first live eSRRF pipeline (see the module docstring).

    Parameters
    ----------
    config : LivesrConfig
        Run configuration (``esrrf``, ``drift``, ``stream``).
    output : path-like, optional
        Output folder (default ``config.stream.output``); created.
    endpoint : str, optional
        Ingest endpoint to bind (default ``config.stream.endpoint`` or an automatic
        ``ipc://`` path in the temporary folder).
    publish : str, optional
        Results PUB endpoint (default ``config.stream.publish`` or automatic).
    context : zmq.Context, optional
        Shared ZeroMQ context (required for ``inproc://`` endpoints shared with a
        source in this process).
    frame_map : callable, optional
        Per-frame map implementation (engine hook, see :class:`MapStage`).
    stage_hook : callable, optional
        ``stage_hook(seq)`` called in the processing stage before each frame (tests
        inject delays here).
    raw_store : RawStore, optional
        Custom raw writer (default from ``config.stream.raw_format``).
    hooks : HookRunner or sequence of callables, optional
        Feedback hooks (:mod:`livesr.adapters.feedback`): every published window is
        handed to ``HookRunner.submit`` as a :class:`livesr.adapters.feedback.Result`
        (never blocks; the hooks run on their own threads, newest result only).  A
        sequence of hooks runs in a ``HookRunner`` without a microscope controller.
        :meth:`close` closes the runner; its report is the summary's ``hooks`` key.
    frame_shape : (int, int), optional
        The camera's frame shape (rows, cols) when known before the stream starts.
        The warm-up then times every ``esrrf_map`` implementation that has no timing
        for this shape and decides between the host and the GPU-resident window
        before :attr:`ready` is set, instead of on the first real frame while frames
        are arriving.
    """

    def __init__(
        self,
        config: LivesrConfig,
        *,
        output: str | Path | None = None,
        endpoint: str | None = None,
        publish: str | None = None,
        context: zmq.Context[Any] | None = None,
        frame_map: Callable[..., np.ndarray] | None = None,
        stage_hook: Callable[[int], None] | None = None,
        raw_store: RawStore | None = None,
        hooks: Any = None,
        frame_shape: tuple[int, int] | None = None,
    ) -> None:
        self.config = config
        if frame_shape is not None:
            if len(frame_shape) != 2:
                raise ValueError(
                    f"frame_shape={frame_shape!r} is not valid; expected (rows, cols)"
                )
            rows, cols = (int(v) for v in frame_shape)
            if rows < 1 or cols < 1:
                raise ValueError(
                    f"frame_shape={frame_shape!r} is not valid; expected (rows, cols) "
                    ">= 1"
                )
            frame_shape = (rows, cols)
        self._shape_hint = frame_shape
        #: host/device window decided at warm-up for the hinted shape (None: not yet)
        self._device_choice: bool | None = None
        self.output = Path(output if output is not None else config.stream.output)
        self._endpoint = endpoint or config.stream.endpoint or ""
        self._publish_ep = publish or config.stream.publish or ""
        self._ctx = context
        self._map = MapStage(frame_map)
        self._stage_hook = stage_hook
        self._raw: RawStore | None = raw_store
        self._hooks_arg = hooks
        self._hooks: Any = None  # the HookRunner, from start() to close()
        self._hooks_report: dict[str, Any] | None = None
        self._esrrf: EsrrfConfig = config.esrrf
        self._budget_s = config.stream.latency_budget_ms / 1e3
        self._rlog = RateLimitedLog(logger, 2.0)
        self._lock = threading.Lock()
        # lifecycle
        self._ingest: Any = None
        self._pub: Any = None
        self._thread: threading.Thread | None = None
        self._auto_ipc: list[Path] = []
        self._started = False
        self._owns_output = False
        self._closed = False
        self._t_start = 0.0
        self._summary: dict[str, Any] | None = None
        self._ingest_summary: dict[str, Any] | None = None
        self._on_frame_calls = 0
        #: set when acquisition must stop (raw store failure); sources poll it
        self.stop_requested = threading.Event()
        #: set when the source sent END (everything it acquired is accounted for)
        self.source_ended = threading.Event()
        self._processing_done = threading.Event()
        #: set once the processing stage is warmed up (kernels loaded/compiled)
        self.ready = threading.Event()
        # ingest-side state
        self._stream: str | None = None
        self._ring: ProcessingRing | None = None
        self._raw_opened = False
        self._pixel_size_um = 1.0
        self._interval_s = 1.0
        self._store_error: str | None = None
        self._gaps = _Gaps()
        self._acquired_reported: int | None = None
        self._c: dict[str, int] = {
            "frames_received": 0,
            "frames_persisted": 0,
            "frames_not_offered": 0,
            "frames_processed": 0,
            "frames_dropped_for_processing": 0,
            "windows_published": 0,
            "windows_skipped": 0,
            "skip_events": 0,
        }
        self._max_seq = -1
        self._first_seq: int | None = None
        self._session: str | None = None  # source session of the last frame
        self._seq_offset = 0  # pipeline seq - source seq (source restarted low)
        self._restarts: list[dict[str, Any]] = []
        # processing-side state
        self._sliding: Any = None
        self._drift: Any = None
        self._drift_seqs = array("q")
        self._base = 0
        self._expected: int | None = None
        self._cost_s = 0.0
        self._filling = False
        self._pending: list[dict[str, Any]] = []
        self._param_changes: list[dict[str, Any]] = []
        self._skips: list[dict[str, Any]] = []
        self._latency = LatencyTracker()
        self._sr: Any = None
        self._windows: Any = None
        self._drift_table: Any = None
        self._last_drift: dict[str, Any] | None = None
        self._processing_error: str | None = None
        self._rate_t0 = 0.0
        self._rate_n0 = 0
        self._fps = 0.0

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        """Bound ingest endpoint (after :meth:`start`)."""
        return self._endpoint

    @property
    def publish_endpoint(self) -> str:
        """Bound results PUB endpoint (after :meth:`start`)."""
        return self._publish_ep

    def _auto_endpoint(self, what: str) -> str:
        p = (
            Path(tempfile.gettempdir())
            / f"livesr-{os.getpid()}-{secrets.token_hex(4)}-{what}.ipc"
        )
        self._auto_ipc.append(p)
        return f"ipc://{p}"

    def start(self) -> Pipeline:
        """Create the output folder, bind results PUB and ingest, start processing."""
        from livesr.stream._ingest import Ingest, IngestConfig
        from livesr.stream._pubsub import ResultPublisher

        if self._started:
            raise RuntimeError("Pipeline.start() called twice")
        self._started = True
        self.output.mkdir(parents=True, exist_ok=True)
        taken = [
            p.name
            for p in self.output.iterdir()
            if p.name in ("summary.json", "raw.ome.zarr", "raw.ome.tif", "sr.ome.zarr")
        ]
        if taken:
            raise FileExistsError(
                f"output folder {self.output} already holds results "
                f"({', '.join(taken)}); "
                "choose another --output or remove them"
            )
        self._owns_output = True
        if self._raw is None:
            self._raw = open_raw_store(self.config.stream.raw_format, self.output)
        self._windows = _open_table("windows", self.output)
        self._drift_table = _open_table("drift", self.output)
        self._pub = ResultPublisher(
            self._publish_ep or self._auto_endpoint("results"), context=self._ctx
        ).start()
        self._publish_ep = self._pub.endpoint
        self._hooks = _hook_runner(self._hooks_arg)
        cfg = IngestConfig(
            endpoint=self._endpoint or self._auto_endpoint("ingest"),
            window=self.config.stream.credit,
        )
        self._ingest = Ingest(
            cfg,
            self._on_frame,
            on_gap=self._on_gap,
            on_end=self._on_end,
            context=self._ctx,
            stop_event=self.stop_requested,  # a stop tells remote sources too
        )
        try:
            self._ingest.start()
        except Exception:
            self._pub.close()
            if self._hooks is not None:
                self._hooks.close()
            raise
        self._endpoint = self._ingest.endpoint
        self._t_start = self._rate_t0 = time.time()
        self._thread = threading.Thread(
            target=self._process_loop, name="livesr-processing", daemon=True
        )
        self._thread.start()
        logger.info(
            "pipeline started: ingest %s, results %s, output %s",
            self._endpoint,
            self._publish_ep,
            self.output,
        )
        return self

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ended and every frame in the ring is processed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.source_ended.wait(timeout):
            return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._processing_done.wait(left)

    def close(self) -> dict[str, Any]:
        """Stop the ingest, finish processing, write the result files; the summary."""
        if self._closed:
            assert self._summary is not None
            return self._summary
        self._closed = True
        if self._ingest is not None:
            # a source still acquiring is told to stop and given 5 s to end its stream
            self._ingest_summary = self._ingest.close(
                stop_reason="the pipeline is closing", drain_s=5.0
            )
        if self._ring is not None:
            self._ring.close()
        else:
            self._processing_done.set()
        if self._thread is not None:
            self._thread.join(60.0)
            if self._thread.is_alive():  # pragma: no cover - a stuck stage
                logger.error("processing thread did not finish within 60 s")
        if self._hooks is not None:  # no more results: hooks finish their pending one
            self._hooks.close()
        if self._raw is not None and self._raw_opened:
            self._raw.close(gaps=self._gaps.runs, error=self._store_error)
        if self._sr is not None:
            self._sr.close(
                param_changes=self._param_changes, error=self._processing_error
            )
        for table in (self._windows, self._drift_table):
            if table is not None:
                table.close()
        if self._pub is not None:
            # the final image must reach viewers whose queue was full at that moment
            self._pub.close(resend_latest=True)
        for p in self._auto_ipc:
            p.unlink(missing_ok=True)
        self._summary = self.summary()
        if self._hooks is not None:
            self._hooks_report = self._hooks.report(
                frames_acquired=self._summary["frames_acquired"],
                frames_planned=self.config.stream.frames,
                frame_interval_s=self._interval_s,
            )
            self._summary["hooks"] = self._hooks_report
        if not self._owns_output:  # start() refused the folder: leave it untouched
            return self._summary
        from livesr.stream._results import write_config, write_summary

        try:
            write_summary(self.output / "summary.json", self._summary)
            write_config(self.output / "config.toml", self.config)
        except OSError as exc:
            logger.error(
                "could not write the run summary into %s: %s", self.output, exc
            )
        logger.info(
            "pipeline closed: %d frames persisted, %d windows published, %d skipped",
            self._summary["frames_persisted"],
            self._summary["windows_published"],
            self._summary["windows_skipped"],
        )
        return self._summary

    # ------------------------------------------------------------------ params
    def set_params(self, **changes: Any) -> None:
        """Change eSRRF parameters while streaming (thread-safe, between frames).

        Parameters
        ----------
        **changes
            Any of :data:`LIVE_PARAMS`.  Validated now; a window larger than the
            processing ring is refused.  The change is applied before the next frame
            processed and recorded as ``{frame_index, changes}``.
        """
        bad = sorted(set(changes) - set(LIVE_PARAMS))
        if bad:
            raise ValueError(
                f"set_params: {', '.join(bad)} cannot change while streaming; "
                f"allowed: {', '.join(LIVE_PARAMS)}"
            )
        with self._lock:
            base = self._esrrf
            for pend in self._pending:
                base = replace(base, **pend)
            replace(base, **changes)  # validates (raises ValueError naming the field)
            ring = self._ring
            if (
                ring is not None
                and "window" in changes
                and changes["window"] > ring.capacity
            ):
                raise ValueError(
                    f"set_params: window={changes['window']} exceeds the processing "
                    "ring "
                    f"({ring.capacity} frames); raise [stream] ring_mb"
                )
            self._pending.append(dict(changes))

    @property
    def params(self) -> EsrrfConfig:
        """eSRRF parameters in force now."""
        return self._esrrf

    # ------------------------------------------------------------------ ingest side
    def _on_frame(self, header: FrameHeader, frame: np.ndarray) -> None:
        t_recv = time.time()
        self._on_frame_calls += 1
        if self._stream is None:
            self._first_frame(header)
        elif header.stream != self._stream:
            raise ValueError(
                f"stream {header.stream!r}: this pipeline serves stream "
                f"{self._stream!r} only"
            )
        seq = header.seq + self._source_offset(header)
        self._c["frames_received"] += 1
        self._max_seq = max(self._max_seq, seq)
        if self._store_error is not None:
            with self._lock:
                self._gaps.add(seq, seq, "raw store failed")
            return
        assert self._raw is not None
        try:
            self._raw.append(seq, frame, t_acq=header.t_acq, t_recv=t_recv)
        except (RawStoreError, OSError) as exc:
            self._store_error = str(exc)
            with self._lock:
                self._gaps.add(seq, seq, "raw store failed")
            logger.error(
                "raw frame persistence failed: %s; stopping acquisition (frames from "
                "seq %d "
                "on are recorded as a gap)",
                exc,
                seq,
            )
            self._ingest.request_stop(f"raw store failed: {exc}")
            self.stop_requested.set()
            return
        self._c["frames_persisted"] += 1
        assert self._ring is not None
        if not self._ring.offer(seq, frame, header.t_acq, t_recv):
            self._c["frames_not_offered"] += 1
            self._rlog.log(
                logging.WARNING,
                "ring",
                "processing ring full (%d frames): frame %d persisted, not processed",
                self._ring.capacity,
                seq,
            )

    def _source_offset(self, header: FrameHeader) -> int:
        """Offset from the source's seq to the pipeline's (0 unless it restarted low).

        A restarted source (new session) normally continues at the camera's frame
        counter.  One that starts again at or below a frame already seen (a camera
        whose counter was reset) is numbered on from the last frame seen, so that
        nothing it delivers is mistaken for an old frame; the restart is logged and
        listed in the summary (``source_restarts``).  Frames the old session acquired
        but never delivered cannot be known here.
        """
        ingest = self._ingest
        session = ingest.session(header.stream) if ingest is not None else None
        if session == self._session:
            return self._seq_offset
        if self._session is not None and header.seq + self._seq_offset <= self._max_seq:
            self._seq_offset = self._max_seq + 1 - header.seq
            logger.warning(
                "stream %s: the source restarted (new session) at seq %d, at or "
                "below the last frame seen (%d); its frames are numbered on from %d",
                header.stream,
                header.seq,
                self._max_seq,
                header.seq + self._seq_offset,
            )
            self._restarts.append(
                {
                    "session": session,
                    "source_seq": header.seq,
                    "seq": header.seq + self._seq_offset,
                }
            )
        self._session = session
        return self._seq_offset

    def _first_frame(self, header: FrameHeader) -> None:
        self._stream = header.stream
        self._first_seq = header.seq
        meta = dict(header.meta)
        interval_ms = meta.get("interval_ms")
        self._interval_s = (
            float(interval_ms) / 1e3
            if isinstance(interval_ms, (int, float)) and interval_ms > 0
            else 1.0
        )
        self._pixel_size_um = header.pixel_size_um
        assert self._raw is not None
        self._raw.open(
            header.shape,
            header.dtype,
            pixel_size_um=header.pixel_size_um,
            interval_s=self._interval_s,
            meta={"stream": header.stream, **meta},
        )
        self._raw_opened = True
        self._ring = ProcessingRing(
            header.shape,
            header.dtype,
            int(self.config.stream.ring_mb * 2**20),
            min_frames=self._esrrf.window,
            max_frames=max(4 * self._esrrf.window, RING_MAX_FRAMES),
        )
        logger.info(
            "stream %s: %dx%d %s frames, %.4g um px; processing ring %d frames (%.1f "
            "MiB)",
            header.stream,
            header.shape[0],
            header.shape[1],
            header.dtype,
            header.pixel_size_um,
            self._ring.capacity,
            self._ring.nbytes / 2**20,
        )

    def _on_gap(self, stream: str, first: int, last: int) -> None:
        first, last = first + self._seq_offset, last + self._seq_offset
        with self._lock:
            self._gaps.add(first, last, "source ring overflow")
        self._max_seq = max(self._max_seq, last)

    def _on_end(self, stream: str, summary: Mapping[str, Any]) -> None:
        acquired = summary.get("frames_acquired")
        if isinstance(acquired, int):
            self._acquired_reported = acquired + self._seq_offset
        self.source_ended.set()
        if self._ring is not None:
            self._ring.close()
        else:
            self._processing_done.set()

    # ------------------------------------------------------------------ processing
    def _warm_up(self) -> None:
        """Run the stages once on tiny synthetic frames (imports, JIT caches)."""
        from livesr.kernels import RollingDrift, SlidingEsrrf

        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        frames = rng.poisson(100.0, size=(2, 16, 16)).astype(np.uint16)
        sl = SlidingEsrrf(
            2, 1, frame_shape=(16, 16), frame_map=self._map, **self._window_kwargs()
        )
        for f in frames:
            sl.push(f)
        if self.config.drift.enabled:
            rd = RollingDrift(block=1)
            for f in frames:
                rd.push(f)
        if self._shape_hint is not None:
            # time the implementations on the camera's shape now, not while frames
            # are arriving (compiles and slow references would stall the stream)
            synth = rng.poisson(100.0, size=self._shape_hint).astype(np.float32)
            self._device_choice = self._device_window_wanted(synth)
            # and run the chosen path once at that shape (CuPy plans, OpenCL builds
            # per shape: 0.36 s on the first 256^2 frame of an H100 run otherwise)
            if self._device_choice:
                self._warm_device_window(synth)
            else:
                self._warm_host_map(synth)
        logger.debug("processing stages warmed up in %.3f s", time.perf_counter() - t0)

    def _warm_device_window(self, frame: np.ndarray) -> None:
        """Run the GPU-resident window (2 frames) at the camera's shape once."""
        from livesr.kernels.sliding_device import DeviceSlidingEsrrf

        try:
            dev = DeviceSlidingEsrrf(
                2, 1, frame_shape=frame.shape, **self._window_kwargs()
            )
            dev.push(frame)
            dev.push(frame, shift=(0.25, -0.25))
        except Exception as exc:  # the first real frame decides again
            logger.warning("GPU-resident window could not be warmed up: %s", exc)
            self._device_choice = None

    def _warm_host_map(self, frame: np.ndarray) -> None:
        """Run the per-frame map once at the camera's shape (through the engine)."""
        from livesr.kernels._params import EsrrfParams

        names = {f.name for f in fields(EsrrfParams)}
        params = EsrrfParams(
            **{k: v for k, v in self._window_kwargs().items() if k in names}
        )
        try:
            self._map(frame, params, shift=(0.25, -0.25))
        except Exception as exc:  # the stream reports a real failure
            logger.warning("per-frame map could not be warmed up: %s", exc)

    def _process_loop(self) -> None:
        switch = _gil_switch_interval()
        old_switch = sys.getswitchinterval()
        if switch < old_switch:
            sys.setswitchinterval(switch)
        try:
            self._process_loop_body()
        finally:
            if sys.getswitchinterval() == switch < old_switch:
                sys.setswitchinterval(old_switch)

    def _process_loop_body(self) -> None:
        try:
            try:
                self._warm_up()
            finally:
                self.ready.set()
            while True:
                ring = self._ring
                if ring is None:
                    if self._closed or self.source_ended.is_set():
                        break
                    time.sleep(0.01)
                    continue
                self._apply_pending()
                item = ring.peek(0.1)
                if item is None:
                    if ring.closed:
                        break
                    continue
                if self._maybe_skip(item, ring):
                    continue
                self._process(item)
                ring.pop()
        except (
            Exception
        ) as exc:  # a bug or a kernel failure: stop processing, keep persisting
            self._processing_error = f"{type(exc).__name__}: {exc}"
            logger.exception("processing stopped; raw frames are still persisted")
        finally:
            try:
                self._account_tail()
            finally:
                self._processing_done.set()

    def _account_tail(self) -> None:
        """Count the scheduled windows of the frames that never reached processing."""
        last = self._max_seq
        if last < 0:
            return
        if self._sliding is None:
            e = self._esrrf
            first = self._first_seq if self._first_seq is not None else 0
            nxt, stride = first + e.window - 1, e.stride
        else:
            nxt, stride = self._next_emission(), int(self._sliding.stride)
        if last >= nxt:
            first_missing = self._expected if self._expected is not None else nxt
            skipped = (last - nxt) // stride + 1
            self._c["windows_skipped"] += skipped
            self._c["skip_events"] += 1
            if len(self._skips) < 10_000:
                self._skips.append(
                    {
                        "reason": f"frames {first_missing}-{last} not processed",
                        "restart_frame": None,
                        "next_image_at": None,
                        "windows_skipped": skipped,
                        "frames_dropped": 0,
                    }
                )
            logger.warning(
                "%d scheduled window(s) up to frame %d were not processed",
                skipped,
                last,
            )

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for changes in pending:
            frame_index = self._expected if self._expected is not None else 0
            self._esrrf = replace(self._esrrf, **changes)
            if self._sliding is not None:
                self._sliding.set_params(recompute=True, **changes)
            self._param_changes.append(
                {"frame_index": frame_index, "changes": dict(changes)}
            )
            logger.info("parameters changed from frame %d: %s", frame_index, changes)

    def _new_sliding(self, shape: tuple[int, int], frame: Any = None) -> Any:
        from livesr.kernels import SlidingEsrrf

        e = self._esrrf
        if frame is not None and self._use_device_window(frame):
            from livesr.kernels.sliding_device import DeviceSlidingEsrrf

            try:
                sliding = DeviceSlidingEsrrf(
                    e.window, e.stride, frame_shape=shape, **self._window_kwargs()
                )
            except MemoryError as exc:
                logger.warning("GPU-resident window not used: %s", exc)
            else:
                logger.info(
                    "sliding window on the GPU (frames stay on the device; %d MiB)",
                    sliding.memory_bytes // 2**20,
                )
                return sliding
        return SlidingEsrrf(
            e.window,
            e.stride,
            frame_shape=shape,
            frame_map=self._map,
            **self._window_kwargs(),
        )

    def _window_kwargs(self) -> dict[str, Any]:
        """The eSRRF settings in force, as sliding-window keyword arguments."""
        e = self._esrrf
        return {
            "magnification": e.magnification,
            "radius": e.radius,
            "sensitivity": e.sensitivity,
            "intensity_weighting": e.intensity_weighting,
            "macro_pixel_correction": e.macro_pixel_correction,
            "temporal": e.temporal,
            "geometry": e.geometry,
        }

    def _use_device_window(self, frame: Any) -> bool:
        """The warm-up's decision for the hinted shape, else decide on ``frame``."""
        if self._device_choice is not None and tuple(np.shape(frame)) == tuple(
            self._shape_hint or ()
        ):
            return self._device_choice
        return self._device_window_wanted(frame)

    def _device_window_wanted(self, frame: Any) -> bool:
        """Time untimed ``esrrf_map`` implementations on the real frame, then say
        whether the GPU-resident window should run (the engine favours CuPy).

        ``LIVESR_DEVICE_WINDOW=off`` keeps the host window whatever the engine says.
        """
        import os

        if os.environ.get("LIVESR_DEVICE_WINDOW", "auto").lower() in ("off", "0"):
            return False
        kernel = getattr(self._map, "_engine", None)
        e = self._esrrf
        if e.geometry != "nanopyx" or not hasattr(kernel, "untimed"):
            return False
        args = (
            np.ascontiguousarray(frame, dtype=np.float32),
            e.magnification,
            e.radius,
            e.sensitivity,
            e.intensity_weighting,
        )
        try:
            untimed = kernel.untimed(*args)
            if untimed:
                logger.info(
                    "timing %s for %s frames before streaming (no timings yet)",
                    ", ".join(untimed),
                    "x".join(map(str, np.shape(frame))),
                )
                kernel.benchmark(*args, repeats=3, impls=untimed)
            sig = kernel.signature(*args)
            avail = [i.id for i in kernel.implementations(include_unavailable=False)]
            stats = {i: kernel.agent.stats(sig.key, i) for i in avail}
            timed = {i: st.fast_avg for i, st in stats.items() if st is not None}
        except Exception as exc:  # an implementation failing here must not stop us
            logger.warning("could not time esrrf_map implementations: %s", exc)
            return False
        if not timed:
            return False
        best = min(timed, key=timed.__getitem__)
        logger.debug("esrrf_map favourite for %s: %s (%s)", sig, best, timed)
        return best.split("-", 1)[0] == "cupy"

    def _next_emission(self) -> int:
        """Global seq of the frame whose processing emits the next image."""
        return self._base + int(self._sliding.next_emission)

    def _restart_at(self, target: int, *, reason: str, dropped: int = 0) -> None:
        """Restart the sliding window so its first image ends at frame ``target``."""
        nxt = self._next_emission()
        stride = int(self._sliding.stride)
        skipped = max(0, (target - nxt) // stride) if target >= nxt else 0
        self._sliding.reset()
        self._filling = (
            True  # no further skip until this window is out (or it never ends)
        )
        self._base = target - int(self._sliding.window) + 1
        self._c["windows_skipped"] += skipped
        self._c["skip_events"] += 1
        event = {
            "reason": reason,
            "restart_frame": self._base,
            "next_image_at": target,
            "windows_skipped": skipped,
            "frames_dropped": dropped,
        }
        if len(self._skips) < 10_000:
            self._skips.append(event)
        self._rlog.log(
            logging.WARNING,
            "skip",
            "processing behind: %s; %d window(s) skipped, restart at frame %d",
            reason,
            skipped,
            self._base,
        )

    def _scheduled_at_or_after(self, first_start: int) -> int:
        """Smallest scheduled emission whose window starts at/after ``first_start``."""
        nxt = self._next_emission()
        stride = int(self._sliding.stride)
        need = first_start + int(self._sliding.window) - 1
        if need <= nxt:
            return nxt
        return nxt + -(-(need - nxt) // stride) * stride

    def _maybe_skip(self, item: RingItem, ring: ProcessingRing) -> bool:
        """Drop the backlog when it cannot be processed within the latency budget."""
        if self._sliding is None or self._cost_s <= 0.0 or self._filling:
            return False
        newest = ring.newest_seq()
        if newest is None:
            return False
        backlog = newest - item.seq + 1
        if backlog * self._cost_s <= self._budget_s:
            return False
        nxt = self._next_emission()
        if newest < nxt:
            return False
        stride = int(self._sliding.stride)
        target = nxt + ((newest - nxt) // stride) * stride
        start = target - int(self._sliding.window) + 1
        if start <= item.seq:
            return False
        dropped = ring.discard_before(start)
        self._c["frames_dropped_for_processing"] += dropped
        self._restart_at(
            target,
            dropped=dropped,
            reason=f"backlog {backlog} frames x {self._cost_s * 1e3:.1f} ms > budget "
            f"{self._budget_s * 1e3:.0f} ms",
        )
        self._expected = start
        return True

    def _process(self, item: RingItem) -> None:
        t0 = time.perf_counter()
        seq = item.seq
        if self._sliding is None:
            kernel = getattr(self._map, "_engine", None)
            stats = getattr(kernel, "stats", None)
            if stats is not None:
                self._engine_stats0 = (
                    dict(stats.by_impl),
                    stats.deadline_misses,
                    stats.deadline_calls,
                )
            self._impl_switches: list[dict[str, Any]] = []
            self._sliding = self._new_sliding(item.frame.shape, item.frame)
            if self.config.drift.enabled:
                from livesr.kernels import RollingDrift

                self._drift = RollingDrift(
                    block=self.config.drift.block,
                    max_drift=self.config.drift.max_drift_px,
                )
            self._base = seq
            self._expected = seq
        assert self._expected is not None
        if seq != self._expected:
            if seq < self._expected:  # pragma: no cover - the ingest delivers in order
                raise RuntimeError(
                    f"frame {seq} arrived after frame {self._expected - 1}"
                )
            self._restart_at(
                self._scheduled_at_or_after(seq),
                reason=f"frames {self._expected}-{seq - 1} not available for "
                "processing",
            )
        if self._stage_hook is not None:
            self._stage_hook(seq)
        frame = item.frame
        shift = (0.0, 0.0)
        if self._drift is not None:
            est = self._drift.push(frame)
            self._drift_seqs.append(seq)
            if est is not None:
                self._record_drift(est)
            shift = self._drift.displacement_at(self._drift.n_frames - 1)
        if seq >= self._base:
            self._map.deadline_s = max(0.0, self._budget_s - (time.time() - item.t_acq))
            if hasattr(self._sliding, "deadline_s"):  # the GPU-resident window
                self._sliding.deadline_s = self._map.deadline_s
            result = self._sliding.push(frame, shift=shift)
            self._note_implementation(seq)
            if result is not None:
                self._filling = False
                self._publish(result, item, shift)
        self._expected = seq + 1
        self._c["frames_processed"] += 1
        cost = time.perf_counter() - t0
        if self._c["frames_processed"] > 1:  # the first frame pays one-off set-up costs
            self._cost_s = (
                cost if self._cost_s <= 0 else 0.8 * self._cost_s + 0.2 * cost
            )

    def _record_drift(self, est: Any) -> None:
        seqs = self._drift_seqs
        frame = seqs[est.frame_index]
        c = est.center
        lo = int(math.floor(c))
        center = seqs[lo] + (c - lo) * (
            (seqs[lo + 1] - seqs[lo]) if lo + 1 < len(seqs) else 1
        )
        self._last_drift = {
            "dy": est.dy,
            "dx": est.dx,
            "sigma_px": est.sigma_px,
            "rejected": est.rejected,
            "frame": frame,
        }
        self._drift_table.add(
            est.block_index,
            frame,
            center,
            est.dy,
            est.dx,
            est.sigma_px,
            est.rejected,
            est.psr,
        )

    def _publish(self, result: Any, item: RingItem, shift: tuple[float, float]) -> None:
        t_proc = time.time()
        image = result.image
        first = self._base + result.first_frame
        last = self._base + result.last_frame
        quality = quality_metric(image)
        index = self._c["windows_published"]
        m = self._esrrf.magnification
        sigma = self._last_drift["sigma_px"] if self._last_drift else math.nan
        drift = None
        if self._drift is not None:
            drift = {
                "dy": shift[0],
                "dx": shift[1],
                "sigma_px": sigma,
                "rejected": bool(self._last_drift["rejected"])
                if self._last_drift
                else False,
            }
        head: dict[str, Any] = {
            "v": 1,
            "kind": "sr",
            "stream": self._stream,
            "index": index,
            "first_frame": first,
            "last_frame": last,
            "shape": list(image.shape),
            "dtype": "float32",
            "pixel_size_um": self._pixel_size_um / m,
            "drift": drift,
            "quality": {
                "metric": QUALITY_METRIC,
                "value": quality if math.isfinite(quality) else None,
            },
            "implementation": self.implementations(),
            "params": _live_params(self._esrrf),
        }
        t_pub = time.time()
        stamps = Timestamps(item.t_acq, item.t_recv, t_proc, t_pub)
        head["timestamps"] = stamps.to_json()
        self._pub.publish(
            [
                json.dumps(head, allow_nan=False, default=_none).encode(),
                np.ascontiguousarray(image),
            ]
        )
        self._latency.record(stamps)
        self._c["windows_published"] += 1
        if self._hooks is not None:  # never blocks: newest-only slots, hook threads
            self._hooks.submit(_hook_result(head, image))
        if self._sr is None:
            from livesr.stream._results import SrSeriesWriter

            self._sr = SrSeriesWriter(
                self.output / "sr.ome.zarr",
                image.shape,
                pixel_size_um=self._pixel_size_um / m,
                interval_s=self._esrrf.stride * self._interval_s,
                params=asdict(self._esrrf),
                background=True,  # compression and disk off the processing thread
            )
        self._sr.append(image)
        self._windows.add(index, first, last, stamps.to_json(), shift, sigma, quality)

    # ------------------------------------------------------------------ reporting
    def implementations(self) -> dict[str, str]:
        """Implementation that ran each stage."""
        out = {"esrrf": self._map.name}
        if self.config.drift.enabled:
            out = {"drift": "numpy", **out}
        return out

    def _engine_summary(self) -> dict[str, Any]:
        """What the engine did for the map stage during this run.

        ``calls_by_impl`` and ``deadline_misses`` count this run's dispatches (the
        kernel's process-wide counters minus their values at the first frame);
        ``switches`` lists where the chosen implementation changed (first 100).
        """
        kernel = getattr(self._map, "_engine", None)
        stats = getattr(kernel, "stats", None)
        start = getattr(self, "_engine_stats0", None)
        out: dict[str, Any] = {
            "window": getattr(self._sliding, "strategy", None),
            "switches": list(getattr(self, "_impl_switches", [])),
        }
        if stats is not None and start is not None:
            by_impl, misses, calls = start
            out["calls_by_impl"] = {
                k: v - by_impl.get(k, 0)
                for k, v in stats.by_impl.items()
                if v - by_impl.get(k, 0)
            }
            out["deadline_misses"] = stats.deadline_misses - misses
            out["deadline_calls"] = stats.deadline_calls - calls
        return out

    def _note_implementation(self, seq: int) -> None:
        """Record a change of the map stage's implementation (agent switch)."""
        impl = self._map.name
        last = getattr(self, "_last_impl", None)
        if impl == last:
            return
        if last is not None:
            switches = self._impl_switches
            if len(switches) < 100:
                switches.append({"frame": seq, "from": last, "to": impl})
            logger.info("map stage switched from %s to %s at frame %d", last, impl, seq)
        self._last_impl = impl

    def snapshot(self) -> dict[str, Any]:
        """Live counters for the status line."""
        now = time.time()
        n = self._c["frames_received"]
        if now - self._rate_t0 >= 0.5:
            self._fps = (n - self._rate_n0) / (now - self._rate_t0)
            self._rate_t0, self._rate_n0 = now, n
        recent = self._latency.recent_ms()
        with self._lock:
            gaps = self._gaps.frames
        return {
            **self._c,
            "fps": self._fps,
            "frames_in_gaps": gaps,
            "latency_p50_ms": recent["p50"],
            "latency_p99_ms": recent["p99"],
            "ring_used": len(self._ring) if self._ring is not None else 0,
            "implementation": self.implementations(),
        }

    def summary(self) -> dict[str, Any]:
        """Run summary (also written to ``summary.json`` by :meth:`close`)."""
        with self._lock:
            gaps = [list(g) for g in self._gaps.runs]
            gap_frames = self._gaps.frames
        persisted = self._c["frames_persisted"]
        acquired = self._acquired_reported
        if acquired is None:
            acquired = persisted + gap_frames
        lat = self._latency.summary_ms()
        e2e = lat["end_to_end"]
        duration = max(1e-9, time.time() - self._t_start) if self._t_start else 0.0
        files = {
            "raw": str(self._raw.path)
            if self._raw is not None and self._raw_opened
            else None,
            "sr": str(self._sr.path) if self._sr is not None else None,
            "windows": "windows.csv",
            "drift": "drift.csv",
            "config": "config.toml",
        }
        ring = self._ring
        return {
            "frames_acquired": acquired,
            "frames_persisted": persisted,
            "frames_in_gaps": gap_frames,
            "accounting_ok": acquired == persisted + gap_frames,
            "source_ended": self.source_ended.is_set(),
            "gaps": gaps,
            "source_restarts": list(self._restarts),
            "frames_received": self._c["frames_received"],
            "frames_processed": self._c["frames_processed"],
            "frames_not_processed": persisted - self._c["frames_processed"],
            "frames_not_offered": self._c["frames_not_offered"],
            "frames_dropped_for_processing": self._c["frames_dropped_for_processing"],
            "windows_published": self._c["windows_published"],
            "windows_skipped": self._c["windows_skipped"],
            "skip_events": self._skips,
            "latency_ms": {
                "p50": e2e["p50"],
                "p99": e2e["p99"],
                "max": e2e["max"],
                "n": e2e["n"],
                "by_path": lat,
            },
            "latency_budget_ms": self._budget_s * 1e3,
            "params": {
                "esrrf": asdict(self.config.esrrf),
                "drift": asdict(self.config.drift),
            },
            "params_final": asdict(self._esrrf),
            "param_changes": self._param_changes,
            "implementation": self.implementations(),
            "engine": self._engine_summary(),
            "quality_metric": QUALITY_METRIC,
            "stopped": self._store_error is not None,
            "error": self._store_error,
            "processing_error": self._processing_error,
            "stream": self._stream,
            "pixel_size_um": self._pixel_size_um,
            "sr_pixel_size_um": self._pixel_size_um / self._esrrf.magnification,
            "frame_interval_s": self._interval_s,
            "ring": {
                "capacity": ring.capacity if ring is not None else 0,
                "peak": ring.peak if ring is not None else 0,
                "bytes": ring.nbytes if ring is not None else 0,
            },
            "duration_s": duration,
            "frames_per_s": persisted / duration if duration else 0.0,
            "endpoints": {"ingest": self._endpoint, "results": self._publish_ep},
            "ingest": self._ingest_summary,
            "on_frame_calls": self._on_frame_calls,
            "files": files,
            "output": str(self.output),
            "hooks": self._hooks_report,
        }


def _hook_runner(hooks: Any) -> Any:
    """The pipeline's ``hooks`` argument as a started HookRunner (None: no hooks)."""
    if hooks is None:
        return None
    if callable(getattr(hooks, "submit", None)):
        return hooks
    from livesr.adapters.feedback import HookRunner

    return HookRunner([hooks] if callable(hooks) else list(hooks))


def _hook_result(head: Mapping[str, Any], image: np.ndarray) -> Any:
    """The :class:`livesr.adapters.feedback.Result` of one published window."""
    from livesr.adapters.feedback import Result

    return Result.from_header(head, image)


#: GIL switch interval while a pipeline processes, s (``LIVESR_GIL_SWITCH_MS``).
DEFAULT_GIL_SWITCH_S = 0.0005


def _gil_switch_interval() -> float:
    """The interpreter's thread switch interval while the pipeline runs, s.

    The processing thread releases the GIL many times per frame (every GPU call,
    every compiled kernel) and must win it back each time from the threads that
    acquire, persist and publish. With Python's default 5 ms interval a thread busy
    in Python code keeps it up to 5 ms per hand-over (the "convoy effect"): on the
    H100 a map costing 0.1 ms on the GPU cost 25-30 ms per frame end to end.
    ``LIVESR_GIL_SWITCH_MS`` overrides the 0.5 ms default (0 or less: leave it).
    """
    text = os.environ.get("LIVESR_GIL_SWITCH_MS", "")
    if not text:
        return DEFAULT_GIL_SWITCH_S
    try:
        ms = float(text)
    except ValueError:
        raise ValueError(
            f"LIVESR_GIL_SWITCH_MS={text!r}: expected a number of milliseconds"
        ) from None
    return ms / 1e3 if ms > 0 else math.inf


def _none(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    return None


def _live_params(e: EsrrfConfig) -> dict[str, Any]:
    return {
        "window": e.window,
        "stride": e.stride,
        "magnification": e.magnification,
        "radius": e.radius,
        "sensitivity": e.sensitivity,
        "temporal": e.temporal,
    }


def _open_table(kind: str, output: Path) -> Any:
    from livesr.stream._results import DriftTable, WindowTable

    return (WindowTable if kind == "windows" else DriftTable)(output / f"{kind}.csv")
