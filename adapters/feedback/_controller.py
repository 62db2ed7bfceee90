"""The only way a feedback hook touches the microscope: a limit-checked controller.

:class:`MicroscopeController` wraps a pymmcore-plus core (``CMMCorePlus`` /
``UniMMCore``). Every stage command is checked against
:class:`~livesr.adapters.feedback.FeedbackLimits` *before* it reaches the core:
non-finite values, a step beyond ``max_step_*``, a target outside the travel
range or a move sooner than ``1 / max_moves_per_s`` after the previous one raise
:class:`~livesr.adapters.feedback.LimitError` and are logged; the stage does not
move. Commands are serialised by one lock (hooks run on several threads).

MDA events (event-triggered acquisition) go into a queue consumed by
``core.run_mda(iter(queue.get, STOP))`` (ECOSYSTEM.md §1.5), started on the
first :meth:`MicroscopeController.queue_events` and ended by
:meth:`MicroscopeController.finish_events` / :meth:`MicroscopeController.close`.

>>> ctl = MicroscopeController(core, FeedbackLimits(max_step_xy_um=2))  # doctest: +SKIP
>>> ctl.move_xy_by(0.1, -0.05)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from livesr.adapters.feedback._limits import FeedbackLimits, LimitError

__all__ = ["Command", "MicroscopeController", "StopOnlyController"]

logger = logging.getLogger(__name__)

_STOP = object()


#: core methods a hook may call besides the ``get*`` / ``is*`` readers
_CORE_ALLOWED = frozenset({"stopSequenceAcquisition"})


class _CoreView:
    """What :attr:`MicroscopeController.core` gives a hook: the core's readers only.

    Hooks are trusted code in this process, so this is no sandbox; it keeps a hook
    from moving hardware around the limits by accident (``ctl.core.setXYPosition``).
    """

    __slots__ = ("_ctl",)

    def __init__(self, ctl: MicroscopeController) -> None:
        object.__setattr__(self, "_ctl", ctl)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        ctl: MicroscopeController = object.__getattribute__(self, "_ctl")
        allowed = name in _CORE_ALLOWED or (
            (name.startswith("get") or name.startswith("is")) and name.isidentifier()
        )
        method = getattr(ctl._core, name, None) if allowed else None
        if not callable(method):
            with ctl._lock:
                ctl.refusals += 1
            msg = (
                f"ctl.core.{name}: hooks may only call the core's get*/is* methods "
                "(and stopSequenceAcquisition); move the stage with ctl.move_xy_by, "
                "move_xy_to, move_z_by or move_z_to, which check the limits"
            )
            logger.warning("feedback command refused: %s", msg)
            raise LimitError(msg)

        def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        call.__name__ = name
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        raise LimitError(f"ctl.core is read-only (cannot set {name!r})")


@dataclass(frozen=True, slots=True)
class Command:
    """One accepted hardware command (kept in :attr:`MicroscopeController.history`).

    Attributes
    ----------
    t_wall : float
        When it was applied, ``time.time()`` s (comparable to frame ``t_acq``).
    kind : str
        ``"xy"``, ``"z"``, ``"stop"`` or ``"events"``.
    value : tuple of float
        Target (x, y) / (z,) um after the move, or (n_events,).
    """

    t_wall: float
    kind: str
    value: tuple[float, ...]


class MicroscopeController:
    """Limit-checked commands to a pymmcore-plus core, for feedback hooks.

    Parameters
    ----------
    core : pymmcore_plus.CMMCorePlus
        The core (XY stage and focus device set).
    limits : FeedbackLimits, optional
        Default ``FeedbackLimits()``.
    clock : callable, optional
        Monotonic clock (s) used by the rate limit; injectable for tests.

    Attributes
    ----------
    stop_requested : threading.Event
        Set by :meth:`stop_acquisition`; acquisition loops and sources should
        watch it.
    refusals : int
        Commands refused by the limits.
    history : collections.deque of Command
        The last 10 000 accepted commands.
    commands : dict of str to int
        Accepted commands per kind (``xy``, ``z``, ``stop``, ``events``).
    stop_info : dict or None
        ``{"reason", "t_wall", "by"}`` of the first :meth:`stop_acquisition`
        (``by``: the calling thread's name; a hook's worker thread is
        ``"<runner>:<hook name>"``).
    """

    def __init__(
        self,
        core: Any,
        limits: FeedbackLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core
        given = limits if limits is not None else FeedbackLimits()
        if not isinstance(given, FeedbackLimits):
            raise TypeError(
                f"limits must be a FeedbackLimits, got {type(given).__name__}"
            )
        #: the travel range of each axis and where it came from (``configuration``,
        #: ``stage limits`` or ``start position +- N um``)
        self.envelope: dict[str, dict[str, Any]] = {}
        self.limits = self._resolve(given)
        self._clock = clock
        self._lock = threading.RLock()
        self._last_move: float | None = None
        self.stop_requested = threading.Event()
        self.refusals = 0
        self.history: deque[Command] = deque(maxlen=10_000)
        self.commands = {"xy": 0, "z": 0, "stop": 0, "events": 0}
        self.stop_info: dict[str, Any] | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._mda_thread: threading.Thread | None = None
        self._frame_slots: list[Any] = []  # on_frame callbacks of queue_events
        self._closed = False

    def _resolve(self, lim: FeedbackLimits) -> FeedbackLimits:
        """``lim`` with every unset travel range taken from the stage (see
        :class:`FeedbackLimits`)."""
        ranges: dict[str, tuple[float, float]] = {}
        for axis in ("x", "y", "z"):
            given = getattr(lim, f"{axis}_range_um")
            if given is not None:
                ranges[axis], origin = tuple(given), "configuration"
            else:
                ranges[axis], origin = _stage_range(self._core, axis)
            self.envelope[axis] = {"range_um": list(ranges[axis]), "from": origin}
        logger.info(
            "feedback travel envelope: %s",
            ", ".join(
                f"{a} [{e['range_um'][0]:g}, {e['range_um'][1]:g}] um ({e['from']})"
                for a, e in self.envelope.items()
            ),
        )
        return dataclasses.replace(
            lim, x_range_um=ranges["x"], y_range_um=ranges["y"], z_range_um=ranges["z"]
        )

    # ------------------------------------------------------------------ reading
    @property
    def core(self) -> _CoreView:
        """Read-only view of the core for hooks: its ``get*`` / ``is*`` methods.

        Everything else (``setXYPosition``, ``setPosition``, ``mda``, ...) is refused
        with :class:`LimitError` and counted in :attr:`refusals`: hardware commands
        go through the limit-checked methods of this controller.
        ``stopSequenceAcquisition`` (the safe direction) is allowed.
        """
        return _CoreView(self)

    def position_xy(self) -> tuple[float, float]:
        """Current stage (x, y), um."""
        x, y = self._core.getXYPosition()
        return float(x), float(y)

    def position_z(self) -> float:
        """Current focus position, um."""
        return float(self._core.getPosition())

    @property
    def last_move_wall(self) -> float | None:
        """``time.time()`` of the last accepted stage move, or None."""
        for cmd in reversed(self.history):
            if cmd.kind in ("xy", "z"):
                return cmd.t_wall
        return None

    # ------------------------------------------------------------------ checks
    def _refuse(self, msg: str) -> LimitError:
        self.refusals += 1
        logger.warning("feedback command refused: %s", msg)
        return LimitError(msg)

    def _finite(self, cmd: str, **values: Any) -> dict[str, float]:
        out = {}
        for name, v in values.items():
            try:
                f = float(v)
            except (TypeError, ValueError):
                f = math.nan
            if not math.isfinite(f):
                raise self._refuse(
                    f"{cmd}: {name}={v!r} is not a finite number (um); the stage did "
                    "not move"
                )
            out[name] = f
        return out

    def _in_range(
        self, cmd: str, axis: str, v: float, lo_hi: tuple[float, float] | None
    ) -> None:
        assert lo_hi is not None  # resolved at construction (_resolve)
        lo, hi = lo_hi
        if not lo <= v <= hi:
            raise self._refuse(
                f"{cmd}: target {axis}={v:g} um is outside the feedback travel range "
                f"[{lo:g}, {hi:g}] um (FeedbackLimits.{axis}_range_um); the stage did "
                "not move"
            )

    def _rate(self, cmd: str) -> None:
        now = self._clock()
        gap = self.limits.min_move_interval_s
        if self._last_move is not None and now - self._last_move < gap:
            raise self._refuse(
                f"{cmd}: {1e3 * (now - self._last_move):.1f} ms after the previous "
                f"move, faster than FeedbackLimits.max_moves_per_s="
                f"{self.limits.max_moves_per_s:g} (>= {1e3 * gap:.1f} ms apart); the "
                "stage did not move"
            )

    def _check_open(self, cmd: str) -> None:
        if self._closed:
            raise RuntimeError(f"{cmd}: the MicroscopeController is closed")

    # ------------------------------------------------------------------ XY
    def move_xy_by(self, dx_um: float, dy_um: float) -> tuple[float, float]:
        """Move the XY stage by (dx, dy) um; returns the new (x, y).

        Moving the stage by +dx moves the sample in the image by -dx / pixel size.

        Raises
        ------
        LimitError
            Non-finite step, step longer than ``max_step_xy_um``, target outside
            the travel range, or too soon after the previous move.
        """
        with self._lock:
            self._check_open("move_xy_by")
            v = self._finite("move_xy_by", dx_um=dx_um, dy_um=dy_um)
            x, y = self.position_xy()
            return self._move_xy("move_xy_by", x, y, x + v["dx_um"], y + v["dy_um"])

    def move_xy_to(self, x_um: float, y_um: float) -> tuple[float, float]:
        """Move the XY stage to (x, y) um (same limits as :meth:`move_xy_by`)."""
        with self._lock:
            self._check_open("move_xy_to")
            v = self._finite("move_xy_to", x_um=x_um, y_um=y_um)
            x, y = self.position_xy()
            return self._move_xy("move_xy_to", x, y, v["x_um"], v["y_um"])

    def _move_xy(
        self, cmd: str, x0: float, y0: float, x: float, y: float
    ) -> tuple[float, float]:
        lim = self.limits
        self._in_range(cmd, "x", x, lim.x_range_um)
        self._in_range(cmd, "y", y, lim.y_range_um)
        step = math.hypot(x - x0, y - y0)
        if step > lim.max_step_xy_um:
            raise self._refuse(
                f"{cmd}: step of {step:g} um exceeds FeedbackLimits.max_step_xy_um="
                f"{lim.max_step_xy_um:g} um; the stage did not move"
            )
        self._rate(cmd)
        self._core.setXYPosition(x, y)
        self._last_move = self._clock()
        self.history.append(Command(time.time(), "xy", (x, y)))
        self.commands["xy"] += 1
        logger.debug("%s -> (%.4f, %.4f) um", cmd, x, y)
        return x, y

    # ------------------------------------------------------------------ Z
    def move_z_by(self, dz_um: float) -> float:
        """Move the focus by ``dz`` um; returns the new z (limits as for XY)."""
        with self._lock:
            self._check_open("move_z_by")
            v = self._finite("move_z_by", dz_um=dz_um)
            z0 = self.position_z()
            return self._move_z("move_z_by", z0, z0 + v["dz_um"])

    def move_z_to(self, z_um: float) -> float:
        """Move the focus to ``z`` um."""
        with self._lock:
            self._check_open("move_z_to")
            v = self._finite("move_z_to", z_um=z_um)
            return self._move_z("move_z_to", self.position_z(), v["z_um"])

    def _move_z(self, cmd: str, z0: float, z: float) -> float:
        lim = self.limits
        self._in_range(cmd, "z", z, lim.z_range_um)
        if abs(z - z0) > lim.max_step_z_um:
            raise self._refuse(
                f"{cmd}: step of {abs(z - z0):g} um exceeds FeedbackLimits."
                f"max_step_z_um={lim.max_step_z_um:g} um; the stage did not move"
            )
        self._rate(cmd)
        self._core.setPosition(z)
        self._last_move = self._clock()
        self.history.append(Command(time.time(), "z", (z,)))
        self.commands["z"] += 1
        logger.debug("%s -> %.4f um", cmd, z)
        return z

    # ------------------------------------------------------------------ stop
    def stop_acquisition(self, reason: str = "") -> None:
        """Stop acquiring: set :attr:`stop_requested`, stop sequence acquisition.

        Always allowed (it is the safe direction). A running MDA (the event
        MDA of this controller included) is cancelled; queued events are not
        executed and later :meth:`queue_events` calls are refused.
        """
        with self._lock:
            if self.stop_requested.is_set():
                return
            self.stop_requested.set()
            self.history.append(Command(time.time(), "stop", ()))
            self.commands["stop"] += 1
            self.stop_info = _stop_info(reason)
            logger.info("feedback stop_acquisition%s", f": {reason}" if reason else "")
            core = self._core
            if core.isSequenceRunning():
                core.stopSequenceAcquisition()
            if core.mda.is_running():
                core.mda.cancel()
            if self._mda_thread is not None:
                self._events.put(_STOP)  # unblock the runner waiting on the queue

    # ------------------------------------------------------------------ MDA events
    def queue_events(
        self, events: Iterable[Any], *, start: bool = True, on_frame: Any = None
    ) -> int:
        """Queue ``useq.MDAEvent`` s for the event-driven MDA; returns how many.

        All events are checked first (type, finite positions inside the travel
        ranges, at most ``max_events_per_call``); one bad event refuses them all.
        With ``start=True`` the event MDA (``core.run_mda(iter(q.get, STOP))``)
        is started on the first call; the camera must then be free (no sequence
        acquisition running) or able to snap during one (simulated cameras).
        ``on_frame(image, event, meta)``, optional, gets every frame the MDA
        acquires from now on (``core.mda.events.frameReady``) until :meth:`close`.

        Raises
        ------
        LimitError
            An event outside the limits (nothing queued).
        """
        import useq

        with self._lock:
            self._check_open("queue_events")
            if self.stop_requested.is_set():
                raise self._refuse(
                    "queue_events: acquisition was stopped (stop_acquisition); no "
                    "events queued"
                )
            evs = list(events)
            lim = self.limits
            if len(evs) > lim.max_events_per_call:
                raise self._refuse(
                    f"queue_events: {len(evs)} events exceed FeedbackLimits."
                    f"max_events_per_call={lim.max_events_per_call}; nothing queued"
                )
            for i, ev in enumerate(evs):
                if not isinstance(ev, useq.MDAEvent):
                    raise self._refuse(
                        f"queue_events: event {i} is a {type(ev).__name__}, expected "
                        "useq.MDAEvent; nothing queued"
                    )
                for axis, v, rng in (
                    ("x", ev.x_pos, lim.x_range_um),
                    ("y", ev.y_pos, lim.y_range_um),
                    ("z", ev.z_pos, lim.z_range_um),
                ):
                    if v is None:
                        continue
                    self._finite(f"queue_events[{i}]", **{f"{axis}_pos": v})
                    self._in_range(f"queue_events[{i}]", axis, float(v), rng)
            if on_frame is not None:
                self._core.mda.events.frameReady.connect(on_frame)
                self._frame_slots.append(on_frame)
            if start and self._mda_thread is None:
                self._mda_thread = self._core.run_mda(iter(self._events.get, _STOP))
            for ev in evs:
                self._events.put(ev)
            self.history.append(Command(time.time(), "events", (float(len(evs)),)))
            self.commands["events"] += 1
            logger.info("queued %d MDA event(s)", len(evs))
            return len(evs)

    def finish_events(self, timeout_s: float | None = None) -> bool:
        """End the event MDA after the queued events; wait up to ``timeout_s``.

        Returns True when the MDA has finished (or none was started).
        """
        with self._lock:
            thread = self._mda_thread
            if thread is None:
                return True
            self._events.put(_STOP)
        thread.join(timeout_s)
        done = not thread.is_alive()
        if done:
            with self._lock:
                if self._mda_thread is thread:
                    self._mda_thread = None
        return done

    def report(self) -> dict[str, Any]:
        """JSON-ready counters: ``commands`` per kind, ``refusals``, ``stop``
        (:attr:`stop_info`) and the ``limits`` in force."""
        lim = self.limits
        return {
            "kind": "microscope",
            "commands": dict(self.commands),
            "refusals": self.refusals,
            "stop": dict(self.stop_info) if self.stop_info else None,
            "limits": {
                "max_step_xy_um": lim.max_step_xy_um,
                "max_step_z_um": lim.max_step_z_um,
                "x_range_um": list(lim.x_range_um or ()),
                "y_range_um": list(lim.y_range_um or ()),
                "z_range_um": list(lim.z_range_um or ()),
                "max_moves_per_s": lim.max_moves_per_s,
                "max_events_per_call": lim.max_events_per_call,
                "envelope": {a: dict(e) for a, e in self.envelope.items()},
            },
        }

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish the event MDA (cancel after ``timeout_s``); refuse commands after."""
        if not self.finish_events(timeout_s):
            logger.warning(
                "event MDA still running %.1f s after STOP; cancelling", timeout_s
            )
            self._core.mda.cancel()
            self.finish_events(timeout_s)
        for slot in self._frame_slots:
            self._core.mda.events.frameReady.disconnect(slot)
        self._frame_slots.clear()
        self._closed = True


