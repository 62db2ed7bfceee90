"""Which kernels exist: ``livesr.kernels.KERNEL_PACKAGES`` and their ``kernel`` objects."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from livesr.engine._kernel import Kernel


def kernel_packages() -> tuple[str, ...]:
    """The kernel package names livesr ships (``livesr.kernels.KERNEL_PACKAGES``, or ``()``)."""
    try:
        kernels = importlib.import_module("livesr.kernels")
    except ImportError:
        return ()
    return tuple(getattr(kernels, "KERNEL_PACKAGES", ()) or ())


def load_kernel(package: str) -> Kernel:
    """Import ``package`` and return its module attribute ``kernel``."""
    module = importlib.import_module(package)
    kernel = getattr(module, "kernel", None)
    if not isinstance(kernel, Kernel):
        raise AttributeError(
            f"{package} has no 'kernel' attribute of type livesr.engine.Kernel (found "
            f"{type(kernel).__name__}); declare `kernel = Kernel(...)` in its __init__.py"
        )
    return kernel


def load_kernels(packages: Iterable[str] | None = None) -> list[Kernel]:
    """The :class:`Kernel` of each package (default: :func:`kernel_packages`)."""
    return [
        load_kernel(p) for p in (kernel_packages() if packages is None else packages)
    ]
