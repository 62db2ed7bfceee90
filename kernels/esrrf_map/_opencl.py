"""Fused per-frame eSRRF map in OpenCL (pyopencl; PoCL on CPUs, any GPU ICD).

Host side: the frame's unit gradients on the 2× half-pixel grid and the
per-axis lookups come from ``_weights`` (numpy, small); one kernel,
``_opencl.cl.mako`` rendered at run time with the shape and parameters baked
in, computes RGC, the sensitivity exponent and the Catmull-Rom intensity
weighting per output pixel, zero margin included.  Programs are built once per
(context, rendered source) and their kernel cached.  ``LIVESR_DUMP_KERNELS=dir``
writes each rendered source to ``dir/esrrf_map_<hash>.cl``.

The context is ``pyopencl.create_some_context(interactive=False)`` (honours
``PYOPENCL_CTX``), created on first use.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mako.template import Template

from livesr.engine import implementation
from livesr.kernels._clhost import build_source
from livesr.kernels._lazy import LazyModule
from livesr.kernels.esrrf_map._weights import (
    check_inputs,
    frame_plan,
    normalised_gradients,
)

__all__ = ["esrrf_map_opencl", "render_source"]

if TYPE_CHECKING:
    import pyopencl as cl
else:
    cl = LazyModule("pyopencl")  # imported on first use, never at import

logger = logging.getLogger(__name__)

_TEMPLATE_PATH = Path(__file__).with_name("_opencl.cl.mako")
_LOCK = threading.Lock()
_KERNELS: dict[tuple[int, str], cl.Kernel] = {}


@functools.lru_cache(maxsize=1)
def _template() -> Template:
    return Template(filename=str(_TEMPLATE_PATH), strict_undefined=True)


def _queue() -> cl.CommandQueue:
    """The process-wide queue of the OpenCL stages (a device that compiles)."""
    from livesr.kernels._clhost import queue

    return queue()


def _has_fp64(device: cl.Device) -> bool:
    return "cl_khr_fp64" in device.extensions


def render_source(
    shape: tuple[int, int],
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    fp64: bool = True,
) -> str:
    """Render the kernel source for one parameter set.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` input frame shape.
    magnification, radius, sensitivity, intensity_weighting
        eSRRF parameters (see :func:`esrrf_map_opencl`).
    fp64 : bool
        Accumulate the Catmull-Rom intensity in double (as NanoPyx does).

    Returns
    -------
    str
        OpenCL C source of kernel ``esrrf_map``.
    """
    h, w = shape
    plan = frame_plan(shape, magnification, radius)
    s32 = np.float32(sensitivity)
    return _template().render(
        M=int(magnification),
        N=int(plan.consts.n),
        H=int(h),
        W=int(w),
        MARGIN=int(plan.consts.margin),
        APPLY_POW=int(s32 > 1),
        SENSITIVITY=repr(float(s32)),
        WEIGHTED=int(bool(intensity_weighting)),
        FP64=int(bool(fp64)),
    )


def _kernel(ctx: cl.Context, source: str) -> cl.Kernel:
    """Build (once per context and source) and return the ``esrrf_map`` kernel."""
    key = (id(ctx), source)
    with _LOCK:
        kern = _KERNELS.get(key)
        if kern is None:
            kern = cl.Kernel(build_source(ctx, "esrrf_map", source), "esrrf_map")
            _KERNELS[key] = kern
    return kern


@implementation("esrrf_map", backend="opencl")
def esrrf_map_opencl(
    frame: np.ndarray,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Per-frame eSRRF map (RGC × magnified intensity), OpenCL backend.

    Parameters
    ----------
    frame : numpy.ndarray
        ``(H, W)`` float32, C-contiguous.
    magnification : int
        Magnification ``M``.
    radius : float
        RGC radius ``R`` (input px).
    sensitivity : float
        Exponent applied to RGC when ``> 1``.
    intensity_weighting : bool
        Multiply RGC by the Catmull-Rom magnified frame.
    shift : tuple of float
        ``(dy, dx)`` sample displacement (input px); ``(0, 0)`` equals NanoPyx.

    Returns
    -------
    numpy.ndarray
        ``(H·M, W·M)`` float32; the outer ``int(R·M)`` pixels are 0.
    """
    check_inputs(frame, magnification, radius)
    m = int(magnification)
    queue = _queue()
    ctx = queue.context
    fp64 = _has_fp64(queue.device)
    src = render_source(frame.shape, m, radius, sensitivity, intensity_weighting, fp64)
    kernel = _kernel(ctx, src)
    plan = frame_plan(frame.shape, m, radius, shift)
    grad = normalised_gradients(frame, m, shift)
    table4 = np.zeros(plan.table.shape[:4] + (4,), dtype=np.float32)
    table4[..., :3] = plan.table
    wt = np.float64 if fp64 else np.float32
    rp, cp = plan.rows, plan.cols
    mf = cl.mem_flags
    ro = mf.READ_ONLY | mf.COPY_HOST_PTR

    def buf(a: np.ndarray) -> cl.Buffer:
        return cl.Buffer(ctx, ro, hostbuf=np.ascontiguousarray(a))

    h, w = frame.shape
    out = np.empty((h * m, w * m), dtype=np.float32)
    out_d = cl.Buffer(ctx, mf.WRITE_ONLY, out.nbytes)
    args = [
        buf(frame),
        buf(grad),
        buf(table4),
        buf(rp.cr_idx),
        buf(rp.cr_wt.astype(wt)),
        buf(rp.g_idx),
        buf(rp.lo),
        buf(rp.hi),
        buf(cp.cr_idx),
        buf(cp.cr_wt.astype(wt)),
        buf(cp.g_idx),
        buf(cp.lo),
        buf(cp.hi),
        out_d,
    ]
    with _LOCK:  # a cached cl.Kernel holds its arguments: set + enqueue atomically
        kernel.set_args(*args)
        cl.enqueue_nd_range_kernel(queue, kernel, (w * m, h * m), None)
    cl.enqueue_copy(queue, out, out_d)
    queue.finish()
    return out