def _stop_info(reason: str) -> dict[str, Any]:
    by = threading.current_thread().name
    return {"reason": str(reason), "t_wall": time.time(), "by": by}


class StopOnlyController:
    """A controller for sources without a stage: it can only stop acquisition.

    For runs whose frames do not come through a pymmcore-plus core (e.g. the
    simulated camera pushed straight into the pipeline): hooks that only observe
    or stop (:class:`~livesr.adapters.feedback.StopWhenConverged`) work, every
    stage or MDA command is refused with :class:`LimitError` (nothing to move).

    Parameters
    ----------
    stop_event : threading.Event, optional
        Set by :meth:`stop_acquisition` (give the source's stop event so that the
        acquisition really ends); default a new event.
    """

    def __init__(self, stop_event: threading.Event | None = None) -> None:
        self.stop_requested = stop_event or threading.Event()
        self.refusals = 0
        self.commands = {"xy": 0, "z": 0, "stop": 0, "events": 0}
        self.stop_info: dict[str, Any] | None = None
        self.last_move_wall: float | None = None
        self._lock = threading.Lock()

    def stop_acquisition(self, reason: str = "") -> None:
        """Set :attr:`stop_requested` (once); the source stops after its frame."""
        with self._lock:
            if self.stop_info is not None:
                return
            self.stop_info = _stop_info(reason)
            self.commands["stop"] += 1
        logger.info("feedback stop_acquisition%s", f": {reason}" if reason else "")
        self.stop_requested.set()

    def _no_stage(self, cmd: str) -> LimitError:
        self.refusals += 1
        msg = (
            f"{cmd}: this run's source has no stage or Micro-Manager core (use a "
            "source through pymmcore-plus, e.g. livesr run --source mm-sim); "
            "nothing moved"
        )
        logger.warning("feedback command refused: %s", msg)
        return LimitError(msg)

    def move_xy_by(self, dx_um: float, dy_um: float) -> tuple[float, float]:
        """Refused: raises :class:`LimitError` (no stage)."""
        raise self._no_stage("move_xy_by")

    def move_xy_to(self, x_um: float, y_um: float) -> tuple[float, float]:
        """Refused: raises :class:`LimitError` (no stage)."""
        raise self._no_stage("move_xy_to")

    def move_z_by(self, dz_um: float) -> float:
        """Refused: raises :class:`LimitError` (no stage)."""
        raise self._no_stage("move_z_by")

    def move_z_to(self, z_um: float) -> float:
        """Refused: raises :class:`LimitError` (no stage)."""
        raise self._no_stage("move_z_to")

    def queue_events(
        self, events: Iterable[Any], *, start: bool = True, on_frame: Any = None
    ) -> int:
        """Refused: raises :class:`LimitError` (no MDA engine)."""
        raise self._no_stage("queue_events")

    def report(self) -> dict[str, Any]:
        """JSON-ready counters (as :meth:`MicroscopeController.report`)."""
        return {
            "kind": "stop-only",
            "commands": dict(self.commands),
            "refusals": self.refusals,
            "stop": dict(self.stop_info) if self.stop_info else None,
            "limits": None,
        }

    def close(self, timeout_s: float = 5.0) -> None:
        """Nothing to release."""


