"""The simulated camera, XY stage and focus stage as ``UniMMCore`` Python devices.

All three devices share one :class:`~livesr.sim.Microscope` (Python devices cannot
reach the core or each other, ECOSYSTEM.md §1.2): the stages move the
microscope's stage, the camera renders the microscope's next frame straight into
the core's sequence buffer (zero copy).

Pacing
------
``UniMMCore`` ignores ``intervalMs`` for Python cameras and pulls frames as fast
as the camera yields them, so :class:`SimCamera` paces itself on a monotonic
deadline schedule: frame ``k`` of a sequence is delivered at
``t0 + (k + 1) * period`` with ``period = max(interval_ms, exposure_ms)`` (the
microscope's frame interval, so wall-clock and simulated time agree). Late frames
are delivered at once (the schedule catches up, the mean interval stays exact);
if the camera falls more than :data:`MAX_LAG_S` behind (a stalled machine), the
schedule restarts from now instead of bursting; a slow first frame anchors the
schedule. A snap takes one period. An exposure change applies from the next
frame. :meth:`SimCamera.request_stop` (called by ``SimCore.stopSequenceAcquisition``)
ends a wait at once.

Signals
-------
``UniMMCore`` does not emit ``XYStagePositionChanged``, ``stagePositionChanged``
or ``exposureChanged`` for Python devices; these devices emit them through
``self.core.events`` after every accepted command.

Frame metadata
--------------
Every frame's metadata carries the simulator's ground truth under flat
``livesr_*`` keys (:data:`TRUTH_KEYS`). The core's ``popNextImageAndMD`` turns
values into strings; :func:`truth_from_metadata` parses them back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice, StageDevice, XYStageDevice

from livesr.sim._microscope import Microscope
from livesr.sim._truth import (
    KEY_FRAME_INDEX,
    TRUTH_KEYS,
    MetadataTruth,
    frame_metadata,
    truth_from_metadata,
)

__all__ = [
    "KEY_FRAME_INDEX",
    "MAX_LAG_S",
    "TRUTH_KEYS",
    "FramePacer",
    "MetadataTruth",
    "SimCamera",
    "SimFocusStage",
    "SimXYStage",
    "StageLimits",
    "frame_metadata",
    "truth_from_metadata",
]

logger = logging.getLogger(__name__)

#: A camera further behind its schedule than this (s) restarts the schedule.
MAX_LAG_S = 1.0


# ----------------------------------------------------------------------------- config
def _check_range(name: str, lo_hi: Any) -> tuple[float, float]:
    ok = (
        isinstance(lo_hi, tuple)
        and len(lo_hi) == 2
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in lo_hi)
        and lo_hi[0] < lo_hi[1]
    )
    if not ok:
        raise ValueError(
            f"StageLimits.{name}={lo_hi!r} is invalid; expected a (low, high) tuple of "
            "finite numbers with low < high, in um"
        )
    return lo_hi


@dataclass(frozen=True, slots=True, kw_only=True)
class StageLimits:
    """Travel range of the simulated stages, in stage coordinates (um).

    The defaults model a motorised XY stage with +-10 mm travel around its
    centre and a piezo focus drive with +-100 um travel around focus. Commands
    outside the range (or non-finite) are refused and the stage does not move.

    Attributes
    ----------
    x_um, y_um : (float, float)
        Allowed (low, high) XY positions, um, inclusive.
    z_um : (float, float)
        Allowed (low, high) focus positions, um, inclusive.
    """

    x_um: tuple[float, float] = (-10_000.0, 10_000.0)
    y_um: tuple[float, float] = (-10_000.0, 10_000.0)
    z_um: tuple[float, float] = (-100.0, 100.0)

    def __post_init__(self) -> None:
        for name in ("x_um", "y_um", "z_um"):
            _check_range(name, getattr(self, name))


def _finite(device: str, axis: str, value: Any) -> float:
    """Return ``value`` as a float, or raise naming it if it is not a finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{device}: {axis}={value!r} is not a number; "
            "expected a finite value in um. "
            "The stage did not move."
        ) from None
    if not math.isfinite(v):
        raise ValueError(
            f"{device}: {axis}={value!r} is not finite; expected a finite value in um. "
            "The stage did not move."
        )
    return v


