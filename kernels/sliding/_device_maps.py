"""Maps and host helpers of the device window (:class:`DeviceSlidingEsrrf`).

The engine-dispatched per-frame and batch maps that hand the CuPy implementation
the device copies (:func:`engine_device_map`, :func:`engine_device_map_batch`),
the probe :func:`device_available`, pinned host buffers, the device quality
metric and the frame checks.  CuPy is imported on first use only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from livesr.kernels._lazy import LazyModule
from livesr.kernels._params import EsrrfParams

__all__ = [
    "DeviceBatchMap",
    "DeviceFrameMap",
    "check_frames",
    "device_available",
    "device_quality",
    "engine_device_map",
    "engine_device_map_batch",
    "per_frame_batch",
    "pinned",
]

cp: Any = LazyModule("cupy")


def device_available() -> tuple[bool, str]:
    """Whether a CUDA device is usable through CuPy, and why not when it is not."""
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, CUDARuntimeError, driver errors
        return False, f"cupy: {type(exc).__name__}: {exc}"
    if n < 1:
        return False, "cupy: no CUDA device"
    return True, ""



#: ``fn(host_frame, device_frame, params, shift, deadline_s) -> map`` (cupy or numpy)
DeviceFrameMap = Callable[..., Any]
#: ``fn(host_frames, device_frames, params, shifts, deadline_s, out) -> maps``
#: (``(N, H*M, W*M)`` cupy or numpy; a cupy result may be ``out`` itself)
DeviceBatchMap = Callable[..., Any]


def engine_device_map(
    host: np.ndarray,
    dev: Any,
    params: EsrrfParams,
    shift: tuple[float, float],
    deadline_s: float | None,
) -> Any:
    """The engine-dispatched ``esrrf_map`` with the device copy for the CuPy backend."""
    from livesr.kernels.esrrf_map import kernel

    def adapt(backend: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if backend == "cupy":
            return (dev, *args[1:]), kwargs
        return args, kwargs

    kw: dict[str, Any] = {} if deadline_s is None else {"deadline_s": deadline_s}
    return kernel(
        host,
        params.magnification,
        params.radius,
        params.sensitivity,
        params.intensity_weighting,
        shift=shift,
        adapt=adapt,
        **kw,
    )


def engine_device_map_batch(
    host: np.ndarray,
    dev: Any,
    params: EsrrfParams,
    shifts: np.ndarray,
    deadline_s: float | None,
    out: Any = None,
) -> Any:
    """The engine-dispatched ``esrrf_map_batch``: the CuPy backend gets the device
    frames (and writes into ``out``); a CPU backend maps the host frames.

    ``deadline_s`` is the throughput deadline of the whole batch (``N`` frame
    intervals), see :func:`livesr.kernels.framemap.batch_deadline`.
    """
    from livesr.kernels.esrrf_map_batch import kernel

    def adapt(backend: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if backend == "cupy":
            kwargs = dict(kwargs)
            if out is not None:
                kwargs["out"] = out
            return (dev, *args[1:]), kwargs
        return args, kwargs

    kw: dict[str, Any] = {} if deadline_s is None else {"deadline_s": deadline_s}
    return kernel(
        host,
        params.magnification,
        params.radius,
        params.sensitivity,
        params.intensity_weighting,
        shifts=shifts,
        adapt=adapt,
        **kw,
    )


def per_frame_batch(frame_map: DeviceFrameMap) -> DeviceBatchMap:
    """A batch map calling a per-frame device map (``frame_map``) once per frame."""

    def batch(host, dev, params, shifts, deadline_s, out=None):  # type: ignore[no-untyped-def]
        n = len(shifts)
        per = None if deadline_s is None else deadline_s / n
        for k in range(n):
            m = frame_map(host[k], dev[k], params, tuple(shifts[k]), per)
            if isinstance(m, np.ndarray):
                out[k].set(np.ascontiguousarray(m, dtype=np.float32))
            else:
                out[k] = m
        return out

    return batch


def device_quality(img: Any) -> float:
    """``normalized_gradient_energy`` of a device image, on the device:
    ``mean(|grad I|^2) / mean(I)^2`` over finite pixels (as the host metric,
    float64 accumulation), one scalar downloaded."""
    if img.ndim != 2 or min(img.shape) < 2:
        return float("nan")
    x = cp.where(cp.isfinite(img), img, 0).astype(cp.float32, copy=False)
    mean = float(x.mean(dtype=cp.float64))
    if mean == 0.0:
        return float("nan")
    gy = cp.diff(x, axis=0)
    gx = cp.diff(x, axis=1)
    energy = cp.mean(gy * gy, dtype=cp.float64) + cp.mean(gx * gx, dtype=cp.float64)
    return float(energy) / (mean * mean)


def pinned(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A page-locked host array (fast, asynchronous uploads and downloads)."""
    count = int(np.prod(shape))
    mem = cp.cuda.alloc_pinned_memory(max(1, count * np.dtype(dtype).itemsize))
    return np.frombuffer(mem, dtype=dtype, count=count).reshape(shape)


def check_frames(stack: np.ndarray, first: int) -> None:
    """Real, non-empty (N, H, W) frames (NaN/inf are checked after the float32 cast)."""
    if stack.dtype.kind not in "uif" or stack.shape[1] < 1 or stack.shape[2] < 1:
        raise ValueError(
            f"frames {first}.. must be real (H, W) images with H, W >= 1; got "
            f"{stack.dtype} {stack.shape[1:]}"
        )
