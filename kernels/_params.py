"""Parameters and input validation shared by the eSRRF kernels.

:class:`EsrrfParams` holds the per-frame parameters of eSRRF and derives the
constants NanoPyx 2.1.5 computes from them *in float32* (sigma, the cut-off
distance, the window offsets and the zero margin), so every implementation uses
exactly the same numbers.  ``validate_*`` helpers turn bad input into errors that
name the parameter, the value received and the valid range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GEOMETRIES: tuple[str, ...] = ("nanopyx", "corrected")
TEMPORAL_MODES: tuple[str, ...] = ("avg", "var", "tac2")

#: NanoPyx reads gradients on a grid twice as fine as the input (half pixels).
GRADIENT_UPSAMPLING = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class EsrrfParams:
    """Per-frame eSRRF parameters.

    Parameters
    ----------
    magnification : int
        Output pixels per input pixel along each axis, ``>= 1`` (NanoPyx default 5).
    radius : float
        Radius of the radial-gradient-convergence ring in input pixels, ``> 0``
        (NanoPyx default 1.5). The FWHM of the distance weight is ``radius``.
    sensitivity : float
        Exponent applied to the RGC value, ``>= 0``. As in NanoPyx 2.1.5 it is
        only applied when ``sensitivity > 1`` (values ``<= 1`` mean "no exponent").
    intensity_weighting : bool
        Multiply RGC by the magnified intensity (NanoPyx default ``True``).
    geometry : {"nanopyx", "corrected"}
        ``"nanopyx"`` reproduces NanoPyx's numbers, including its +0.45 input-pixel
        displacement towards +x/+y; ``"corrected"`` samples at the true pixel
        centres so the image is co-registered with the input (see
        :func:`livesr.kernels.esrrf`).
    """

    magnification: int = 5
    radius: float = 1.5
    sensitivity: float = 1.0
    intensity_weighting: bool = True
    geometry: str = "nanopyx"

    def __post_init__(self) -> None:
        m = self.magnification
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(
                f"magnification must be an integer >= 1, got {m!r}; "
                "pass e.g. magnification=5"
            )
        object.__setattr__(self, "magnification", int(m))
        r = _as_float("radius", self.radius)
        if not (math.isfinite(r) and r > 0):
            raise ValueError(
                f"radius must be a finite number > 0 (input pixels), got {r!r}"
            )
        object.__setattr__(self, "radius", r)
        s = _as_float("sensitivity", self.sensitivity)
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"sensitivity must be a finite number >= 0, got {s!r}")
        object.__setattr__(self, "sensitivity", s)
        if not isinstance(self.intensity_weighting, (bool, np.bool_)):
            raise ValueError(
                "intensity_weighting must be True or False, "
                f"got {self.intensity_weighting!r}"
            )
        object.__setattr__(self, "intensity_weighting", bool(self.intensity_weighting))
        if self.geometry not in GEOMETRIES:
            raise ValueError(
                f"geometry must be one of {GEOMETRIES}, got {self.geometry!r}"
            )

    # --- constants exactly as NanoPyx derives them (C float arithmetic) -------------
    @property
    def sigma(self) -> float:
        """Sigma of the distance weight, ``radius / 2.355`` rounded to float32."""
        return float(np.float32(self.radius / 2.355))

    @property
    def two_sigma_squared(self) -> float:
        """``2 sigma^2`` in float32 (NanoPyx's ``tSS``)."""
        s = np.float32(self.sigma)
        return float(np.float32(np.float32(2) * s * s))

    @property
    def cutoff(self) -> float:
        """Largest sample distance kept, ``2 sigma + 1``, float32 (NanoPyx's tSO)."""
        return float(np.float32(np.float32(2) * np.float32(self.sigma) + np.float32(1)))

    @property
    def window(self) -> tuple[int, int]:
        """Half-pixel window offsets ``[start, stop) = [-int(2R), int(2R + 1))``."""
        r32 = np.float32(self.radius)
        start = -int(np.float32(2) * r32)
        stop = int(np.float32(2) * r32 + np.float32(1))
        return start, stop

    @property
    def margin(self) -> int:
        """Output pixels left at zero on every side, ``int(float32(R) * M)``."""
        return int(float(np.float32(self.radius)) * self.magnification)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def validate_frame(frame: Any, name: str = "frame") -> np.ndarray:
    """Return ``frame`` as a C-contiguous float32 (H, W) array or raise ValueError.

    Parameters
    ----------
    frame : array-like, (H, W), any real dtype
    name : str
        Parameter name used in error messages.
    """
    arr = np.asarray(frame)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D image (rows, columns), "
            f"got an array of shape {arr.shape}"
        )
    _check_real(arr, name)
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"{name} must have at least 1 row and 1 column, got shape {arr.shape}"
        )
    with np.errstate(over="ignore"):  # too large for float32 -> inf, reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) (NaN or inf, possibly "
            "after the float32 cast); eSRRF needs finite intensities: replace or "
            "mask them first"
        )
    return out


