"""Macro-pixel correction of eSRRF images, as NanoPyx 2.1.5.

``macro_pixel_correction(image (Y, X) or (n, Y, X), magnification) -> float32``.

Engine kernel ``macro_pixel`` (:data:`kernel`): ``kernel(image, magnification)``,
same arguments and result.  Compiled implementations: per slice, the per-phase
sums of ``float32(v / (H W))`` in float64 (macro-pixel rows outer, columns inner;
numpy's reduction order may differ, invisible after the float32 rounding except
in rare ties), then the division of every pixel by its phase's mean.  Tolerance
``rtol=1e-6, atol=1e-7`` (results are of order 1).  Implementations: ``_numpy``
(reference), ``_numba``, ``_cython`` (OpenMP), ``_opencl`` (Mako), ``_cupy``
(RawKernel).
"""

from __future__ import annotations

from typing import Any

from livesr.engine import Case, InputSignature, Kernel, Tolerance
from livesr.kernels.macro_pixel._numpy import macro_pixel_correction

__all__ = ["kernel", "macro_pixel_correction"]


def _validate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import numpy as np

    def bind(image: Any, magnification: Any) -> tuple[Any, Any]:
        return image, magnification

    image, m = bind(*args, **kwargs)
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"magnification must be an integer >= 1, got {m!r}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"image must be 2-D (Y, X) or 3-D (n, Y, X), got shape {image.shape}"
        )
    return (image, int(m)), {}


def _signature(args: tuple[Any, ...], kwargs: Any) -> InputSignature:
    return InputSignature.of(args[0], magnification=args[1])


def _cases() -> list[Case]:
    import numpy as np

    rng = np.random.default_rng(14)
    a = rng.random((15, 20), dtype=np.float32) * 50
    a[:3] = 0  # a zero margin, as after RGC
    b = rng.random((2, 17, 13), dtype=np.float32)  # not multiples of M: partial tail
    c = rng.random((4, 6), dtype=np.float32)
    c[:, ::3] = 0  # a phase of zeros: left undivided
    return [
        Case("m5_15x20_margin", (a, 5)),
        Case("m4_stack_partial", (b, 4)),
        Case("m3_zero_phase", (c, 3)),
        Case("m7_too_small", (c, 7)),
    ]


def _bench_cases(size: str) -> list[Case]:
    import numpy as np

    n = {"small": 320, "medium": 1280, "large": 2560}[size]
    return [
        Case(
            f"{n}x{n}_m5",
            (np.random.default_rng(0).random((n, n), dtype=np.float32), 5),
        )
    ]


#: ``macro_pixel(image, magnification) -> float32`` of ``image``'s shape.
kernel = Kernel(
    "macro_pixel",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=1e-6, atol=1e-7),
    signature=_signature,
    validate=_validate,
    cases=_cases,
    bench_cases=_bench_cases,
)
