"""Loading kernels by package name.

The engine does not know which kernels exist: the layer above owns the catalogue
(``livesr.kernels.KERNEL_PACKAGES``) and passes package names in, so the engine
imports nothing above itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from livesr.engine._kernel import Kernel


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


def load_kernels(packages: Iterable[str]) -> list[Kernel]:
    """The :class:`Kernel` of each package, in order (e.g. of
    ``livesr.kernels.KERNEL_PACKAGES``)."""
    return [load_kernel(p) for p in packages]