def _check_real(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must have a real numeric dtype (bool, int, uint or float), "
            f"got {arr.dtype}"
        )


def stack_shape(stack: Any) -> tuple[int, int, int]:
    """Validate the shape of a stack-like and return ``(t, H, W)``.

    ``stack`` is a 2-D image (one frame) or a 3-D (t, H, W) array-like that supports
    ``len()``, ``stack[i]`` and ``.shape`` (numpy array, memmap, zarr array).
    """
    shape = getattr(stack, "shape", None)
    if shape is None:
        stack = np.asarray(stack)
        shape = stack.shape
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise ValueError(
            "stack must be 2-D (rows, columns) or 3-D (frames, rows, columns), "
            f"got shape {shape}"
        )
    if shape[0] == 0:
        raise ValueError("stack is empty (0 frames); pass at least one frame")
    if shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"stack frames must be at least 1x1, got shape {shape}")
    dtype = getattr(stack, "dtype", None)
    if dtype is not None:
        _check_real(np.empty(0, dtype=np.dtype(dtype)), "stack")
    return shape  # type: ignore[return-value]


def validate_temporal(temporal: Any) -> str:
    """Normalise ``temporal`` to one of :data:`TEMPORAL_MODES` or raise ValueError."""
    if isinstance(temporal, str) and temporal.lower() in TEMPORAL_MODES:
        return temporal.lower()
    raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {temporal!r}")


def validate_frames_per_timepoint(value: Any) -> int:
    """``frames_per_timepoint`` must be an integer >= 0 (0 = all frames, one block)."""
    return validate_int("frames_per_timepoint", value, 0, ">= 0 (0 = all frames)")


def validate_shift(shift: Any) -> tuple[float, float]:
    """``shift`` must be two finite numbers ``(dy, dx)`` in input pixels."""
    try:
        dy, dx = (float(v) for v in shift)
    except (TypeError, ValueError):
        raise ValueError(
            f"shift must be two numbers (dy, dx) in input pixels, got {shift!r}"
        ) from None
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise ValueError(
            f"shift must be finite (dy, dx) in input pixels, got {shift!r}"
        )
    return dy, dx


def validate_out(out: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """``out`` (None, or a float32 array of ``shape`` to write into), checked."""
    if out is not None and (
        not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32
    ):
        raise ValueError(
            f"out must be a float32 array of shape {shape}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    return out


def validate_int(name: str, value: Any, minimum: int, what: str) -> int:
    """``value`` as an int ``>= minimum`` (no bool) or a ValueError reading
    ``"{name} must be an integer {what}, got {value!r}"`` (``what`` e.g.
    ``">= 1 (frames)"``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(f"{name} must be an integer {what}, got {value!r}")
    return int(value)


def validate_flag(name: str, value: Any, what: str = "True or False") -> bool:
    """``value`` as a bool (``bool`` or ``numpy.bool_`` only) or a ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return bool(value)


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """The validated settings of one batch-eSRRF call (:func:`validate_batch`)."""

    params: EsrrfParams
    temporal: str
    frames_per_timepoint: int
    macro_pixel_correction: bool


def validate_batch(
    *,
    magnification: Any,
    radius: Any,
    sensitivity: Any,
    intensity_weighting: Any,
    geometry: Any,
    temporal: Any,
    frames_per_timepoint: Any,
    macro_pixel_correction: Any,
) -> BatchSettings:
    """Validate the parameters of a batch eSRRF (:func:`livesr.kernels.esrrf`, the
    tiled and sweep variants) in one place; errors name the parameter, the value and
    the valid range."""
    params = EsrrfParams(
        magnification=magnification,
        radius=radius,
        sensitivity=sensitivity,
        intensity_weighting=intensity_weighting,
        geometry=geometry,
    )
    return BatchSettings(
        params,
        validate_temporal(temporal),
        validate_frames_per_timepoint(frames_per_timepoint),
        validate_flag("macro_pixel_correction", macro_pixel_correction),
    )


def validate_temporal_in(temporal: Any, allowed: tuple[str, ...], where: str = "") -> str:
    """:func:`validate_temporal` restricted to ``allowed`` modes (``where`` names the
    caller in the error, e.g. ``" for the sweep"``)."""
    mode = validate_temporal(temporal)
    if mode not in allowed:
        choices = " or ".join(repr(a) for a in allowed)
        raise ValueError(f"temporal must be {choices}{where}, got {temporal!r}")
    return mode
