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

Only the ``"nanopyx"`` geometry is offered (what the engine's ``esrrf_map``
implementations compute).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from livesr.kernels._lazy import LazyModule
from livesr.kernels._params import EsrrfParams, validate_frame, validate_shift
from livesr.kernels.sliding import SlidingConfig, SlidingResult

__all__ = ["DeviceSlidingEsrrf", "device_available"]

logger = logging.getLogger(__name__)

cp: Any = LazyModule("cupy")

_ESRRF_FIELDS = ("magnification", "radius", "sensitivity", "intensity_weighting")
_WINDOW_FIELDS = ("window", "stride", "temporal", "macro_pixel_correction")
_MODES = ("avg", "var", "tac2")

_SOURCE = r"""
__device__ __forceinline__ void two_sum(double &hi, double &lo, double y) {
    double t = hi + y;
    double z = t - hi;
    double e = (y - z) + (hi - (t - z));
    hi = t;
    lo = lo + e;
}

extern "C" __global__ void window_update(
    double *s_hi, double *s_lo, double *q_hi, double *q_lo, double *p_hi,
    double *p_lo, const float *ref,
    const float *x_rem, const float *x_next, int do_rem, int has_next,
    const float *x_add, const float *x_prev, int do_add, int has_prev,
    long long n)
{
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    double r = (double)ref[k];
    double sh = s_hi[k], sl = s_lo[k], qh = q_hi[k], ql = q_lo[k];
    double ph = p_hi[k], pl = p_lo[k];
    if (do_rem) {
        double y = (double)x_rem[k] - r;
        two_sum(sh, sl, -y);
        two_sum(qh, ql, -(y * y));
        if (has_next) {
            double yf = (double)x_next[k] - r;
            two_sum(ph, pl, -(y * yf));
        }
    }
    if (do_add) {
        double y = (double)x_add[k] - r;
        two_sum(sh, sl, y);
        two_sum(qh, ql, y * y);
        if (has_prev) {
            double yp = (double)x_prev[k] - r;
            two_sum(ph, pl, yp * y);
        }
    }
    s_hi[k] = sh; s_lo[k] = sl; q_hi[k] = qh; q_lo[k] = ql; p_hi[k] = ph; p_lo[k] = pl;
}

// The window updates of a batch in one pass: op k removes map rem (with the
// following map nxt) and/or adds map add (after map prev), pointers in
// ops[4k .. 4k+3] (0: absent), in order; exactly the arithmetic of k calls to
// window_update, with the sums read and written once.
extern "C" __global__ void window_update_many(
    double *s_hi, double *s_lo, double *q_hi, double *q_lo, double *p_hi,
    double *p_lo, const float *ref, const unsigned long long *ops, int nops,
    long long n)
{
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    double r = (double)ref[k];
    double sh = s_hi[k], sl = s_lo[k], qh = q_hi[k], ql = q_lo[k];
    double ph = p_hi[k], pl = p_lo[k];
    for (int o = 0; o < nops; o++) {
        const float *x_rem = (const float *)ops[4 * o];
        const float *x_next = (const float *)ops[4 * o + 1];
        const float *x_add = (const float *)ops[4 * o + 2];
        const float *x_prev = (const float *)ops[4 * o + 3];
        if (x_rem) {
            double y = (double)x_rem[k] - r;
            two_sum(sh, sl, -y);
            two_sum(qh, ql, -(y * y));
            if (x_next) {
                double yf = (double)x_next[k] - r;
                two_sum(ph, pl, -(y * yf));
            }
        }
        if (x_add) {
            double y = (double)x_add[k] - r;
            two_sum(sh, sl, y);
            two_sum(qh, ql, y * y);
            if (x_prev) {
                double yp = (double)x_prev[k] - r;
                two_sum(ph, pl, yp * y);
            }
        }
    }
    s_hi[k] = sh; s_lo[k] = sl; q_hi[k] = qh; q_lo[k] = ql; p_hi[k] = ph; p_lo[k] = pl;
}

extern "C" __global__ void window_combine(
    int mode, int n, const double *s_hi, const double *s_lo, const double *q_hi,
    const double *q_lo, const double *p_hi, const double *p_lo, const float *ref,
    const float *first, const float *last, float *out, long long npix)
{
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= npix) return;
    double nf = (double)n;
    double r = (double)ref[k];
    double mean = (s_hi[k] + s_lo[k]) / nf;
    if (mode == 0) {
        out[k] = (float)(mean + r);
    } else if (mode == 1) {
        double v = (q_hi[k] + q_lo[k]) / nf;
        v = v - mean * mean;
        if (v < 0.0) v = 0.0;
        out[k] = (float)v;
    } else {
        double ab = (s_hi[k] + s_lo[k]) * 2.0;
        ab = ab - ((double)first[k] - r);
        ab = ab - ((double)last[k] - r);
        double acc = p_hi[k] + p_lo[k];
        acc = acc - mean * ab;
        acc = acc + (double)(n - 1) * (mean * mean);
        out[k] = (float)(acc / (double)(n - 1));
    }
}
"""

