"""The memory budget of a run's process, stated before processing and checked at the end.

``summary.json`` ``memory`` holds, besides the ring plan (:class:`MemoryPlan
<livesr.stream._persist.MemoryPlan>`):

``process_budget_mb``
    What the pipeline's process may hold at most, set when the stream's first frame
    arrives (before any frame is processed): its resident memory then (``baseline``:
    interpreter, imported modules, compiled kernels, the warmed-up stages) plus what
    the run will allocate (``parts``): the processing ring, the sliding window's state
    (:func:`livesr.kernels.sliding.estimate_memory`, with the strategy the window
    budget allows), one batch of magnified maps with its per-frame temporaries, and
    the source link's replay ring when the source runs in this process, and the live
    even/odd FRC's frames and half windows when it runs
    (:func:`livesr.stream._frc_live.frc_memory_bytes`); plus 10 %.
``peak_rss_mb``
    The process's peak resident memory (Linux ``VmHWM``), read when the run closes;
    ``within_budget`` compares the two.

The ingest process (``[stream] ingest = "process"``) and the background workers
(live decorrelation resolution, error map) are processes of their own and not
counted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ProcessBudget", "peak_rss_bytes", "process_budget", "rss_bytes"]

_MB = 2**20
#: the budget's headroom over the sum of its parts (allocator slack, small objects)
MARGIN = 0.10


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            text = fh.read()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def rss_bytes() -> int | None:
    """This process's resident memory now, bytes (None where unknown)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far (``VmHWM``; elsewhere
    ``ru_maxrss``), bytes (None where unknown)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError, ValueError):  # pragma: no cover - exotic OS
        return None
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


@dataclass(frozen=True, slots=True)
class ProcessBudget:
    """A process budget and its parts, bytes (see the module docstring)."""

    baseline: int
    ring: int
    window: int
    batch: int
    link: int
    window_strategy: str
    analyses: int = 0

    @property
    def parts(self) -> int:
        """Sum of the parts, bytes (before the margin)."""
        return (
            self.baseline + self.ring + self.window + self.batch + self.link + self.analyses
        )

    @property
    def total(self) -> int:
        return int(self.parts * (1.0 + MARGIN))

    def report(self, peak: int | None) -> dict[str, Any]:
        """The summary's keys: the budget, its parts, the peak and the verdict."""
        return {
            "process_budget_mb": self.total / _MB,
            "process_budget_parts_mb": {
                "baseline": self.baseline / _MB,
                "ring": self.ring / _MB,
                "window": self.window / _MB,
                "batch": self.batch / _MB,
                "source_link": self.link / _MB,
                "analyses": self.analyses / _MB,
                "margin": (self.total - self.parts) / _MB,
            },
            "window_strategy": self.window_strategy,
            "peak_rss_mb": None if peak is None else peak / _MB,
            "within_budget": None if peak is None else peak <= self.total,
        }


def process_budget(
    *,
    shape: tuple[int, int],
    ring_bytes: int,
    window: int,
    magnification: int,
    temporal: str,
    max_batch: int,
    window_budget: int,
    link_bytes: int,
    baseline: int | None = None,
    analyses_bytes: int = 0,
) -> ProcessBudget:
    """The budget of a run whose stream has frames of ``shape`` (see the module).

    Parameters
    ----------
    shape : (int, int)
        Frame rows and columns.
    ring_bytes : int
        The processing ring's size.
    window, magnification, temporal
        eSRRF settings in force.
    max_batch : int
        Most frames mapped in one step.
    window_budget : int
        The sliding window's memory budget (its strategy: stored maps when they
        fit, else raw frames).
    link_bytes : int
        The source link's replay ring in this process (0: the source is elsewhere).
    baseline : int, optional
        Resident memory before processing (default: now).
    analyses_bytes : int
        The in-process background analyses' peak (the live FRC), bytes.
    """
    from livesr.kernels.sliding import estimate_memory

    h, w = int(shape[0]), int(shape[1])
    kw: dict[str, Any] = {
        "window": int(window),
        "frame_shape": (h, w),
        "magnification": int(magnification),
        "temporal": temporal,
        "sums_backend": "numpy",  # the larger of the two sum backends
    }
    need_maps = estimate_memory("maps", **kw)
    strategy = "maps" if need_maps <= window_budget else "raw"
    state = need_maps if strategy == "maps" else estimate_memory("raw", **kw)
    map_bytes = h * w * int(magnification) ** 2 * 4
    # the batch's map stack plus two maps in flight (a frame's map, its copy)
    batch = (int(max_batch) + 2) * map_bytes
    base = baseline if baseline is not None else (rss_bytes() or 0)
    return ProcessBudget(
        baseline=int(base),
        ring=int(ring_bytes),
        window=int(state),
        batch=int(batch),
        link=int(link_bytes),
        window_strategy=strategy,
        analyses=int(analyses_bytes),
    )


class _PipelineMemory:
    """Part of :class:`~livesr.stream._pipeline.Pipeline`: the ring capped at the
    stream's known length, the process budget stated at the first frame."""

    _length: int | None
    _process_budget: ProcessBudget | None

    def _cap_to_length(self, plan: Any) -> Any:
        """``plan`` with a ring no longer than the frames the run will receive (a
        replay's range, ``--frames``), never below the window's minimum."""
        from livesr.stream._persist import MemoryPlan

        length = self._length or self.config.stream.frames  # type: ignore[attr-defined]
        if length and length > 0 and plan.frames > max(length, plan.minimum):
            return MemoryPlan(
                max(int(length), plan.minimum), plan.frame_bytes, plan.budget, plan.minimum
            )
        return plan

    def _plan_stream_ring(
        self, shape: tuple[int, int], dtype: Any, interval_s: float | None
    ) -> Any:
        """The ring for the stream's first frame (``_plan_ring``), and the process
        budget stated now, before any frame is processed."""
        from dataclasses import fields

        from livesr.stream._source_link_config import SourceLinkConfig

        baseline = rss_bytes()
        plan = self._plan_ring(shape, dtype, interval_s)  # type: ignore[attr-defined]
        proc = self._proc  # type: ignore[attr-defined]
        e = proc.esrrf
        in_process = str(self._endpoint).startswith("inproc://")  # type: ignore[attr-defined]
        # the source's replay ring (its default size) when the source runs here
        ring = next(f.default for f in fields(SourceLinkConfig) if f.name == "ring_frames")
        link = int(ring) if in_process else 0  # type: ignore[arg-type]
        self._process_budget = process_budget(
            shape=shape,
            ring_bytes=plan.frames * plan.frame_bytes,
            window=e.window,
            magnification=e.magnification,
            temporal=e.temporal,
            max_batch=proc.max_batch,
            window_budget=plan.budget,
            link_bytes=int(link) * plan.frame_bytes,
            baseline=baseline,
            analyses_bytes=proc.frc_memory_bytes(shape),
        )
        return plan

    def _memory_report(self, ring_plan: dict[str, Any] | None) -> dict[str, Any] | None:
        """``summary.json`` ``memory``: the ring plan, the process budget, the peak."""
        budget = self._process_budget
        if ring_plan is None and budget is None:
            return None
        out = dict(ring_plan or {})
        if budget is not None:
            out.update(budget.report(peak_rss_bytes()))
        return out
