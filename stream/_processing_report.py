"""The processing thread's results: image headers, drift rows, acquisition times, implementations and engine counters."""

# mypy: disable-error-code="attr-defined,has-type"

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from livesr.stream._config import EsrrfConfig
from livesr.stream._latency import Timestamps
from livesr.stream._quality import QUALITY_METRIC, quality_metric
from livesr.stream._resolution import publish_step
from livesr.stream._ring import RingBatch

logger = logging.getLogger("livesr.stream._processing")


class _ReportMixin:
    """Part of :class:`Processor` (see its module)."""

    last_drift: dict[str, Any] | None
    frc: Any  # LiveFrc or None
    _frc_frames: Any  # WindowFrames
    _last_impl: str | None

    def _publish(
        self,
        result: Any,
        item: Any,
        shift: tuple[float, float],
        drift_known: dict[str, Any] | None,
    ) -> None:
        t_proc = time.time()
        image = result.image
        first = self.base + result.first_frame
        last = self.base + result.last_frame
        quality = result.quality
        if quality is None:  # the producer did not compute it where it made the image
            quality = quality_metric(image)
        drift = None
        if self.drift is not None:
            ld = drift_known
            sigma = float(ld["sigma_px"]) if ld else math.nan
            drift = {
                "dy": shift[0],
                "dx": shift[1],
                # JSON has no NaN: null until the first estimate (or a NaN sigma)
                "sigma_px": sigma if math.isfinite(sigma) else None,
                "rejected": bool(ld["rejected"]) if ld else False,
            }
        index = self.c["windows_published"]
        # live resolution (stream/_resolution.py): the even/odd FRC of this window
        # (stream/_frc_live.py) and the decorrelation of the newest image when their
        # schedules allow; each estimate finished since the last image is published
        # once, naming the image it measured, the decorrelation judged against the
        # FRC of its own window (null otherwise)
        window = None if self.frc is None else self._frc_window(result, first, last)
        est, frc = publish_step(self.resolution, self.frc, index, image, window)
        # the SQUIRREL error map of this window when the worker is idle; a map
        # finished since the last image is published once (stream/_errormap_live.py)
        self.error_map.offer(index, first, last, image)
        emap = self.error_map.take()
        head: dict[str, Any] = {
            "v": 1,
            "kind": "sr",
            "index": index,
            "first_frame": first,
            "last_frame": last,
            # acquisition time of the first frame, s since the epoch (null: unknown)
            "first_frame_acquired": self._t_acq_of(first),
            "shape": list(image.shape),
            "dtype": "float32",
            "drift": drift,
            "quality": {
                "metric": QUALITY_METRIC,
                "value": quality if math.isfinite(quality) else None,
            },
            "resolution": None if est is None else est.to_json(None),
            "error_map": None if emap is None else emap.to_json(),
            "frc": None if frc is None else frc.to_json(None),
            "implementation": self.implementations(),
            "params": live_params(self.esrrf),
            # the pipeline's counters so far: a viewer backs off its drawing while
            # windows_skipped grows (adapters/sinks/_draw_pacer.py)
            "counters": {
                "windows_published": index,
                "windows_skipped": self.c["windows_skipped"],
                "frames_processed": self.c["frames_processed"],
            },
        }
        stamps = Timestamps(item.t_acq, item.t_recv, t_proc, time.time())
        self._publish_cb(head, image, stamps)
        self.latency.record(stamps)
        self.c["windows_published"] += 1

    def _frc_window(
        self, result: Any, first: int, last: int
    ) -> tuple[Any, np.ndarray | None] | None:
        """What the live FRC is offered for this image: its half images when the
        window summed them from its stored maps (``SlidingResult.halves``, as
        ``FrcHalves``, no shifts), else the window's collected raw frames and
        shifts, or None."""
        halves = getattr(result, "halves", None)
        if halves is not None:
            from livesr.stream._frc_live import FrcHalves

            return FrcHalves(halves[0], halves[1], int(result.n_frames)), None
        return self._frc_frames.window(first, last)

    def _remember_t_acq(self, batch: RingBatch) -> None:
        """Keep each frame's acquisition time, by seq, for a few windows."""
        cap = self._tq_seq.shape[0]
        need = 2 * (int(self.esrrf.window) + len(batch))
        if need > cap:  # a longer window (set_params): grow, keeping what is there
            seq, t = self._tq_seq, self._tq_t
            self._tq_seq = np.full(need, -1, dtype=np.int64)
            self._tq_t = np.zeros(need)
            ok = seq >= 0
            self._tq_seq[seq[ok] % need] = seq[ok]
            self._tq_t[seq[ok] % need] = t[ok]
            cap = need
        slots = batch.seqs % cap
        self._tq_seq[slots] = batch.seqs
        self._tq_t[slots] = batch.t_acq

    def _t_acq_of(self, seq: int) -> float | None:
        """Acquisition time of frame ``seq``, s since the epoch (None: not kept)."""
        k = seq % self._tq_seq.shape[0]
        if self._tq_seq[k] != seq:
            return None
        t = float(self._tq_t[k])
        return t if math.isfinite(t) else None

    def _record_drift(self, est: Any) -> dict[str, Any]:
        seqs = self._drift_seqs
        frame = seqs[est.frame_index]
        c = est.center
        lo = int(math.floor(c))
        center = seqs[lo] + (c - lo) * ((seqs[lo + 1] - seqs[lo]) if lo + 1 < len(seqs) else 1)
        state = {
            "dy": est.dy,
            "dx": est.dx,
            "sigma_px": est.sigma_px,
            "rejected": est.rejected,
            "frame": frame,
        }
        self.last_drift = state
        if self._add_drift is not None:
            self._add_drift(
                est.block_index, frame, center, est.dy, est.dx, est.sigma_px,
                est.rejected, est.psr,
            )
        return state

    # ------------------------------------------------------------------ reporting
    def _map_kernel(self) -> Any:
        """The engine kernel that maps frames for the window in use."""
        if self._user_map:
            return getattr(self.map, "_engine", None)
        from livesr.kernels.framemap import esrrf_map_batch_kernel

        return esrrf_map_batch_kernel()

    def _map_name(self) -> str:
        if self._user_map:
            return self.map.name
        decision = getattr(self._map_kernel(), "last_decision", None)
        impl = getattr(decision, "impl", None)
        return str(impl) if impl else "esrrf_map_batch"

    def implementations(self) -> dict[str, str]:
        """Implementation that ran each stage."""
        out = {"esrrf": self._map_name()}
        if self.config.drift.enabled:
            out = {"drift": "numpy" if self._drift_xp is None else "cupy", **out}
        return out

    def _note_implementation(self, seq: int) -> None:
        impl = self._map_name()
        last = self._last_impl
        if impl == last:
            return
        if last is not None:
            if len(self._impl_switches) < 100:
                self._impl_switches.append({"frame": seq, "from": last, "to": impl})
            logger.info("map stage switched from %s to %s at frame %d", last, impl, seq)
        self._last_impl = impl

    def engine_summary(self) -> dict[str, Any]:
        """What the engine did for the map stage during this run."""
        kernel = self._map_kernel()
        stats = getattr(kernel, "stats", None)
        out: dict[str, Any] = {
            "window": getattr(self.sliding, "strategy", None),
            "switches": list(self._impl_switches),
            "batches": self.c["batches"],
            "batch_peak": self.batch_peak,
            "frame_deadline_ms": None if self.interval_s is None else self.interval_s * 1e3,
        }
        if stats is not None and self._engine_stats0 is not None:
            by_impl, misses, calls = self._engine_stats0
            out["calls_by_impl"] = {
                k: v - by_impl.get(k, 0)
                for k, v in stats.by_impl.items()
                if v - by_impl.get(k, 0)
            }
            out["deadline_misses"] = stats.deadline_misses - misses
            out["deadline_calls"] = stats.deadline_calls - calls
        return out

    def params_report(self) -> dict[str, Any]:
        return asdict(self.esrrf)


def live_params(e: EsrrfConfig) -> dict[str, Any]:
    """The eSRRF parameters published with every image."""
    return {
        "window": e.window,
        "stride": e.stride,
        "magnification": e.magnification,
        "radius": e.radius,
        "sensitivity": e.sensitivity,
        "temporal": e.temporal,
    }
