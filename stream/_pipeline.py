"""The live pipeline: persist every frame first, then drift -> sliding eSRRF -> publish.

::

    pipe = Pipeline(config, output="out").start()     # binds the ingest, starts threads
    # a source connects to pipe.endpoint and pushes frames (lossless link)
    pipe.set_params(radius=2.0)                        # while streaming, between batches
    pipe.wait(timeout=60)                              # source ended, all processed
    summary = pipe.close()                             # result files written

This module wires the parts; each thread's work lives in its own module:

ingest thread (``Ingest`` -> :class:`~livesr.stream._persist.Persister`)
    Writes every frame to the raw store, then offers it to the processing ring; the
    ingest ACKs once it is persisted.  Processing never holds it back.
processing thread (:class:`~livesr.stream._processing.Processor`)
    Batches of waiting frames -> rolling drift -> sliding eSRRF (drift undone inside
    the magnification) -> every completed window published (PUB, hooks) and written
    (:class:`~livesr.stream._resultwriter.ResultWriter`).  When it falls behind it
    skips windows, never frames (:mod:`livesr.stream._schedule`).
SR writer thread (``SrSeriesWriter``), hook threads (``HookRunner``).

Memory: the processing ring is sized from the frame shape, the window, the batch and
the latency budget within a memory budget (:mod:`livesr.stream._persist`); a window
that cannot fit is refused before anything is acquired (at :meth:`Pipeline.start`
when the frame shape is known, else at the stream's first frame, before it is
written).  ``summary.json`` ``memory`` states the budget and what the ring holds.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from livesr.kernels.framemap import MapStage, default_map, engine_map
from livesr.stream._config import LivesrConfig
from livesr.stream._endpoints import is_loopback_endpoint
from livesr.stream._hooks import hook_runner
from livesr.stream._latency import Timestamps
from livesr.stream._memory import _PipelineMemory
from livesr.stream._persist import MemoryPlan, Persister, check_memory
from livesr.stream._pipeline_control import _PipelineControl
from livesr.stream._pipeline_ingest import _PipelineIngest
from livesr.stream._pipeline_report import _PipelineReport
from livesr.stream._processing import LIVE_PARAMS, Processor
from livesr.stream._protocols import Result
from livesr.stream._quality import QUALITY_METRIC, quality_metric
from livesr.stream._raw_publish import RawFramePublisher
from livesr.stream._rawstore import RawStore, open_raw_store
from livesr.stream._wire_result import encode_result

__all__ = [
    "LIVE_PARAMS",
    "QUALITY_METRIC",
    "READY_TIMEOUT_S",
    "MapStage",
    "Pipeline",
    "default_map",
    "engine_map",
    "quality_metric",
]

logger = logging.getLogger(__name__)

#: longest a command waits for the warm-up (kernel compiles, timing of untimed
#: implementations at the camera's shape) before it starts acquiring, s
READY_TIMEOUT_S = 300.0


class Pipeline(_PipelineIngest, _PipelineReport, _PipelineControl, _PipelineMemory):
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
    control : str, optional
        Control channel endpoint (default ``config.stream.control`` or an automatic
        ``ipc://`` path beside the publisher): ``livesr ctl ENDPOINT set|status|stop``
        (:mod:`livesr.stream._control`).
    publish_raw : str, optional
        PUB endpoint of the newest raw frame at display rate (default automatic,
        ``ipc://``; :mod:`livesr.stream._raw_publish`).
    context : zmq.Context, optional
        Shared ZeroMQ context (required for ``inproc://`` endpoints shared with a
        source in this process).
    frame_map : callable, optional
        Per-frame map implementation (engine hook, see :class:`MapStage`).
    stage_hook : callable, optional
        ``stage_hook(seq)`` called in the processing stage before each frame (tests
        inject delays here; frames are then processed one at a time).
    raw_store : RawStore, optional
        Custom raw writer (default from ``config.stream.raw_format``).
    hooks : HookRunner or sequence of callables, optional
        Feedback hooks (:mod:`livesr.adapters.feedback`): every published window is
        handed to ``HookRunner.submit`` (never blocks).  :meth:`close` closes the
        runner; its report is the summary's ``hooks`` key.
    frame_shape : (int, int), optional
        The camera's frame shape (rows, cols) when known before the stream starts:
        the memory plan is checked at :meth:`start` (a window that cannot fit is
        refused before anything is acquired), and the warm-up times and compiles the
        map implementations at this shape before :attr:`ready` is set.
    length : int, optional
        Frames the source will send, when known (a replay's range): the processing
        ring is never larger (``--frames`` caps it the same way).
    """

    def __init__(
        self,
        config: LivesrConfig,
        *,
        output: str | Path | None = None,
        endpoint: str | None = None,
        publish: str | None = None,
        control: str | None = None,
        publish_raw: str | None = None,
        context: zmq.Context[Any] | None = None,
        frame_map: Callable[..., np.ndarray] | None = None,
        stage_hook: Callable[[int], None] | None = None,
        raw_store: RawStore | None = None,
        hooks: Any = None,
        frame_shape: tuple[int, int] | None = None,
        length: int | None = None,
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
        self._length = int(length) if length else None
        self._process_budget = None  # stated at the stream's first frame
        self.output = Path(output if output is not None else config.stream.output)
        self._endpoint = endpoint or config.stream.endpoint or ""
        self._publish_ep = publish or config.stream.publish or ""
        self._control_ep = control or config.stream.control or ""
        self._control: Any = None  # the ControlServer, from start() to close()
        self._stop_reason: str | None = None  # request_stop (livesr ctl stop)
        self._raw_ep = publish_raw or ""
        self._raw_pub: Any = None
        self._ctx = context
        self._map = MapStage(frame_map)
        self._raw_arg = raw_store
        self._hooks_arg = hooks
        self._hooks: Any = None  # the HookRunner, from start() to close()
        self._hooks_report: dict[str, Any] | None = None
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
        #: set when acquisition must stop (raw store failure); sources poll it
        self.stop_requested = threading.Event()
        self._processing_done = threading.Event()
        #: set once the processing stage is warmed up (kernels loaded/compiled)
        self.ready = threading.Event()
        self._persist: Persister | None = None
        self._writer: Any = None
        self._proc = Processor(
            config,
            self._map,
            self._publish,
            stage_hook=stage_hook,
            shape_hint=frame_shape,
            add_drift=self._add_drift,
            user_map=frame_map is not None,
        )
        self._proc.fixed_origin = bool(hooks)  # a feedback loop: a fixed drift origin
        self._rate_t0 = 0.0
        self._rate_n0 = 0
        self._fps = 0.0
        #: set when the source sent END (everything it acquired is accounted for)
        self.source_ended = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        """Bound ingest endpoint (after :meth:`start`)."""
        return self._endpoint

    @property
    def publish_endpoint(self) -> str:
        """Bound results PUB endpoint (after :meth:`start`)."""
        return self._publish_ep

    @property
    def raw_publish_endpoint(self) -> str:
        """Bound PUB endpoint of the newest raw frame (after :meth:`start`)."""
        return self._raw_ep

    def _auto_endpoint(self, what: str) -> str:
        p = (
            Path(tempfile.gettempdir())
            / f"livesr-{os.getpid()}-{secrets.token_hex(4)}-{what}.ipc"
        )
        self._auto_ipc.append(p)
        return f"ipc://{p}"

    def _plan_ring(
        self, shape: tuple[int, int], dtype: Any, interval_s: float | None
    ) -> MemoryPlan:
        s = self.config.stream
        self._proc.check_frame_shape(shape)
        plan = check_memory(
            shape,
            dtype,
            window=self._proc.esrrf.window,
            max_batch=self._proc.max_batch,
            interval_s=interval_s,
            latency_budget_s=s.latency_budget_ms / 1e3,
            ring_mb=s.ring_mb,
            memory_budget_mb=s.memory_budget_mb,
        )
        self._proc.check_window_memory(shape, plan.budget)
        return self._cap_to_length(plan)

    def start(self) -> Pipeline:
        """Create the output folder, bind results PUB and ingest, start processing.

        Raises
        ------
        FileExistsError
            The output folder already holds results.
        ValueError
            The window cannot fit the memory budget at the hinted frame shape
            (nothing is created).
        """
        from livesr.stream._pubsub import ResultPublisher

        if self._started:
            raise RuntimeError("Pipeline.start() called twice")
        self._started = True
        self._refuse_before_start()
        self._check_control_endpoint()
        created = not self.output.exists()
        self.output.mkdir(parents=True, exist_ok=True)
        self._owns_output = True
        process = self._ingest_in_process()
        if not process:
            raw = self._raw_arg
            if raw is None:
                raw = open_raw_store(self.config.stream.raw_format, self.output)
            self._persist = Persister(
                raw,
                plan_ring=self._plan_stream_ring,
                session_of=self._session_of,
                on_store_error=self._on_store_error,
                on_end=self._on_source_end,
            )
        curve = self._server_keys()
        pub_ep = self._publish_ep or self._auto_endpoint("results")
        self._pub = ResultPublisher(
            pub_ep,
            context=self._ctx,
            # a local publisher stays open to local viewers (no keys needed there)
            curve=curve if curve is not None and not is_loopback_endpoint(pub_ep) else None,
        ).start()
        self._publish_ep = self._pub.endpoint
        self._hooks = hook_runner(self._hooks_arg)
        try:
            self._start_control(curve)
            self._start_raw_publisher(curve)
            endpoint = self._endpoint or self._auto_endpoint("ingest")
            if process:
                self._start_ingest_process(endpoint)
            else:
                self._start_ingest_thread(endpoint, curve)
        except Exception:
            self._undo_start(created)
            raise
        self._endpoint = self._ingest.endpoint
        self._t_start = self._rate_t0 = time.time()
        self._thread = threading.Thread(
            target=self._run_processing, name="livesr-processing", daemon=True
        )
        self._thread.start()
        logger.info(
            "pipeline started: ingest %s, results %s, raw frames %s, control %s, "
            "output %s",
            self._endpoint,
            self._publish_ep,
            self._raw_ep,
            self._control_ep,
            self.output,
        )
        return self

    def _undo_start(self, created: bool) -> None:
        """A refused start (endpoint taken, non-loopback without keys...) leaves
        nothing behind that would block a retry with the same --output."""
        self._pub.close()
        self._close_control()
        if self._raw_pub is not None:
            self._raw_pub.close()
        if self._hooks is not None:
            self._hooks.close()
        self._owns_output = False
        self._ingest = None
        if created:
            import shutil

            shutil.rmtree(self.output, ignore_errors=True)

    def _start_raw_publisher(self, curve: Any) -> None:
        """Bind the PUB of the newest raw frame (:mod:`livesr.stream._raw_publish`)."""
        raw_ep = self._raw_ep or self._auto_endpoint("raw")
        self._raw_pub = RawFramePublisher(
            raw_ep,
            lambda: self._persist,
            curve=curve if curve is not None and not is_loopback_endpoint(raw_ep) else None,
            context=self._ctx,
        ).start()
        self._raw_ep = self._raw_pub.endpoint

    def _refuse_before_start(self) -> None:
        """Refuse, before anything is written, an output folder that holds results
        and parameters that cannot make an image (FileExistsError, ValueError)."""
        if self.output.is_dir():
            taken = [
                p.name
                for p in self.output.iterdir()
                if p.name
                in ("summary.json", "raw.ome.zarr", "raw.ome.tif", "raw.json", "sr.ome.zarr")
            ]
            if taken:
                raise FileExistsError(
                    f"output folder {self.output} already holds results "
                    f"({', '.join(taken)}); choose another --output or remove them"
                )
        frames = self.config.stream.frames
        window = self._proc.esrrf.window
        if 0 < frames < window:
            raise ValueError(
                f"window={window} is longer than the {frames} frames to acquire: no "
                "image could be made; lower --window or raise --frames"
            )
        if self._shape_hint is not None:
            self._proc.check_frame_shape(self._shape_hint)
            self._plan_ring(self._shape_hint, np.uint16, None)

    def _writer_for_first_image(self) -> Any:
        """The result files, opened once the stream's interval and pixel are known."""
        from livesr.stream._resultwriter import ResultWriter

        if self._writer is None:
            p = self._persist
            assert p is not None
            e = self._proc.esrrf
            s = self.config.stream
            self._writer = ResultWriter(
                self.output,
                pixel_size_um=p.pixel_size_um,
                magnification=e.magnification,
                interval_s=p.interval_s,
                stride=e.stride,
                params=asdict(e),
                background=True,  # compression and disk off the processing thread
                sr_budget_mb_s=s.sr_budget_mb_s if s.sr_budget_mb_s > 0 else math.inf,
                nominal_interval_s=p.interval_s if p.interval_known else None,
            )
        return self._writer

    def _run_processing(self) -> None:
        p = self._persist
        assert p is not None

        def get_ring() -> Any:
            ring = p.ring
            if ring is not None and self._proc.interval_s is None and p.interval_known:
                self._proc.interval_s = p.interval_s
            return ring

        def stopping() -> bool:
            return self._closed or self.source_ended.is_set() or p.refused is not None

        try:
            self._proc.run(
                get_ring,
                stopping,
                self.ready,
                lambda: p.max_seq,
                lambda: p.first_seq,
            )
        finally:
            self._processing_done.set()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ended and every frame in the ring is processed.

        Returns at once (True) when the ingest thread died: nothing more can arrive;
        acquisition is told to stop and the summary reports the error.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.source_ended.wait(0.2):
            if self._ingest_dead():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._processing_done.wait(left)

    def _ingest_dead(self) -> bool:
        """Whether the ingest thread died (then: stop the source, end processing)."""
        ingest = self._ingest
        if ingest is None or not getattr(ingest, "failed", False):
            return False
        if not self.stop_requested.is_set():
            logger.error(
                "the ingest thread failed (%s): no frame can arrive any more; "
                "stopping the run",
                getattr(ingest, "error", None),
            )
            self.stop_requested.set()
            p = self._persist
            if p is not None and p.ring is not None:
                p.ring.close()
        return True

    def close(self) -> dict[str, Any]:
        """Stop the ingest, finish processing, write the result files; the summary."""
        if self._closed:
            assert self._summary is not None
            return self._summary
        self._begin_close()  # closed, and the control channel with it
        p = self._persist
        self._close_inputs()
        if p is not None and p.ring is not None:
            p.ring.close()
        elif self._thread is None:
            self._processing_done.set()
        if self._thread is not None:
            self._thread.join(60.0)
            if self._thread.is_alive():  # pragma: no cover - a stuck stage
                logger.error("processing thread did not finish within 60 s")
        if hasattr(self._ingest, "release_ring"):  # the shared ring of the ingest process
            self._ingest.release_ring()
        if self._hooks is not None:  # no more results: hooks finish their pending one
            self._hooks.close()
        if p is not None and p.raw_opened:
            p.raw.close(gaps=p.gaps.runs, error=p.store_error)
        if self._writer is not None:
            self._writer.close(
                param_changes=self._proc.param_changes, error=self._proc.error
            )
        elif self._owns_output:
            from livesr.stream._results import DriftTable, WindowTable

            # no image: the tables still exist (header only), as in every run
            for table in (
                WindowTable(self.output / "windows.csv"),
                DriftTable(self.output / "drift.csv"),
            ):
                table.close()
        try:
            self._proc.error_map.write(self.output)
        except OSError as exc:
            logger.error("could not write the error maps into %s: %s", self.output, exc)
        if self._pub is not None:
            # the final image must reach viewers whose queue was full at that moment
            self._pub.close(resend_latest=True)
        for path in self._auto_ipc:
            path.unlink(missing_ok=True)
        self._summary = self.summary()
        if self._hooks is not None:
            self._hooks_report = self._hooks.report(
                frames_acquired=self._summary["frames_acquired"],
                frames_planned=self.config.stream.frames,
                frame_interval_s=p.interval_s if p is not None else 1.0,
            )
            self._summary["hooks"] = self._hooks_report
            stop = (self._hooks_report or {}).get("stop")
            if stop:  # a hook ended acquisition on purpose (stop-when-converged)
                self._summary["stopped"] = True
                self._summary["stop_reason"] = stop.get("reason")
        if not self._owns_output:  # start() refused the folder: leave it untouched
            return self._summary
        from livesr.stream._preview import write_preview
        from livesr.stream._results import write_config, write_summary

        preview = write_preview(self.output)  # the last SR image beside its raw mean
        self._summary["files"]["preview"] = preview.name if preview else None
        self._summary["preview"] = preview is not None
        try:
            write_summary(self.output / "summary.json", self._summary)
            write_config(self.output / "config.toml", self.config)
        except OSError as exc:
            logger.error("could not write the run summary into %s: %s", self.output, exc)
        logger.info(
            "pipeline closed: %d frames persisted, %d windows published, %d skipped",
            self._summary["frames_persisted"],
            self._summary["windows_published"],
            self._summary["windows_skipped"],
        )
        return self._summary

    def _close_inputs(self) -> None:
        """Stop the raw-frame publisher (it reads the ring), then the ingest."""
        if self._raw_pub is not None:
            self._raw_pub.close()
        if self._ingest is not None:
            # a source still acquiring is told to stop and given 5 s to end its stream
            self._ingest_summary = self._ingest.close(
                stop_reason="the pipeline is closing", drain_s=5.0
            )

    # ------------------------------------------------------------------ callbacks
    def _session_of(self, stream: str) -> str | None:
        ingest = self._ingest
        return ingest.session(stream) if ingest is not None else None

    def _on_store_error(self, reason: str) -> None:
        if self._ingest is not None:
            self._ingest.request_stop(reason)
        self.stop_requested.set()

    def _on_source_end(self) -> None:
        # the processing thread drains the ring (or ends at once without one)
        self.source_ended.set()

    def _add_drift(self, *row: Any) -> None:
        if self._writer is None and self._persist is not None:
            self._writer_for_first_image()
        self._writer.add_drift(*row)

    def _publish(self, head: dict[str, Any], image: np.ndarray, stamps: Timestamps) -> None:
        """Send one result: PUB, hooks, result files (the processing thread)."""
        p = self._persist
        assert p is not None
        m = self._proc.esrrf.magnification
        head["stream"] = p.stream
        head["pixel_size_um"] = p.pixel_size_um / m
        stamps = Timestamps(stamps.acquired, stamps.received, stamps.processed, time.time())
        head["timestamps"] = stamps.to_json()
        res = head.get("resolution")
        for est in (res, head.get("frc")):  # nm: the SR pixel is known here
            if est is not None and est.get("value_px") is not None:
                est["value_nm"] = est["value_px"] * head["pixel_size_um"] * 1e3
        self._pub.publish(encode_result(head, image))
        if self._hooks is not None:  # never blocks: newest-only slots, hook threads
            self._hooks.submit(Result.from_header(head, image))
        writer = self._writer_for_first_image()
        drift = head.get("drift") or {}
        writer.add_window(
            head["index"],
            head["first_frame"],
            head["last_frame"],
            image,
            stamps.to_json(),
            (float(drift.get("dy", 0.0)), float(drift.get("dx", 0.0))),
            float(drift["sigma_px"]) if drift.get("sigma_px") is not None else math.nan,
            head["quality"]["value"] if head["quality"]["value"] is not None else math.nan,
            resolution=res,
            error_map=head.get("error_map"),
            frc=head.get("frc"),
            t_first=head.get("first_frame_acquired"),
            t_last=stamps.acquired,
        )