def _in_range(device: str, axis: str, v: float, lo_hi: tuple[float, float]) -> float:
    """Return ``v``, or raise naming it and the range if it is outside ``lo_hi``."""
    lo, hi = lo_hi
    if not lo <= v <= hi:
        raise ValueError(
            f"{device}: {axis}={v:g} um is outside the travel range "
            f"[{lo:g}, {hi:g}] um. "
            "The stage did not move; command a position inside the range or widen "
            "StageLimits (make_core(limits=...))."
        )
    return v


# ----------------------------------------------------------------------------- pacing
class FramePacer:
    """Monotonic deadline schedule: deadline ``k`` is ``t0 + (k + 1) * period``.

    ``t0`` is the construction time; if the first :meth:`wait` comes after the
    first deadline (slow first frame), the schedule is anchored there instead,
    so a slow start does not cause a burst.

    Parameters
    ----------
    period_s : float
        Frame period, s (> 0).
    max_lag_s : float
        When :meth:`wait` is called more than this late, the schedule restarts
        from now (no burst to catch up after a stall).
    clock, sleep : callables
        Monotonic clock (s) and sleep function; injectable for tests.
    stop : threading.Event, optional
        When set, :meth:`wait` returns None at once (waits on it instead of
        sleeping).
    """

    def __init__(
        self,
        period_s: float,
        *,
        max_lag_s: float = MAX_LAG_S,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(
                f"period_s={period_s!r} is out of range; expected a finite number > 0"
            )
        self._period = period_s
        self._max_lag = max_lag_s
        self._clock = clock
        self._sleep = sleep
        self._stop = stop
        self._t0 = clock()
        self._k = 0
        self.restarts = 0

    @property
    def period_s(self) -> float:
        """Current period, s."""
        return self._period

    def set_period(self, period_s: float) -> None:
        """Change the period from the next deadline on (anchored at the last one)."""
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(
                f"period_s={period_s!r} is out of range; expected a finite number > 0"
            )
        self._t0 += self._k * self._period
        self._k = 0
        self._period = period_s

    def wait(self) -> float | None:
        """Block until the next deadline and return it (clock time, s).

        Returns None, without waiting further, once the ``stop`` event is set.
        """
        deadline = self._t0 + (self._k + 1) * self._period
        now = self._clock()
        if now > deadline and (self._k == 0 or now - deadline > self._max_lag):
            if self._k:
                self.restarts += 1
                lag_ms = 1e3 * (now - deadline)
                logger.debug("pacer %.1f ms behind; schedule restarted", lag_ms)
            self._t0, self._k, deadline = now - self._period, 0, now
        stop = self._stop
        while (remaining := deadline - self._clock()) > 0:
            if stop is None:
                self._sleep(remaining)
            elif stop.wait(remaining):
                return None
        if stop is not None and stop.is_set():
            return None
        self._k += 1
        return deadline


# ----------------------------------------------------------------------------- camera
class SimCamera(CameraDevice):
    """Camera that renders :class:`~livesr.sim.Microscope` frames, paced in real time.

    Frames are (h, w) uint16 (the simulator's ROI); each ``start_sequence``
    step renders once with ``Microscope.render_into`` directly into the core's
    buffer. Exposure changes go to the microscope (photon numbers scale with
    it, the frame period becomes ``max(interval_ms, exposure_ms)``). The ROI
    is the simulator's ``CameraConfig.roi``; ``setROI`` is not supported.

    Parameters
    ----------
    microscope : Microscope
        The shared simulator.
    max_lag_s : float
        See :class:`FramePacer`.
    """

    def __init__(self, microscope: Microscope, *, max_lag_s: float = MAX_LAG_S) -> None:
        super().__init__()
        self._scope = microscope
        self._max_lag_s = max_lag_s
        self._stop = threading.Event()
        self.last_metadata: dict[str, float | int] | None = None
        """Ground truth of the last rendered frame (UniMMCore's snap drops it)."""

    @property
    def microscope(self) -> Microscope:
        """The shared simulator."""
        return self._scope

    def period_s(self) -> float:
        """Current frame period, ``max(interval_ms, exposure_ms) / 1000`` s."""
        interval_ms = self._scope.config.camera.interval_ms
        return max(interval_ms, self._scope.exposure_ms) / 1000.0

    def get_exposure(self) -> float:
        """Exposure, ms."""
        return self._scope.exposure_ms

    def set_exposure(self, exposure: float) -> None:
        """Set the exposure (ms, finite > 0) and emit ``exposureChanged``."""
        self._scope.set_exposure_ms(float(exposure))
        self.core.events.exposureChanged.emit(self.get_label(), self._scope.exposure_ms)

    def get_actual_interval_ms(self) -> float:
        """Frame period the camera paces itself to, ms."""
        return 1000.0 * self.period_s()

    def shape(self) -> tuple[int, int]:
        """(h, w) of the frames."""
        return self._scope.shape

    def dtype(self) -> np.dtype:
        """uint16."""
        return np.dtype(np.uint16)

    def get_roi(self) -> tuple[int, int, int, int]:
        """The simulator's ROI as (x, y, width, height) on the sensor."""
        r0, c0, h, w = self._scope.config.camera.roi_or_full
        return (c0, r0, w, h)

    def request_stop(self) -> None:
        """End a running sequence at once, even mid-wait (no further frame).

        ``SimCore.stopSequenceAcquisition`` calls it, so that stopping does not
        wait out a long frame period (UniMMCore joins the camera thread for 2 s
        only).
        """
        self._stop.set()

    def start_sequence(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], Any], np.ndarray],
    ) -> Iterator[Mapping[str, Any]]:
        """Render ``n`` frames (None: until stopped), paced to the frame period.

        Each frame is rendered into the buffer from ``get_buffer`` and its
        metadata (:data:`TRUTH_KEYS`) yielded at its deadline.
        """
        self._stop.clear()  # here, not in the generator: a stop may come first
        return self._frames(n, get_buffer)

    def _frames(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], Any], np.ndarray],
    ) -> Iterator[Mapping[str, Any]]:
        shape, dtype = self.shape(), self.dtype()
        ps = self._scope.pixel_size_um
        pacer = FramePacer(self.period_s(), max_lag_s=self._max_lag_s, stop=self._stop)
        k = 0
        while n is None or k < n:
            if (period := self.period_s()) != pacer.period_s:  # exposure changed
                pacer.set_period(period)
            buf = get_buffer(shape, dtype)
            truth = self._scope.render_into(buf)
            meta = frame_metadata(truth, ps)
            self.last_metadata = meta
            if pacer.wait() is None:
                logger.debug("sequence stopped after %d frame(s)", k)
                return
            yield meta
            k += 1
        if pacer.restarts:
            logger.info("camera fell behind its schedule %d time(s)", pacer.restarts)


