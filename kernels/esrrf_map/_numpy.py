"""``esrrf_map`` reference: :func:`livesr.kernels.esrrf_frame` (numpy stages)."""

from __future__ import annotations

import numpy as np

from livesr.engine import implementation

__all__ = ["esrrf_map_numpy"]


@implementation("esrrf_map", backend="numpy")
def esrrf_map_numpy(
    frame: np.ndarray,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Per-frame eSRRF map with the numpy stages (the reference).

    Parameters
    ----------
    frame : (H, W) float32
    magnification : int
    radius : float
        Input pixels.
    sensitivity : float
    intensity_weighting : bool
    shift : (dy, dx), input pixels

    Returns
    -------
    (H*M, W*M) float32
    """
    from livesr.kernels._params import EsrrfParams
    from livesr.kernels.esrrf_stack import _esrrf_frame_numpy

    params = EsrrfParams(
        magnification=magnification,
        radius=radius,
        sensitivity=sensitivity,
        intensity_weighting=intensity_weighting,
    )
    return _esrrf_frame_numpy(frame, params, shift=shift)
