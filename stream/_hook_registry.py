"""Hooks and their configuration classes, registered by name (so stream needs no adapter).

The ``[hooks]`` section of the configuration (:class:`livesr.stream._config.HooksConfig`)
has one sub-table per hook configuration (``[hooks.drift_lock]``...), and
``[hooks] enabled`` names built-in hooks (``"drift-lock"``...).  Stream does not know
these classes: the package that implements the hooks registers them here
(:func:`register_hook_config`, :func:`register_hook`), and this registry imports the
providers named in :data:`HOOK_PROVIDERS` -- module names as strings, an
entry-point-like table -- the first time a name it does not know is looked up.  Nothing
is imported before that.

>>> from livesr.stream import register_hook_config
>>> register_hook_config("my_hook", MyHookConfig, MyHookConfig)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HOOK_PROVIDERS",
    "HookConfigEntry",
    "builtin_hook_names",
    "check_hook_name",
    "hook_config",
    "register_hook",
    "register_hook_config",
]

#: Modules that register hooks and hook configurations when imported, loaded (in
#: order) on the first lookup of an unknown name.  Strings: importing them is the
#: registry's lazy, explicit step, not a dependency of stream on adapters.
HOOK_PROVIDERS: list[str] = ["livesr.adapters.feedback"]

_USER_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True, slots=True)
class HookConfigEntry:
    """One registered ``[hooks.<table>]`` configuration.

    Attributes
    ----------
    table : str
        The sub-table (and :class:`HooksConfig` attribute) name.
    cls : type
        The frozen dataclass of its settings.
    default : callable
        ``default()`` -> the settings of a run that does not set the table.
    """

    table: str
    cls: type
    default: Callable[[], Any]


_lock = threading.Lock()
_configs: dict[str, HookConfigEntry] = {}
_hooks: dict[str, bool] = {}  # built-in hook name -> needs a stage
_loaded: set[str] = set()


def register_hook_config(
    table: str, cls: type, default: Callable[[], Any] | None = None
) -> None:
    """Register the settings class of ``[hooks.<table>]``.

    Parameters
    ----------
    table : str
        Sub-table name (an identifier, e.g. ``"drift_lock"``).
    cls : type
        A dataclass (``dataclasses.replace`` builds it from the table's keys).
    default : callable, optional
        Factory of the default settings (default: ``cls()``).

    Raises
    ------
    ValueError
        ``table`` is not an identifier, or is already registered to another class.
    """
    if not (isinstance(table, str) and table.isidentifier()):
        raise ValueError(f"hook config table {table!r}; expected an identifier")
    with _lock:
        old = _configs.get(table)
        if old is not None and old.cls is not cls:
            raise ValueError(
                f"[hooks.{table}] is already registered to {old.cls.__qualname__}; "
                f"cannot register {cls.__qualname__}"
            )
        _configs[table] = HookConfigEntry(table, cls, default if default is not None else cls)


def register_hook(name: str, *, needs_stage: bool = False) -> None:
    """Register a built-in hook name (``[hooks] enabled``, ``livesr run --hook``).

    ``needs_stage``: the hook moves a stage (a source through a pymmcore-plus core).
    """
    if not (isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9-]*", name)):
        raise ValueError(f"hook name {name!r}; expected lower-case words joined by '-'")
    with _lock:
        _hooks[name] = bool(needs_stage)


def _load_providers() -> None:
    """Import every provider not imported yet (they register on import)."""
    for module in list(HOOK_PROVIDERS):
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(
                f"hook provider {module!r} (livesr.stream._hook_registry.HOOK_PROVIDERS) "
                f"cannot be imported: {exc}"
            ) from exc
        _loaded.add(module)


def hook_config(table: str) -> HookConfigEntry:
    """The registered ``[hooks.<table>]`` (providers are imported if it is unknown).

    Raises
    ------
    KeyError
        No provider registers ``table``.
    """
    if table not in _configs:
        _load_providers()
    try:
        return _configs[table]
    except KeyError:
        raise KeyError(
            f"no hook configuration [hooks.{table}] is registered; known: "
            f"{', '.join(hook_config_tables()) or 'none'}"
        ) from None


def hook_config_tables() -> tuple[str, ...]:
    """Names of every registered ``[hooks.<table>]`` (after loading the providers)."""
    _load_providers()
    return tuple(_configs)


def builtin_hook_names(*, needing_stage: bool = False) -> tuple[str, ...]:
    """Registered built-in hook names (only those that move a stage if asked)."""
    _load_providers()
    return tuple(n for n, stage in _hooks.items() if stage or not needing_stage)


def check_hook_name(name: Any) -> str:
    """Validate a hook name: a registered built-in one or ``package.module:callable``.

    Raises
    ------
    ValueError
        Neither; the message lists the built-in names.
    """
    if isinstance(name, str) and name not in _hooks and not _USER_RE.match(name):
        _load_providers()
    if isinstance(name, str) and (name in _hooks or _USER_RE.match(name)):
        return name
    raise ValueError(
        f"hook {name!r} is not valid; expected one of "
        f"{', '.join(builtin_hook_names())} or a user hook as 'package.module:callable'"
    )
