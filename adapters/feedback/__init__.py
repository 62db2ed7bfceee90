"""livesr.adapters.feedback: hooks that see each result and drive the microscope.

- :class:`Result` -- what a hook receives (SR image, drift, metrics, timestamps).
- :class:`Hook` -- ``hook(result, controller)`` or an object with ``on_result``.
- :class:`HookRunner` -- runs hooks off the processing thread; the pipeline's
  only integration is ``runner.submit(result)``, which never blocks.
- :class:`MicroscopeController` + :class:`FeedbackLimits` -- every hardware
  command (XY/Z moves, stop, MDA events) passes hard limits (step, travel,
  rate); a refused command raises :class:`LimitError` and nothing moves.
- Built-in hooks: :class:`DriftLock`, :class:`StopWhenConverged`,
  :class:`EventTrigger`.

Importing this package imports neither pymmcore_plus nor useq.

>>> from livesr.adapters.feedback import (                   # doctest: +SKIP
...     DriftLock, FeedbackLimits, HookRunner, MicroscopeController, Result)
>>> ctl = MicroscopeController(core, FeedbackLimits(max_step_xy_um=1.0))
>>> runner = HookRunner([DriftLock()], ctl)
>>> runner.submit(Result(index=0, drift_px=(0.4, -0.1), pixel_size_um=0.1))
>>> runner.close(); ctl.close()
"""

from __future__ import annotations

from livesr.adapters.feedback._api import Hook, HookRunner, HookStats, Result
from livesr.adapters.feedback._controller import Command, MicroscopeController
from livesr.adapters.feedback._converged import ConvergedConfig, StopWhenConverged
from livesr.adapters.feedback._drift_lock import DriftLock, DriftLockConfig
from livesr.adapters.feedback._event_trigger import EventTrigger
from livesr.adapters.feedback._limits import FeedbackLimits, LimitError

__all__ = [
    "Command",
    "ConvergedConfig",
    "DriftLock",
    "DriftLockConfig",
    "EventTrigger",
    "FeedbackLimits",
    "Hook",
    "HookRunner",
    "HookStats",
    "LimitError",
    "MicroscopeController",
    "Result",
    "StopWhenConverged",
]
