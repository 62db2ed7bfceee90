"""Fused per-frame eSRRF map on CUDA GPUs through CuPy raw kernels.

Two kernels per batch of up to ``BATCH`` frames (all compile-time constants are
``-D`` options of one CUDA source; no Mako needed on the GPU machine):

1. ``esrrf_grad``: Roberts-cross gradients and their 2× Catmull-Rom upsampling
   on the half-pixel grid (plus NanoPyx's clamped border read), float64 sums
   like NanoPyx, normalised to unit vectors: ``(B, 2H+1, 2W+1)`` float2.
2. ``esrrf_rgc``: one thread per output pixel, ``BX × BY`` threads per block.
   The block first stages the unit gradients its window needs for every frame
   of the batch in shared memory (a ``TR × TC`` tile per frame, clamped border
   reads baked into the tile), then each thread walks the ``N × N`` window
   (fully unrolled columns; a specialised path for complete windows)
   once: the precomputed ``(w, ux, uy)`` entry of its sub-pixel phase (from the
   read-only cache) is reused for all frames of the batch, so a sample costs a
   shared-memory load and ~10 flops per frame, no ``exp``/``sqrt``.  The
   Catmull-Rom intensity (float64 taps), the sensitivity exponent and the
   intensity weighting are fused in.  Arithmetic is float32 with the compiler's
   default FMA contraction (differences to the CPU backends ~1e-7 relative).
   ``mode 0`` writes the maps ``(B, H·M, W·M)``; ``mode 1`` updates a ring of
   the last ``K`` maps and their running sum in place
   (``sum += new - ring[slot]; ring[slot] = new``), the sliding-window
   accumulation of a stream, with nothing written back to the host.

Performance model (H100 SXM: ~60 TFLOP/s fp32, ~3 TB/s): per output pixel and
frame ``10·N² + 40`` flops (530 at R = 1.5, ``N = 7``) and, in the streaming
mode, 16 B of device memory traffic (ring slot and running sum, read and
written).  At M = 5 a 256² frame is 1.64 M output pixels: compute floor
≈ 15 µs, memory floor ≈ 9 µs, so ~60 000 frames/s is the ceiling;
2048²: ≈ 0.9 ms compute, 0.6 ms memory, ~1 100 frames/s.  Shared-memory reads
(8 B per sample and frame, ~30 TB/s on an H100) cost about as much as the
arithmetic.  ``bench/gpu_esrrf.py`` measures it and prints these floors.

Taps: with a ``shifts`` array (``dev_taps = 1``) both kernels compute every
frame's Catmull-Rom taps on the device from that frame's ``(dy, dx)`` (NanoPyx's
float64 kernel, :func:`~._weights.catmull_rom_taps` in CUDA), so frames with
different shifts share one launch and nothing is planned on the host per shift;
without it they read the tap tables of :meth:`CupyEsrrfMap.set_shift` (one
shift per plan; the tiled runner of :mod:`livesr.kernels.tiling` fills them
with re-based global taps).  The CUDA source is in :mod:`._cuda_source`.

:class:`CupyEsrrfMap` holds the compiled kernels and device lookups for one
``(H, W, M, R, S, weighting)``; :meth:`CupyEsrrfMap.maps_shifted` maps any number
of frames with their own shifts; :func:`esrrf_map_cupy` is the plain per-frame
function (numpy in → numpy out, cupy in → cupy out), and
``kernels/esrrf_map_batch/_cupy.py`` the batched one.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from livesr.engine import implementation
from livesr.kernels._lazy import LazyModule
from livesr.kernels.esrrf_map._cuda_source import CUDA_SOURCE
from livesr.kernels.esrrf_map._weights import (
    axis_plan,
    catmull_rom_taps,
    check_inputs,
    gradient_coords,
    rgc_constants,
    window_table,
)

__all__ = ["CUDA_SOURCE", "CupyEsrrfMap", "esrrf_map_cupy", "flops_per_output_pixel"]

if TYPE_CHECKING:
    import cupy as cp
else:
    cp = LazyModule("cupy")  # imported on first use, never at import

logger = logging.getLogger(__name__)

#: Output pixels per block (x, y) and the shared-memory budget per block.
BX, BY = 64, 4
SMEM_BYTES = 48 * 1024


def flops_per_output_pixel(n: int, weighted: bool = True) -> int:
    """Floating-point operations per output pixel and frame (for roofline prints).

    Per window sample and frame: dot (3), cross (3), ``1 - |c|`` (1), ``× w`` (1),
    select-add (1) = 9, plus the weight sum (1, shared by the batch); the
    intensity (16 multiply-adds, float64) and the normalisation add ~40.
    """
    return n * n * 10 + (40 if weighted else 8)


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _module(options: tuple[str, ...], device_id: int) -> cp.RawModule:
    del device_id  # part of the cache key only: modules are per device
    return cp.RawModule(code=CUDA_SOURCE, options=options)


class CupyEsrrfMap:
    """Compiled kernels and device lookups for one frame shape and parameter set.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` input frame shape.
    magnification, radius, sensitivity, intensity_weighting
        eSRRF parameters.
    shift : tuple of float
        ``(dy, dx)`` sample displacement (input px), fixed for this object.
    batch : int
        Frames per launch (reduced to fit the shared-memory tile budget).
    """

    # Catmull-Rom tap tables on the device: views into one buffer, set by
    # set_shift (the tiled runner of livesr.kernels.tiling replaces them)
    _r_idx: Any
    _r_wt: Any
    _c_idx: Any
    _c_wt: Any
    _gr_idx: Any
    _gr_wt: Any
    _gc_idx: Any
    _gc_wt: Any

    def __init__(
        self,
        shape: tuple[int, int],
        magnification: int,
        radius: float,
        sensitivity: float,
        intensity_weighting: bool,
        shift: tuple[float, float] = (0.0, 0.0),
        batch: int = 8,
    ) -> None:
        h, w = (int(v) for v in shape)
        m = int(magnification)
        k = rgc_constants(m, radius)
        tr = (2 * (BY - 1)) // m + 2 + k.n
        tc = (2 * (BX - 1)) // m + 2 + k.n
        tile_bytes = tr * tc * 8
        self.batch = max(1, min(int(batch), SMEM_BYTES // tile_bytes))
        if SMEM_BYTES // tile_bytes < 1:
            raise ValueError(
                f"esrrf_map cupy: a {tr}x{tc} gradient tile ({tile_bytes} B) exceeds "
                f"the {SMEM_BYTES} B shared-memory budget (radius {radius} at M={m} "
                "is too large)"
            )
        self.shape = (h, w)
        self.magnification = m
        self.out_shape = (h * m, w * m)
        self.margin = k.margin
        self.n = k.n
        s32 = np.float32(sensitivity)
        options = (
            f"-DM={m}",
            f"-DN={k.n}",
            f"-DSTART={k.start}",
            f"-DH={h}",
            f"-DW={w}",
            f"-DMARGIN={k.margin}",
            f"-DAPPLY_POW={int(s32 > 1)}",
            f"-DSENS={float(s32)!r}",
            f"-DWEIGHTED={int(bool(intensity_weighting))}",
            f"-DBATCH={self.batch}",
            f"-DBX={BX}",
            f"-DBY={BY}",
            f"-DTR={tr}",
            f"-DTC={tc}",
            "--std=c++14",
        )
        dev = cp.cuda.Device().id
        with _LOCK:
            mod = _module(options, dev)
            self._grad = mod.get_function("esrrf_grad")
            self._rgc = mod.get_function("esrrf_rgc")
        table = window_table(m, float(radius))
        t4 = np.zeros(table.shape[:4] + (4,), dtype=np.float32)
        t4[..., :3] = table
        self._table = cp.asarray(t4)
        self._radius = float(radius)
        self.shift: tuple[float, float] | None = None
        self._tables_host: np.ndarray | None = None
        self._tables_dev: Any = None
        self.set_shift(shift)
        self._grid = cp.empty((self.batch, 2 * h + 1, 2 * w + 1, 2), dtype=cp.float32)
        self._dummy = cp.zeros(1, dtype=cp.float32)
        self._dummy64 = cp.zeros(2, dtype=cp.float64)

    def set_shift(self, shift: tuple[float, float]) -> None:
        """Re-aim the sampling tables at a new ``(dy, dx)`` (input px), in place.

        Only the per-axis Catmull-Rom taps depend on the shift (O(H·M + W·M) numbers,
        computed on the host and uploaded); the compiled kernels, the window table
        and the work buffers are kept, so a drifting stream pays microseconds per
        new shift rather than a new plan.
        """
        dy, dx = float(shift[0]), float(shift[1])
        if self.shift == (dy, dx):
            return
        (h, w), m, r = self.shape, self.magnification, self._radius
        rows = axis_plan(h, m, r, dy)
        cols = axis_plan(w, m, r, dx)
        gri, grw = catmull_rom_taps(gradient_coords(h, m, dy), h)
        gci, gcw = catmull_rom_taps(gradient_coords(w, m, dx), w)
        tables = {
            "_r_idx": rows.cr_idx,
            "_r_wt": rows.cr_wt,
            "_c_idx": cols.cr_idx,
            "_c_wt": cols.cr_wt,
            "_gr_idx": gri,
            "_gr_wt": grw,
            "_gc_idx": gci,
            "_gc_wt": gcw,
        }
        # one upload for the eight tables: pack them into one byte buffer and
        # keep device views into one device buffer (each upload costs ~0.1 ms)
        layout = []
        offset = 0
        for name, host in tables.items():
            host = np.ascontiguousarray(host)
            offset = -(-offset // 8) * 8
            layout.append((name, host, offset))
            offset += host.nbytes
        if self._tables_host is None or self._tables_host.nbytes != offset:
            self._tables_host = np.empty(offset, dtype=np.uint8)
            self._tables_dev = cp.empty(offset, dtype=cp.uint8)
            for name, host, start in layout:
                view = self._tables_dev[start : start + host.nbytes].view(host.dtype)
                setattr(self, name, view.reshape(host.shape))
        for _, host, start in layout:
            self._tables_host[start : start + host.nbytes] = host.reshape(-1).view(
                np.uint8
            )
        self._tables_dev.set(self._tables_host)
        self.shift = (dy, dx)

    def _launch(
        self,
        frames: cp.ndarray,
        out,
        ring,
        acc_sum,
        slot0: int,
        nslots: int,
        mode: int,
        shifts=None,
    ) -> None:
        h, w = self.shape
        hm, wm = self.out_shape
        nb = frames.shape[0]
        if nb < 1 or nb > self.batch or frames.shape[1:] != (h, w):
            raise ValueError(
                f"frames must be (1..{self.batch}, {h}, {w}) float32; "
                f"got {frames.shape}"
            )
        if frames.dtype != cp.float32 or not frames.flags.c_contiguous:
            raise ValueError("frames must be a C-contiguous float32 cupy array")
        gx = (2 * w + 1 + 31) // 32
        gy = (2 * h + 1 + 7) // 8
        self._grad(
            (gx, gy, nb),
            (32, 8, 1),
            (
                frames,
                self._gr_idx,
                self._gr_wt,
                self._gc_idx,
                self._gc_wt,
                self._grid,
                np.int32(nb),
                self._dummy64 if shifts is None else shifts,
                np.int32(shifts is not None),
            ),
        )
        grid = ((wm + BX - 1) // BX, (hm + BY - 1) // BY, 1)
        self._rgc(
            grid,
            (BX, BY, 1),
            (
                frames,
                self._grid,
                self._table,
                self._r_idx,
                self._r_wt,
                self._c_idx,
                self._c_wt,
                out,
                ring,
                acc_sum,
                np.int32(nb),
                np.int32(slot0),
                np.int32(nslots),
                np.int32(mode),
                self._dummy64 if shifts is None else shifts,
                np.int32(shifts is not None),
            ),
        )

    def maps(self, frames: cp.ndarray, out: cp.ndarray | None = None) -> cp.ndarray:
        """Per-frame maps of up to ``batch`` frames.

        Parameters
        ----------
        frames : cupy.ndarray
            ``(B, H, W)`` float32, ``B <= batch``.
        out : cupy.ndarray, optional
            ``(B, H·M, W·M)`` float32 destination.

        Returns
        -------
        cupy.ndarray
            ``(B, H·M, W·M)`` float32.
        """
        if out is None:
            out = cp.empty((frames.shape[0],) + self.out_shape, dtype=cp.float32)
        self._launch(frames, out, self._dummy, self._dummy, 0, 1, 0)
        return out

    def maps_shifted(
        self, frames: cp.ndarray, shifts: cp.ndarray, out: cp.ndarray | None = None
    ) -> cp.ndarray:
        """Per-frame maps of any number of frames, each with its own shift.

        The Catmull-Rom taps of every frame's shift are computed inside the
        kernels from ``shifts`` (nothing is planned on the host, the tap tables
        of :meth:`set_shift` are not used); frames go through the kernels in
        chunks of :attr:`batch` (two launches per chunk).

        Parameters
        ----------
        frames : cupy.ndarray
            ``(N, H, W)`` float32, C-contiguous.
        shifts : cupy.ndarray
            ``(N, 2)`` float64 ``(dy, dx)`` per frame, input px, C-contiguous.
        out : cupy.ndarray, optional
            ``(N, H·M, W·M)`` float32 C-contiguous destination.

        Returns
        -------
        cupy.ndarray
            ``(N, H·M, W·M)`` float32.
        """
        n = int(frames.shape[0])
        if shifts.shape != (n, 2) or shifts.dtype != cp.float64:
            raise ValueError(
                f"shifts must be a ({n}, 2) float64 cupy array; got "
                f"{shifts.dtype} {shifts.shape}"
            )
        shifts = cp.ascontiguousarray(shifts)
        if out is None:
            out = cp.empty((n,) + self.out_shape, dtype=cp.float32)
        elif out.shape != (n,) + self.out_shape or not out.flags.c_contiguous:
            raise ValueError(
                f"out must be a C-contiguous ({n}, {self.out_shape[0]}, "
                f"{self.out_shape[1]}) float32 array; got {out.shape}"
            )
        for c0 in range(0, n, self.batch):
            c1 = min(n, c0 + self.batch)
            self._launch(
                frames[c0:c1],
                out[c0:c1],
                self._dummy,
                self._dummy,
                0,
                1,
                0,
                shifts[c0:c1],
            )
        return out

    def accumulate(
        self, frames: cp.ndarray, ring: cp.ndarray, acc_sum: cp.ndarray, slot0: int
    ) -> None:
        """Push up to ``batch`` frames into a sliding window of maps, in place.

        Parameters
        ----------
        frames : cupy.ndarray
            ``(B, H, W)`` float32.
        ring : cupy.ndarray
            ``(K, H·M, W·M)`` float32, the last ``K`` maps (zero-initialised).
            Frame ``b`` replaces slot ``(slot0 + b) % K``.
        acc_sum : cupy.ndarray
            ``(H·M, W·M)`` float32 running sum of the ring, updated as
            ``sum += new - old`` per frame.
        slot0 : int
            Ring slot of the first frame.
        """
        if (
            ring.ndim != 3
            or ring.shape[1:] != self.out_shape
            or acc_sum.shape != self.out_shape
        ):
            raise ValueError(
                f"ring must be (K, {self.out_shape[0]}, {self.out_shape[1]}) and "
                "acc_sum "
                f"{self.out_shape}; got {ring.shape} and {acc_sum.shape}"
            )
        self._launch(frames, self._dummy, ring, acc_sum, int(slot0), ring.shape[0], 1)


@functools.lru_cache(maxsize=16)
def _plan(shape, magnification, radius, sensitivity, weighting, device_id):
    """One plan per shape and parameters (not per shift: see ``set_shift``), with
    the lock that serialises its use (the shift tables and the work grid are
    shared state)."""
    del device_id
    plan = CupyEsrrfMap(shape, magnification, radius, sensitivity, weighting, batch=1)
    return plan, threading.Lock()


@implementation("esrrf_map", backend="cupy")
def esrrf_map_cupy(
    frame,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shift: tuple[float, float] = (0.0, 0.0),
):
    """Per-frame eSRRF map (RGC × magnified intensity), CuPy/CUDA backend.

    Parameters
    ----------
    frame : numpy.ndarray or cupy.ndarray
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
    numpy.ndarray or cupy.ndarray
        ``(H·M, W·M)`` float32, on the host if ``frame`` was a numpy array
        (after synchronising), else on the device; the outer ``int(R·M)``
        pixels are 0.
    """
    on_host = isinstance(frame, np.ndarray)
    if on_host:
        check_inputs(frame, magnification, radius)
    dev = cp.asarray(frame, dtype=cp.float32)
    if dev.ndim != 2:
        raise ValueError(f"frame must be 2-D (H, W); got shape {dev.shape}")
    plan, lock = _plan(
        tuple(dev.shape),
        int(magnification),
        float(radius),
        float(sensitivity),
        bool(intensity_weighting),
        cp.cuda.Device().id,
    )
    shifts = cp.asarray(np.array([[shift[0], shift[1]]], dtype=np.float64))
    with lock:
        out = plan.maps_shifted(cp.ascontiguousarray(dev)[None], shifts)[0]
    return cp.asnumpy(out) if on_host else out