def _stage_range(core: Any, axis: str) -> tuple[tuple[float, float], str]:
    """Travel range of one axis when the configuration gives none: the focus
    drive's ``Position`` property limits (Z), else the current position +- the
    default envelope."""
    from livesr.adapters.feedback._limits import (
        DEFAULT_ENVELOPE_XY_UM,
        DEFAULT_ENVELOPE_Z_UM,
    )

    if axis == "z":
        try:
            dev = core.getFocusDevice()
            if (
                dev
                and core.hasProperty(dev, "Position")
                and core.hasPropertyLimits(dev, "Position")
            ):
                lo = float(core.getPropertyLowerLimit(dev, "Position"))
                hi = float(core.getPropertyUpperLimit(dev, "Position"))
                if math.isfinite(lo) and math.isfinite(hi) and lo < hi:
                    return (lo, hi), "stage limits"
        except Exception:  # a core without a focus drive or without limits
            pass
    half = DEFAULT_ENVELOPE_Z_UM if axis == "z" else DEFAULT_ENVELOPE_XY_UM
    try:
        if axis == "x":
            here = float(core.getXPosition())
        elif axis == "y":
            here = float(core.getYPosition())
        else:
            here = float(core.getPosition())
    except Exception:  # no such stage: moves on this axis fail anyway
        here = 0.0
    if not math.isfinite(here):
        here = 0.0
    return (here - half, here + half), f"start position +- {half:g} um"
