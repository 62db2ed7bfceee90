"""Fused per-frame eSRRF map: engine kernel ``esrrf_map``.

``kernel(frame (H, W) float32, magnification, radius, sensitivity,
intensity_weighting, shift=(dy, dx)) -> (H*M, W*M) float32``: Catmull-Rom
magnification, Roberts-cross gradients, their half-pixel samples, radial gradient
convergence, exponent and intensity weighting in one call, NanoPyx geometry
(``shift`` in input pixels, added to every sample coordinate).

The reference (``_numpy.py``) is :func:`livesr.kernels.esrrf_frame` with
``EsrrfParams(magnification, radius, sensitivity, intensity_weighting)``.  The
fused implementations (``_numba``, ``_cython`` with OpenMP schedules static /
guided / dynamic, ``_opencl`` with a Mako template, ``_cupy``) keep the float32
RGC accumulation order; they differ from the reference by float32 rounding in
the exponent and weight table (measured <= 2e-7 of the map's maximum on the
cases).  Tolerance: ``rtol=1e-4, atol=1e-5`` on cases whose frames are
normalised to a maximum of 1 (maps <= 1), i.e. the ``1e-4 x max`` of the
backends' own tests.
"""

from __future__ import annotations

from typing import Any

from livesr.engine import Case, InputSignature, Kernel, Tolerance

__all__ = ["kernel"]


def _validate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from livesr.kernels._params import EsrrfParams, validate_frame, validate_shift

    def bind(
        frame: Any,
        magnification: Any,
        radius: Any,
        sensitivity: Any,
        intensity_weighting: Any,
        shift: Any = (0.0, 0.0),
    ) -> tuple[Any, ...]:
        return frame, magnification, radius, sensitivity, intensity_weighting, shift

    frame, m, r, s, iw, shift = bind(*args, **kwargs)
    p = EsrrfParams(magnification=m, radius=r, sensitivity=s, intensity_weighting=iw)
    frame = validate_frame(frame)
    return (
        (frame, p.magnification, p.radius, p.sensitivity, p.intensity_weighting),
        {"shift": validate_shift(shift)},
    )


def _signature(args: tuple[Any, ...], kwargs: Any) -> InputSignature:
    frame, m, r, s, iw = args[:5]
    return InputSignature.of(
        frame, magnification=m, radius=r, sensitivity=s, intensity_weighting=iw
    )


def _frame(h: int, w: int, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), dtype=np.float32)
    for _ in range(4):
        cy, cx = rng.random(2) * (h, w)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.5).astype(np.float32)
    img += 0.05 * rng.random((h, w), dtype=np.float32)
    return (img / img.max()).astype(np.float32)


def _cases() -> list[Case]:
    return [
        Case("odd_13x11_m3", (_frame(13, 11, 1), 3, 1.5, 1.0, True)),
        Case("m2_r1_s2_unweighted", (_frame(9, 12, 2), 2, 1.0, 2.0, False)),
        Case(
            "m4_shifted", (_frame(10, 9, 3), 4, 1.5, 1.0, True), {"shift": (0.3, -0.45)}
        ),
    ]


def _bench_cases(size: str) -> list[Case]:
    n = {"small": 64, "medium": 256, "large": 512}[size]
    return [Case(f"{n}x{n}_m5", (_frame(n, n, 0), 5, 1.5, 1.0, True))]


#: ``esrrf_map(frame, magnification, radius, sensitivity, intensity_weighting,
#: shift=(0, 0)) -> (H*M, W*M) float32``.
kernel = Kernel(
    "esrrf_map",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=1e-4, atol=1e-5),
    signature=_signature,
    validate=_validate,
    cases=_cases,
    bench_cases=_bench_cases,
)
