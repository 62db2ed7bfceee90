"""The processing thread of the live pipeline: batches of frames -> drift -> eSRRF.

:class:`Processor` takes frames from the :class:`~livesr.stream._ring.ProcessingRing`
in order, **in batches**: when several frames wait, one Python step (and, on the GPU,
one kernel launch) handles all of them, each with its own drift shift
(``RollingDrift`` then the sliding window's ``push_many``).  A batch never waits for
frames to arrive: it is whatever waits when the thread comes back, at most
``[stream] max_batch`` frames.  Every completed window is published (PUB, hooks) and
written (:class:`~livesr.stream._resultwriter.ResultWriter`).

Deadlines (the engine's delay agent judges implementations by them)
    Each frame's map must finish within the camera's frame interval (throughput: a
    slower implementation falls behind for good); the frame that ends a window must
    also finish within what is left of the latency budget, when anything is left.
    The frame interval is the source's nominal one (``interval_ms`` in the frame
    metadata); without it, no deadline (the fastest implementation).  Warm-up,
    timing of untimed implementations and first-call set-up (JIT compiles, CuPy
    plans) happen in :meth:`Processor.warm_up`, before acquisition starts.

Skipping (never raw frames)
    The rules are in :mod:`livesr.stream._schedule`: a hole restarts at the first
    scheduled window after it; a backlog whose next image would exceed the latency
    budget skips to the newest complete window in the ring.  Frames dropped for
    processing are not given to the drift estimator either (it keeps its state; the
    drift table maps its estimates back to sequence numbers).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from livesr.kernels.framemap import MapStage
from livesr.stream._config import EsrrfConfig, LivesrConfig
from livesr.stream._latency import LatencyTracker, Timestamps
from livesr.stream._link_base import RateLimitedLog
from livesr.stream._processing_report import _ReportMixin
from livesr.stream._processing_setup import _SetupMixin
from livesr.stream._ring import ProcessingRing, RingBatch
from livesr.stream._schedule import plan_budget_skip, scheduled_at_or_after

__all__ = ["LIVE_PARAMS", "Processor"]

logger = logging.getLogger(__name__)

#: Parameters :meth:`Processor.set_params` may change while streaming.
LIVE_PARAMS: tuple[str, ...] = ("window", "stride", "radius", "sensitivity", "temporal")


class Processor(_SetupMixin, _ReportMixin):
    """State and loop of the processing thread (module docstring).

    Parameters
    ----------
    config : LivesrConfig
        Run configuration.
    frame_map : MapStage
        The per-frame map stage (engine hook).
    publish : callable
        ``publish(head, image, stamps)``: send one result (PUB, hooks, files).
    stage_hook : callable, optional
        ``stage_hook(seq)`` before each frame is processed (tests inject delays).
    shape_hint : (int, int), optional
        The camera's frame shape, for the warm-up.
    """

    def __init__(
        self,
        config: LivesrConfig,
        frame_map: MapStage,
        publish: Callable[[dict[str, Any], np.ndarray, Timestamps], None],
        *,
        stage_hook: Callable[[int], None] | None = None,
        shape_hint: tuple[int, int] | None = None,
        add_drift: Callable[..., None] | None = None,
        user_map: bool = False,
    ) -> None:
        self.config = config
        self.map = frame_map
        #: a caller's own per-frame map (tests, custom stages): host window, per frame
        self._user_map = user_map
        self._prepared: Any = None  # the window warmed up at the hinted shape
        self._drift_xp: Any = None  # CuPy when drift registers on the GPU
        #: keep the drift origin where the first block put it (feedback hooks run)
        self.fixed_origin = False
        #: rows, cols of a frame that drift measures on ([drift] region_px)
        self._drift_region: tuple[slice, slice] = (slice(None), slice(None))
        self._publish_cb = publish
        self._add_drift = add_drift
        self._stage_hook = stage_hook
        self._shape_hint = shape_hint
        self._device_choice: bool | None = None
        self.esrrf: EsrrfConfig = config.esrrf
        self.budget_s = config.stream.latency_budget_ms / 1e3
        self.max_batch = 1 if stage_hook is not None else int(config.stream.max_batch)
        self.interval_s: float | None = None  # nominal frame interval (deadlines)
        self.lock = threading.Lock()
        self._rlog = RateLimitedLog(logger, 2.0)
        self.c: dict[str, int] = {
            "frames_processed": 0,
            "frames_dropped_for_processing": 0,
            "windows_published": 0,
            "windows_skipped": 0,
            "skip_events": 0,
            "batches": 0,
        }
        self.latency = LatencyTracker()
        self.sliding: Any = None
        self.drift: Any = None
        self._drift_seqs = array("q")
        self.base = 0
        self.expected: int | None = None
        self.cost_s = 0.0
        self.filling = False
        self.pending: list[dict[str, Any]] = []
        self.param_changes: list[dict[str, Any]] = []
        self.skips: list[dict[str, Any]] = []
        self.last_drift: dict[str, Any] | None = None
        self.error: str | None = None
        self.batch_peak = 0
        self._impl_switches: list[dict[str, Any]] = []
        self._last_impl: str | None = None
        self._engine_stats0: tuple[Any, ...] | None = None
        #: live parameter choice (``[esrrf] auto_params``): the sweep, its inputs
        self.auto: Any = _auto_params(config)
        self.auto_choices: list[dict[str, Any]] = []
        self._auto_buf: list[tuple[int, np.ndarray]] = []
        self._auto_block: tuple[int, int] | None = None
        self._auto_applied = 0
        self._auto_windows = 0
        self._init_analyses(config)
        # acquisition time of recent frames by seq (an image's first frame's time)
        self._tq_seq = np.full(4096, -1, dtype=np.int64)
        self._tq_t = np.zeros(4096)

    def _init_analyses(self, config: LivesrConfig) -> None:
        """The background analyses of published images: decorrelation resolution,
        even/odd FRC and (``[stream] error_map``) the SQUIRREL error map."""
        from livesr.stream._errormap_live import LiveErrorMap
        from livesr.stream._frc_live import MAX_SR_PIXELS, LiveFrc, WindowFrames
        from livesr.stream._resolution import LiveResolution

        interval = float(config.stream.resolution_interval_s)
        #: live decorrelation resolution of the newest image (stream/_resolution.py)
        self.resolution = LiveResolution(
            min_interval_s=interval if interval > 0 else 0.0, enabled=interval > 0
        )
        #: live even/odd FRC of the newest window (stream/_frc_live.py), on with the
        #: live resolution; its frames are collected only while it could take some
        self.frc = (
            LiveFrc(_frc_params(self.esrrf), min_interval_s=interval) if interval > 0 else None
        )
        self._frc_frames = WindowFrames()
        self._frc_max_pixels = MAX_SR_PIXELS
        #: SQUIRREL error map of published images (``[stream] error_map``)
        self.error_map = LiveErrorMap(enabled=config.stream.error_map)

    def set_params(self, ring: ProcessingRing | None, **changes: Any) -> None:
        """Queue a live parameter change (validated now, applied between batches)."""
        bad = sorted(set(changes) - set(LIVE_PARAMS))
        if bad:
            raise ValueError(
                f"set_params: {', '.join(bad)} cannot change while streaming; "
                f"allowed: {', '.join(LIVE_PARAMS)}"
            )
        with self.lock:
            base = self.esrrf
            for pend in self.pending:
                base = replace(base, **pend)
            replace(base, **changes)  # validates (raises ValueError naming the field)
            if ring is not None and "window" in changes and changes["window"] > ring.capacity:
                raise ValueError(
                    f"set_params: window={changes['window']} exceeds the processing "
                    f"ring ({ring.capacity} frames); raise [stream] memory_budget_mb"
                )
            self.pending.append(dict(changes))

    def _apply_pending(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        for changes in pending:
            frame_index = self.expected if self.expected is not None else 0
            self.esrrf = replace(self.esrrf, **changes)
            if self.frc is not None:  # the next windows' halves use the new settings
                self.frc.esrrf = _frc_params(self.esrrf)
                self._frc_frames.clear()
            if self.sliding is not None:
                self.sliding.set_params(recompute=True, **changes)
            self.param_changes.append({"frame_index": frame_index, "changes": dict(changes)})
            logger.info("parameters changed from frame %d: %s", frame_index, changes)

    # ------------------------------------------------------------------ loop
    def run(
        self,
        get_ring: Callable[[], ProcessingRing | None],
        stopping: Callable[[], bool],
        ready: threading.Event,
        max_seq: Callable[[], int],
        first_seq: Callable[[], int | None],
    ) -> None:
        """The thread's body: warm up, set ``ready``, process until the ring closes."""
        switch = _gil_switch_interval()
        old_switch = sys.getswitchinterval()
        if switch < old_switch:
            sys.setswitchinterval(switch)
        try:
            try:
                try:
                    self.warm_up()
                finally:
                    ready.set()
                self._loop(get_ring, stopping)
            except Exception as exc:  # a bug or a kernel failure: keep persisting
                self.error = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "processing stopped (%s); raw frames are still persisted", self.error
                )
                logger.debug("processing failure", exc_info=True)
            finally:
                self._account_tail(max_seq(), first_seq())
                # an analysis under way is not waited for long: its estimate would
                # only reach the summary (a 1280² decorrelation took 8 s at the end
                # of an H100 run)
                self.resolution.close(timeout_s=3.0)
                if self.frc is not None:
                    self.frc.close(timeout_s=10.0)
                self.error_map.close()
                if self.auto is not None:
                    self.auto.close(timeout=30.0)
        finally:
            if sys.getswitchinterval() == switch < old_switch:
                sys.setswitchinterval(old_switch)

    def _loop(
        self, get_ring: Callable[[], ProcessingRing | None], stopping: Callable[[], bool]
    ) -> None:
        while True:
            ring = get_ring()
            if ring is None:
                if stopping():
                    return
                time.sleep(0.01)
                continue
            self._apply_pending()
            batch = ring.peek_many(self.max_batch, 0.1)
            if batch is None:
                if ring.closed:
                    return
                continue
            if self._maybe_skip(batch, ring):
                continue
            n = self._process(batch, ring)
            ring.pop_many(n)

    # ------------------------------------------------------------------ skipping
    def _next_emission(self) -> int:
        """Global seq of the frame whose processing emits the next image."""
        return self.base + int(self.sliding.next_emission)

    def _restart_at(self, target: int, *, reason: str, dropped: int = 0) -> None:
        """Restart the sliding window so its first image ends at frame ``target``."""
        nxt = self._next_emission()
        stride = int(self.sliding.stride)
        skipped = max(0, (target - nxt) // stride) if target >= nxt else 0
        self.sliding.reset()
        self.filling = True  # no further skip until this window is out
        self.base = target - int(self.sliding.window) + 1
        self.c["windows_skipped"] += skipped
        self.c["skip_events"] += 1
        event = {
            "reason": reason,
            "restart_frame": self.base,
            "next_image_at": target,
            "windows_skipped": skipped,
            "frames_dropped": dropped,
        }
        if len(self.skips) < 10_000:
            self.skips.append(event)
        self._rlog.log(
            logging.WARNING,
            "skip",
            "processing behind: %s; %d window(s) skipped, restart at frame %d",
            reason,
            skipped,
            self.base,
        )

    def _maybe_skip(self, batch: RingBatch, ring: ProcessingRing) -> bool:
        """Skip to the newest complete window when the budget cannot be kept."""
        if self.sliding is None:
            return False
        newest = ring.newest_seq()
        if newest is None:
            return False
        oldest = int(batch.seqs[0])
        nxt = self._next_emission()
        k = nxt - oldest
        age = None
        if 0 <= k < len(batch):
            age = time.time() - float(batch.t_acq[k])
        elif k >= len(batch) and nxt <= newest:
            age = time.time() - float(batch.t_acq[-1])  # a lower bound
        plan = plan_budget_skip(
            oldest=oldest,
            newest=newest,
            nxt=nxt,
            window=int(self.sliding.window),
            stride=int(self.sliding.stride),
            cost_per_frame_s=self.cost_s,
            budget_s=self.budget_s,
            age_of_next_s=age,
            filling_after_skip=self.filling,
        )
        if plan is None:
            return False
        dropped = ring.discard_before(plan.start)
        self.c["frames_dropped_for_processing"] += dropped
        self._restart_at(plan.target, dropped=dropped, reason=plan.reason)
        self.expected = plan.start
        return True

    def _account_tail(self, last: int, first_seq: int | None) -> None:
        """Count the scheduled windows of the frames that never reached processing."""
        if last < 0:
            return
        if self.sliding is None:
            e = self.esrrf
            first = first_seq if first_seq is not None else 0
            nxt, stride = first + e.window - 1, e.stride
        else:
            nxt, stride = self._next_emission(), int(self.sliding.stride)
        if last >= nxt:
            first_missing = self.expected if self.expected is not None else nxt
            skipped = (last - nxt) // stride + 1
            self.c["windows_skipped"] += skipped
            self.c["skip_events"] += 1
            if len(self.skips) < 10_000:
                self.skips.append(
                    {
                        "reason": f"frames {first_missing}-{last} not processed",
                        "restart_frame": None,
                        "next_image_at": None,
                        "windows_skipped": skipped,
                        "frames_dropped": 0,
                    }
                )
            logger.warning(
                "%d scheduled window(s) up to frame %d were not processed", skipped, last
            )

    #: frames of at least this many pixels register drift on the GPU (with the GPU
    #: window); smaller ones on the host: per block, CuPy's launch and Python
    #: overhead outweighs its FFTs below ~512² (H100: 2.0 vs 0.74 ms per frame at
    #: 256², 1.8 vs 3.5 at 512², 11.6 vs 134 at 2048²; bench/results/drift_gpu_h100.log)
    DRIFT_ON_DEVICE_MIN_PIXELS = 384 * 384

    def _deadline(self, batch: RingBatch, k0: int, n: int) -> float | None:
        """Per-frame deadline of the map for frames ``k0 .. k0+n-1`` of the batch."""
        interval = self.interval_s
        if interval is None:
            return None
        nxt = self._next_emission()
        k = nxt - int(batch.seqs[0])
        if k0 <= k < k0 + n:  # this step ends a window: the latency budget counts too
            left = self.budget_s - (time.time() - float(batch.t_acq[k]))
            if left > 0:
                return min(interval, left / max(1, k - k0 + 1))
        return interval

    def _process(self, batch: RingBatch, ring: ProcessingRing) -> int:
        """Process the frames of ``batch`` (or its head up to a hole); how many."""
        t0 = time.perf_counter()
        if self.sliding is None:
            self._start(batch)
        assert self.expected is not None
        seq0 = int(batch.seqs[0])
        if seq0 != self.expected:
            if seq0 < self.expected:  # pragma: no cover - the ingest delivers in order
                raise RuntimeError(f"frame {seq0} arrived after frame {self.expected - 1}")
            self._restart_at(
                scheduled_at_or_after(
                    seq0, self._next_emission(), int(self.sliding.window),
                    int(self.sliding.stride),
                ),
                reason=f"frames {self.expected}-{seq0 - 1} not available for processing",
            )
        n = len(batch)
        if self._stage_hook is not None:
            for s in batch.seqs:
                self._stage_hook(int(s))
        frames = batch.frames
        self._remember_t_acq(batch)
        shifts, known = self._drift_shifts(frames, batch.seqs)
        self.error_map.push(batch.seqs, frames, shifts, int(self.esrrf.window))
        self._collect_frc(batch.seqs, frames, shifts)
        k0 = max(0, self.base - seq0)
        if k0 < n:
            deadline = self._deadline(batch, k0, n - k0)  # per frame
            self.map.deadline_s = deadline
            self.sliding.deadline_s = deadline  # a batch of n: n x deadline
            self._ask_halves(frames)
            results = self.sliding.push_many(frames[k0:], shifts[k0:])
            self._note_implementation(seq0 + n - 1)
            for result in results:
                self.filling = False
                last = self.base + int(result.last_frame)
                k = last - seq0
                self._publish(
                    result,
                    batch.item(k),
                    (float(shifts[k, 0]), float(shifts[k, 1])),
                    known[k],
                )
        if self.auto is not None:
            self._auto_step(frames, batch.seqs, ring)
        self.expected = seq0 + n
        self.c["frames_processed"] += n
        self.c["batches"] += 1
        self.batch_peak = max(self.batch_peak, n)
        cost = (time.perf_counter() - t0) / n
        if self.c["batches"] > 1:  # the first batch pays one-off set-up costs
            self.cost_s = cost if self.cost_s <= 0 else 0.8 * self.cost_s + 0.2 * cost
        return n

    def _auto_step(self, frames: np.ndarray, seqs: np.ndarray, ring: Any) -> None:
        """``[esrrf] auto_params``: keep the newest window of raw frames, start a
        sweep every ``auto_params_every`` windows, apply a finished sweep's best pair
        as a live change (between batches; recorded in ``param_changes``)."""
        e = self.esrrf
        for k in range(len(seqs)):
            self._auto_buf.append((int(seqs[k]), np.array(frames[k])))
        del self._auto_buf[: max(0, len(self._auto_buf) - e.window)]
        # a finished sweep first (it belongs to the newest accepted submission)
        choice = self.auto.latest()
        if choice is not None and choice.serial != self._auto_applied:
            self._auto_applied = choice.serial
            last = None if self._auto_block is None else self._auto_block[1]
            entry = {
                "serial": choice.serial,
                "sensitivity": choice.sensitivity,
                "radius": choice.radius,
                "qnr": choice.qnr,
                "frames": None if last is None else [last - choice.n_frames + 1, last],
                "seconds": choice.seconds,
                "applied_from_frame": None,
            }
            if (choice.radius, choice.sensitivity) != (e.radius, e.sensitivity):
                self.set_params(
                    ring, radius=choice.radius, sensitivity=choice.sensitivity
                )
                entry["applied_from_frame"] = int(seqs[-1]) + 1
            self.auto_choices.append(entry)
        published = self.c["windows_published"]
        due = published - self._auto_windows >= self.config.esrrf.auto_params_every
        if due and len(self._auto_buf) >= min(e.window, 10):
            block = np.stack([f for _, f in self._auto_buf])
            if self.auto.submit(block):  # False while a sweep runs
                self._auto_windows = published
                self._auto_block = (self._auto_buf[0][0], self._auto_buf[-1][0])

    def frc_memory_bytes(self, shape: tuple[int, int]) -> int:
        """Peak memory of the live FRC at frames of ``shape`` (0: it does not run)."""
        from livesr.stream._frc_live import frc_memory_bytes

        e = self.esrrf
        if self.frc is None or shape[0] * shape[1] * e.magnification**2 > self._frc_max_pixels:
            return 0
        return frc_memory_bytes(shape, e.window, e.magnification, self.max_batch)

    def _frc_could_take(self, frames: np.ndarray) -> bool:
        """Whether the live FRC runs at this frame size and could take a window now."""
        frc = self.frc
        if frc is None:
            return False
        sr_pixels = frames.shape[1] * frames.shape[2] * int(self.esrrf.magnification) ** 2
        return sr_pixels <= self._frc_max_pixels and bool(frc.wants_frames())

    def _halves_from_window(self) -> bool:
        """Whether the window itself makes the FRC's half images (host window, all
        maps stored, AVG: ``SlidingEsrrf.can_make_halves``; the engine's eSRRF map,
        not a caller's own): then no frame is kept for the FRC and no map is
        computed again."""
        return not self._user_map and bool(getattr(self.sliding, "can_make_halves", False))

    def _ask_halves(self, frames: np.ndarray) -> None:
        """Ask the window for the half images of the images of this batch while the
        live FRC could take one (``SlidingResult.halves``)."""
        if self._halves_from_window():
            self.sliding.want_halves = self._frc_could_take(frames)

    def _collect_frc(self, seqs: np.ndarray, frames: np.ndarray, shifts: np.ndarray) -> None:
        """Keep the batch's frames for the live FRC while it could take a window
        (unless the window makes the half images itself)."""
        if self._halves_from_window() or not self._frc_could_take(frames):
            return
        self._frc_frames.push(seqs, frames, shifts, int(self.esrrf.window))

    def _drift_shifts(
        self, frames: np.ndarray, seqs: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, Any] | None]]:
        """Causal drift shift (dy, dx) of every frame of the batch, (n, 2) px, and the
        newest drift estimate known at each frame (what its image reports)."""
        n = len(seqs)
        if self.drift is None:
            return np.zeros((n, 2)), [None] * n
        d = self.drift
        first = d.n_frames
        self._drift_seqs.extend(int(s) for s in seqs)
        ys, xs = self._drift_region
        frames = frames[:, ys, xs]  # [drift] region_px: the central region (a view)
        if hasattr(d, "push_many") and hasattr(d, "shifts_for"):
            xp = self._drift_xp
            ests = list(
                d.push_many(frames if xp is None else xp.asarray(np.ascontiguousarray(frames)))
            )
            shifts = np.asarray(d.shifts_for(first, n), dtype=np.float64)
        else:
            ests = []
            shifts = np.empty((n, 2))
            for k in range(n):
                est = d.push(frames[k])
                if est is not None:
                    ests.append(est)
                shifts[k] = d.displacement_at(d.n_frames - 1)
        known: list[dict[str, Any] | None] = []
        j = 0
        state = self.last_drift
        for k in range(n):
            while j < len(ests) and ests[j].frame_index <= first + k:
                state = self._record_drift(ests[j])
                j += 1
            known.append(state)
        while j < len(ests):  # estimates placed after the batch's frames (none today)
            state = self._record_drift(ests[j])
            j += 1
        return shifts, known


