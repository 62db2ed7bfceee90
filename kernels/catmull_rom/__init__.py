"""Catmull-Rom (Keys a = -0.5) sampling and magnification, NanoPyx conventions.

``_numpy.py`` is the readable reference every other implementation is checked
against. Shapes: ``magnify(image (H, W) float32, M) -> (H*M, W*M) float32``;
``upsample_gradient(g (H, W) float32, M) -> (2H+1, 2W+1) float32``.

Engine kernel ``catmull_rom`` (:data:`kernel`): the separable sampler both of them
use, ``kernel(image (H, W) float32, row_coords (k,) float64, col_coords (l,)
float64) -> (k, l) float32`` (coordinates in input pixels, corner convention),
equal to :func:`catmull_rom_sample`.  Every implementation takes the same float64
taps (:func:`sample_taps`, computed on the host) and sums rows first then
columns in double precision, so they agree to float32 rounding.  Implementations:
``_numpy`` (reference), ``_numba``, ``_cython`` (OpenMP), ``_opencl`` (Mako
template ``_opencl.cl.mako``), ``_cupy`` (RawKernel).
"""

from __future__ import annotations

from typing import Any

from livesr.engine import Case, InputSignature, Kernel, Tolerance
from livesr.kernels.catmull_rom._numpy import (
    catmull_rom_sample,
    cubic_kernel,
    gradient_coordinates,
    magnification_coordinates,
    magnify,
    sample_taps,
    sample_weights,
    upsample_gradient,
)

__all__ = [
    "catmull_rom_sample",
    "cubic_kernel",
    "gradient_coordinates",
    "kernel",
    "magnification_coordinates",
    "magnify",
    "sample_taps",
    "sample_weights",
    "upsample_gradient",
]


def _validate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import numpy as np

    def bind(image: Any, row_coords: Any, col_coords: Any) -> tuple[Any, Any, Any]:
        return image, row_coords, col_coords

    image, rows, cols = bind(*args, **kwargs)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    rows = np.ascontiguousarray(rows, dtype=np.float64).reshape(-1)
    cols = np.ascontiguousarray(cols, dtype=np.float64).reshape(-1)
    return (image, rows, cols), {}


def _signature(args: tuple[Any, ...], kwargs: Any) -> InputSignature:
    image, rows, cols = args[:3]
    return InputSignature.of(image, out_rows=len(rows), out_cols=len(cols))


def _cases() -> list[Case]:
    import numpy as np

    rng = np.random.default_rng(11)
    a = rng.random((13, 9), dtype=np.float32) * 100
    b = rng.random((6, 17), dtype=np.float32) - 0.5
    return [
        Case(
            "magnify_odd_m3",
            (a, magnification_coordinates(13, 3), magnification_coordinates(9, 3)),
        ),
        Case(
            "magnify_shift_corrected_m4",
            (
                b,
                magnification_coordinates(6, 4, 0.37, "corrected"),
                magnification_coordinates(17, 4, -1.6, "corrected"),
            ),
        ),
        Case(
            "gradient_grid_m5",
            (b, gradient_coordinates(6, 5, -0.25), gradient_coordinates(17, 5, 2.2)),
        ),
    ]


def _bench_cases(size: str) -> list[Case]:
    import numpy as np

    n = {"small": 64, "medium": 256, "large": 1024}[size]
    img = np.random.default_rng(0).random((n, n), dtype=np.float32)
    c = magnification_coordinates(n, 5)
    return [Case(f"magnify_{n}_m5", (img, c, c))]


#: ``catmull_rom(image, row_coords, col_coords) -> (k, l) float32``.  Sums of the
#: same float64 products in the same order: equal up to float32 rounding of the
#: final value (FMA contraction on GPUs: a few ulp).
kernel = Kernel(
    "catmull_rom",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=2e-6, atol=1e-6),
    signature=_signature,
    validate=_validate,
    cases=_cases,
    bench_cases=_bench_cases,
)
