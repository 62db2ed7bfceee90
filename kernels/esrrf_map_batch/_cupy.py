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
    key = (
        tuple(dev.shape[1:]),
        int(magnification),
        float(radius),
        float(sensitivity),
        bool(intensity_weighting),
        cp.cuda.Device().id,
    )
    if out is None:
        out = cp.empty((n, dev.shape[1] * key[1], dev.shape[2] * key[1]), cp.float32)
    # chunks of 8, 4, 2, 1 frames: a plan computes its compile-time batch whatever
    # the frames given, so a single frame never pays for eight
    c0 = 0
    while c0 < n:
        size = next(b for b in BATCHES if b <= n - c0)
        plan, lock = batch_plan(*key[:5], key[5], size)
        with lock:
            plan.maps_shifted(
                dev[c0 : c0 + size], sh[c0 : c0 + size], out=out[c0 : c0 + size]
            )
        c0 += size
    return cp.asnumpy(out) if on_host else out


#: frames per launch of the plans (the widest first; 8 fits the shared memory)
BATCHES = (8, 4, 2, 1)


@functools.lru_cache(maxsize=64)
def batch_plan(shape, magnification, radius, sensitivity, weighting, device_id, batch):
    """A plan mapping ``batch`` frames per launch pair, and its lock."""
    del device_id
    plan = CupyEsrrfMap(
        shape, magnification, radius, sensitivity, weighting, batch=batch
    )
    return plan, threading.Lock()
