"""Temporal step of eSRRF: AVG, VAR (ddof 0), TAC2 over the per-frame maps.

``TemporalAccumulator(mode, shape)`` streams (float64 running sums, a few maps of
memory); ``temporal_two_pass(maps (n, Y, X), mode)`` is NanoPyx's float32 two-pass
version, kept for parity tests.

Engine kernel ``temporal`` (:data:`kernel`): ``kernel(maps (n, Y, X) float32, mode)
-> (Y, X) float32``, the block statistic exactly as :class:`TemporalAccumulator`
computes it (float64 one-pass sums about the first map; the reference feeds the
maps to an accumulator one by one).  The compiled implementations run the same
per-pixel recurrence in double precision, so they agree to float32 rounding
(tolerance ``rtol=1e-6``, ``atol=1e-7`` for maps of order 1; OpenCL devices
without ``cl_khr_fp64`` would sum in float and are not expected to meet it).
Implementations: ``_numpy`` (reference), ``_numba``, ``_cython`` (OpenMP),
``_opencl`` (Mako), ``_cupy`` (RawKernel).
"""

from __future__ import annotations

from typing import Any

from livesr.engine import Case, InputSignature, Kernel, Tolerance
from livesr.kernels.temporal._numpy import TemporalAccumulator, temporal_two_pass

__all__ = ["MODES", "TemporalAccumulator", "kernel", "temporal_two_pass"]

#: Mode codes the compiled implementations use (index in this tuple).
MODES: tuple[str, ...] = ("avg", "var", "tac2")


def _validate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import numpy as np

    from livesr.kernels._params import validate_temporal

    def bind(maps: Any, mode: Any) -> tuple[Any, Any]:
        return maps, mode

    maps, mode = bind(*args, **kwargs)
    mode = validate_temporal(mode)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise ValueError(f"maps must be a non-empty (n, Y, X) array, got {maps.shape}")
    return (maps, mode), {}


def _signature(args: tuple[Any, ...], kwargs: Any) -> InputSignature:
    return InputSignature.of(args[0], mode=args[1])


def _cases() -> list[Case]:
    import numpy as np

    rng = np.random.default_rng(13)
    base = rng.random((9, 7), dtype=np.float32)
    maps = (base + 0.1 * rng.standard_normal((6, 9, 7))).astype(np.float32)
    one = rng.random((1, 5, 3), dtype=np.float32)
    return [
        Case("avg_6x9x7", (maps, "avg")),
        Case("var_6x9x7", (maps, "var")),
        Case("tac2_6x9x7", (maps, "tac2")),
        Case("tac2_single_nan", (one, "tac2")),
        Case("var_single", (one, "var")),
    ]


def _bench_cases(size: str) -> list[Case]:
    import numpy as np

    n = {"small": 64, "medium": 256, "large": 1024}[size]
    maps = np.random.default_rng(0).random((10, n, n), dtype=np.float32)
    return [Case(f"{mode}_10x{n}x{n}", (maps, mode)) for mode in MODES]


#: ``temporal(maps, mode) -> (Y, X) float32``.
kernel = Kernel(
    "temporal",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=1e-6, atol=1e-7),
    signature=_signature,
    validate=_validate,
    cases=_cases,
    bench_cases=_bench_cases,
)
