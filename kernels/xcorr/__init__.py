"""livesr.kernels.xcorr: cross-correlation and sub-pixel peak location.

``_numpy`` is the plain reference (oracle) implementation; faster backends live
beside it and must agree with it. See :mod:`livesr.kernels.xcorr._numpy` for the
lag and map conventions (a lag (dy, dx) > 0 means the image moved towards larger
row / column relative to the reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from livesr.engine import Case, InputSignature, Kernel, Tolerance
from livesr.kernels.xcorr._numpy import (
    Registration,
    correlation_spectrum,
    cross_correlation_map,
    integer_peak,
    peak_to_sidelobe_ratio,
    prepare_spectrum,
    register,
    register_spectra,
    subpixel_peak,
    tukey_window,
    upsampled_peak,
    upsampled_peak_axes,
)

__all__ = [
    "Registration",
    "kernel",
    "correlation_spectrum",
    "cross_correlation_map",
    "integer_peak",
    "peak_to_sidelobe_ratio",
    "prepare_spectrum",
    "register",
    "register_spectra",
    "subpixel_peak",
    "tukey_window",
    "upsampled_peak",
    "upsampled_peak_axes",
]


def _validate(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    import numpy as np

    def bind(cross_spectrum, lag, *, upsample=20, region=1.0, sweeps=3):  # type: ignore[no-untyped-def]
        return cross_spectrum, lag, upsample, region, sweeps

    x, lag, upsample, region, sweeps = bind(*args, **kwargs)
    if type(x).__module__.split(".", 1)[0] == "cupy":
        # a device spectrum stays on its device (the cupy implementation takes it
        # as it is; callers pass ``adapt`` to copy it for a host implementation)
        import cupy

        x = cupy.ascontiguousarray(x, dtype=cupy.complex128)
    else:
        x = np.ascontiguousarray(x, dtype=np.complex128)
    if x.ndim != 2:
        raise ValueError(f"cross_spectrum must be 2-D (h, w), got shape {x.shape}")
    if int(upsample) < 1 or not region > 0 or int(sweeps) < 1:
        raise ValueError(
            f"upsample={upsample!r}, region={region!r}, sweeps={sweeps!r}: "
            "expected upsample >= 1, region > 0, sweeps >= 1"
        )
    return (x, (float(lag[0]), float(lag[1]))), {
        "upsample": int(upsample),
        "region": float(region),
        "sweeps": int(sweeps),
    }


def _signature(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> InputSignature:
    # called with validated or with raw keyword arguments (livesr bench): same defaults
    return InputSignature.of(
        args[0],
        upsample=int(kwargs.get("upsample", 20)),
        region=float(kwargs.get("region", 1.0)),
        sweeps=int(kwargs.get("sweeps", 3)),
    )


def _cases() -> list[Case]:
    import numpy as np

    out = []
    for name, (h, w), d, kw in [
        ("odd_33x40", (33, 40), (1.3, -2.6), {}),
        (
            "48x31_up10_r1.5",
            (48, 31),
            (-0.4, 0.45),
            {"upsample": 10, "region": 1.5, "sweeps": 2},
        ),
    ]:
        rng = np.random.default_rng(h)
        fa = np.fft.fft2(rng.random((h, w)))
        ky, kx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
        fa *= np.exp(-(ky**2 + kx**2) * 60)
        x = np.conj(fa) * (fa * np.exp(-2j * np.pi * (ky * d[0] + kx * d[1])))
        x /= np.abs(x).sum()
        out.append(Case(name, (x, (round(d[0]), round(d[1]))), kw))
    return out


#: The dispatchable kernel: sub-pixel refinement of a cross-correlation peak
#: (:func:`upsampled_peak_axes`), numpy reference; numba, Cython, OpenCL, CuPy beside it.
kernel = Kernel(
    "xcorr",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=0.0, atol=1e-9),  # measured ~1e-11 px
    signature=_signature,
    validate=_validate,
    cases=_cases,
)
