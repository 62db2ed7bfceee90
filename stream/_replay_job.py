"""Client-side state of a Dask replay (:mod:`livesr.stream._dask_replay`): one
recording to replay (:class:`ReplayInput`), its chunk plan and the result files the
client writes in window order as chunks complete (:class:`FileJob`), and what
happened to it (:class:`FileResult`, also its ``summary.json``)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._replay_chunks import (
    ChunkResult,
    ChunkSpec,
    DriftPass,
    n_windows,
    plan_chunks,
    window_end,
)

__all__ = ["FileJob", "FileResult", "ReplayInput"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayInput:
    """One recording to replay (checked on the client before anything runs).

    Attributes
    ----------
    path : str
        The recording (must be readable at this path by every worker).
    output : Path
        Its output folder.
    start, stop : int
        Frames ``[start, stop)`` of the file.
    shape : (int, int)
        Frame rows, cols.
    pixel_size_um : float
        Effective pixel size, um.
    interval_s : float or None
        Recorded frame interval, s.
    recording : dict
        :meth:`Recording.describe` of the file.
    """

    path: str
    output: Path
    start: int
    stop: int
    shape: tuple[int, int]
    pixel_size_um: float
    interval_s: float | None
    recording: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Frames replayed."""
        return self.stop - self.start

    @classmethod
    def of(cls, rec: Any, output: Path, start: int, stop: int) -> ReplayInput:
        """From an open :class:`~livesr.stream._rawread.Recording`."""
        return cls(
            path=str(rec.path),
            output=Path(output),
            start=int(start),
            stop=int(stop),
            shape=(int(rec.shape[1]), int(rec.shape[2])),
            pixel_size_um=float(rec.pixel_size_um),
            interval_s=rec.interval_s,
            recording=rec.describe(),
        )