# ----------------------------------------------------------------------------- stages
class SimXYStage(XYStageDevice):
    """XY stage moving the simulated sample; checked against :class:`StageLimits`.

    Moving to (x, y) um moves the sample by (-y, -x) / pixel_size px in the
    image, from the next rendered frame. Moves are instantaneous. Stage
    coordinates are the simulator's physical coordinates minus an origin set by
    ``setOriginXY`` / ``setAdapterOriginXY`` (zero by default); travel limits
    apply to physical coordinates.

    Parameters
    ----------
    microscope : Microscope
        The shared simulator.
    limits : StageLimits, optional
        Travel range; default ``StageLimits()`` (+-10 mm).
    """

    def __init__(
        self, microscope: Microscope, limits: StageLimits | None = None
    ) -> None:
        super().__init__()
        self._scope = microscope
        self._limits = limits if limits is not None else StageLimits()
        self._origin = (0.0, 0.0)

    @property
    def limits(self) -> StageLimits:
        """Travel limits (physical coordinates)."""
        return self._limits

    def _name(self) -> str:
        return self.get_label() or type(self).__name__

    def set_position_um(self, x: float, y: float) -> None:
        """Move to (x, y) um; refuse non-finite or out-of-range targets (no move)."""
        name = self._name()
        x, y = _finite(name, "x", x), _finite(name, "y", y)
        px = _in_range(name, "x", x + self._origin[0], self._limits.x_um)
        py = _in_range(name, "y", y + self._origin[1], self._limits.y_um)
        self._scope.set_xy_um(px, py)
        self._emit()

    def get_position_um(self) -> tuple[float, float]:
        """Current (x, y), um."""
        x, y = self._scope.get_xy_um()
        return (x - self._origin[0], y - self._origin[1])

    def set_relative_position_um(self, dx: float, dy: float) -> None:
        """Move by (dx, dy) um; refuse non-finite steps or out-of-range targets."""
        name = self._name()
        dx, dy = _finite(name, "dx", dx), _finite(name, "dy", dy)
        x, y = self.get_position_um()
        self.set_position_um(x + dx, y + dy)

    def set_origin_x(self) -> None:
        """Make the current x position read 0."""
        self._origin = (self._scope.get_xy_um()[0], self._origin[1])
        self._emit()

    def set_origin_y(self) -> None:
        """Make the current y position read 0."""
        self._origin = (self._origin[0], self._scope.get_xy_um()[1])
        self._emit()

    def set_adapter_origin_um(self, x: float = 0.0, y: float = 0.0) -> None:
        """Make the current position read (x, y) um."""
        name = self._name()
        x, y = _finite(name, "x", x), _finite(name, "y", y)
        px, py = self._scope.get_xy_um()
        self._origin = (px - x, py - y)
        self._emit()

    def home(self) -> None:
        """Move to the physical centre (0, 0)."""
        self._scope.set_xy_um(0.0, 0.0)
        self._emit()

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""

    def _emit(self) -> None:
        x, y = self.get_position_um()
        self.core.events.XYStagePositionChanged.emit(self.get_label(), x, y)


