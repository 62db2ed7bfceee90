"""``--hook event-trigger``: acquire N frames when a metric of the live image crosses
a threshold, save them in their own OME-Zarr store and say why in the summary.

Configured by ``[hooks.event_trigger]`` (:class:`EventTriggerConfig`)::

    [hooks]
    enabled = ["event-trigger"]
    [hooks.event_trigger]
    metric = "peak"           # "quality" | "peak" | "resolution_nm"
    above = 20.0              # or below = ...; exactly one of them
    frames = 10               # frames acquired per trigger
    cooldown_s = 5.0          # at least this long between two triggers
    max_triggers = 3

Metrics of each published result (:class:`~livesr.stream.Result`):

``quality``
    ``result.metrics["quality"]`` (the pipeline's image quality, when it sends one).
``peak``
    Peak-to-mean ratio of the SR image (``result.image``: its maximum over its
    mean; the pipeline's SR images are normalised to mean 1, so a bright event
    raises it, whatever the camera's counts).
``resolution_nm``
    The live pipeline's resolution estimate published with the window, nm: its
    even/odd FRC when resolved, else its decorrelation when resolved (confirmed by
    that FRC); a window that carries neither never fires (the pipeline measures
    about once a second).  On eSRRF images decorrelation alone reports eSRRF's kernel
    sharpness (50-95 nm whatever the data, NanoPyx's own too), not a resolution, so
    an unconfirmed value never fires either.  A result from elsewhere, without the
    pipeline's estimates (``Result.metrics`` ``live_estimates``), is measured here
    by decorrelation analysis (:func:`livesr.kernels.decorr.decorrelation_analysis`,
    NanoPyx's), accepted when its peak lies at most 0.8 of Nyquist (the live
    resolution's floor, ``DEFAULT_KC_RESOLVED``).

When the condition holds (and the cooldown and ``max_triggers`` allow), the hook
queues ``frames`` MDA events (``useq.MDAEvent(index={"t": i})``, ``exposure_ms`` if
set) through the run's :class:`~livesr.adapters.feedback.MicroscopeController`,
which checks them against ``[hooks.limits]`` (``max_events_per_call``) like every
hardware command; a refused trigger is recorded with the refusal. The frames the MDA
acquires are written to ``<output>/triggered/trigger-NNN.ome.zarr`` (axes t, c, z,
y, x; the raw pixel size), and :meth:`TriggeredAcquisition.report` (``summary.json`` ``hooks``
-> this hook's ``report``) lists every trigger: ``index``, ``time``, ``window``
(result index that fired), ``frame_range`` of that window, ``metric``, ``value``,
``threshold``, ``reason``, ``frames_requested``, ``frames`` (saved), ``path``
(relative to the output folder) and ``error``.

The triggered MDA needs a pymmcore-plus core (``--source mm-sim`` or ``mm``).  It
takes the camera: pymmcore-plus's MDA engine stops a running sequence acquisition
before its first event, so the live stream ends at the trigger (its frames so far
are persisted and reconstructed as always; ``summary.json`` ``frames_acquired``) and
the camera acquires the triggered frames.  Results already in flight may fire
further triggers (their events are queued behind) up to ``max_triggers``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livesr.adapters.feedback._limits import LimitError
from livesr.stream import Result

__all__ = ["METRICS", "EventTriggerConfig", "TriggeredAcquisition", "metric_value"]

logger = logging.getLogger(__name__)

#: metric names of ``[hooks.event_trigger] metric``
METRICS = ("quality", "peak", "resolution_nm")
#: subfolder of the run's output holding the triggered stores
TRIGGERED_DIR = "triggered"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


@dataclass(frozen=True, slots=True, kw_only=True)
class EventTriggerConfig:
    """``[hooks.event_trigger]``: when to trigger and what to acquire.

    Attributes
    ----------
    metric : str
        One of :data:`METRICS` (module docstring).
    above, below : float or None
        Trigger when the metric is above (or below) this value; exactly one must be
        set when the hook is enabled.
    frames : int
        Frames acquired per trigger, in [1, 100000] (and at most
        ``[hooks.limits] max_events_per_call``).
    exposure_ms : float or None
        Exposure of the triggered frames, ms (None: the camera's current one).
    cooldown_s : float
        Least time between two triggers, s, >= 0.
    max_triggers : int
        Most triggers per run, >= 1.
    wait_s : float
        How long the run's summary waits for a trigger's frames, s, > 0.
    """

    metric: str = "quality"
    above: float | None = None
    below: float | None = None
    frames: int = 10
    exposure_ms: float | None = None
    cooldown_s: float = 5.0
    max_triggers: int = 1
    wait_s: float = 30.0

    def __post_init__(self) -> None:
        def fail(key: str, expected: str) -> None:
            raise ValueError(
                f"event_trigger.{key}={getattr(self, key)!r} is invalid; expected "
                f"{expected}"
            )

        if self.metric not in METRICS:
            fail("metric", f"one of {', '.join(METRICS)}")
        for key in ("above", "below"):
            if getattr(self, key) is not None and not _num(getattr(self, key)):
                fail(key, "a finite number")
        if self.above is not None and self.below is not None:
            fail("below", "no 'below' when 'above' is set (one threshold)")
        if not (_int_at_least(self.frames, 1) and self.frames <= 100_000):
            fail("frames", "an integer in [1, 100000]")
        if self.exposure_ms is not None and not (
            _num(self.exposure_ms) and self.exposure_ms > 0
        ):
            fail("exposure_ms", "a number > 0 (ms)")
        if not (_num(self.cooldown_s) and self.cooldown_s >= 0):
            fail("cooldown_s", "a number >= 0 (s)")
        if not _int_at_least(self.max_triggers, 1):
            fail("max_triggers", "an integer >= 1")
        if not (_num(self.wait_s) and self.wait_s > 0):
            fail("wait_s", "a number > 0 (s)")

    def check_enabled(self) -> None:
        """Raise ValueError unless a threshold is set (the hook is enabled)."""
        if self.above is None and self.below is None:
            raise ValueError(
                "[hooks.event_trigger] needs a threshold for --hook event-trigger: "
                f"above = X or below = X (metric {self.metric!r})"
            )


def metric_value(metric: str, result: Result) -> float:
    """The named metric of ``result`` (NaN when it has none); see the module."""
    if metric == "quality":
        return float(result.metrics.get("quality", math.nan))
    img = result.image
    if img is None or img.size == 0:
        return math.nan
    if metric == "peak":
        mean = float(np.mean(img, dtype=np.float64))
        return float(np.max(img)) / mean if mean > 0 else math.nan
    published = _published_resolution_nm(result.metrics)
    if published is not None:
        return published
    from livesr.kernels.decorr import decorrelation_analysis

    m = max(int(result.magnification or 1), 1)
    px_nm = float(result.pixel_size_um or math.nan) / m * 1e3
    try:
        res = decorrelation_analysis(img, pixel_size=px_nm)
    except ValueError:  # too small an image
        return math.nan
    value = float(res.resolution)
    # the live resolution's own floor: a peak above kc_resolved of Nyquist is sampling
    from livesr.stream._resolution import DEFAULT_KC_RESOLVED

    ok = math.isfinite(value) and 0 < res.kc_max <= DEFAULT_KC_RESOLVED
    return value if ok else math.nan


def _published_resolution_nm(metrics: Any) -> float | None:
    """The pipeline's estimate carried by a result (NaN: one it judged unresolved;
    None: the result carries none, or is not from a livesr pipeline)."""
    if not metrics.get("live_estimates"):
        return None
    for name in ("live_frc", "live_decorr"):
        value = metrics.get(f"{name}_nm")
        if value is not None and metrics.get(f"{name}_resolved") and _num(value):
            return float(value)
    return math.nan


class _TriggerStore:
    """One trigger's frames as OME-Zarr (created on the first frame)."""

    def __init__(self, path: Path, frames: int, tag: int, pixel_size_um: float) -> None:
        self.path = path
        self.expected = frames
        self.tag = tag
        self.pixel_size_um = pixel_size_um
        self.saved = 0
        self.done = threading.Event()
        self._arr: Any = None
        self._lock = threading.Lock()

    def on_frame(self, img: Any, event: Any = None, meta: Any = None) -> None:
        """``core.mda.events.frameReady`` slot: keep this trigger's frames only."""
        md = getattr(event, "metadata", None) or {}
        if md.get("livesr_trigger") != self.tag:
            return
        frame = np.asarray(img)
        with self._lock:
            if self.saved >= self.expected:
                return
            if self._arr is None:
                self._arr = self._create(frame)
            self._arr[self.saved, 0, 0] = frame
            self.saved += 1
            if self.saved >= self.expected:
                self.done.set()

    def _create(self, frame: np.ndarray) -> Any:
        import zarr

        h, w = frame.shape[-2:]
        group = zarr.open_group(str(self.path), mode="w-")
        px = self.pixel_size_um if _num(self.pixel_size_um) else 1.0
        group.attrs["ome"] = {
            "version": "0.5",
            "multiscales": [
                {
                    "name": self.path.name,
                    "axes": [
                        {"name": "t", "type": "time"},
                        {"name": "c", "type": "channel"},
                        {"name": "z", "type": "space", "unit": "micrometer"},
                        {"name": "y", "type": "space", "unit": "micrometer"},
                        {"name": "x", "type": "space", "unit": "micrometer"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0, 1.0, 1.0, px, px]}
                            ],
                        }
                    ],
                }
            ],
        }
        return group.create_array(
            "0",
            shape=(self.expected, 1, 1, h, w),
            chunks=(1, 1, 1, h, w),
            dtype=frame.dtype,
        )


