"""Hooks by name: the built-in ones and ``module:callable`` user hooks.

``livesr run --hook NAME`` (repeatable) and ``[hooks] enabled = [...]`` name the
hooks of a run:

``drift-lock``
    :class:`~livesr.adapters.feedback.DriftLock` with ``[hooks.drift_lock]``.
``stop-when-converged``
    :class:`~livesr.adapters.feedback.StopWhenConverged` with
    ``[hooks.stop_when_converged]``.
``event-trigger``
    :class:`~livesr.adapters.feedback.TriggeredAcquisition` with
    ``[hooks.event_trigger]`` (frames saved under ``<output>/triggered/``).
``package.module:name``
    A user hook: ``name`` is imported from ``package.module``; a class is
    instantiated without arguments, anything else is used as it is (a callable
    ``hook(result, controller)`` or an object with ``on_result``).
"""

from __future__ import annotations

import importlib
from typing import Any

from livesr.stream import check_hook_name as stream_check_hook_name
from livesr.stream import register_hook, register_hook_config

__all__ = [
    "BUILTIN_HOOKS",
    "HOOKS_NEEDING_STAGE",
    "check_hook_name",
    "load_hook",
    "make_hooks",
    "register",
]

#: Built-in hook names.
BUILTIN_HOOKS: tuple[str, ...] = ("drift-lock", "stop-when-converged", "event-trigger")
#: Built-in hooks that command the microscope (a stage move, an MDA): they need a
#: source through a pymmcore-plus core.
HOOKS_NEEDING_STAGE: tuple[str, ...] = ("drift-lock", "event-trigger")

def check_hook_name(name: Any) -> str:
    """Validate a hook name; returns it (:func:`livesr.stream.check_hook_name`).

    Raises
    ------
    ValueError
        Neither a built-in name nor ``module:callable``.
    """
    return stream_check_hook_name(name)


def register() -> None:
    """Register the built-in hooks and their ``[hooks.<table>]`` settings with stream.

    Called when :mod:`livesr.adapters.feedback` is imported (which the stream hook
    registry does on the first lookup of a name it does not know).  The defaults are
    those of the live pipeline: its drift is the rolling estimate at the window's
    newest frame, trusted once a few drift blocks after a move are in (``settle_s``).
    """
    from livesr.adapters.feedback._converged import ConvergedConfig
    from livesr.adapters.feedback._drift_lock import DriftLockConfig
    from livesr.adapters.feedback._limits import FeedbackLimits
    from livesr.adapters.feedback._triggered import EventTriggerConfig

    for name in BUILTIN_HOOKS:
        register_hook(name, needs_stage=name in HOOKS_NEEDING_STAGE)
    register_hook_config(
        "drift_lock",
        DriftLockConfig,
        lambda: DriftLockConfig(threshold_px=0.1, gain=0.8, settle_s=0.2),
    )
    register_hook_config(
        "stop_when_converged",
        ConvergedConfig,
        lambda: ConvergedConfig(
            rel_change=0.05, windows=4, min_results=6, accumulate=True
        ),
    )
    register_hook_config("event_trigger", EventTriggerConfig, EventTriggerConfig)
    register_hook_config(
        "limits",
        FeedbackLimits,
        lambda: FeedbackLimits(max_step_xy_um=1.0, max_moves_per_s=10.0),
    )


def load_hook(spec: str) -> Any:
    """Import a ``module:callable`` user hook (a class is instantiated).

    Raises
    ------
    ValueError
        The module cannot be imported, has no such attribute, or the object is no
        hook (neither callable nor with ``on_result``); the message names it.
    """
    check_hook_name(spec)
    mod_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(
            f"hook {spec!r}: cannot import module {mod_name!r}: {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(
                f"hook {spec!r}: module {mod_name!r} has no attribute {attr!r}"
            ) from None
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ValueError(
                f"hook {spec!r}: the class could not be instantiated without "
                f"arguments: {exc}"
            ) from exc
    if not (callable(getattr(obj, "on_result", None)) or callable(obj)):
        raise ValueError(
            f"hook {spec!r} is a {type(obj).__name__}; expected a callable "
            "hook(result, controller) or an object with on_result(result, controller)"
        )
    return obj


def make_hooks(names: Any, settings: Any, *, output: Any = None) -> list[Any]:
    """The hook objects for ``names`` (built-in or ``module:callable``).

    Parameters
    ----------
    names : sequence of str
        Hook names, in order (see the module docstring).
    settings : object
        With ``drift_lock`` (:class:`DriftLockConfig`) and ``stop_when_converged``
        (:class:`ConvergedConfig`) attributes, e.g.
        :class:`livesr.stream._config.HooksConfig`.
    output : path-like, optional
        The run's output folder (``event-trigger`` saves its frames there).

    Raises
    ------
    ValueError
        A name that is not valid or a user hook that cannot be loaded.
    """
    from livesr.adapters.feedback._converged import StopWhenConverged
    from livesr.adapters.feedback._drift_lock import DriftLock
    from livesr.adapters.feedback._triggered import TriggeredAcquisition

    hooks: list[Any] = []
    for name in names:
        check_hook_name(name)
        if name == "drift-lock":
            hooks.append(DriftLock(settings.drift_lock))
        elif name == "stop-when-converged":
            hooks.append(StopWhenConverged(settings.stop_when_converged))
        elif name == "event-trigger":
            if output is None:
                raise ValueError("hook event-trigger needs the run's output folder")
            hooks.append(TriggeredAcquisition(settings.event_trigger, output))
        else:
            hooks.append(load_hook(name))
    return hooks
