"""Hooks by name: the built-in ones and ``module:callable`` user hooks.

``livesr run --hook NAME`` (repeatable) and ``[hooks] enabled = [...]`` name the
hooks of a run:

``drift-lock``
    :class:`~livesr.adapters.feedback.DriftLock` with ``[hooks.drift_lock]``.
``stop-when-converged``
    :class:`~livesr.adapters.feedback.StopWhenConverged` with
    ``[hooks.stop_when_converged]``.
``package.module:name``
    A user hook: ``name`` is imported from ``package.module``; a class is
    instantiated without arguments, anything else is used as it is (a callable
    ``hook(result, controller)`` or an object with ``on_result``).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

__all__ = [
    "BUILTIN_HOOKS",
    "HOOKS_NEEDING_STAGE",
    "check_hook_name",
    "load_hook",
    "make_hooks",
]

#: Built-in hook names.
BUILTIN_HOOKS: tuple[str, ...] = ("drift-lock", "stop-when-converged")
#: Built-in hooks that move a stage (need a source through a pymmcore-plus core).
HOOKS_NEEDING_STAGE: tuple[str, ...] = ("drift-lock",)

_USER_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def check_hook_name(name: Any) -> str:
    """Validate a hook name; returns it.

    Raises
    ------
    ValueError
        Neither a built-in name nor ``module:callable``.
    """
    if isinstance(name, str) and (name in BUILTIN_HOOKS or _USER_RE.match(name)):
        return name
    raise ValueError(
        f"hook {name!r} is not valid; expected one of {', '.join(BUILTIN_HOOKS)} or "
        "a user hook as 'package.module:callable'"
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


def make_hooks(names: Any, settings: Any) -> list[Any]:
    """The hook objects for ``names`` (built-in or ``module:callable``).

    Parameters
    ----------
    names : sequence of str
        Hook names, in order (see the module docstring).
    settings : object
        With ``drift_lock`` (:class:`DriftLockConfig`) and ``stop_when_converged``
        (:class:`ConvergedConfig`) attributes, e.g.
        :class:`livesr.stream._config.HooksConfig`.

    Raises
    ------
    ValueError
        A name that is not valid or a user hook that cannot be loaded.
    """
    from livesr.adapters.feedback._converged import StopWhenConverged
    from livesr.adapters.feedback._drift_lock import DriftLock

    hooks: list[Any] = []
    for name in names:
        check_hook_name(name)
        if name == "drift-lock":
            hooks.append(DriftLock(settings.drift_lock))
        elif name == "stop-when-converged":
            hooks.append(StopWhenConverged(settings.stop_when_converged))
        else:
            hooks.append(load_hook(name))
    return hooks
