"""What a live pipeline reports: progress, the status snapshot, the run summary (summary.json)."""

# mypy: disable-error-code="attr-defined,has-type"

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from livesr.stream._quality import QUALITY_METRIC


class _PipelineReport:
    """Part of :class:`Pipeline` (see its module)."""

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
            "frc": self._latest_frc(),
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

    def _latest_frc(self) -> dict[str, Any] | None:
        """The newest live even/odd FRC estimate (header form, nm filled) or None."""
        frc = self._proc.frc
        est = None if frc is None else frc.latest
        if est is None:
            return None
        p = self._persist
        m = self._proc.esrrf.magnification
        return est.to_json(p.pixel_size_um / m * 1e3 if p is not None else None)

    def summary(self) -> dict[str, Any]:
        """Run summary (also written to ``summary.json`` by :meth:`close`).

        Long because the returned dictionary is the schema of ``summary.json``, one
        key per line, kept in one place.
        """
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
        memory = self._memory_report(
            p.memory.report() if p is not None and p.memory is not None else None
        )
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
            # an error, or a stop asked for (livesr ctl stop; hooks add theirs at close)
            "stopped": error is not None or self._stop_reason is not None,
            "stop_reason": self._stop_reason,
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
            "endpoints": {
                "ingest": self._endpoint,
                "results": self._publish_ep,
                "control": self._control_ep,
            },
            "control_endpoint": self._control_ep,
            "control": self.control_report(),
            "ingest": self._ingest_summary,
            "on_frame_calls": p.on_frame_calls if p is not None else 0,
            "files": files,
            "output": str(self.output),
            "hooks": self._hooks_report,
            "error_map": self._proc.error_map.report(),
            "frc": None if self._proc.frc is None else self._proc.frc.report(),
            "resolution": {
                **self._proc.resolution.report(),
                "latest": self._latest_resolution(),
            },
        }

