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
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from livesr.kernels.framemap import MapStage, default_map, engine_map
from livesr.stream._config import EsrrfConfig, LivesrConfig
from livesr.stream._hooks import HookRunner
from livesr.stream._latency import Timestamps
from livesr.stream._persist import MemoryPlan, Persister, check_memory
from livesr.stream._processing import LIVE_PARAMS, Processor
from livesr.stream._protocols import Result
from livesr.stream._quality import QUALITY_METRIC, quality_metric
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
        self.output = Path(output if output is not None else config.stream.output)
        self._endpoint = endpoint or config.stream.endpoint or ""
        self._publish_ep = publish or config.stream.publish or ""
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
        return plan

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
        from livesr.stream._ingest import Ingest, IngestConfig
        from livesr.stream._pubsub import ResultPublisher

        if self._started:
            raise RuntimeError("Pipeline.start() called twice")
        self._started = True
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
        if self._shape_hint is not None:  # refuse before anything is written
            self._proc.check_frame_shape(self._shape_hint)
            self._plan_ring(self._shape_hint, np.uint16, None)
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
                plan_ring=self._plan_ring,
                session_of=self._session_of,
                on_store_error=self._on_store_error,
                on_end=self._on_source_end,
            )
        self._pub = ResultPublisher(
            self._publish_ep or self._auto_endpoint("results"), context=self._ctx
        ).start()
        self._publish_ep = self._pub.endpoint
        self._hooks = _hook_runner(self._hooks_arg)
        try:
            endpoint = self._endpoint or self._auto_endpoint("ingest")
            if process:
                self._start_ingest_process(endpoint)
            else:
                p = self._persist
                assert p is not None
                self._ingest = Ingest(
                    IngestConfig(endpoint=endpoint, window=self.config.stream.credit),
                    p.on_frame,
                    on_gap=p.on_gap,
                    on_end=p.on_end,
                    context=self._ctx,
                    stop_event=self.stop_requested,  # a stop tells remote sources too
                )
                self._ingest.start()
        except Exception:
            # a refused start (endpoint taken, non-loopback without keys...) leaves
            # nothing behind that would block a retry with the same --output
            self._pub.close()
            if self._hooks is not None:
                self._hooks.close()
            self._owns_output = False
            self._ingest = None
            if created:
                import shutil

                shutil.rmtree(self.output, ignore_errors=True)
            raise
        self._endpoint = self._ingest.endpoint
        self._t_start = self._rate_t0 = time.time()
        self._thread = threading.Thread(
            target=self._run_processing, name="livesr-processing", daemon=True
        )
        self._thread.start()
        logger.info(
            "pipeline started: ingest %s, results %s, output %s",
            self._endpoint,
            self._publish_ep,
            self.output,
        )
        return self

    def _ingest_in_process(self) -> bool:
        """Whether the ingest runs in its own process (``[stream] ingest``)."""
        mode = self.config.stream.ingest
        if mode == "thread":
            return False
        endpoint = self._endpoint or ""
        unfit = endpoint.startswith("inproc://") or self._raw_arg is not None
        if mode == "process" and unfit:
            raise ValueError(
                "[stream] ingest = \"process\" cannot serve an inproc:// endpoint or a "
                "raw store given as an object; use ingest = \"auto\" or \"thread\""
            )
        return not unfit

    def _start_ingest_process(self, endpoint: str) -> None:
        from livesr.stream._ingest_process import IngestProcess, IngestProcessSpec

        level = logging.getLogger("livesr").getEffectiveLevel()
        ingest = IngestProcess(
            IngestProcessSpec(
                endpoint=endpoint,
                credit=self.config.stream.credit,
                raw_format=self.config.stream.raw_format,
                output=str(self.output),
                log_level=level,
            ),
            plan_ring=self._plan_ring,
            on_store_error=self._on_store_error,
            on_end=self._on_source_end,
            stop_event=self.stop_requested,
        )
        self._persist = ingest.persist  # type: ignore[assignment]
        self._ingest = ingest
        ingest.start()

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
        self._closed = True
        p = self._persist
        if self._ingest is not None:
            # a source still acquiring is told to stop and given 5 s to end its stream
            self._ingest_summary = self._ingest.close(
                stop_reason="the pipeline is closing", drain_s=5.0
            )
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
        if res is not None and res.get("value_px") is not None:  # nm: SR pixel known here
            res["value_nm"] = res["value_px"] * head["pixel_size_um"] * 1e3
        self._pub.publish(encode_result(head, image))
        if self._hooks is not None:  # never blocks: newest-only slots, hook threads
            self._hooks.submit(_hook_result(head, image))
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
            t_first=head.get("first_frame_acquired"),
            t_last=stamps.acquired,
        )

    # ------------------------------------------------------------------ params
    def set_params(self, **changes: Any) -> None:
        """Change eSRRF parameters while streaming (thread-safe, between batches).

        Parameters
        ----------
        **changes
            Any of :data:`LIVE_PARAMS`.  Validated now; a window larger than the
            processing ring is refused.  The change is applied before the next frame
            processed and recorded as ``{frame_index, changes}``.
        """
        ring = self._persist.ring if self._persist is not None else None
        self._proc.set_params(ring, **changes)

    @property
    def params(self) -> EsrrfConfig:
        """eSRRF parameters in force now."""
        return self._proc.esrrf

    # ------------------------------------------------------------------ reporting
    def implementations(self) -> dict[str, str]:
        """Implementation that ran each stage."""
        return self._proc.implementations()

    def progress(self) -> dict[str, int]:
        """Cheap frame counters (no latency statistics): for throttles that poll."""
        p = self._persist
        c = self._proc.c
        return {
            "frames_received": p.counts["frames_received"] if p is not None else 0,
            "frames_not_offered": p.counts["frames_not_offered"] if p is not None else 0,
            "frames_processed": c["frames_processed"],
            "frames_dropped_for_processing": c["frames_dropped_for_processing"],
            "processing_failed": int(self._proc.error is not None),
        }

    def snapshot(self) -> dict[str, Any]:
        """Live counters for the status line."""
        now = time.time()
        p = self._persist
        counts = dict(p.counts) if p is not None else {
            "frames_received": 0, "frames_persisted": 0, "frames_not_offered": 0
        }
        n = counts["frames_received"]
        if now - self._rate_t0 >= 0.5:
            self._fps = (n - self._rate_n0) / (now - self._rate_t0)
            self._rate_t0, self._rate_n0 = now, n
        recent = self._proc.latency.recent_ms()
        gaps = p.gap_runs()[1] if p is not None else 0
        ring = p.ring if p is not None else None
        return {
            **counts,
            **self._proc.c,
            "fps": self._fps,
            "frames_in_gaps": gaps,
            "latency_p50_ms": recent["p50"],
            "latency_p99_ms": recent["p99"],
            "ring_used": len(ring) if ring is not None else 0,
            "implementation": self.implementations(),
            "resolution": self._latest_resolution(),
        }

    def _resumed_from(self) -> int:
        """First seq this run is accountable for: where the ingest's first session of
        the stream started (the source's oldest unacknowledged frame when it
        connected; 0 for a fresh source).  Before close (no ingest summary yet): the
        first frame received."""
        p = self._persist
        if p is None or p.stream is None:
            return 0
        ing = self._ingest_summary or {}
        sessions = [
            s for s in ing.get("previous_sessions", []) if s.get("stream") == p.stream
        ]
        current = ing.get("streams", {}).get(p.stream)
        if current:
            sessions.append(current)
        if sessions:
            return min(int(s["resumed_from"]) for s in sessions)
        return int(p.first_seq or 0)

    def _latest_resolution(self) -> dict[str, Any] | None:
        """The newest live resolution estimate (header form, nm filled) or None."""
        est = self._proc.resolution.latest
        p = self._persist
        if est is None:
            return None
        m = self._proc.esrrf.magnification
        return est.to_json(p.pixel_size_um / m * 1e3 if p is not None else None)

    def summary(self) -> dict[str, Any]:
        """Run summary (also written to ``summary.json`` by :meth:`close`)."""
        p = self._persist
        proc = self._proc
        gaps, gap_frames = p.gap_runs() if p is not None else ([], 0)
        counts = p.counts if p is not None else {
            "frames_received": 0, "frames_persisted": 0, "frames_not_offered": 0
        }
        persisted = counts["frames_persisted"]
        # frames before the first one this run received were persisted by an earlier
        # session of the listener (a restart: the source resends only what that one
        # never acknowledged) or belong to the source's earlier numbering
        resumed_from = self._resumed_from()
        acquired = p.acquired_reported if p is not None else None
        if acquired is None:
            acquired = resumed_from + persisted + gap_frames
        lat = proc.latency.summary_ms()
        e2e = lat["end_to_end"]
        duration = max(1e-9, time.time() - self._t_start) if self._t_start else 0.0
        raw_opened = p is not None and p.raw_opened
        files = {
            "raw": str(p.raw.path) if raw_opened and p is not None else None,
            # replay without a copy: the source file, its format and frame range
            "raw_reference": getattr(p.raw, "reference", None)
            if raw_opened and p is not None
            else None,
            "sr": str(self._writer.sr_path)
            if self._writer is not None and self._writer.sr_path is not None
            else None,
            "windows": "windows.csv",
            "drift": "drift.csv",
            "config": "config.toml",
        }
        ring = p.ring if p is not None else None
        error = None
        if p is not None:
            error = p.store_error or p.refused
        ingest = self._ingest
        if error is None and ingest is not None and getattr(ingest, "failed", False):
            error = f"the ingest thread failed: {getattr(ingest, 'error', None)}"
        interval = p.interval_s if p is not None else 1.0
        pixel = p.pixel_size_um if p is not None else 1.0
        memory = p.memory.report() if p is not None and p.memory is not None else None
        return {
            "frames_acquired": acquired,
            "resumed_from": resumed_from,
            "frames_persisted": persisted,
            "frames_in_gaps": gap_frames,
            "accounting_ok": acquired - resumed_from == persisted + gap_frames,
            "source_ended": self.source_ended.is_set(),
            "gaps": gaps,
            "source_restarts": list(p.restarts) if p is not None else [],
            "frames_received": counts["frames_received"],
            "frames_processed": proc.c["frames_processed"],
            "frames_not_processed": persisted - proc.c["frames_processed"],
            "frames_not_offered": counts["frames_not_offered"],
            "frames_duplicate": counts.get("frames_duplicate", 0),
            "frames_dropped_for_processing": proc.c["frames_dropped_for_processing"],
            "windows_published": proc.c["windows_published"],
            "windows_skipped": proc.c["windows_skipped"],
            "skip_events": proc.skips,
            "latency_ms": {
                "p50": e2e["p50"],
                "p99": e2e["p99"],
                "max": e2e["max"],
                "n": e2e["n"],
                "by_path": lat,
            },
            "latency_budget_ms": proc.budget_s * 1e3,
            "params": {
                "esrrf": asdict(self.config.esrrf),
                "drift": asdict(self.config.drift),
            },
            "params_final": asdict(proc.esrrf),
            "param_changes": proc.param_changes,
            "auto_params": {"choices": proc.auto_choices}
            if proc.auto is not None
            else None,
            "implementation": self.implementations(),
            "engine": proc.engine_summary(),
            "quality_metric": QUALITY_METRIC,
            "stopped": error is not None,
            "error": error,
            "processing_error": proc.error,
            "stream": p.stream if p is not None else None,
            "pixel_size_um": pixel,
            "sr_pixel_size_um": pixel / proc.esrrf.magnification,
            "frame_interval_s": interval,
            "ring": {
                "capacity": ring.capacity if ring is not None else 0,
                "peak": ring.peak if ring is not None else 0,
                "bytes": ring.nbytes if ring is not None else 0,
            },
            "memory": memory,
            "sr_saved": self._writer.report() if self._writer is not None else None,
            "duration_s": duration,
            "frames_per_s": persisted / duration if duration else 0.0,
            "endpoints": {"ingest": self._endpoint, "results": self._publish_ep},
            "ingest": self._ingest_summary,
            "on_frame_calls": p.on_frame_calls if p is not None else 0,
            "files": files,
            "output": str(self.output),
            "hooks": self._hooks_report,
            "error_map": self._proc.error_map.report(),
            "resolution": {
                **self._proc.resolution.report(),
                "latest": self._latest_resolution(),
            },
        }


def _hook_runner(hooks: Any) -> Any:
    """The pipeline's ``hooks`` argument as a started :class:`~livesr.stream.Sink`
    (a :class:`HookRunner` over callables; None: no hooks)."""
    if hooks is None:
        return None
    if callable(getattr(hooks, "submit", None)):
        return hooks
    return HookRunner([hooks] if callable(hooks) else list(hooks))


def _hook_result(head: Mapping[str, Any], image: np.ndarray) -> Result:
    """The :class:`~livesr.stream.Result` of one published window."""
    return Result.from_header(head, image)
