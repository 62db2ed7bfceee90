"""The implementations of one kernel: discovered, probed, ordered, disabled.

:class:`ImplementationSet` is the part of a :class:`~livesr.engine.Kernel` that
knows which implementations exist (the modules of the kernel's folder, imported on
first use; an import failure is kept as an unavailable implementation with its
reason), which of them can run here (the backend probe, minus those disabled after
failing where another succeeded) and in which order the agent explores them.
"""

from __future__ import annotations

import threading

from livesr.engine._backends import probe
from livesr.engine._registry import (
    Registration,
    discover_modules,
    generation,
    registrations,
)
from livesr.engine._types import Backend, ImplInfo

#: Exploration order: compiled/device backends first, the reference last.
_BACKEND_ORDER = {
    Backend.CUPY: 0,
    Backend.OPENCL: 1,
    Backend.CYTHON: 2,
    Backend.NUMBA: 3,
    Backend.NUMPY: 4,
}


class ImplementationSet:
    """The implementations registered under kernel ``name`` from ``package``.

    ``lock`` is the kernel's (discovery runs once, under it).
    """

    def __init__(self, name: str, package: str, lock: threading.RLock) -> None:
        self.name = name
        self.package = package
        self._lock = lock
        self._discovered = False
        self._failures: dict[str, ImplInfo] = {}
        self._broken: dict[str, str] = {}
        self._available_cache: tuple[int, list[Registration]] | None = None

    def _discover(self) -> None:
        if self._discovered:
            return
        with self._lock:
            if self._discovered:
                return
            for f in discover_modules(self.package):
                variant = f.id.split("-", 1)[1] if "-" in f.id else ""
                self._failures[f.id] = ImplInfo(
                    f.id, f.backend, variant, False, f.reason, f.module
                )
            self._discovered = True

    def registrations(self) -> dict[str, Registration]:
        """The registered implementations by id (discovers them on first call)."""
        self._discover()
        return registrations(self.name)

    def infos(self, include_unavailable: bool = True) -> list[ImplInfo]:
        """Every implementation, sorted by id, with why it cannot run if it cannot."""
        regs = self.registrations()
        infos: dict[str, ImplInfo] = {}
        for rid, reg in regs.items():
            avail = probe(reg.backend)
            reason = "" if avail.ok else avail.reason
            if rid in self._broken:
                reason = self._broken[rid]
            infos[rid] = ImplInfo(
                rid, reg.backend, reg.variant, not reason, reason, reg.module
            )
        for fid, info in self._failures.items():
            infos.setdefault(fid, info)
        out = sorted(infos.values(), key=lambda i: i.id)
        return out if include_unavailable else [i for i in out if i.available]

    def refresh(self) -> None:
        """Probe the backends again (discovery is not repeated)."""
        from livesr.engine._backends import clear_probe_cache

        clear_probe_cache()
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the cached list of available implementations."""
        self._available_cache = None

    def disable(self, impl: str, reason: str) -> None:
        """Mark ``impl`` unavailable for this process, with ``reason``."""
        self._broken[impl] = reason
        self.invalidate()

    def available(self) -> list[Registration]:
        """The implementations that can run here, in exploration order (cached until
        the registry or :meth:`invalidate` changes it); raises if there is none."""
        cache = self._available_cache
        if cache is not None and cache[0] == generation():
            return cache[1]
        gen = generation()
        chosen = self._compute_available()
        self._available_cache = (gen, chosen)
        return chosen

    def _compute_available(self) -> list[Registration]:
        regs = self.registrations()
        ok = {i.id for i in self.infos(include_unavailable=False)}
        chosen = [r for rid, r in regs.items() if rid in ok]
        chosen.sort(key=lambda r: (_BACKEND_ORDER[r.backend], r.variant))
        if not chosen:
            reasons = (
                "; ".join(
                    f"{i.id}: {i.reason}" for i in self.infos() if not i.available
                )
                or f"no module matching _<backend>*.py in {self.package}"
            )
            raise RuntimeError(
                f"kernel {self.name!r} has no available implementation ({reasons}); "
                "run 'livesr backends' to see what is missing"
            )
        return chosen

    def get(self, impl: str) -> Registration:
        """The registration of ``impl``; raises if unknown or unavailable here."""
        regs = self.registrations()
        reg = regs.get(impl)
        if reg is None:
            info = self._failures.get(impl)
            if info is not None:
                raise RuntimeError(
                    f"{self.name}: implementation {impl!r} is unavailable: {info.reason}"
                )
            raise KeyError(
                f"{self.name}: no implementation {impl!r}; registered: "
                f"{', '.join(sorted(regs)) or 'none'}"
            )
        avail = probe(reg.backend)
        if not avail.ok:
            raise RuntimeError(
                f"{self.name}: implementation {impl!r} is unavailable: {avail.reason}"
            )
        return reg
