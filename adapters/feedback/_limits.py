"""Hard safety limits on every hardware command a feedback hook can issue.

:class:`FeedbackLimits` is checked by
:class:`~livesr.adapters.feedback.MicroscopeController` before anything reaches
the core; a command beyond a limit raises :class:`LimitError` (the hardware is
not touched) and is logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["FeedbackLimits", "LimitError"]


class LimitError(ValueError):
    """A hardware command was refused by :class:`FeedbackLimits`; nothing moved."""


def _pos_finite(name: str, v: Any, hi: float = math.inf) -> None:
    ok = (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 < v <= hi
    )
    if not ok:
        raise ValueError(
            f"FeedbackLimits.{name}={v!r} is out of range; expected a finite number "
            f"in (0, {hi:g}]"
        )


def _range(name: str, lo_hi: Any) -> None:
    ok = (
        isinstance(lo_hi, tuple)
        and len(lo_hi) == 2
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in lo_hi
        )
        and lo_hi[0] < lo_hi[1]
    )
    if not ok:
        raise ValueError(
            f"FeedbackLimits.{name}={lo_hi!r} is invalid; expected a (low, high) tuple "
            "of finite numbers in um with low < high"
        )


#: travel allowed around the start position when neither the configuration nor the
#: stage states a range, um (a drift lock moves a few um; an event trigger a field)
DEFAULT_ENVELOPE_XY_UM = 200.0
DEFAULT_ENVELOPE_Z_UM = 50.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackLimits:
    """Limits no feedback hook can exceed (validated on construction).

    Attributes
    ----------
    max_step_xy_um : float
        Largest XY move per command, um (Euclidean length of (dx, dy)), in (0, 10000].
    max_step_z_um : float
        Largest Z move per command, um, in (0, 1000].
    x_range_um, y_range_um, z_range_um : (float, float) or None
        Allowed (low, high) stage positions, um, inclusive (stage coordinates as
        the core reports them). MDA events queued by hooks must lie inside too.
        None (default): the stage's own limits where its device states them (the
        focus drive's ``Position`` property limits), else the position the stage
        is at when the controller is made, +-``DEFAULT_ENVELOPE_XY_UM`` (XY) or
        +-``DEFAULT_ENVELOPE_Z_UM`` (Z): never the whole travel of a motorised
        stage (:meth:`MicroscopeController.envelope` says which applied).
    max_moves_per_s : float
        Stage moves (XY or Z) allowed per second: two moves closer than
        ``1 / max_moves_per_s`` s are refused, in (0, 1000].
    max_events_per_call : int
        Most MDA events one :meth:`MicroscopeController.queue_events` call may
        queue, >= 1.
    """

    max_step_xy_um: float = 5.0
    max_step_z_um: float = 2.0
    x_range_um: tuple[float, float] | None = None
    y_range_um: tuple[float, float] | None = None
    z_range_um: tuple[float, float] | None = None
    max_moves_per_s: float = 20.0
    max_events_per_call: int = 1000

    def __post_init__(self) -> None:
        _pos_finite("max_step_xy_um", self.max_step_xy_um, 10_000.0)
        _pos_finite("max_step_z_um", self.max_step_z_um, 1_000.0)
        _pos_finite("max_moves_per_s", self.max_moves_per_s, 1_000.0)
        for name in ("x_range_um", "y_range_um", "z_range_um"):
            if getattr(self, name) is not None:
                _range(name, getattr(self, name))
        n = self.max_events_per_call
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise ValueError(
                f"FeedbackLimits.max_events_per_call={n!r} is out of range; expected "
                "an integer >= 1"
            )

    @property
    def min_move_interval_s(self) -> float:
        """Shortest allowed time between two stage moves, s."""
        return 1.0 / self.max_moves_per_s
