"""Event-triggered acquisition: a predicate on a result queues MDA events.

:class:`EventTrigger` calls ``predicate(result)``; when it is true it builds
``useq.MDAEvent`` s with ``events(result, controller)`` and queues them through
:meth:`MicroscopeController.queue_events` (limit-checked), which feeds
pymmcore-plus's MDA runner (``core.run_mda(iter(queue.get, STOP))``).

>>> import useq
>>> def zstack(result, ctl):
...     z0 = ctl.position_z()
...     return [useq.MDAEvent(index={"z": i}, z_pos=z0 + dz)
...             for i, dz in enumerate((-1.0, 0.0, 1.0))]
>>> trigger = EventTrigger(lambda r: r.metrics.get("quality", 0) > 0.8, zstack)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from livesr.adapters.feedback._limits import LimitError
from livesr.stream import Result

__all__ = ["EventTrigger"]

logger = logging.getLogger(__name__)


class EventTrigger:
    """Feedback hook: queue MDA events when a predicate on a result holds.

    Parameters
    ----------
    predicate : callable
        ``predicate(result) -> bool``.
    events : callable
        ``events(result, controller) -> iterable of useq.MDAEvent``.
    max_fires : int
        Fire at most this many times (>= 1; default 1: a one-shot trigger).
    stop_stream : bool
        Stop the running sequence acquisition (the live stream) before queuing,
        so the MDA gets the camera.

    Attributes
    ----------
    fired : int
        Times the events were queued.
    fired_on : list of int
        Result indices that fired.
    refused : int
        Firings refused by the controller's limits.
    """

    name = "event_trigger"

    def __init__(
        self,
        predicate: Callable[[Result], bool],
        events: Callable[[Result, Any], Iterable[Any]],
        *,
        max_fires: int = 1,
        stop_stream: bool = False,
    ) -> None:
        if (
            not isinstance(max_fires, int)
            or isinstance(max_fires, bool)
            or max_fires < 1
        ):
            raise ValueError(
                f"EventTrigger max_fires={max_fires!r} is out of range; expected an "
                "integer >= 1"
            )
        self._predicate = predicate
        self._events = events
        self.max_fires = max_fires
        self.stop_stream = stop_stream
        self.fired = 0
        self.fired_on: list[int] = []
        self.refused = 0

    def on_result(self, result: Result, controller: Any) -> None:
        """Queue the events if the predicate holds (and fires are left)."""
        if self.fired >= self.max_fires or not self._predicate(result):
            return
        evs = list(self._events(result, controller))
        if self.stop_stream and controller.core.isSequenceRunning():
            controller.core.stopSequenceAcquisition()
        try:
            n = controller.queue_events(evs)
        except LimitError:
            self.refused += 1
            return
        self.fired += 1
        self.fired_on.append(result.index)
        logger.info(
            "result %d: predicate true, %d MDA event(s) queued", result.index, n
        )

    __call__ = on_result
