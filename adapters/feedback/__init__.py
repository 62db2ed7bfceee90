"""livesr.adapters.feedback: hooks that see each result and drive the microscope.

Hook API
--------
A hook is a callable ``hook(result, controller) -> None`` (or an object with
``on_result(result, controller)``; an optional ``report() -> dict`` goes into the
run summary). It receives every published window of the live pipeline as a
:class:`Result`:

- ``index``, ``frame_range`` (first, last raw frame seq), ``image`` ((H*M, W*M)
  float32 SR image), ``magnification``, ``pixel_size_um`` (camera px, um);
- ``drift_px`` (dy, dx) camera px that the camera sees at the window's newest frame
  (stage moves included), ``drift_sigma_px``;
- ``metrics`` (``quality``...), ``timestamps`` (``t_acq_last``, ``t_recv``,
  ``t_proc``, ``t_publish``: ``time.time()`` s).

``Result.from_message(livesr.stream.decode_result(parts))`` rebuilds one from a
results-stream message (a subscriber in another process can run the same hooks).

Hooks run off the processing thread (:class:`HookRunner`: one worker thread and a
newest-only slot per hook; :meth:`HookRunner.submit` never blocks). A hook that
raises is logged and counted (``failures``), one slower than ``slow_call_s`` is
counted (``slow_calls``, ``stuck`` while it hangs) and the results it could not
take are counted as ``drops``; the pipeline publishes exactly the same windows.

The microscope is reached only through the ``controller``
(:class:`MicroscopeController` over a pymmcore-plus core): ``move_xy_by/to``,
``move_z_by/to``, ``stop_acquisition(reason)``, ``queue_events([useq.MDAEvent])``.
Every command passes :class:`FeedbackLimits` first (max step, travel range, max
rate, events per call); a refused one raises :class:`LimitError` and nothing moves.
Runs without a stage get a :class:`StopOnlyController` (stop only).

Built-in hooks: :class:`DriftLock` (``--hook drift-lock``), :class:`StopWhenConverged`
(``--hook stop-when-converged``), :class:`TriggeredAcquisition` (``--hook
event-trigger``: frames acquired when a metric crosses a threshold, saved beside the
run) and :class:`EventTrigger` (Python API: any predicate, any MDA events).

In a run::

    livesr run --source mm-sim --hook drift-lock --frames 2000
    livesr run --hook stop-when-converged --hook mypkg.hooks:notify --frames 5000

(parameters in the ``[hooks]`` config section, ``livesr.stream.HooksConfig``; the
classes of its sub-tables are registered with stream when this package is imported);
in Python, ``Pipeline(config, hooks=HookRunner([...], controller))``.  ``Result``,
``Hook`` and ``HookRunner`` are defined in :mod:`livesr.stream` and re-exported here.
``summary.json`` then has ``hooks``: per-hook ``calls, failures, drops,
slow_calls, stuck, last_error, report``, the controller's commands and refusals,
and ``stop`` (which hook stopped the acquisition, why, frames / time saved).

Importing this package imports neither pymmcore_plus nor useq.

>>> from livesr.adapters.feedback import (                   # doctest: +SKIP
...     DriftLock, FeedbackLimits, HookRunner, MicroscopeController, Result)
>>> ctl = MicroscopeController(core, FeedbackLimits(max_step_xy_um=1.0))
>>> runner = HookRunner([DriftLock()], ctl)
>>> runner.submit(Result(index=0, drift_px=(0.4, -0.1), pixel_size_um=0.1))
>>> runner.close(); ctl.close()
"""

from __future__ import annotations

from livesr.adapters.feedback import _builtin
from livesr.adapters.feedback._api import Hook, HookRunner, HookStats, Result
from livesr.adapters.feedback._controller import (
    Command,
    MicroscopeController,
    StopOnlyController,
)
from livesr.adapters.feedback._converged import ConvergedConfig, StopWhenConverged
from livesr.adapters.feedback._drift_lock import DriftLock, DriftLockConfig
from livesr.adapters.feedback._event_trigger import EventTrigger
from livesr.adapters.feedback._limits import FeedbackLimits, LimitError
from livesr.adapters.feedback._triggered import EventTriggerConfig, TriggeredAcquisition

_builtin.register()  # the built-in hooks and their [hooks.*] settings, by name

__all__ = [
    "Command",
    "ConvergedConfig",
    "DriftLock",
    "DriftLockConfig",
    "EventTrigger",
    "EventTriggerConfig",
    "FeedbackLimits",
    "Hook",
    "HookRunner",
    "HookStats",
    "LimitError",
    "MicroscopeController",
    "Result",
    "StopOnlyController",
    "StopWhenConverged",
    "TriggeredAcquisition",
]
