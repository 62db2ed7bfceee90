"""Radial gradient convergence (RGC), the core of eSRRF, as NanoPyx 2.1.5.

``radial_gradient_convergence(gx2, gy2, intensity, params)`` with half-pixel
gradients ``(2H+1, 2W+1)`` float32 and magnified intensity ``(H*M, W*M)`` float32
returns ``(H*M, W*M)`` float32. ``_numpy.py`` is the reference implementation.

Engine kernel ``rgc`` (:data:`kernel`): ``kernel(gx2, gy2, intensity, params)``,
same arguments and result (``intensity`` may be ``None`` without weighting).
The compiled implementations loop per output pixel over the window offsets in the
reference's order with float32 sums (``_common`` documents the sample rule);
the only differences are the order-preserving float32 rounding of the exponent
(``powf`` vs numpy) and, on GPUs, the compiler's ``pow``: tolerance ``rtol=1e-5``
plus ``atol=1e-6`` per unit of intensity (cases have intensities <= 1).
Implementations: ``_numpy`` (reference), ``_numba``, ``_cython`` (OpenMP),
``_opencl`` (Mako), ``_cupy`` (RawKernel).
"""

from __future__ import annotations

from typing import Any

from livesr.engine import Case, Kernel, Tolerance
from livesr.kernels._params import EsrrfParams
from livesr.kernels.rgc._numpy import (
    offset_tables,
    radial_gradient_convergence,
    window_tables,
)

__all__ = ["kernel", "offset_tables", "radial_gradient_convergence", "window_tables"]


def _validate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import numpy as np

    def bind(gx2: Any, gy2: Any, intensity: Any, params: Any) -> tuple[Any, ...]:
        return gx2, gy2, intensity, params

    gx2, gy2, intensity, params = bind(*args, **kwargs)
    if not isinstance(params, EsrrfParams):
        raise TypeError(f"params must be an EsrrfParams, got {type(params).__name__}")
    c = np.ascontiguousarray
    gx2 = c(gx2, dtype=np.float32)
    gy2 = c(gy2, dtype=np.float32)
    if intensity is not None:
        intensity = c(intensity, dtype=np.float32)
    return (gx2, gy2, intensity, params), {}


def _inputs(h: int, w: int, params: EsrrfParams, seed: int) -> tuple[Any, ...]:
    import numpy as np

    from livesr.kernels.catmull_rom import magnify, upsample_gradient
    from livesr.kernels.roberts_cross import roberts_cross

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), dtype=np.float32)
    for _ in range(3):
        cy, cx = rng.random(2) * (h, w)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0).astype(np.float32)
    img += 0.05 * rng.random((h, w), dtype=np.float32)
    img /= img.max()
    m = params.magnification
    gx, gy = roberts_cross(img)
    shift = (0.3, -0.2) if params.geometry == "corrected" else (0.0, 0.0)
    g = params.geometry
    return (
        upsample_gradient(gx, m, shift=shift, geometry=g),
        upsample_gradient(gy, m, shift=shift, geometry=g),
        magnify(img, m, shift=shift, geometry=g)
        if params.intensity_weighting
        else None,
        params,
    )


def _cases() -> list[Case]:
    return [
        Case("odd_11x9_m3", _inputs(11, 9, EsrrfParams(magnification=3), 1)),
        Case(
            "m2_r1_s2_unweighted",
            _inputs(
                7,
                12,
                EsrrfParams(
                    magnification=2,
                    radius=1.0,
                    sensitivity=2.0,
                    intensity_weighting=False,
                ),
                2,
            ),
        ),
        Case(
            "m4_r2_corrected_shift",
            _inputs(
                8, 7, EsrrfParams(magnification=4, radius=2.0, geometry="corrected"), 3
            ),
        ),
    ]


def _bench_cases(size: str) -> list[Case]:
    n = {"small": 32, "medium": 128, "large": 256}[size]
    return [Case(f"{n}x{n}_m5", _inputs(n, n, EsrrfParams(magnification=5), 0))]


#: ``rgc(gx2, gy2, intensity, params) -> (H*M, W*M) float32``.
kernel = Kernel(
    "rgc",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=1e-5, atol=1e-6),
    validate=_validate,
    cases=_cases,
    bench_cases=_bench_cases,
    params=EsrrfParams,
)
