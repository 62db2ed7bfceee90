"""livesr.engine: the adaptive dispatcher (livesr's Liquid Engine).  Importing it starts nothing.

A *kernel* is one dispatchable operation; it owns a folder under ``kernels/`` whose
``__init__.py`` declares it and whose modules ``_<backend>[_<anything>].py`` each
register implementations.  The engine discovers them lazily (first call,
``implementations()``, ``livesr backends``), records an import failure as an
unavailable implementation with the reason, times every run to device completion,
keeps the timings per machine and input signature in a SQLite store, and lets a
delay agent (NanoPyx's equations 1-5 plus deadlines) choose per call.

Declaring a kernel, ``kernels/toy_scale/__init__.py``::

    from livesr.engine import Case, Kernel, Tolerance

    def _cases():
        import numpy as np
        x = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
        return [Case("small", (x,), {"factor": 2.0})]

    kernel = Kernel("toy_scale", package=__name__, reference="numpy",
                    tolerance=Tolerance(rtol=1e-6, atol=0.0), cases=_cases)

One implementation per file, ``kernels/toy_scale/_numba.py``::

    import numba
    from livesr.engine import implementation

    @implementation("toy_scale", backend="numba")
    def toy_scale_numba(x, factor=2.0):
        return _scale(x, factor)

    @numba.njit(cache=True)
    def _scale(x, factor):
        return x * factor

Using it (from the kernels layer or above)::

    from livesr.kernels.toy_scale import kernel as toy_scale
    y = toy_scale(x, factor=2.0)                    # dispatched, timed, recorded
    y = toy_scale(x, factor=2.0, deadline_s=0.005)  # prefer what meets 5 ms
    y = toy_scale.using("numpy")(x, factor=2.0)     # exactly this implementation
    toy_scale.implementations()                     # [ImplInfo(id='numba', ...), ...]
"""

from __future__ import annotations

from livesr.engine._agent import AgentConfig, Decision, DelayAgent
from livesr.engine._backends import (
    Availability,
    probe,
    register_sync,
    report_header,
    synchronize,
)
from livesr.engine._catalog import load_kernel, load_kernels
from livesr.engine._delay_model import Stats
from livesr.engine._kernel import BENCH_SIZES, Kernel
from livesr.engine._kernel_stats import KernelStats
from livesr.engine._registry import impl_id, implementation
from livesr.engine._store import (
    BenchmarkStore,
    cache_dir,
    default_store,
    set_default_store,
)
from livesr.engine._types import (
    Backend,
    Case,
    DeadlineMiss,
    ImplInfo,
    InputSignature,
    Tolerance,
    bucket_dim,
    default_signature,
)

__all__ = [
    "BENCH_SIZES",
    "AgentConfig",
    "Availability",
    "Backend",
    "BenchmarkStore",
    "Case",
    "DeadlineMiss",
    "Decision",
    "DelayAgent",
    "ImplInfo",
    "InputSignature",
    "Kernel",
    "KernelStats",
    "Stats",
    "Tolerance",
    "bucket_dim",
    "cache_dir",
    "default_signature",
    "default_store",
    "impl_id",
    "implementation",
    "load_kernel",
    "load_kernels",
    "probe",
    "register_sync",
    "report_header",
    "set_default_store",
    "synchronize",
]
