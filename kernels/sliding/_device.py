"""GPU-resident sliding-window eSRRF: frames stay on the device from upload to image.

:class:`DeviceSlidingEsrrf` is the CUDA (CuPy) twin of
:class:`livesr.kernels.SlidingEsrrf`, with the same emission schedule, results and
streaming API (``push``, ``set_params``, ``reset``, ``next_emission``, ...), for the
case where the engine's fastest ``esrrf_map`` implementation is the GPU one.
:meth:`DeviceSlidingEsrrf.push_many` takes a batch (``push`` is a batch of one):

1. the frames are copied into one pinned (page-locked) host buffer and uploaded
   together (``N*H*W*4`` bytes; 256 KiB per 256² frame, 16 MiB per 2048²);
2. their per-frame eSRRF maps are computed on the device by ONE call of the
   ``esrrf_map_batch`` kernel, dispatched through the engine with the batch's
   throughput deadline (``N`` frame intervals); the engine's ``adapt`` hook hands
   the CuPy implementation the device copies and the batch map buffer, and the
   CUDA kernels compute each frame's Catmull-Rom taps from its shift (nothing is
   planned on the host per shift).  If the delay agent picks a CPU implementation
   the maps are computed from the host frames and uploaded: still correct;
3. the window's updates (``S = sum y``, ``Q = sum y**2``, ``P = sum y_t y_{t+1}``,
   ``y = x - K``, ``K`` the first map of the window) are queued as pointer
   quadruples and applied by one ``window_update_many`` launch per emitted image
   (sums read and written once per launch), in float64 with error-free (TwoSum)
   compensation -- the arithmetic of the host's
   :class:`livesr.kernels._window.WindowMoments`, compiled without FMA
   contraction, so batched and frame-by-frame pushes give the same bits;
4. each completed window's temporal statistic (AVG, VAR or TAC2) and macro-pixel
   correction run on the device and only the image is downloaded (optionally into
   pinned result buffers, ``result_buffers``).

Measured on an H100 (``bench/batch_device.py``, ``bench/results/h100_batch_push_many.json``;
M=5, window 50, stride 10, per-frame shifts, uint16 frames, images downloaded):
256² 5 100 frames/s (batches of 8 or 32), 512² 1 580, 2048² 111; frame by frame
(the previous window) 940 frames/s at 256².

There is no host round trip between stages. Memory on the device: ``window + 1 +
max_batch`` maps, ``window + max_batch`` raw float32 frames, six float64 sums and
the reference map, i.e. about ``(window + 1 + max_batch) * 4 + 60`` bytes per output
pixel (window 50, max_batch 32 at 2048², M = 5: 41 GB); :class:`DeviceSlidingEsrrf` refuses to start (``MemoryError`` with the
figures) when that exceeds ``device_fraction`` of the free device memory, and the
pipeline then keeps the host path.

The window-sum CUDA kernels are :mod:`livesr.kernels.window_sums._cupy`; the maps
and helpers :mod:`livesr.kernels.sliding._device_maps`.

Only the ``"nanopyx"`` geometry is offered (what the engine's ``esrrf_map``
implementations compute).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from livesr.kernels._lazy import LazyModule
from livesr.kernels._params import EsrrfParams, validate_frame, validate_shift
from livesr.kernels.sliding._base import ESRRF_FIELDS, WINDOW_FIELDS
from livesr.kernels.sliding._config import SlidingConfig, SlidingResult
from livesr.kernels.sliding._device_maps import (
    DeviceBatchMap,
    DeviceFrameMap,
    check_frames,
    device_quality,
    engine_device_map_batch,
    per_frame_batch,
)
from livesr.kernels.sliding._device_store import DeviceStorage

__all__ = ["DeviceSlidingEsrrf"]

logger = logging.getLogger(__name__)

cp: Any = LazyModule("cupy")

_MODES = ("avg", "var", "tac2")


class DeviceSlidingEsrrf(DeviceStorage):
    """Sliding-window eSRRF kept on a CUDA device (see the module docstring).

    Parameters
    ----------
    window, stride, magnification, radius, sensitivity, intensity_weighting,
    macro_pixel_correction, temporal
        As :class:`livesr.kernels.SlidingEsrrf`.
    geometry : {"nanopyx"}
        Only the NanoPyx geometry (the engine's ``esrrf_map``).
    frame_shape : (int, int), optional
        Allocate now rather than at the first frame.
    frame_map : callable, optional
        Per-frame ``fn(host_frame, device_frame, params, shift, deadline_s)``
        returning the ``(H*M, W*M)`` float32 map (cupy or numpy); called once
        per frame of a batch (tests, custom maps).  Default: ``batch_map``.
    batch_map : callable, optional
        ``fn(host_frames, device_frames, params, shifts, deadline_s, out)``
        returning the ``(N, H*M, W*M)`` maps (cupy, may be ``out``, or numpy);
        default the engine's ``esrrf_map_batch`` (:func:`engine_device_map_batch`).
    device_fraction : float
        Largest share of the free device memory this object may take, in (0, 1].
    max_batch : int
        Frames mapped per launch by :meth:`push_many` (larger inputs are split);
        sizes the device batch buffers (``max_batch`` maps and raw frames).
    result_buffers : int
        0 (default): every emitted image is a new host array.  ``k > 0``: images
        are downloaded into a ring of ``k`` pinned host buffers (faster), and an
        image stays valid until ``k`` more images have been emitted -- copy it
        if it must live longer (the images beyond ``k`` of one call are new
        arrays, so a call never returns an overwritten image).

    Attributes
    ----------
    deadline_s : float or None
        Throughput deadline per frame, s (the camera's frame interval): a batch
        of ``n`` frames is mapped with deadline ``n * deadline_s`` unless
        :meth:`push_many` gets ``deadline_s=``.
    """

    # The geometry is not settable: the CUDA maps compute the "nanopyx" one only
    # (the host window also accepts "geometry"; its memory settings do not apply).
    SETTABLE = frozenset(f for f in ESRRF_FIELDS if f != "geometry") | frozenset(
        WINDOW_FIELDS
    )

    def __init__(
        self,
        window: int,
        stride: int,
        *,
        magnification: int = 5,
        radius: float = 1.5,
        sensitivity: float = 1.0,
        intensity_weighting: bool = True,
        macro_pixel_correction: bool = True,
        temporal: str = "avg",
        geometry: str = "nanopyx",
        frame_shape: tuple[int, int] | None = None,
        frame_map: DeviceFrameMap | None = None,
        batch_map: DeviceBatchMap | None = None,
        device_fraction: float = 0.5,
        max_batch: int = 32,
        result_buffers: int = 0,
    ) -> None:
        if geometry != "nanopyx":
            raise ValueError(
                f"DeviceSlidingEsrrf computes the 'nanopyx' geometry only, got "
                f"{geometry!r}; use livesr.kernels.SlidingEsrrf for it"
            )
        if not 0 < device_fraction <= 1:
            raise ValueError(
                f"device_fraction must be in (0, 1], got {device_fraction!r}"
            )
        if int(max_batch) < 1 or int(result_buffers) < 0:
            raise ValueError(
                f"max_batch must be >= 1 and result_buffers >= 0, got "
                f"{max_batch!r}, {result_buffers!r}"
            )
        if frame_map is not None and batch_map is not None:
            raise ValueError("give frame_map or batch_map, not both")
        self._cfg = SlidingConfig(
            window=window,
            stride=stride,
            temporal=temporal,
            macro_pixel_correction=macro_pixel_correction,
            strategy="maps",
        )
        self._params = EsrrfParams(
            magnification=magnification,
            radius=radius,
            sensitivity=sensitivity,
            intensity_weighting=intensity_weighting,
            geometry="nanopyx",
        )
        self._batch_fn: DeviceBatchMap = (
            per_frame_batch(frame_map)
            if frame_map is not None
            else (batch_map or engine_device_map_batch)
        )
        self._fraction = float(device_fraction)
        self._max_batch = int(max_batch)
        self._n_results = int(result_buffers)
        self._fixed_shape = (
            (int(frame_shape[0]), int(frame_shape[1])) if frame_shape else None
        )
        self.deadline_s: float | None = None
        self.maps_uploaded = 0  # maps a CPU implementation computed (agent switch)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every frame (settings kept); device storage is released."""
        self._reset_schedule()
        self._raw: Any = None
        self._maps: Any = None
        self._sums: list[Any] = []
        self._ref: Any = None
        self._shifts = np.zeros((self._cfg.window, 2), dtype=np.float64)
        self._pinned: np.ndarray | None = None
        self._bframes: Any = None
        self._bmaps: Any = None
        self._in_batch: dict[int, Any] = {}  # frame -> its map in the batch buffer
        self._emitted_in_call = 0
        self._ops: list[int] = []
        if self._fixed_shape is not None:
            self._allocate(self._fixed_shape)

    @property
    def strategy(self) -> str:
        """``"device"``: maps and sums live on the CUDA device."""
        return "device"

    @property
    def max_batch(self) -> int:
        """Frames per map launch in :meth:`push_many`."""
        return self._max_batch

    @property
    def memory_bytes(self) -> int:
        """Device bytes held by the rings, sums, reference map and batch buffers."""
        arrays = [self._raw, self._maps, self._ref, *self._sums]
        arrays += [self._bframes, self._bmaps]
        return sum(int(a.nbytes) for a in arrays if a is not None)

    def warm_up(self, frame_shape: tuple[int, int], max_batch: int | None = None) -> None:
        """Allocate for ``frame_shape`` and run every device step once per batch size
        (powers of two up to ``max_batch``, capped at :attr:`max_batch`, which
        larger batches are split into): CuPy compiles, plans and the engine's
        first calls happen now, before acquisition.  The window is empty
        afterwards (counters reset)."""
        top = self._max_batch if max_batch is None else min(int(max_batch),
                                                            self._max_batch)
        shape = (int(frame_shape[0]), int(frame_shape[1]))
        rng = np.random.default_rng(0)
        sizes = sorted({1, max(1, top)} | {2**k for k in range(1, 16) if 2**k < top})
        saved = self._fixed_shape
        self._fixed_shape = shape
        try:
            for n in sizes:
                self.reset()
                frames = rng.poisson(100.0, size=(n + 1, *shape)).astype(np.float32)
                shifts = rng.uniform(-0.5, 0.5, size=(n + 1, 2))
                self.push_many(frames[:1], shifts[:1])  # a window start, then n frames
                self.push_many(frames[1:], shifts[1:])
            self._emit()  # the temporal statistic, macro-pixel correction, download
            self.reset()
            cp.cuda.get_current_stream().synchronize()
        finally:
            self._fixed_shape = saved
            self._frames_seen = self._windows_emitted = 0

    # ----------------------------------------------------------------- pushing
    def push(
        self, frame: np.ndarray, *, shift: Sequence[float] = (0.0, 0.0)
    ) -> SlidingResult | None:
        """Add one frame; return the window's image when this frame completes one.

        Parameters
        ----------
        frame : (H, W) array, real dtype
            Camera frame (host memory).
        shift : (dy, dx), input pixels
            Sample displacement undone inside the magnification.

        Returns
        -------
        SlidingResult or None
            As :meth:`livesr.kernels.SlidingEsrrf.push`; the image is a host array.
        """
        raw_in = np.asarray(frame)
        if raw_in.ndim != 2:
            validate_frame(raw_in)  # raises with the message of the host window
        dy, dx = validate_shift(shift)
        out = self.push_many(raw_in[None], np.array([[dy, dx]]))
        return out[0] if out else None

    def push_many(
        self,
        frames: Iterable[np.ndarray] | np.ndarray,
        shifts: Any = None,
        *,
        deadline_s: float | None = None,
    ) -> list[SlidingResult]:
        """Push a batch of frames in order; return the images they complete.

        The batch is uploaded once (pinned), mapped by one call of the batch map
        (one engine decision, the CuPy kernels compute every frame's taps from its
        shift), the window sums are updated for all frames of the batch in one
        launch per emitted image, and each completed window is emitted.  Equal to
        pushing the frames one by one.

        Parameters
        ----------
        frames : (N, H, W) array or sequence of (H, W) frames, real dtype
        shifts : (N, 2) array-like of (dy, dx), input px, optional
        deadline_s : float, optional
            Throughput deadline of the batch's maps, s; default
            ``N * self.deadline_s`` when that is set.

        Returns
        -------
        list of SlidingResult
            In emission order (possibly empty).
        """
        as_array = frames if isinstance(frames, np.ndarray) else np.asarray(list(frames))
        stack, sh = self._batch(as_array, shifts)
        assert isinstance(stack, np.ndarray)
        n = len(stack)
        if not np.isfinite(sh).all():
            raise ValueError("shifts must be finite (dy, dx) in input pixels")
        self._check_shape(stack.shape[1:])
        out: list[SlidingResult] = []
        self._emitted_in_call = 0
        for c0 in range(0, n, self._max_batch):
            c1 = min(n, c0 + self._max_batch)
            if deadline_s is not None:
                dl: float | None = deadline_s * (c1 - c0) / n
            elif self.deadline_s is not None:
                dl = self.deadline_s * (c1 - c0)
            else:
                dl = None
            out += self._push_chunk(stack[c0:c1], sh[c0:c1], dl)
        return out

    def _push_chunk(
        self, stack: np.ndarray, shifts: np.ndarray, deadline_s: float | None
    ) -> list[SlidingResult]:
        need = self._entering(len(stack))
        i0 = self._frames_seen
        if need:
            check_frames(stack, i0)
            if self._shape is None:
                self._allocate(stack.shape[1:])
            self._map_batch(stack, shifts, need, deadline_s)
        results: list[SlidingResult] = []
        window = self._cfg.window
        for k in range(len(stack)):
            i = i0 + k
            if self._skip_if_between_windows(i):
                continue
            start = self._next_emit - window + 1
            x = self._map_of(i)
            if self._hi > self._lo and (self._hi != i or self._hi - 1 < start):
                self._lo = self._hi = i
            evict = max(0, min(i - window + 1, self._hi) - self._lo)
            steady = evict == 1 and self._hi - self._lo >= 2
            if not steady:
                for _ in range(evict):
                    self._remove_first()
            if steady:
                lo = self._lo
                self._op(self._map_of(lo), self._map_of(lo + 1), x, self._map_of(i - 1))
                self._lo = lo + 1
            elif self._hi == self._lo:
                self._start_window(i, x)
            else:
                self._op(None, None, x, self._map_of(i - 1))
            self._hi = i + 1
            self._frames_seen += 1
            if i == self._next_emit:
                results.append(self._emit())
                self._emitted(i)
        self._flush()
        self._keep_batch_maps()
        return results

    # -------------------------------------------------------------- set_params
    def set_params(self, *, recompute: bool = False, **changes: Any) -> None:
        """Change settings while streaming (as :meth:`SlidingEsrrf.set_params`).

        Temporal mode and macro-pixel correction change for free (all three sums
        are kept). Map settings, window or stride: with ``recompute=True`` the maps
        of the stored frames that stay in the window are recomputed on the device
        from their raw frames and shifts (the window carries on); otherwise the
        window restarts.
        """
        new_cfg, new_params = self._changed(changes)  # validates
        old_cfg, old_params = self._cfg, self._params
        self._cfg, self._params = new_cfg, new_params
        if self._shape is None:
            self._shifts = np.zeros((new_cfg.window, 2), dtype=np.float64)
            self._next_emit = self._schedule_after_change(old_cfg)
            return
        maps_invalid = new_params != old_params
        geometry_changed = (
            new_cfg.window != old_cfg.window
            or new_params.magnification != old_params.magnification
        )
        if not (maps_invalid or geometry_changed) and (
            new_cfg.stride == old_cfg.stride
        ):
            return  # temporal / macro-pixel: free
        if not recompute and maps_invalid:
            self._restart_schedule()
            if geometry_changed:
                self._reallocate(keep=False)
            return
        self._next_emit = self._schedule_after_change(old_cfg)
        keep_from = self._next_emit - new_cfg.window + 1
        if not (maps_invalid or geometry_changed):  # stride only
            while self._hi > self._lo and self._lo < keep_from:
                self._remove_first()
            self._flush()
            return
        self._lo = min(max(self._lo, keep_from), self._hi)
        if geometry_changed:
            self._reallocate(keep=True, old_window=old_cfg.window)
        self._rebuild()

    # --------------------------------------------------------------- emitting
    def _emit(self) -> SlidingResult:
        self._flush()
        lo, hi = self._lo, self._hi
        n = hi - lo
        mode = _MODES.index(self._cfg.temporal)
        if mode == 2 and n < 2:
            raise ValueError("TAC2 needs at least 2 frames in the window")
        out = cp.empty(self._ref.shape, dtype=cp.float32)
        self._launch(
            self._comb,
            (
                np.int32(mode),
                np.int32(n),
                *self._sums,
                self._ref,
                self._map_of(lo),
                self._map_of(hi - 1),
                out,
            ),
        )
        if self._cfg.macro_pixel_correction:
            from livesr.kernels.macro_pixel._cupy import macro_pixel_cupy

            out = macro_pixel_cupy(out, self._params.magnification)
        quality = device_quality(out)
        return SlidingResult(self._download(out), lo, hi - 1, n, quality)

    def _download(self, image: Any) -> np.ndarray:
        """The image on the host: a new array, or the next pinned result buffer (a
        new array once one call has emitted as many images as there are buffers,
        so every image a call returns is intact)."""
        self._emitted_in_call += 1
        if not self._results or self._emitted_in_call > len(self._results):
            return cp.asnumpy(image)
        buf = self._results[self._next_result]
        self._next_result = (self._next_result + 1) % len(self._results)
        image.get(out=buf)
        return buf