_THREADS = 256


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


@functools.lru_cache(maxsize=8)
def _kernels(device_id: int) -> tuple[Any, Any, Any]:
    del device_id  # one compiled module per device
    mod = cp.RawModule(code=_SOURCE, options=("--fmad=false",))
    return (
        mod.get_function("window_update"),
        mod.get_function("window_combine"),
        mod.get_function("window_update_many"),
    )


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


def _per_frame_batch(frame_map: DeviceFrameMap) -> DeviceBatchMap:
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


class DeviceSlidingEsrrf:
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
            _per_frame_batch(frame_map)
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
        self._frames_seen = 0
        self._windows_emitted = 0
        self._last_emit: int | None = None
        self._next_emit = self._cfg.window - 1
        self._lo = self._hi = 0
        self._shape: tuple[int, int] | None = None
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
    def frames_seen(self) -> int:
        """Frames pushed since creation or :meth:`reset`."""
        return self._frames_seen

    @property
    def windows_emitted(self) -> int:
        """Images returned since creation or :meth:`reset`."""
        return self._windows_emitted

    @property
    def window(self) -> int:
        """Frames per emitted image."""
        return self._cfg.window

    @property
    def stride(self) -> int:
        """Frames between emitted images."""
        return self._cfg.stride

    @property
    def temporal(self) -> str:
        """Temporal statistic."""
        return self._cfg.temporal

    @property
    def next_emission(self) -> int:
        """Index of the frame whose arrival emits the next image."""
        return self._next_emit

    @property
    def strategy(self) -> str:
        """``"device"``: maps and sums live on the CUDA device."""
        return "device"

    @property
    def max_batch(self) -> int:
        """Frames per map launch in :meth:`push_many`."""
        return self._max_batch

    @property
    def n_stored(self) -> int:
        """Frames currently held in the window."""
        return self._hi - self._lo

    @property
    def memory_bytes(self) -> int:
        """Device bytes held by the rings, sums, reference map and batch buffers."""
        arrays = [self._raw, self._maps, self._ref, *self._sums]
        arrays += [self._bframes, self._bmaps]
        return sum(int(a.nbytes) for a in arrays if a is not None)

    @staticmethod
    def bytes_needed(
        window: int,
        frame_shape: tuple[int, int],
        magnification: int,
        max_batch: int = 1,
    ) -> int:
        """Device bytes for ``window`` frames of ``frame_shape`` at magnification,
        with batch buffers for ``max_batch`` frames."""
        h, w = frame_shape
        px = h * w * magnification * magnification
        maps = (window + 1 + max_batch) * px * 4
        sums = 6 * px * 8
        ref_and_output = 3 * px * 4  # reference map, combined image, corrected copy
        return maps + sums + ref_and_output + (window + max_batch) * h * w * 4

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
        frames: Sequence[np.ndarray] | np.ndarray,
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
        stack = frames if isinstance(frames, np.ndarray) else np.asarray(list(frames))
        if stack.ndim != 3:
            raise ValueError(
                f"frames must be a (N, H, W) stack or a sequence of frames, got "
                f"shape {stack.shape}; use push() for a single frame"
            )
        n = len(stack)
        sh = np.zeros((n, 2)) if shifts is None else np.asarray(shifts, np.float64)
        if sh.shape != (n, 2):
            raise ValueError(f"shifts must have shape ({n}, 2), got {sh.shape}")
        if not np.isfinite(sh).all():
            raise ValueError("shifts must be finite (dy, dx) in input pixels")
        if self._shape is not None and stack.shape[1:] != self._shape:
            raise ValueError(
                f"frame {self._frames_seen} has shape {stack.shape[1:]}, expected "
                f"{self._shape} like the earlier frames; call reset() before "
                "changing the frame size"
            )
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

    def _needed(self, n: int) -> list[int]:
        """Offsets of the next ``n`` frames that belong to a window (the others,
        between windows when ``stride > window``, are counted, never mapped)."""
        need, nxt, window = [], self._next_emit, self._cfg.window
        for k in range(n):
            i = self._frames_seen + k
            if i >= nxt - window + 1:
                need.append(k)
            if i == nxt:
                nxt += self._cfg.stride
        return need

    def _push_chunk(
        self, stack: np.ndarray, shifts: np.ndarray, deadline_s: float | None
    ) -> list[SlidingResult]:
        need = self._needed(len(stack))
        i0 = self._frames_seen
        if need:
            _check_frames(stack, i0)
            if self._shape is None:
                self._allocate(stack.shape[1:])
            self._map_batch(stack, shifts, need, deadline_s)
        results: list[SlidingResult] = []
        window = self._cfg.window
        for k in range(len(stack)):
            i = i0 + k
            start = self._next_emit - window + 1
            if i < start:
                self._frames_seen += 1
                continue
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
                self._last_emit = i
                self._next_emit = i + self._cfg.stride
                self._windows_emitted += 1
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
        allowed = set(_ESRRF_FIELDS + _WINDOW_FIELDS)
        bad = sorted(set(changes) - allowed)
        if bad:
            raise ValueError(
                f"set_params got unsupported setting(s) {bad}; allowed: "
                f"{sorted(allowed)}"
            )
        old_cfg, old_params = self._cfg, self._params
        new_cfg = replace(
            old_cfg, **{k: v for k, v in changes.items() if k in _WINDOW_FIELDS}
        )
        new_params = replace(
            old_params, **{k: v for k, v in changes.items() if k in _ESRRF_FIELDS}
        )
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
            self._lo = self._hi = self._frames_seen
            self._next_emit = self._frames_seen + new_cfg.window - 1
            self._last_emit = None
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

    # --------------------------------------------------------------- internals
    def _schedule_after_change(self, old_cfg: SlidingConfig) -> int:
        cfg = self._cfg
        if cfg.window == old_cfg.window and cfg.stride == old_cfg.stride:
            return self._next_emit
        seen = self._frames_seen
        contiguous = self._hi > self._lo and self._hi == seen
        start = self._lo if contiguous else seen
        if contiguous:
            start = max(start, seen - cfg.window + 1)
        nxt = max(seen, start + cfg.window - 1)
        if self._last_emit is not None:
            nxt = max(nxt, self._last_emit + cfg.stride)
        return nxt

    def _allocate(self, shape: tuple[int, int]) -> None:
        h, w = int(shape[0]), int(shape[1])
        m = self._params.magnification
        nb = self._max_batch
        need = self.bytes_needed(self._cfg.window, (h, w), m, nb)
        free, _total = cp.cuda.runtime.memGetInfo()
        free += cp.get_default_memory_pool().free_bytes()  # cached, reusable
        if need > self._fraction * free:
            raise MemoryError(
                f"DeviceSlidingEsrrf needs {need / 2**20:.0f} MiB of device memory for "
                f"window={self._cfg.window}, frames {h}x{w}, magnification {m}, "
                f"max_batch={nb}; {free / 2**20:.0f} MiB are free and "
                f"device_fraction={self._fraction} allows "
                f"{self._fraction * free / 2**20:.0f} MiB. "
                "Use the host SlidingEsrrf, a smaller window or a smaller max_batch"
            )
        self._shape = (h, w)
        cap = self._cfg.window
        mshape = (h * m, w * m)
        self._raw = cp.empty((cap, h, w), dtype=cp.float32)
        self._maps = cp.empty((cap + 1, *mshape), dtype=cp.float32)
        self._sums = [cp.zeros(mshape, dtype=cp.float64) for _ in range(6)]
        self._ref = cp.zeros(mshape, dtype=cp.float32)
        self._shifts = np.zeros((cap, 2), dtype=np.float64)
        self._bframes = cp.empty((nb, h, w), dtype=cp.float32)
        self._bmaps = cp.empty((nb, *mshape), dtype=cp.float32)
        self._pinned = _pinned((nb, h, w), np.float32)
        self._pinned_shifts = _pinned((nb, 2), np.float64)
        self._uploaded = cp.cuda.Event(block=False, disable_timing=True)
        self._results = [_pinned(mshape, np.float32) for _ in range(self._n_results)]
        self._next_result = 0
        self._upd, self._comb, self._upd_many = _kernels(cp.cuda.Device().id)
        logger.debug(
            "device window allocated: %d MiB for %s frames", need // 2**20, (h, w)
        )

    def _reallocate(self, *, keep: bool, old_window: int | None = None) -> None:
        """New rings for a new window or magnification, keeping the raw frames."""
        assert self._shape is not None
        old_raw, old_shifts = self._raw, self._shifts
        old_cap = old_window or old_raw.shape[0]
        stored = list(range(self._lo, self._hi)) if keep else []
        frames = [cp.array(old_raw[j % old_cap]) for j in stored]
        shifts = [old_shifts[j % old_cap].copy() for j in stored]
        self._allocate(self._shape)
        cap = self._cfg.window
        for j, f, s in zip(stored, frames, shifts, strict=True):
            self._raw[j % cap] = f
            self._shifts[j % cap] = s

    def _slot(self, j: int) -> Any:
        return self._maps[j % (self._cfg.window + 1)]

    def _map_of(self, j: int) -> Any:
        """Frame ``j``'s map: in the batch buffer while its batch runs, else its slot."""
        x = self._in_batch.get(j)
        return self._slot(j) if x is None else x

    def _map_batch(
        self,
        stack: np.ndarray,
        shifts: np.ndarray,
        need: list[int],
        deadline_s: float | None,
    ) -> None:
        """Upload the needed frames once (pinned), store them, map them in one call."""
        assert self._pinned is not None
        nn = len(need)
        contiguous = need == list(range(need[0], need[0] + nn))
        src = stack[need[0] : need[0] + nn] if contiguous else stack[need]
        host = self._pinned[:nn]
        self._uploaded.synchronize()  # the previous batch has left the pinned buffer
        with np.errstate(over="ignore"):
            np.copyto(host, src, casting="unsafe")
        if src.dtype.kind == "f" and not np.isfinite(host).all():  # ints: finite
            bad = int(np.count_nonzero(~np.isfinite(host)))
            raise ValueError(
                f"frames {self._frames_seen}..{self._frames_seen + len(stack) - 1} "
                f"contain {bad} non-finite value(s) (NaN or inf, possibly out of "
                "float32 range)"
            )
        psh = self._pinned_shifts[:nn]
        psh[...] = shifts[need]
        dev = self._bframes[:nn]
        dev.set(host)
        self._uploaded.record()
        maps = self._bmaps[:nn]
        res = self._batch_fn(host, dev, self._params, psh, deadline_s, maps)
        if isinstance(res, np.ndarray):
            self.maps_uploaded += nn
            maps.set(np.ascontiguousarray(res, dtype=np.float32))
        elif res is not maps:
            maps[...] = res
        cap = self._cfg.window
        i0 = self._frames_seen
        for j, k in enumerate(need):
            i = i0 + k
            self._in_batch[i] = maps[j]
            self._raw[i % cap] = dev[j]
            self._shifts[i % cap] = psh[j]

    def _keep_batch_maps(self) -> None:
        """Move the maps of the batch's frames still in the window to their slots."""
        for j, x in self._in_batch.items():
            if self._lo <= j < self._hi:
                self._slot(j)[...] = x
        self._in_batch.clear()

    def _op(self, rem: Any, nxt: Any, add: Any, prev: Any) -> None:
        """Queue one window update (pointers; launched by :meth:`_flush`)."""
        self._ops += [0 if a is None else int(a.data.ptr) for a in (rem, nxt, add, prev)]

    def _flush(self) -> None:
        """Apply the queued updates in one launch."""
        if not self._ops:
            return
        ops = cp.asarray(np.array(self._ops, dtype=np.uint64))
        n = int(self._ref.size)
        self._upd_many(
            ((n + _THREADS - 1) // _THREADS,),
            (_THREADS,),
            (*self._sums, self._ref, ops, np.int32(len(self._ops) // 4), np.int64(n)),
        )
        self._ops = []

    def _launch(self, kernel: Any, args: tuple[Any, ...]) -> None:
        n = int(self._ref.size)
        kernel(((n + _THREADS - 1) // _THREADS,), (_THREADS,), (*args, np.int64(n)))

    def _start_window(self, i: int, x: Any) -> None:
        self._flush()
        for s in self._sums:
            s.fill(0)
        self._ref[...] = x
        self._lo = i
        self._op(None, None, x, None)

    def _remove_first(self) -> None:
        lo = self._lo
        if self._hi - lo <= 1:
            self._lo = self._hi
            return
        self._op(self._map_of(lo), self._map_of(lo + 1), None, None)
        self._lo = lo + 1

    def _rebuild(self) -> None:
        """Recompute the stored frames' maps and the sums (after a settings change)."""
        lo, hi = self._lo, self._hi
        if hi == lo:
            return
        cap = self._cfg.window
        nb = self._max_batch
        for c0 in range(lo, hi, nb):
            c1 = min(hi, c0 + nb)
            n = c1 - c0
            for j in range(c0, c1):
                self._bframes[j - c0] = self._raw[j % cap]
            host = self._pinned[:n]
            self._bframes[:n].get(out=host)
            psh = self._pinned_shifts[:n]
            psh[...] = [self._shifts[j % cap] for j in range(c0, c1)]
            maps = self._bmaps[:n]
            res = self._batch_fn(host, self._bframes[:n], self._params, psh, None, maps)
            if isinstance(res, np.ndarray):
                self.maps_uploaded += n
                maps.set(np.ascontiguousarray(res, dtype=np.float32))
            elif res is not maps:
                maps[...] = res
            for j in range(c0, c1):
                x = self._slot(j)
                x[...] = maps[j - c0]
                if j == lo:
                    self._start_window(lo, x)
                else:
                    self._op(None, None, x, self._slot(j - 1))
            self._flush()  # the batch buffer is reused by the next chunk
        self._hi = hi

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
        quality = _device_quality(out)
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


def _device_quality(img: Any) -> float:
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


def _pinned(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A page-locked host array (fast, asynchronous uploads and downloads)."""
    count = int(np.prod(shape))
    mem = cp.cuda.alloc_pinned_memory(max(1, count * np.dtype(dtype).itemsize))
    return np.frombuffer(mem, dtype=dtype, count=count).reshape(shape)


def _check_frames(stack: np.ndarray, first: int) -> None:
    """Real, non-empty (N, H, W) frames (NaN/inf are checked after the float32 cast)."""
    if stack.dtype.kind not in "uif" or stack.shape[1] < 1 or stack.shape[2] < 1:
        raise ValueError(
            f"frames {first}.. must be real (H, W) images with H, W >= 1; got "
            f"{stack.dtype} {stack.shape[1:]}"
        )
