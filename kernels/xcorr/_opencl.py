"""``upsampled_peak_axes`` in OpenCL (double precision, needs ``cl_khr_fp64``).

``_opencl.cl.mako`` (spectrum shape baked in) is rendered at run time and built
once per (context, source) through ``livesr.kernels._clhost``
(``LIVESR_DUMP_KERNELS=dir`` dumps it); the spectrum is uploaded once per call,
each sweep runs the ``collapse`` and ``profile`` kernels and the host does the
argmax and parabola exactly as the reference (``_refine.sweep``).  ``pyopencl``
is imported on first call.  Registered as implementation ``opencl`` of ``xcorr``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from livesr.engine import implementation
from livesr.kernels import _clhost
from livesr.kernels.xcorr._refine import sweep

__all__ = ["upsampled_peak_axes_opencl"]

TEMPLATE = Path(__file__).with_name("_opencl.cl.mako")


@implementation("xcorr", backend="opencl")
def upsampled_peak_axes_opencl(
    cross_spectrum: np.ndarray,
    lag: tuple[float, float],
    *,
    upsample: int = 20,
    region: float = 1.0,
    sweeps: int = 3,
) -> tuple[float, float]:
    """Refined lag ``(dy, dx)`` px of a (h, w) complex128 cross spectrum."""
    if not _clhost.has_fp64():
        raise RuntimeError("xcorr opencl needs a device with cl_khr_fp64 (double)")
    xs = np.ascontiguousarray(cross_spectrum, dtype=np.complex128)
    h, w = xs.shape
    prg = _clhost.build("xcorr_refine", TEMPLATE, H=h, W=w)
    x_d = _clhost.to_device(xs)
    dev = _clhost.to_device

    def collapse(axis: int, phase: np.ndarray) -> np.ndarray:
        out = np.empty(h if axis == 1 else w, dtype=np.complex128)
        out_d = _clhost.empty(out.nbytes)
        _clhost.run(
            prg,
            "collapse",
            (out.size,),
            [x_d, dev(phase.astype(np.complex128)), np.int32(axis), out_d],
            [(out, out_d)],
        )
        return out

    def profile(v: np.ndarray, pos: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        out = np.empty(pos.size, dtype=np.float64)
        out_d = _clhost.empty(out.nbytes)
        _clhost.run(
            prg,
            "profile",
            (pos.size,),
            [
                dev(v.astype(np.complex128)),
                dev(pos.astype(np.float64)),
                dev(freqs.astype(np.float64)),
                np.int32(freqs.size),
                np.int32(pos.size),
                out_d,
            ],
            [(out, out_d)],
        )
        return out

    return sweep((h, w), lag, upsample, region, sweeps, collapse, profile)
