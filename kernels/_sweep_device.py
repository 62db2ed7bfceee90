"""Device-resident eSRRF parameter sweep: the GPU path of :func:`esrrf_sweep`.

When the engine's implementation of ``rgc`` (the sweep's dominant kernel) is the
CuPy one, :func:`livesr.kernels.esrrf_sweep` keeps its work on the GPU:

1. frames are read on the host (checked as always) in blocks of
   :data:`BLOCK_FRAMES` within a scored batch and each block is uploaded once;
2. per frame, the shared stages run once on the device: Roberts-cross gradients,
   Catmull-Rom magnification and gradient upsampling (taps planned once per
   sweep, uploaded once) and the unit gradients (``g / |g|``, float32, no FMA:
   the arithmetic of :func:`livesr.kernels.rgc._common.prepare`);
3. every (sensitivity, radius) pair's RGC map is written by the engine's CUDA
   ``rgc`` kernel (the same source and compile options as its CuPy
   implementation, one compiled module per pair, window tables uploaded once)
   into one ``(P, H*M, W*M)`` buffer;
4. the temporal running sums of all pairs (whole stack, even / odd frames of the
   batch, the batch) are ``(P, H*M, W*M)`` float64 arrays on the device, updated
   by one array operation per sum and frame for all pairs
   (:class:`StackedTemporal`: the arithmetic of
   :class:`livesr.kernels.temporal.TemporalAccumulator`, operation by operation);
5. only the reconstructions that scoring needs (the batch's and, for FRC, its
   even / odd halves) and, at the end, the whole-stack images are downloaded.

So the results are those of the host path (same float32 maps up to the kernels'
documented tolerances, same float64 sums, bit for bit where the maps are), and
device memory is ``O(pairs * H*M * W*M)`` whatever the stack length
(:func:`device_bytes`: at most 124 bytes per pair and SR pixel, VAR in batches).
When that exceeds half of the device's free memory (:func:`fits`) the sweep
keeps the host path, with a warning.

The orchestration (:class:`ResidentAccumulators`, :class:`StackedTemporal`) is
written over an array module ``xp``: with :class:`HostStages` (numpy, the
engine's chosen implementations) the same code runs without a GPU, which is how
it is tested on CPU machines.  CuPy is imported on first use only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from livesr.kernels._params import EsrrfParams

__all__ = [
    "BLOCK_FRAMES",
    "CupyStages",
    "HostStages",
    "ResidentAccumulators",
    "StackedTemporal",
    "device_bytes",
    "fits",
    "resident_stages",
]

logger = logging.getLogger(__name__)

#: Frames uploaded together (within a scored batch): one host -> device copy, and
#: the host reads the next block while the device works on this one.
BLOCK_FRAMES = 16

_UNIT_SOURCE = r"""
extern "C" __global__ void unit_gradients(
    const float *gx, const float *gy, float *gxn, float *gyn, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = gx[i], b = gy[i];
    float norm = sqrtf(a * a + b * b);
    gxn[i] = norm > 0.0f ? a / norm : 0.0f;
    gyn[i] = norm > 0.0f ? b / norm : 0.0f;
}
"""


class Stages(Protocol):
    """Per-frame maps of every pair, on the array module :attr:`xp`."""

    xp: Any

    def maps(self, frame: Any, out: Any) -> None:
        """Write the RGC map of every pair of ``frame`` (H, W) float32 into
        ``out`` (P, H*M, W*M) float32."""


class HostStages:
    """:class:`Stages` on the host: ``frame_maps`` (the sweep's shared per-frame
    stages) and the engine's ``rgc`` per pair, through
    :func:`livesr.kernels.esrrf_stack._run` (implementation ``impl``)."""

    xp: Any = np

    def __init__(
        self,
        frame_maps: Callable[[np.ndarray], tuple[Any, Any, Any]],
        params: Sequence[EsrrfParams],
        impl: str | None,
    ) -> None:
        self._frame_maps = frame_maps
        self._params = list(params)
        self._impl = impl

    def maps(self, frame: Any, out: Any) -> None:
        from livesr.kernels.esrrf_stack import _run
        from livesr.kernels.rgc import kernel as rgc

        gx2, gy2, intensity = self._frame_maps(frame)
        for p, params in enumerate(self._params):
            out[p] = _run(rgc, self._impl, (gx2, gy2, intensity, params), {})


@functools.lru_cache(maxsize=8)
def _unit_kernel(device_id: int) -> Any:
    """The compiled ``unit_gradients`` kernel (no FMA: numpy's float32 rounding)."""
    import cupy as cp

    return cp.RawModule(code=_UNIT_SOURCE, options=("--fmad=false",)).get_function(
        "unit_gradients"
    )


def _rgc_options(p: Any) -> tuple[str, ...]:
    """Compile options of the CUDA ``rgc`` kernel for the prepared call ``p``
    (those of :func:`livesr.kernels.rgc._cupy.rgc_cupy`)."""
    from livesr.kernels.rgc._cupy import compile_options

    return compile_options(p)


class CupyStages:
    """:class:`Stages` on a CUDA device (CuPy): frame, gradients, magnified
    intensity, unit gradients and maps never leave the device.

    Parameters
    ----------
    shape : (H, W)
        Raw frame shape.
    params : sequence of EsrrfParams
        One per pair, all of the same magnification, ``"nanopyx"`` geometry.
    """

    def __init__(self, shape: tuple[int, int], params: Sequence[EsrrfParams]) -> None:
        import cupy as cp

        from livesr.kernels.catmull_rom import (
            gradient_coordinates,
            magnification_coordinates,
        )
        from livesr.kernels.catmull_rom._common import taps
        from livesr.kernels.catmull_rom._cupy import _kernel as sampler
        from livesr.kernels.rgc._common import prepare
        from livesr.kernels.rgc._cupy import _kernel as rgc_module

        self.xp = cp
        h, w = shape
        m = params[0].magnification
        dev = cp.cuda.Device().id
        raw = np.zeros((h, w), np.float32)
        self._taps_i = tuple(
            cp.asarray(a)
            for a in taps(
                raw,
                magnification_coordinates(h, m, 0.0, "nanopyx"),
                magnification_coordinates(w, m, 0.0, "nanopyx"),
            )
        )
        self._taps_g = tuple(
            cp.asarray(a)
            for a in taps(
                raw,
                gradient_coordinates(h, m, 0.0, "nanopyx"),
                gradient_coordinates(w, m, 0.0, "nanopyx"),
            )
        )
        self._sampler = sampler(dev)
        self._unit = _unit_kernel(dev)
        grad = np.zeros((2 * h + 1, 2 * w + 1), np.float32)
        inten = np.zeros((h * m, w * m), np.float32)
        self._pairs = []
        for prm in params:
            p = prepare(grad, grad, inten if prm.intensity_weighting else None, prm)
            self._pairs.append(
                (
                    rgc_module(_rgc_options(p), dev),
                    cp.asarray(p.offs),
                    cp.asarray(p.table),
                    bool(p.weighted),
                )
            )
        self._no_intensity = cp.zeros((1, 1), cp.float32)
        self._hm, self._wm = h * m, w * m

    def _sample(self, img: Any, tap: tuple[Any, ...]) -> Any:
        """Catmull-Rom samples of the device image ``img`` at the planned taps
        (the launch of :func:`livesr.kernels.catmull_rom._cupy.catmull_rom_cupy`)."""
        cp = self.xp
        ri, rw, ci, cw = tap
        k, l_ = ri.shape[0], ci.shape[0]
        out = cp.empty((k, l_), dtype=cp.float32)
        self._sampler(
            ((l_ + 31) // 32, (k + 7) // 8, 1),
            (32, 8, 1),
            (img, ri, rw, ci, cw, out, np.int32(k), np.int32(l_), np.int32(img.shape[1])),
        )
        return out

    def maps(self, frame: Any, out: Any) -> None:
        from livesr.kernels.roberts_cross._cupy import roberts_cross_cupy

        cp = self.xp
        gx, gy = roberts_cross_cupy(frame)
        intensity = self._sample(frame, self._taps_i)
        gx2 = self._sample(gx, self._taps_g)
        gy2 = self._sample(gy, self._taps_g)
        gxn, gyn = cp.empty_like(gx2), cp.empty_like(gy2)
        n = gx2.size
        self._unit(((n + 255) // 256,), (256,), (gx2, gy2, gxn, gyn, np.int32(n)))
        hm, wm = self._hm, self._wm
        grid = ((wm + 31) // 32, (hm + 7) // 8, 1)
        for p, (kern, offs, table, weighted) in enumerate(self._pairs):
            inten = intensity if weighted else self._no_intensity
            kern(grid, (32, 8, 1), (gxn, gyn, offs, table, inten, out[p]))


def resident_stages(
    impl: str | None,
    shape: tuple[int, int],
    params: Sequence[EsrrfParams],
    first_stages: Callable[[], tuple[Any, Any, Any]],
) -> Stages | None:
    """The device stages when the engine's ``rgc`` implementation is CuPy, else None.

    ``impl`` ``"cupy"`` (or a ``cupy-*`` variant) asks for it (None when it is not
    available here: the host path then reports the engine's error); ``None`` asks
    the engine's kept choice (:meth:`livesr.engine.Kernel.fastest` on the first
    frame's host stages, ``first_stages()``, and the first pair), the one place
    that chooses; ``"auto"`` (per-call dispatch, recorded) and CPU ids keep the
    host path.
    """
    from livesr.kernels.rgc import kernel as rgc

    if impl == "auto":
        return None
    backends = {
        info.id: info.backend.value
        for info in rgc.implementations(include_unavailable=False)
    }
    if impl is None:
        gx2, gy2, intensity = first_stages()
        impl = rgc.fastest(gx2, gy2, intensity, params[0])
    if backends.get(impl) != "cupy":
        return None
    logger.info("esrrf_sweep: %d pairs on the device (rgc %s)", len(params), impl)
    return CupyStages(shape, params)


def device_bytes(
    mode: str, pairs: int, sr_shape: tuple[int, int], batched: bool, halves: bool
) -> int:
    """Bytes of device memory the resident sweep holds (:class:`ResidentAccumulators`
    and its per-frame temporaries; the stages' frame-sized arrays aside).

    Per pair and SR pixel: the float32 maps, the float64 cast and, per group of
    running sums (whole stack, batch when ``batched``, two halves when
    ``halves``), one float64 sum for AVG or three (sum, squares, first map) for
    VAR, plus two float64 temporaries for VAR.
    """
    groups = 1 + int(batched) + 2 * int(halves)
    per_group = 8 if mode == "avg" else 24
    per_pixel = 4 + 8 + groups * per_group + (0 if mode == "avg" else 16)
    return pairs * sr_shape[0] * sr_shape[1] * per_pixel


def fits(xp: Any, need: int, fraction: float = 0.5) -> bool:
    """Whether ``need`` bytes are at most ``fraction`` of the device memory free
    now (CuPy: the driver's free memory plus the pool's cached blocks); always
    True on the host (numpy)."""
    if xp is np:
        return True
    free = xp.cuda.Device().mem_info[0] + xp.get_default_memory_pool().free_bytes()
    if need <= fraction * free:
        return True
    logger.warning(
        "esrrf_sweep: the device-resident sweep needs %.2f GB, more than %.0f %% of "
        "the %.2f GB free on the device: host path",
        need / 1e9,
        100 * fraction,
        free / 1e9,
    )
    return False


class StackedTemporal:
    """:class:`livesr.kernels.temporal.TemporalAccumulator` (AVG or VAR) of ``P``
    maps at once on the array module ``xp``: the same float64 operations in the
    same order, so equal maps give equal bits.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    mode : {"avg", "var"}
    shape : (P, Y, X)
    """

    def __init__(self, xp: Any, mode: str, shape: tuple[int, int, int]) -> None:
        if mode not in ("avg", "var"):
            raise ValueError(f"mode must be 'avg' or 'var', got {mode!r}")
        self.xp, self.mode, self.shape = xp, mode, shape
        self._s = xp.zeros(shape, xp.float64)
        self._q = xp.zeros(shape, xp.float64) if mode == "var" else None
        self._first = xp.zeros(shape, xp.float64) if mode == "var" else None
        self.count = 0

    def reset(self) -> None:
        """Forget every map added so far."""
        self.count = 0
        self._s.fill(0)
        if self._q is not None:
            self._q.fill(0)

    def add(self, x: Any) -> None:
        """Add ``x`` (P, Y, X) float64 (float32 maps cast)."""
        self.count += 1
        if self._q is None:
            self._s += x
            return
        assert self._first is not None
        if self.count == 1:
            self._first[...] = x
        y = x - self._first
        self._s += y
        self._q += y * y

    def result(self) -> Any:
        """The statistic, (P, Y, X) float32 on ``xp``."""
        n = self.count
        if n == 0:
            raise ValueError("no map added yet")
        if self._q is None:
            return (self._s / n).astype(self.xp.float32)
        mean_y = self._s / n
        return self.xp.maximum(self._q / n - mean_y * mean_y, 0.0).astype(
            self.xp.float32
        )


class ResidentAccumulators:
    """The sweep's running sums of every pair, where ``stages`` computes the maps.

    Same interface as the host accumulators of :mod:`livesr.kernels.sweep`:
    :meth:`new_batch`, :meth:`add_frames`, :meth:`fetch`, :meth:`batch_image`,
    :meth:`half_image` and :meth:`whole_images` (host arrays).  ``halves``:
    keep the even / odd sums of a batch (FRC), False with decorrelation.
    """

    block = BLOCK_FRAMES
    resident = True

    def __init__(
        self,
        stages: Stages,
        mode: str,
        sr_shape: tuple[int, int],
        grid: tuple[int, int],
        batched: bool,
        halves: bool,
    ) -> None:
        xp = self.xp = stages.xp
        self.stages = stages
        self.ns, self.nr = grid
        shape = (self.ns * self.nr, *sr_shape)
        self.whole = StackedTemporal(xp, mode, shape)
        self.parity = (
            (StackedTemporal(xp, mode, shape), StackedTemporal(xp, mode, shape))
            if halves
            else None
        )
        self.batch_all = StackedTemporal(xp, mode, shape) if batched else self.whole
        self._maps = xp.empty(shape, xp.float32)
        self._host: dict[Any, np.ndarray] = {}

    def new_batch(self) -> None:
        """Reset the batch's sums (the whole-stack ones go on)."""
        groups = list(self.parity or ())
        if self.batch_all is not self.whole:
            groups.append(self.batch_all)
        for acc in groups:
            acc.reset()
        self._host.clear()

    def add_frames(self, first_parity: int, frames: np.ndarray) -> None:
        """Add ``frames`` (n, H, W) float32; frame ``k`` has parity
        ``(first_parity + k) % 2`` within its batch.  One upload."""
        xp = self.xp
        dev = xp.asarray(frames)
        for k in range(dev.shape[0]):
            self.stages.maps(dev[k], self._maps)
            x = self._maps.astype(xp.float64)
            if self.parity is not None:
                self.parity[(first_parity + k) % 2].add(x)
            self.whole.add(x)
            if self.batch_all is not self.whole:
                self.batch_all.add(x)

    def _download(self, key: Any, acc: StackedTemporal) -> np.ndarray:
        out = self._host.get(key)
        if out is None:
            res = acc.result()
            out = self._host[key] = res if isinstance(res, np.ndarray) else res.get()
        return out

    def fetch(self, halves: bool) -> None:
        """Download the batch's reconstructions (and its even / odd halves) now,
        so that scoring starts from host arrays."""
        self._download("batch", self.batch_all)
        if halves and self.parity is not None:
            for parity in (0, 1):
                self._download(("half", parity), self.parity[parity])

    def batch_image(self, si: int, ri: int) -> np.ndarray:
        """The pair's reconstruction of the current batch, host (Y, X) float32."""
        return self._download("batch", self.batch_all)[si * self.nr + ri]

    def half_image(self, parity: int, si: int, ri: int) -> np.ndarray:
        """The pair's reconstruction of the even (0) / odd (1) frames of the batch."""
        if self.parity is None:
            raise ValueError("half_image: the halves are not kept (halves=False)")
        return self._download(("half", parity), self.parity[parity])[si * self.nr + ri]

    def whole_images(self) -> np.ndarray:
        """Every pair's reconstruction of the whole stack, (S, R, Y, X) float32."""
        img = self._download("whole", self.whole)
        return img.reshape(self.ns, self.nr, *img.shape[1:])
