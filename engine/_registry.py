"""The implementation registry and lazy discovery of a kernel's backend modules.

Discovery rule (documented for kernel authors): in the kernel's package, every
module whose name is ``_<backend>`` or ``_<backend>_<anything>`` (``<backend>`` one of
numpy, numba, cython, opencl, cupy) is imported, e.g. ``_numpy.py``, ``_numba.py``,
``_opencl.py``, ``_cupy.py``, ``_cython_impl.py`` (the companion of the compiled
``_cython`` extension).  Any other module (``_spec.py``, ``_common.py``) is a private
helper and is never imported by discovery.  An import that fails is recorded as an
unavailable implementation with the reason.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from livesr.engine._backends import INSTALL_HINTS, import_failure_reason
from livesr.engine._types import Backend

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_BACKEND_NAMES = "|".join(b.value for b in Backend)
#: Modules of a kernel package that discovery imports.
MODULE_PATTERN = re.compile(rf"^_(?P<backend>{_BACKEND_NAMES})(?:_(?P<rest>\w+))?$")
_VARIANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class Registration:
    """One registered implementation function."""

    kernel: str
    backend: Backend
    variant: str
    func: Callable[..., Any]
    sync: Callable[[], None] | None
    module: str

    @property
    def id(self) -> str:
        return impl_id(self.backend, self.variant)


def impl_id(backend: Backend | str, variant: str = "") -> str:
    """``backend[-variant]``, e.g. ``numba``, ``cython-guided``, ``opencl-wg16``."""
    b = Backend.parse(backend)
    return f"{b.value}-{variant}" if variant else b.value


# kernel name -> implementation id -> registration.  A plain dict filled by the
# decorators of implementation modules as they are imported; it does no work.
_registry: dict[str, dict[str, Registration]] = {}
_registry_lock = threading.RLock()
_generation = [0]  # bumped on every change, so kernels can cache their view


def generation() -> int:
    """A counter that changes whenever an implementation is (un)registered."""
    return _generation[0]


def implementation(
    kernel: str,
    *,
    backend: Backend | str,
    variant: str = "",
    sync: Callable[[], None] | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as an implementation of ``kernel``.

    Parameters
    ----------
    kernel : str
        The kernel name given to :class:`~livesr.engine.Kernel`.
    backend : Backend or str
        One of numpy, numba, cython, opencl, cupy.
    variant : str, optional
        Free-text variant (``"guided"``, ``"wg16"``): the id becomes ``backend-variant``.
    sync : callable, optional
        Zero-argument hook the engine calls after each run before stopping the timer
        (e.g. an OpenCL ``queue.finish``); CuPy's current stream is synchronised anyway.

    Returns
    -------
    The function, unchanged.

    Examples
    --------
    >>> from livesr.engine import implementation
    >>> @implementation("toy_scale", backend="numpy")
    ... def scale_numpy(x, factor=2.0):
    ...     return x * factor
    """
    b = Backend.parse(backend)
    if variant and not _VARIANT_PATTERN.match(variant):
        raise ValueError(
            f"variant={variant!r}: expected letters, digits, '_' or '.', starting with a "
            "letter or digit (it becomes part of the id 'backend-variant')"
        )

    def decorate(func: F) -> F:
        reg = Registration(
            kernel, b, variant, func, sync, getattr(func, "__module__", "")
        )
        with _registry_lock:
            impls = _registry.setdefault(kernel, {})
            old = impls.get(reg.id)
            if old is not None and (old.module, _qualname(old.func)) != (
                reg.module,
                _qualname(func),
            ):
                raise ValueError(
                    f"{kernel}: implementation id {reg.id!r} registered twice "
                    f"({old.module}.{_qualname(old.func)} and {reg.module}.{_qualname(func)}); "
                    "give one of them a variant"
                )
            impls[reg.id] = reg
            _generation[0] += 1
        return func

    return decorate


def _qualname(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", repr(func))


def registrations(kernel: str) -> dict[str, Registration]:
    """A copy of ``kernel``'s registered implementations, by id."""
    with _registry_lock:
        return dict(_registry.get(kernel, {}))


def unregister(kernel: str, impl: str | None = None) -> None:
    """Remove one implementation (or all of ``kernel``'s) from the registry (tests)."""
    with _registry_lock:
        if impl is None:
            _registry.pop(kernel, None)
        else:
            _registry.get(kernel, {}).pop(impl, None)
        _generation[0] += 1


def _unbuilt_extensions(paths: list[str], importable: set[str]) -> set[str]:
    """Stems of ``*.pyx`` sources in ``paths`` with no importable module of that name."""
    import os

    stems = set()
    for path in paths:
        try:
            entries = os.listdir(path)
        except OSError:
            continue
        stems |= {e[:-4] for e in entries if e.endswith(".pyx")}
    return stems - importable


@dataclass(frozen=True)
class ImportFailure:
    """A backend module of a kernel package that could not be imported."""

    id: str
    backend: Backend
    module: str
    reason: str


def discover_modules(package: str) -> list[ImportFailure]:
    """Import the backend modules of ``package`` (see the module docs for the rule).

    Returns the modules that failed, each with a user-facing reason; failures are
    logged at DEBUG (ImportError) or WARNING (any other exception: a bug).
    """
    pkg = importlib.import_module(package)
    paths = getattr(pkg, "__path__", None)
    if paths is None:
        raise ValueError(
            f"Kernel package={package!r} is a module, not a package: a kernel owns a "
            "folder with an __init__.py and one module per implementation"
        )
    failures: list[ImportFailure] = []
    names = sorted({m.name for m in pkgutil.iter_modules(paths)})
    for stem in sorted(_unbuilt_extensions(paths, set(names))):
        match = MODULE_PATTERN.match(stem)
        if match:
            backend = Backend.parse(match["backend"])
            rest = match["rest"] or ""
            reason = (
                f"{backend}: extension {package}.{stem} not built for this Python "
                f"({INSTALL_HINTS[backend]})"
            )
            logger.debug("%s: %s", package, reason)
            variant = "" if rest in ("", "impl") else rest
            failures.append(
                ImportFailure(
                    impl_id(backend, variant), backend, f"{package}.{stem}", reason
                )
            )
    for name in names:
        match = MODULE_PATTERN.match(name)
        if not match:
            continue
        backend = Backend.parse(match["backend"])
        rest = match["rest"] or ""
        module = f"{package}.{name}"
        try:
            importlib.import_module(module)
        except Exception as exc:
            reason = import_failure_reason(backend, module, exc)
            log = logger.debug if isinstance(exc, ImportError) else logger.warning
            log("%s: %s", package, reason)
            variant = "" if rest in ("", "impl") else rest
            failures.append(
                ImportFailure(impl_id(backend, variant), backend, module, reason)
            )
    return failures