class TriggeredAcquisition:
    """Feedback hook ``event-trigger`` (module docstring).

    Parameters
    ----------
    config : EventTriggerConfig
        With a threshold set.
    output : path-like
        The run's output folder (the stores go to ``output/triggered/``).

    Attributes
    ----------
    triggers : list of dict
        Every trigger so far (the report's ``triggers``).
    cooldown_skips : int
        Results that met the condition inside the cooldown.
    """

    name = "event_trigger"

    def __init__(self, config: EventTriggerConfig, output: str | Path) -> None:
        config.check_enabled()
        self.config = config
        self.output = Path(output)
        self.triggers: list[dict[str, Any]] = []
        self.cooldown_skips = 0
        self._stores: list[tuple[_TriggerStore, dict[str, Any]]] = []
        self._last_fire: float | None = None

    def _reason(self, value: float) -> tuple[float, str] | None:
        cfg = self.config
        if cfg.above is not None and value > cfg.above:
            return cfg.above, f"{cfg.metric} {value:.6g} > {cfg.above:g}"
        if cfg.below is not None and value < cfg.below:
            return cfg.below, f"{cfg.metric} {value:.6g} < {cfg.below:g}"
        return None

    def on_result(self, result: Result, controller: Any) -> None:
        """Fire when the metric crosses the threshold (cooldown and count allow)."""
        if len(self.triggers) >= self.config.max_triggers:
            return
        value = metric_value(self.config.metric, result)
        hit = self._reason(value) if math.isfinite(value) else None
        if hit is None:
            return
        now = time.monotonic()
        if (
            self._last_fire is not None
            and now - self._last_fire < self.config.cooldown_s
        ):
            self.cooldown_skips += 1
            return
        self._last_fire = now
        self._fire(result, value, *hit, controller)

    __call__ = on_result

    def _fire(
        self, result: Result, value: float, threshold: float, reason: str, ctl: Any
    ) -> None:
        import useq

        cfg, k = self.config, len(self.triggers)
        rel = Path(TRIGGERED_DIR) / f"trigger-{k:03d}.ome.zarr"
        (self.output / TRIGGERED_DIR).mkdir(parents=True, exist_ok=True)
        store = _TriggerStore(self.output / rel, cfg.frames, k, result.pixel_size_um)
        rec: dict[str, Any] = {
            "index": k,
            "time": time.time(),
            "window": result.index,
            "frame_range": list(result.frame_range) if result.frame_range else None,
            "metric": cfg.metric,
            "value": value,
            "threshold": threshold,
            "reason": reason,
            "frames_requested": cfg.frames,
            "frames": 0,
            "path": rel.as_posix(),
            "error": None,
        }
        meta = {"livesr_trigger": k}
        events = [
            useq.MDAEvent.model_validate(
                {"index": {"t": i}, "exposure": cfg.exposure_ms, "metadata": meta}
            )
            for i in range(cfg.frames)
        ]
        self.triggers.append(rec)
        try:
            ctl.queue_events(events, on_frame=store.on_frame)
        except LimitError as exc:
            rec["error"] = f"refused: {exc}"
            rec["path"] = None
            logger.warning("event trigger %d (%s) refused: %s", k, reason, exc)
            return
        self._stores.append((store, rec))
        logger.info(
            "event trigger %d at result %d: %s; %d frames -> %s",
            k,
            result.index,
            reason,
            cfg.frames,
            store.path,
        )

    def report(self) -> dict[str, Any]:
        """JSON-ready: the settings and every trigger (waits for their frames)."""
        cfg = self.config
        deadline = time.monotonic() + cfg.wait_s
        for store, rec in self._stores:
            if not store.done.wait(max(deadline - time.monotonic(), 0.0)):
                rec["error"] = rec["error"] or (
                    f"{store.saved} of {store.expected} frames within {cfg.wait_s:g} s"
                )
            rec["frames"] = store.saved
        return {
            "metric": cfg.metric,
            "above": cfg.above,
            "below": cfg.below,
            "frames_per_trigger": cfg.frames,
            "cooldown_s": cfg.cooldown_s,
            "max_triggers": cfg.max_triggers,
            "fired": len(self.triggers),
            "cooldown_skips": self.cooldown_skips,
            "triggers": [dict(r) for r in self.triggers],
        }
