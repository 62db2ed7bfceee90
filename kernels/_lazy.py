"""A module proxy that imports on first attribute access.

Backend modules (``_cupy.py``, ``_opencl.py``) refer to ``cp``/``cl`` throughout; binding
those names to a :class:`LazyModule` keeps ``import livesr.kernels.<k>._cupy`` from
loading CuPy or pyopencl (the engine's backend probe decides availability first).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stand-in for ``import <name>`` that imports the module when first used."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = importlib.import_module(self._name)
            self._module = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded"
        return f"<lazy module {self._name!r} ({state})>"