class SimFocusStage(StageDevice):
    """Focus (Z) drive of the simulated microscope, checked against the limits.

    The sample's distance from the focal plane is ``drift_z - z``; moves are
    instantaneous and take effect from the next rendered frame. Origin handling
    as in :class:`SimXYStage`.

    Parameters
    ----------
    microscope : Microscope
        The shared simulator.
    limits : StageLimits, optional
        Travel range; default ``StageLimits()`` (+-100 um).
    """

    def __init__(
        self, microscope: Microscope, limits: StageLimits | None = None
    ) -> None:
        super().__init__()
        self._scope = microscope
        self._limits = limits if limits is not None else StageLimits()
        self._origin = 0.0

    @property
    def limits(self) -> StageLimits:
        """Travel limits (physical coordinates)."""
        return self._limits

    def _name(self) -> str:
        return self.get_label() or type(self).__name__

    def set_position_um(self, val: float) -> None:
        """Move to ``val`` um; refuse non-finite or out-of-range targets (no move)."""
        name = self._name()
        z = _finite(name, "z", val) + self._origin
        z = _in_range(name, "z", z, self._limits.z_um)
        self._scope.set_z_um(z)
        self._emit()

    def get_position_um(self) -> float:
        """Current z, um."""
        return self._scope.get_z_um() - self._origin

    def set_relative_position_um(self, d: float) -> None:
        """Move by ``d`` um; refuse non-finite steps or out-of-range targets."""
        d = _finite(self._name(), "dz", d)
        self.set_position_um(self.get_position_um() + d)

    def set_origin(self) -> None:
        """Make the current position read z = 0."""
        self._origin = self._scope.get_z_um()
        self._emit()

    def set_adapter_origin_um(self, newZUm: float) -> None:  # noqa: N803 (MM name)
        """Make the current position read ``newZUm`` um."""
        z = _finite(self._name(), "z", newZUm)
        self._origin = self._scope.get_z_um() - z
        self._emit()

    def home(self) -> None:
        """Move to the physical zero (nominal focus)."""
        self._scope.set_z_um(0.0)
        self._emit()

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""

    def _emit(self) -> None:
        z = self.get_position_um()
        self.core.events.stagePositionChanged.emit(self.get_label(), z)