@dataclass(slots=True)
class FileResult:
    """What happened to one recording (also its ``summary.json``)."""

    input: ReplayInput
    windows: int = 0
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class FileJob:
    """Client-side state of one recording: plan, pending chunks, result files."""

    def __init__(self, index: int, inp: ReplayInput, config: Any, chunk_frames: int):
        self.index = index
        self.input = inp
        self.config = config
        e = config.esrrf
        self.chunks: list[ChunkSpec] = plan_chunks(
            inp.n_frames, e.window, e.stride, chunk_frames
        )
        self.total = n_windows(inp.n_frames, e.window, e.stride)
        self.drift: DriftPass | None = None
        self.pending: dict[int, ChunkResult] = {}
        self.next_chunk = 0
        self.written = 0
        self.error: str | None = None
        self.done = False
        self.workers: set[str] = set()
        self.implementations: dict[str, int] = {}
        self.t0 = time.time()
        self._out: Any = None  # the ResultWriter (shared with the live pipeline)

    @property
    def n_tasks(self) -> int:
        return len(self.chunks) + (1 if self.config.drift.enabled else 0)

    def open(self) -> None:
        from livesr.stream._resultwriter import ResultWriter

        out = self.input.output
        out.mkdir(parents=True, exist_ok=True)
        e = self.config.esrrf
        self._out = ResultWriter(
            out,
            pixel_size_um=self.input.pixel_size_um,
            magnification=e.magnification,
            interval_s=self.input.interval_s or 1.0,
            stride=e.stride,
            params=asdict(e),
        )

    def shifts_for(self, spec: ChunkSpec) -> np.ndarray | None:
        if self.drift is None:
            return None
        return np.ascontiguousarray(self.drift.shifts[spec.read_start : spec.read_stop])

    def set_drift(self, dp: DriftPass) -> None:
        self.drift = dp
        for row in dp.rows:
            self._out.add_drift(*row)
        self._out.flush()
        if not self.chunks:  # fewer frames than a window: the drift table only
            self.done = True

    def add_chunk(self, res: ChunkResult) -> None:
        self.pending[res.index] = res
        self.workers.add(res.worker)
        self.implementations[res.implementation] = (
            self.implementations.get(res.implementation, 0) + 1
        )
        while self.next_chunk in self.pending:
            self._write(self.pending.pop(self.next_chunk))
            self.next_chunk += 1
        if self.next_chunk == len(self.chunks):
            self.done = True

    def _write(self, res: ChunkResult) -> None:
        e = self.config.esrrf
        for j, image in enumerate(res.images):
            k = res.first_window + j
            if k != self.written:  # the plan guarantees order; never write a hole
                raise RuntimeError(
                    f"{self.input.path}: window {k} arrived, {self.written} was due"
                )
            last = window_end(k, e.window, e.stride)
            shift: tuple[float, float] = (0.0, 0.0)
            sigma = math.nan
            if self.drift is not None:
                shift = (
                    float(self.drift.shifts[last, 0]),
                    float(self.drift.shifts[last, 1]),
                )
                sigma = float(self.drift.last_sigma[last])
            stamps = {
                "acquired": res.t_read,
                "received": res.t_read,
                "processed": res.t_done,
                "published": time.time(),
            }
            self._out.add_window(
                k,
                last - e.window + 1,
                last,
                image,
                stamps,
                shift,
                sigma,
                float(res.quality[j]),
            )
            self.written += 1
        self._out.flush()

    def fail(self, error: str) -> None:
        if self.error is None:
            self.error = error
        self.done = True

    def finish(self, scheduler: str) -> FileResult:
        """Close the result files and write the summary; the file's result."""
        from livesr.stream._results import write_config, write_summary

        if self.error is None and self.written != self.total:
            self.error = f"{self.written} of {self.total} images written"
        if self._out is not None:
            self._out.close(param_changes=[], error=self.error)
        inp = self.input
        summary = self._summary(scheduler)
        out = inp.output
        try:
            write_summary(out / "summary.json", summary)
            write_config(out / "config.toml", self.config)
            write_summary(
                out / "replay.json",
                {
                    "recording": dict(inp.recording),
                    "range": [inp.start, inp.stop],
                    "rate": "asap",
                    "scheduler": scheduler,
                    "error": self.error,
                },
            )
        except OSError as exc:
            logger.error("could not write the summary into %s: %s", out, exc)
            self.error = self.error or f"cannot write {out}: {exc}"
        return FileResult(inp, self.written, self.error, summary)

    def _summary(self, scheduler: str) -> dict[str, Any]:
        """``summary.json``: the live pipeline's keys that apply to a Dask replay."""
        from livesr.stream._pipeline import QUALITY_METRIC

        duration = max(1e-9, time.time() - self.t0)
        inp, e = self.input, self.config.esrrf
        impl = max(
            self.implementations, key=self.implementations.__getitem__, default=None
        )
        summary: dict[str, Any] = {
            "mode": "dask",
            "scheduler": scheduler,
            "recording": inp.path,
            "range": [inp.start, inp.stop],
            "frames_acquired": inp.n_frames,
            "frames_processed": inp.n_frames if self.error is None else None,
            "windows_published": self.written,
            "windows_expected": self.total,
            "windows_skipped": 0,
            "chunks": len(self.chunks),
            "chunk_frames": self.chunks[0].read_stop - self.chunks[0].read_start
            if self.chunks
            else 0,
            "workers": sorted(self.workers),
            "implementations": dict(self.implementations),
            "implementation": {
                **({"drift": "numpy"} if self.config.drift.enabled else {}),
                "esrrf": impl,
            },
            "drift_pass_s": self.drift.seconds if self.drift is not None else None,
            "params": {
                "esrrf": asdict(e),
                "drift": asdict(self.config.drift),
            },
            "params_final": asdict(e),
            "param_changes": [],
            "quality_metric": QUALITY_METRIC,
            "pixel_size_um": inp.pixel_size_um,
            "sr_pixel_size_um": inp.pixel_size_um / e.magnification,
            "frame_interval_s": inp.interval_s or 1.0,
            "duration_s": duration,
            "frames_per_s": inp.n_frames / duration,
            "error": self.error,
            "processing_error": self.error,
            "files": {
                "raw": None,
                "sr": str(self._out.sr_path)
                if self._out is not None and self._out.sr_path is not None
                else None,
                "windows": "windows.csv",
                "drift": "drift.csv",
                "config": "config.toml",
            },
            "output": str(inp.output),
        }
        return summary

