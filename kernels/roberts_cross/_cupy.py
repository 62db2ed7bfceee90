"""``roberts_cross`` on CUDA through a CuPy ``ElementwiseKernel`` (one thread per
pixel, float32, no FMA possible: additions only).  ``cupy`` is imported on first
call; numpy in -> numpy out, cupy in -> cupy out."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from livesr.engine import implementation

__all__ = ["roberts_cross_cupy"]

_BODY = r"""
const int r = i / W, c = i % W;
const int r0 = r > 0 ? r - 1 : 0;
const int c0 = c > 0 ? c - 1 : 0;
const float up = im[r0 * W + c];
const float left = im[r * W + c0];
const float diag = im[r0 * W + c0];
const float cur = im[r * W + c];
gx = ((up - left) + cur) - diag;
gy = ((-up + left) + cur) - diag;
"""


@functools.lru_cache(maxsize=1)
def _kernel() -> Any:
    import cupy as cp

    return cp.ElementwiseKernel(
        "raw float32 im, int32 W",
        "float32 gx, float32 gy",
        _BODY,
        "livesr_roberts_cross",
    )


@implementation("roberts_cross", backend="cupy")
def roberts_cross_cupy(image: Any) -> tuple[Any, Any]:
    """Roberts-cross ``(gx, gy)`` of ``image`` (H, W) float32 (numpy or cupy)."""
    import cupy as cp

    on_host = isinstance(image, np.ndarray)
    im = cp.ascontiguousarray(cp.asarray(image, dtype=cp.float32))
    gx = cp.empty_like(im)
    gy = cp.empty_like(im)
    _kernel()(im, np.int32(im.shape[1]), gx, gy)
    if on_host:
        return cp.asnumpy(gx), cp.asnumpy(gy)
    return gx, gy