#: GIL switch interval while a pipeline processes, s (``LIVESR_GIL_SWITCH_MS``).
DEFAULT_GIL_SWITCH_S = 0.0005


def _gil_switch_interval() -> float:
    """The interpreter's thread switch interval while the pipeline runs, s.

    The processing thread releases the GIL many times per batch (every GPU call,
    every compiled kernel) and must win it back each time from the threads that
    acquire, persist and publish; with Python's default 5 ms a thread busy in Python
    keeps it up to 5 ms per hand-over.  ``LIVESR_GIL_SWITCH_MS`` overrides the 0.5 ms
    default (0 or less: leave it).
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


def _auto_params(config: LivesrConfig) -> Any:
    """The live parameter sweep (``[esrrf] auto_params``), or None when off."""
    if not config.esrrf.auto_params:
        return None
    from livesr.kernels.auto_params import AutoParams

    e = config.esrrf
    return AutoParams(
        magnification=e.magnification,
        temporal=e.temporal if e.temporal in ("avg", "var") else "avg",
        budget_s=2.0,
        max_frames=e.window,
    )


def _frc_params(esrrf: Any) -> dict[str, Any]:
    """The eSRRF settings the live FRC's half windows are made with."""
    keys = ("magnification", "radius", "sensitivity", "intensity_weighting",
            "macro_pixel_correction", "temporal", "geometry")
    return {k: getattr(esrrf, k) for k in keys if hasattr(esrrf, k)}
