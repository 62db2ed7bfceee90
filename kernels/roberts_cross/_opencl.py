"""``roberts_cross`` in OpenCL: one work item per pixel, ``_opencl.cl.mako``
rendered at run time (shape baked in), built once per (context, source).
``pyopencl`` is imported on first call."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from livesr.engine import implementation
from livesr.kernels import _clhost

__all__ = ["roberts_cross_opencl"]

TEMPLATE = Path(__file__).with_name("_opencl.cl.mako")


@implementation("roberts_cross", backend="opencl")
def roberts_cross_opencl(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roberts-cross ``(gx, gy)`` of ``image`` (H, W) float32, each (H, W) float32."""
    h, w = image.shape
    prg = _clhost.build("roberts_cross", TEMPLATE, H=h, W=w)
    gx = np.empty_like(image)
    gy = np.empty_like(image)
    gx_d, gy_d = _clhost.empty(gx.nbytes), _clhost.empty(gy.nbytes)
    _clhost.run(
        prg,
        "roberts_cross",
        (w, h),
        [_clhost.to_device(image), gx_d, gy_d],
        [(gx, gx_d), (gy, gy_d)],
    )
    return gx, gy
