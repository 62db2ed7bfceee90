"""Running sums of a sliding window of images: one operation, three implementations.

The operation (see :mod:`livesr.kernels._window` for the mathematics): keep, in
float64 with error-free TwoSum compensation, ``S = sum x``, ``Q = sum x**2`` and
``P = sum x_t x_{t+1}`` of the images in a window that gains images at the end and
loses them at the start, and combine them into AVG / VAR / TAC2.

Implementations, one file each (:data:`IMPLEMENTATIONS`):

``_numpy.py``
    :class:`~._numpy.CompensatedSum`: one array operation at a time, float64 work
    arrays; the reference.
``_numba.py``
    Fused one-pass update and combine kernels (multi-threaded and serial), same
    bits as numpy.
``_cupy.py``
    CUDA raw kernels for the GPU window, including the batched
    ``window_update_many``; same arithmetic, compiled without FMA contraction.

Not an engine kernel (``livesr.engine.Kernel``), on purpose: the implementations
are not interchangeable calls of one signature the engine could time and pick.
The host sums are state that lives across calls (numba or numpy is chosen once
per window, ``sums_backend``, and the two give the same bits, so there is nothing
to choose at run time), and the CUDA kernels take device pointers queued by the
GPU window.  Dispatching every per-frame update through the engine would add its
decision overhead to the live hot path for no change in result.  The dispatch
stays where it was: :class:`livesr.kernels._window.WindowMoments` (numpy / numba)
and :class:`livesr.kernels.sliding.DeviceSlidingEsrrf` (CUDA).
"""

from __future__ import annotations

__all__ = ["IMPLEMENTATIONS"]

#: backend -> module implementing the window sums (plain strings: imports nothing)
IMPLEMENTATIONS: dict[str, str] = {
    "numpy": "livesr.kernels.window_sums._numpy",
    "numba": "livesr.kernels.window_sums._numba",
    "cupy": "livesr.kernels.window_sums._cupy",
}
