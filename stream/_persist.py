"""The ingest side of the pipeline: persist every frame, then offer it to processing.

:class:`Persister` runs on the ingest thread (``Ingest``'s ``on_frame``, ``on_gap``,
``on_end``): write the frame to the raw store (OME-Zarr / OME-TIFF), then offer it to
the :class:`~livesr.stream._ring.ProcessingRing` and return (the ingest then ACKs).
Processing never holds it back: a full ring means the frame is not processed (it is
on disk) and the windows it belonged to are counted as skipped.  A write error
(``ENOSPC``...) stops acquisition (``stop_requested``), and the frames that arrive
afterwards are recorded as a gap.

Memory: the ring is sized from the frame shape, the window, the batch and the latency
budget (:func:`ring_frames`) within the run's memory budget (:func:`memory_budget_bytes`);
:func:`check_memory` refuses a window that cannot fit before anything is acquired.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

from livesr.stream._link_base import RateLimitedLog
from livesr.stream._rawstore import RawStore, RawStoreError
from livesr.stream._ring import ProcessingRing
from livesr.stream._wire import FrameHeader

__all__ = [
    "RING_MAX_FRAMES",
    "Gaps",
    "MemoryPlan",
    "Persister",
    "check_memory",
    "memory_budget_bytes",
    "ring_frames",
]

logger = logging.getLogger(__name__)

#: The processing ring never holds more frames than this (or 4 windows).
RING_MAX_FRAMES = 4096
#: A ring of small frames may always take this much, bytes.
SMALL_RING_BYTES = 64 * 2**20
#: The automatic memory budget never exceeds this, bytes.
AUTO_BUDGET_MAX = 16 * 2**30


class Gaps:
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


def memory_budget_bytes(memory_budget_mb: float) -> int:
    """The run's host memory budget for waiting frames, bytes (0 MiB: automatic)."""
    if memory_budget_mb > 0:
        return int(memory_budget_mb * 2**20)
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic OS
        phys = 8 * 2**30
    return int(min(phys // 4, AUTO_BUDGET_MAX))


def ring_frames(
    *,
    window: int,
    max_batch: int,
    interval_s: float | None,
    latency_budget_s: float,
    frame_bytes: int = 0,
) -> int:
    """Frames the processing ring should hold (before the memory budget).

    Enough for a window plus two batches (a skip restarts a whole window from the
    ring), for 3 latency budgets of frames at the camera's rate (a backlog longer
    than the budget is skipped, not refused: a full ring would leave a hole), and
    for small frames up to 64 MiB whatever the rate; at most
    :data:`RING_MAX_FRAMES` or 4 windows.
    """
    want = max(2 * window, window + 2 * max_batch, 64)
    if interval_s is not None and interval_s > 0:
        want = max(want, math.ceil(3 * latency_budget_s / interval_s))
    if frame_bytes > 0:
        want = max(want, SMALL_RING_BYTES // frame_bytes)
    return int(min(want, max(RING_MAX_FRAMES, 4 * window)))


class MemoryPlan:
    """Ring size chosen for a frame shape (what ``summary.json`` ``memory`` states)."""

    def __init__(
        self, frames: int, frame_bytes: int, budget: int, minimum: int
    ) -> None:
        self.frames = frames
        self.frame_bytes = frame_bytes
        self.budget = budget
        self.minimum = minimum

    def report(self) -> dict[str, Any]:
        return {
            "budget_mb": self.budget / 2**20,
            "ring_frames": self.frames,
            "ring_mb": self.frames * self.frame_bytes / 2**20,
            "ring_min_frames": self.minimum,
        }


def check_memory(
    shape: tuple[int, int],
    dtype: Any,
    *,
    window: int,
    max_batch: int,
    interval_s: float | None,
    latency_budget_s: float,
    ring_mb: float,
    memory_budget_mb: float,
) -> MemoryPlan:
    """Size the processing ring for ``shape`` frames, or refuse with what to change.

    Raises
    ------
    ValueError
        The window (plus one batch) does not fit the memory budget (or the explicit
        ``ring_mb``); the message names the setting to change and by how much.
    """
    frame_bytes = int(shape[0]) * int(shape[1]) * np.dtype(dtype).itemsize
    minimum = window + max(1, min(max_batch, window))
    budget = memory_budget_bytes(memory_budget_mb)
    if ring_mb > 0:
        frames = int(ring_mb * 2**20) // max(1, frame_bytes)
        if frames < minimum:
            raise ValueError(
                f"[stream] ring_mb = {ring_mb:g} holds {frames} frame(s) of "
                f"{shape[0]}x{shape[1]} {np.dtype(dtype)}; the window of {window} "
                f"frames needs {minimum}: raise ring_mb to >= "
                f"{minimum * frame_bytes / 2**20:.1f}, or set it to 0 (automatic)"
            )
        return MemoryPlan(
            frames, frame_bytes, max(budget, frames * frame_bytes), minimum
        )
    want = ring_frames(
        window=window,
        max_batch=max_batch,
        interval_s=interval_s,
        latency_budget_s=latency_budget_s,
        frame_bytes=frame_bytes,
    )
    fit = budget // max(1, frame_bytes)
    if fit < minimum:
        raise ValueError(
            f"a window of {window} frames of {shape[0]}x{shape[1]} "
            f"{np.dtype(dtype)} needs {minimum * frame_bytes / 2**20:.0f} MiB of "
            f"processing ring; the memory budget is {budget / 2**20:.0f} MiB: lower "
            f"--window to <= {max(1, fit // 2)} or raise [stream] memory_budget_mb "
            f"to >= {minimum * frame_bytes / 2**20:.0f}"
        )
    return MemoryPlan(min(want, fit), frame_bytes, budget, minimum)


class PersistState:
    """What the pipeline reads of the ingest side: stream, ring, memory plan, gaps,
    errors and the source's report (:class:`Persister` in this process, or
    :class:`~livesr.stream._ingest_process.PersistView` of the ingest process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gaps = Gaps()
        self.ring: Any = None  # ProcessingRing or SharedRing
        self.memory: MemoryPlan | None = None
        self.raw_opened = False
        self.stream: str | None = None
        self.first_seq: int | None = None
        self.pixel_size_um = 1.0
        self.interval_s = 1.0
        self.interval_known = False
        self.store_error: str | None = None
        self.refused: str | None = None
        self.acquired_reported: int | None = None
        self.restarts: list[dict[str, Any]] = []
        self.source_ended = threading.Event()

    def gap_runs(self) -> tuple[list[list[Any]], int]:
        with self.lock:
            return [list(g) for g in self.gaps.runs], self.gaps.frames


class Persister(PersistState):
    """Ingest-side callbacks of the pipeline (module docstring).

    Parameters
    ----------
    raw : RawStore
        Raw-frame writer (opened at the first frame).
    plan_ring : callable
        ``plan_ring(shape, dtype, interval_s) -> MemoryPlan`` (raises ValueError to
        refuse the stream).
    session_of : callable
        ``session_of(stream) -> str | None``: the ingest's source session.
    on_store_error : callable
        Called once with the error text when the raw store fails (stop acquisition).
    on_first_frame : callable
        Called with the ring once it exists (the processing thread starts on it).
    """

    def __init__(
        self,
        raw: RawStore,
        *,
        plan_ring: Callable[[tuple[int, int], Any, float | None], MemoryPlan],
        session_of: Callable[[str], str | None],
        on_store_error: Callable[[str], None],
        on_end: Callable[[], None],
        make_ring: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.raw = raw
        #: ``make_ring(shape, dtype, budget_bytes, min_frames=...)``: the processing
        #: ring (a :class:`~livesr.stream._shmring.SharedRing` in the ingest process)
        self._make_ring = make_ring or ProcessingRing
        self._plan_ring = plan_ring
        self._session_of = session_of
        self._on_store_error = on_store_error
        self._on_end_cb = on_end
        self._rlog = RateLimitedLog(logger, 2.0)
        self.max_seq = -1
        self.on_frame_calls = 0
        self.counts = {
            "frames_received": 0,
            "frames_persisted": 0,
            "frames_not_offered": 0,
            "frames_duplicate": 0,
        }
        self._session: str | None = None
        self.seq_offset = 0

    # ------------------------------------------------------------------ frames
    def on_frame(self, header: FrameHeader, frame: np.ndarray) -> bool:
        """Persist ``frame``, then offer it to processing (the ingest ACKs after).

        Returns True when the frame is on disk (or was already), False when it could
        not be written and is recorded as a gap here (the raw store failed): the
        ingest acknowledges it (the source must not resend it forever) but counts it
        as lost at the pipeline, never as persisted.
        """
        t_recv = time.time()
        self.on_frame_calls += 1
        if self.stream is None:
            self._first_frame(header)
        elif header.stream != self.stream:
            raise ValueError(
                f"stream {header.stream!r}: this pipeline serves stream "
                f"{self.stream!r} only"
            )
        seq = header.seq + self._source_offset(header)
        self.counts["frames_received"] += 1
        if seq > self.max_seq:
            self.max_seq = seq
        if self.store_error is not None:
            with self.lock:
                self.gaps.add(seq, seq, "raw store failed")
            return False
        try:
            wrote = self.raw.append(seq, frame, t_acq=header.t_acq, t_recv=t_recv)
        except (RawStoreError, OSError) as exc:
            self.store_error = str(exc)
            with self.lock:
                self.gaps.add(seq, seq, "raw store failed")
            logger.error(
                "raw frame persistence failed: %s; stopping acquisition (frames from "
                "seq %d on are recorded as a gap)",
                exc,
                seq,
            )
            self._on_store_error(f"raw store failed: {exc}")
            return False
        if (
            wrote is False
        ):  # already persisted (a retry): never counted or offered twice
            self.counts["frames_duplicate"] += 1
            return True
        self.counts["frames_persisted"] += 1
        ring = self.ring
        assert ring is not None
        if not ring.offer(seq, frame, header.t_acq, t_recv):
            self.counts["frames_not_offered"] += 1
            self._rlog.log(
                logging.WARNING,
                "ring",
                "processing ring full (%d frames): frame %d persisted, not processed",
                ring.capacity,
                seq,
            )
        return True

    def _source_offset(self, header: FrameHeader) -> int:
        """Offset from the source's seq to the pipeline's (0 unless it restarted low).

        A restarted source (new session) normally continues at the camera's frame
        counter.  One that starts again at or below a frame already seen (a camera
        whose counter was reset) is numbered on from the last frame seen, so that
        nothing it delivers is mistaken for an old frame; the restart is logged and
        listed in the summary (``source_restarts``).
        """
        session = self._session_of(header.stream)
        if session == self._session:
            return self.seq_offset
        if self._session is not None and header.seq + self.seq_offset <= self.max_seq:
            self.seq_offset = self.max_seq + 1 - header.seq
            logger.warning(
                "stream %s: the source restarted (new session) at seq %d, at or "
                "below the last frame seen (%d); its frames are numbered on from %d",
                header.stream,
                header.seq,
                self.max_seq,
                header.seq + self.seq_offset,
            )
            self.restarts.append(
                {
                    "session": session,
                    "source_seq": header.seq,
                    "seq": header.seq + self.seq_offset,
                }
            )
        self._session = session
        return self.seq_offset

    def _first_frame(self, header: FrameHeader) -> None:
        meta = dict(header.meta)
        interval_ms = meta.get("interval_ms")
        self.interval_known = (
            isinstance(interval_ms, (int, float))
            and not isinstance(interval_ms, bool)
            and math.isfinite(interval_ms)
            and interval_ms > 0
        )
        self.interval_s = float(cast(float, interval_ms)) / 1e3 if self.interval_known else 1.0
        # the ring first: a stream that cannot be processed is refused before any
        # frame of it is written (ValueError: the ingest rejects the frame)
        try:
            plan = self._plan_ring(
                header.shape,
                header.dtype,
                self.interval_s if self.interval_known else None,
            )
        except ValueError as exc:
            if self.refused is None:
                self.refused = str(exc)
                logger.error("stream %s refused: %s", header.stream, exc)
                self._on_store_error(str(exc))
            raise
        self.memory = plan
        self.ring = self._make_ring(
            header.shape,
            header.dtype,
            plan.frames * plan.frame_bytes,
            min_frames=plan.minimum,
        )
        self.stream = header.stream
        self.first_seq = header.seq
        self.pixel_size_um = header.pixel_size_um
        self.raw.open(
            header.shape,
            header.dtype,
            pixel_size_um=header.pixel_size_um,
            interval_s=self.interval_s,
            meta={"stream": header.stream, **meta},
        )
        self.raw_opened = True
        logger.info(
            "stream %s: %dx%d %s frames, %.4g um px; processing ring %d frames (%.1f "
            "MiB of a %.0f MiB budget)",
            header.stream,
            header.shape[0],
            header.shape[1],
            header.dtype,
            header.pixel_size_um,
            self.ring.capacity,
            self.ring.nbytes / 2**20,
            plan.budget / 2**20,
        )

    # ------------------------------------------------------------------ control
    def on_gap(self, stream: str, first: int, last: int) -> None:
        first, last = first + self.seq_offset, last + self.seq_offset
        with self.lock:
            self.gaps.add(first, last, "source ring overflow")
        self.max_seq = max(self.max_seq, last)

    def on_end(self, stream: str, summary: Mapping[str, Any]) -> None:
        acquired = summary.get("frames_acquired")
        if isinstance(acquired, int):
            self.acquired_reported = acquired + self.seq_offset
        self.source_ended.set()
        if self.ring is not None:
            self.ring.close()
        self._on_end_cb()
