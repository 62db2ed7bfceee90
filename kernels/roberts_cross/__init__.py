"""Roberts-cross gradients as NanoPyx 2.1.5 computes them.

``roberts_cross(image (H, W) float32) -> (gx, gy)``, each (H, W) float32 (column
gradient first). ``_numpy.py`` is the reference implementation.

Engine kernel ``roberts_cross`` (:data:`kernel`): same call and result.  Every
implementation evaluates ``((a - b) + c) - d`` in float32 left to right, as the
reference: results are bit-identical (tolerance 1e-6 relative for safety).
Implementations: ``_numpy`` (reference), ``_numba``, ``_cython`` (OpenMP),
``_opencl`` (Mako), ``_cupy`` (ElementwiseKernel).
"""

from __future__ import annotations

from typing import Any

from livesr.engine import Case, Kernel, Tolerance
from livesr.kernels.roberts_cross._numpy import roberts_cross

__all__ = ["kernel", "roberts_cross"]


def _validate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import numpy as np

    def bind(image: Any) -> Any:
        return image

    image = np.ascontiguousarray(bind(*args, **kwargs), dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(
            f"image must be a non-empty 2-D (H, W) array, got {image.shape}"
        )
    return (image,), {}


def _cases() -> list[Case]:
    import numpy as np

    rng = np.random.default_rng(12)
    return [
        Case("odd_13x9", (rng.random((13, 9), dtype=np.float32) * 1000,)),
        Case("row_1x7", (rng.random((1, 7), dtype=np.float32) - 0.5,)),
        Case("col_8x1", (rng.random((8, 1), dtype=np.float32),)),
    ]


def _bench_cases(size: str) -> list[Case]:
    import numpy as np

    n = {"small": 64, "medium": 256, "large": 1024}[size]
    return [
        Case(f"{n}x{n}", (np.random.default_rng(0).random((n, n), dtype=np.float32),))
    ]


#: ``roberts_cross(image) -> (gx, gy)``: the same float32 operations in the same order.
kernel = Kernel(
    "roberts_cross",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=1e-6, atol=1e-6),
    validate=_validate,
    cases=_cases,
    bench_cases=_bench_cases,
)
