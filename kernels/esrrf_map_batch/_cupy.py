"""``esrrf_map_batch`` on CUDA GPUs: taps of every frame's shift computed on the device.

Uses :class:`livesr.kernels.esrrf_map._cupy.CupyEsrrfMap` (one compiled plan per
frame shape and parameters, never per shift) and its
:meth:`~livesr.kernels.esrrf_map._cupy.CupyEsrrfMap.maps_shifted`.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from livesr.engine import implementation
from livesr.kernels._lazy import LazyModule
from livesr.kernels.esrrf_map._cupy import CupyEsrrfMap

__all__ = ["esrrf_map_batch_cupy", "batch_plan"]

cp = LazyModule("cupy")  # imported on first use, never at import


@implementation("esrrf_map_batch", backend="cupy")
def esrrf_map_batch_cupy(
    frames,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shifts=None,
    out=None,
):
    """Per-frame eSRRF maps of a batch, each frame with its own shift (CuPy/CUDA).

    Parameters
    ----------
    frames : numpy.ndarray or cupy.ndarray
        ``(N, H, W)`` float32.
    magnification, radius, sensitivity, intensity_weighting
        As :func:`esrrf_map_cupy`.
    shifts : (N, 2) array of float, optional
        ``(dy, dx)`` per frame (input px), numpy or cupy; default zeros.  The
        interpolation taps are computed on the device from these numbers.
    out : cupy.ndarray, optional
        ``(N, H·M, W·M)`` float32 C-contiguous device destination.

    Returns
    -------
    numpy.ndarray or cupy.ndarray
        ``(N, H·M, W·M)`` float32, on the host if ``frames`` was a numpy array.
    """
    on_host = isinstance(frames, np.ndarray)
    dev = cp.ascontiguousarray(cp.asarray(frames, dtype=cp.float32))
    if dev.ndim != 3:
        raise ValueError(f"frames must be 3-D (N, H, W); got shape {dev.shape}")
    n = int(dev.shape[0])
    if shifts is None:
        sh = cp.zeros((n, 2), dtype=cp.float64)
    else:
        sh = cp.ascontiguousarray(cp.asarray(shifts, dtype=cp.float64))
    plan, lock = batch_plan(
        tuple(dev.shape[1:]),
        int(magnification),
        float(radius),
        float(sensitivity),
        bool(intensity_weighting),
        cp.cuda.Device().id,
    )
    with lock:
        res = plan.maps_shifted(dev, sh, out=out)
    return cp.asnumpy(res) if on_host else res


@functools.lru_cache(maxsize=16)
def batch_plan(shape, magnification, radius, sensitivity, weighting, device_id):
    """A plan with the widest batch the shared memory allows, and its lock."""
    del device_id
    plan = CupyEsrrfMap(shape, magnification, radius, sensitivity, weighting, batch=8)
    return plan, threading.Lock()
