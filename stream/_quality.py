"""Cheap per-image quality metric published with every SR image."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["QUALITY_METRIC", "quality_metric"]

#: Name of the quality metric published with every image.
QUALITY_METRIC = "normalized_gradient_energy"


def quality_metric(image: np.ndarray) -> float:
    """Cheap sharpness of an SR image: ``mean(|grad I|^2) / mean(I)^2`` (finite pixels).

    Dimensionless, O(pixels), higher = more high-frequency content relative to the
    brightness (it rises as an eSRRF image sharpens and with noise; compare images of
    one run).  NaN for an empty or zero image.
    """
    img = np.asarray(image)
    if img.dtype not in (np.float32, np.float64):
        img = img.astype(np.float64)
    if img.ndim != 2 or min(img.shape) < 2:
        return math.nan
    finite = np.isfinite(img)
    if not finite.all():
        img = np.where(finite, img, 0)
    mean = float(img.mean(dtype=np.float64))
    if mean == 0.0:
        return math.nan
    # One pass per axis with BLAS dot products: ~6x faster than squaring in float64
    # on a 1280^2 SR image (it runs on the processing thread at every window).
    gy = np.diff(img, axis=0).ravel()
    gx = np.diff(img, axis=1).ravel()
    energy = float(np.dot(gy, gy)) / gy.size + float(np.dot(gx, gx)) / gx.size
    return energy / (mean * mean)
