"""Per-backend probes (is it usable here, and why not) and device synchronisation.

Every probe is lazy and cached per process: nothing is imported or probed until the
engine discovers implementations or ``livesr backends`` asks.  ``probe(backend)``
returns an :class:`Availability`; ``synchronize(backend)`` waits for the device
(CuPy: current stream; OpenCL: the hooks implementations registered with
:func:`register_sync`; CPU backends: nothing).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livesr.engine._types import Backend

logger = logging.getLogger(__name__)

#: What to tell a user whose backend package is missing.
INSTALL_HINTS: dict[Backend, str] = {
    Backend.NUMPY: "pip install numpy",
    Backend.NUMBA: "pip install numba",
    Backend.CYTHON: "reinstall livesr to build its extensions: pip install -e .",
    Backend.OPENCL: "pip install 'pyopencl[pocl]'",
    Backend.CUPY: "pip install livesr[gpu]",
}

#: Top-level modules whose absence means "backend not installed".
_BACKEND_MODULES: dict[Backend, tuple[str, ...]] = {
    Backend.NUMPY: ("numpy",),
    Backend.NUMBA: ("numba", "llvmlite"),
    Backend.CYTHON: (),
    Backend.OPENCL: ("pyopencl",),
    Backend.CUPY: ("cupy", "cupyx", "cupy_backends"),
}

#: Environment variable: comma-separated backends to treat as unavailable.
DISABLE_ENV = "LIVESR_DISABLE_BACKENDS"


@dataclass(frozen=True)
class Availability:
    """Result of a backend probe: ``ok`` with a short ``detail``, or the ``reason`` why not."""

    backend: Backend
    ok: bool
    detail: str = ""
    reason: str = ""

    def summary(self) -> str:
        """One fragment of the report header, e.g. ``"numba 0.68 ok"``."""
        if self.ok:
            return (
                f"{self.backend} {self.detail}".rstrip()
                if self.detail
                else f"{self.backend} ok"
            )
        reason = self.reason.split(": ", 1)[-1]
        return f"{self.backend} unavailable: {reason}"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _disabled() -> set[str]:
    return {
        b.strip().lower()
        for b in os.environ.get(DISABLE_ENV, "").split(",")
        if b.strip()
    }


def _probe_numpy() -> Availability:
    return Availability(Backend.NUMPY, True, "ok")


def _probe_numba() -> Availability:
    if importlib.util.find_spec("numba") is None:
        return Availability(
            Backend.NUMBA,
            False,
            reason=f"numba: not installed ({INSTALL_HINTS[Backend.NUMBA]})",
        )
    version = ".".join(_version("numba").split(".")[:2])
    return Availability(Backend.NUMBA, True, f"{version} ok".strip())


def _probe_cython() -> Availability:
    # The compiled extension itself is the probe: its companion module's ImportError
    # is recorded per implementation.  Here we only say the backend is allowed.
    return Availability(Backend.CYTHON, True, "ok")


def _platform_label(name: str) -> str:
    if "portable computing language" in name.lower():
        return "pocl"
    return (name.split() or ["opencl"])[0].lower()


_PROBE_KERNEL = "__kernel void livesr_probe(__global float *a) { a[0] = 1.0f; }"


def _devices_that_compile(cl: Any, devices: list[Any]) -> tuple[list[Any], str]:
    """The devices whose compiler builds a trivial kernel; the first error otherwise.

    A platform can list a device whose compiler cannot build anything: PoCL's LLVM
    reports an unknown host CPU as 'generic' and every build then fails ("unknown
    target CPU 'generic'"), so listing a device is not enough to call OpenCL usable.
    """
    usable = []
    first_error = ""
    for dev in devices:
        try:
            ctx = cl.Context([dev])
            cl.Program(ctx, _PROBE_KERNEL).build()
        except Exception as exc:
            if not first_error:
                lines = [
                    ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()
                ]
                detail = lines[-1] if lines else str(exc).splitlines()[0]
                first_error = f"{getattr(dev, 'name', dev)}: {detail}"
            continue
        usable.append(dev)
    return usable, first_error


def _probe_opencl() -> Availability:
    if importlib.util.find_spec("pyopencl") is None:
        return Availability(
            Backend.OPENCL,
            False,
            reason=f"opencl: pyopencl not installed ({INSTALL_HINTS[Backend.OPENCL]})",
        )
    try:
        cl = importlib.import_module("pyopencl")
        platforms = cl.get_platforms()
    except Exception as exc:  # pyopencl raises LogicError/RuntimeError without an ICD
        return Availability(
            Backend.OPENCL,
            False,
            reason=f"opencl: no platform ({INSTALL_HINTS[Backend.OPENCL]}; {exc})".strip(),
        )
    devices = []
    names = []
    for platform in platforms:
        try:
            found = platform.get_devices()
        except Exception:  # a broken ICD must not hide the others
            found = []
        if found:
            names.append(_platform_label(platform.name))
            devices.extend(found)
    if not devices:
        return Availability(
            Backend.OPENCL,
            False,
            reason=f"opencl: no device on any platform ({INSTALL_HINTS[Backend.OPENCL]})",
        )
    usable, why = _devices_that_compile(cl, devices)
    if not usable:
        return Availability(
            Backend.OPENCL,
            False,
            reason=f"opencl: no device can compile a kernel ({why})",
        )
    devices = usable
    n = len(devices)
    detail = f"{'+'.join(dict.fromkeys(names))} ({n} device{'s' if n != 1 else ''})"
    return Availability(Backend.OPENCL, True, detail)


def _probe_cupy() -> Availability:
    if importlib.util.find_spec("cupy") is None:
        return Availability(
            Backend.CUPY,
            False,
            reason=f"cupy: not installed ({INSTALL_HINTS[Backend.CUPY]})",
        )
    try:
        cupy = importlib.import_module("cupy")
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return Availability(Backend.CUPY, False, reason=f"cupy: no CUDA device ({exc})")
    if count < 1:
        return Availability(Backend.CUPY, False, reason="cupy: no CUDA device")
    version = str(getattr(cupy, "__version__", ""))
    return Availability(
        Backend.CUPY, True, f"{version} ({count} device{'s' if count != 1 else ''})"
    )


_PROBES: dict[Backend, Callable[[], Availability]] = {
    Backend.NUMPY: _probe_numpy,
    Backend.NUMBA: _probe_numba,
    Backend.CYTHON: _probe_cython,
    Backend.OPENCL: _probe_opencl,
    Backend.CUPY: _probe_cupy,
}

_lock = threading.Lock()


@functools.cache
def _cached_probe(backend: Backend) -> Availability:
    with _lock:
        try:
            result = _PROBES[backend]()
        except Exception as exc:  # a probe must never take the engine down
            result = Availability(
                backend, False, reason=f"{backend}: probe failed ({exc!r})"
            )
    logger.debug("probe %s: %s", backend, result)
    return result


def probe(backend: Backend | str) -> Availability:
    """Return whether ``backend`` is usable here (cached; honours ``LIVESR_DISABLE_BACKENDS``)."""
    b = Backend.parse(backend)
    if b.value in _disabled():
        return Availability(b, False, reason=f"{b}: disabled by {DISABLE_ENV}")
    return _cached_probe(b)


def clear_probe_cache() -> None:
    """Forget cached probe results (tests)."""
    _cached_probe.cache_clear()


def import_failure_reason(backend: Backend, module: str, exc: BaseException) -> str:
    """Turn an implementation module's import error into a user-facing reason."""
    missing = getattr(exc, "name", None) or ""
    match = re.match(r"cannot import name '(\w+)' from '([\w.]+)'", str(exc))
    if match and missing == match[2] and isinstance(exc, ImportError):
        missing = (
            f"{match[2]}.{match[1]}"  # ``from . import _cython`` of a missing extension
        )
    top = missing.split(".")[0]
    if top and top in _BACKEND_MODULES.get(backend, ()):
        return f"{backend}: not installed ({INSTALL_HINTS[backend]})"
    if (
        backend is Backend.CYTHON
        and missing
        and missing != module
        and missing.startswith(module.rsplit(".", 1)[0])
    ):
        return (
            f"cython: extension {missing} not built ({INSTALL_HINTS[Backend.CYTHON]})"
        )
    if isinstance(exc, ImportError) and top:
        return f"{backend}: needs {top!r}, not installed (pip install {top})"
    return f"{backend}: import of {module} failed ({type(exc).__name__}: {exc})"


# --- synchronisation -------------------------------------------------------------

_sync_hooks: dict[Backend, list[Callable[[], None]]] = {}


def register_sync(backend: Backend | str, hook: Callable[[], None]) -> None:
    """Add a zero-argument hook that waits for ``backend``'s device (e.g. ``queue.finish``).

    An OpenCL implementation owning a command queue registers ``queue.finish`` here
    (or passes ``sync=`` to :func:`~livesr.engine.implementation`), so the engine's
    timer waits for its work.  Registering the same hook twice is a no-op.
    """
    hooks = _sync_hooks.setdefault(Backend.parse(backend), [])
    if hook not in hooks:
        hooks.append(hook)


def synchronize(backend: Backend | str) -> None:
    """Block until all work queued on ``backend``'s device has finished.

    CuPy: synchronise the current stream; OpenCL: run the registered hooks; CPU
    backends: nothing to wait for.
    """
    b = Backend.parse(backend)
    if b is Backend.CUPY:
        import sys

        cupy = sys.modules.get("cupy")  # if cupy was never imported nothing is queued
        if cupy is not None:
            cupy.cuda.get_current_stream().synchronize()
    for hook in _sync_hooks.get(b, ()):
        hook()


def report_header() -> str:
    """``backends: numpy ok | numba 0.68 ok | ... | cupy unavailable: not installed``."""
    return "backends: " + " | ".join(probe(b).summary() for b in Backend)
