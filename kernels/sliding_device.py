"""GPU-resident sliding-window eSRRF: frames stay on the device from upload to image.

:class:`DeviceSlidingEsrrf` is the CUDA (CuPy) twin of
:class:`livesr.kernels.SlidingEsrrf`, with the same emission schedule, results and
streaming API (``push``, ``set_params``, ``reset``, ``next_emission``, ...), for the
case where the engine's fastest ``esrrf_map`` implementation is the GPU one. Per
frame:

1. the frame is copied into a pinned (page-locked) host buffer and uploaded
   asynchronously (``H*W*4`` bytes; 256 KiB for 256², 16 MiB for 2048²);
2. its per-frame eSRRF map is computed on the device by the ``esrrf_map`` kernel,
   dispatched through the engine with the stream's latency budget as the deadline;
   the engine's ``adapt`` hook hands the CuPy implementation the device copy, so
   the map never leaves the device (if the delay agent moves away from a busy GPU
   to a CPU implementation, that map is computed from the host frame and uploaded:
   the window stays correct, only slower);
3. the map enters a device ring of the window's maps and the running sums
   ``S = sum y``, ``Q = sum y**2``, ``P = sum y_t y_{t+1}`` (``y = x - K``, ``K``
   the first map of the window) are updated in float64 with error-free (TwoSum)
   compensation -- the same arithmetic as the host's
   :class:`livesr.kernels._window.WindowMoments`, compiled without FMA contraction
   so an added term and the removed one are bit-identical and nothing drifts;
4. every ``stride`` frames the temporal statistic (AVG, VAR or TAC2) and the
   macro-pixel correction run on the device and only the image is downloaded
   (``H*M*W*M*4`` bytes, once per emission).

There is no host round trip between stages. Memory on the device: ``window + 1``
maps, ``window`` raw float32 frames, six float64 sums and the reference map, i.e.
about ``(window + 1) * 4 + 52`` bytes per output pixel (window 50 at 256², M = 5:
380 MB); :class:`DeviceSlidingEsrrf` refuses to start (``MemoryError`` with the
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
def _kernels(device_id: int) -> tuple[Any, Any]:
    del device_id  # one compiled module per device
    mod = cp.RawModule(code=_SOURCE, options=("--fmad=false",))
    return mod.get_function("window_update"), mod.get_function("window_combine")


#: ``fn(host_frame, device_frame, params, shift, deadline_s) -> map`` (cupy or numpy)
DeviceFrameMap = Callable[..., Any]


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
        ``fn(host_frame, device_frame, params, shift, deadline_s)`` returning the
        ``(H*M, W*M)`` float32 map as a cupy or numpy array; default: the engine's
        ``esrrf_map`` (:func:`engine_device_map`).
    device_fraction : float
        Largest share of the free device memory this object may take, in (0, 1].

    Attributes
    ----------
    deadline_s : float or None
        Latency budget handed to the engine with the next frame's map, s (the
        pipeline sets it per frame).
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
        device_fraction: float = 0.5,
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
        self._map_fn = frame_map or engine_device_map
        self._fraction = float(device_fraction)
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
    def n_stored(self) -> int:
        """Frames currently held in the window."""
        return self._hi - self._lo

    @property
    def memory_bytes(self) -> int:
        """Device bytes held by the rings, sums and reference map."""
        arrays = [self._raw, self._maps, self._ref, *self._sums]
        return sum(int(a.nbytes) for a in arrays if a is not None)

    @staticmethod
    def bytes_needed(
        window: int, frame_shape: tuple[int, int], magnification: int
    ) -> int:
        """Device bytes for ``window`` frames of ``frame_shape`` at magnification."""
        h, w = frame_shape
        px = h * w * magnification * magnification
        maps = (window + 1) * px * 4
        sums = 6 * px * 8
        ref_and_output = 3 * px * 4  # reference map, combined image, corrected copy
        return maps + sums + ref_and_output + window * h * w * 4

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
        i = self._frames_seen
        raw_in = np.asarray(frame)
        if self._shape is not None and raw_in.shape != self._shape:
            raise ValueError(
                f"frame {i} has shape {raw_in.shape}, expected {self._shape} like the "
                "earlier frames; call reset() before changing the frame size"
            )
        window = self._cfg.window
        start = self._next_emit - window + 1
        if i < start:
            self._frames_seen += 1
            return None
        f32 = validate_frame(raw_in)
        dy, dx = validate_shift(shift)
        if self._shape is None:
            self._allocate(f32.shape)
        if self._hi > self._lo and (self._hi != i or self._hi - 1 < start):
            self._lo = self._hi = i
        evict = max(0, min(i - window + 1, self._hi) - self._lo)
        steady = evict == 1 and self._hi - self._lo >= 2
        if not steady:
            for _ in range(evict):
                self._remove_first()
        x = self._map_into(i, f32, (dy, dx))
        if steady:
            lo = self._lo
            self._update(
                rem=self._slot(lo),
                nxt=self._slot(lo + 1),
                add=x,
                prev=self._slot(i - 1),
            )
            self._lo = lo + 1
        elif self._hi == self._lo:
            self._start_window(i, x)
        else:
            self._update(add=x, prev=self._slot(i - 1))
        self._hi = i + 1
        self._frames_seen += 1
        if i == self._next_emit:
            result = self._emit()
            self._last_emit = i
            self._next_emit = i + self._cfg.stride
            self._windows_emitted += 1
            return result
        return None

    def push_many(
        self, frames: Sequence[np.ndarray] | np.ndarray, shifts: Any = None
    ) -> list[SlidingResult]:
        """Push several frames in order; return the images they complete."""
        n = len(frames)
        sh = np.zeros((n, 2)) if shifts is None else np.asarray(shifts, np.float64)
        if sh.shape != (n, 2):
            raise ValueError(f"shifts must have shape ({n}, 2), got {sh.shape}")
        out = []
        for k in range(n):
            r = self.push(frames[k], shift=(sh[k, 0], sh[k, 1]))
            if r is not None:
                out.append(r)
        return out

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
        need = self.bytes_needed(self._cfg.window, (h, w), m)
        free, _total = cp.cuda.runtime.memGetInfo()
        if need > self._fraction * free:
            raise MemoryError(
                f"DeviceSlidingEsrrf needs {need / 2**20:.0f} MiB of device memory for "
                f"window={self._cfg.window}, frames {h}x{w}, magnification {m}; "
                f"{free / 2**20:.0f} MiB are free and device_fraction="
                f"{self._fraction} allows {self._fraction * free / 2**20:.0f} MiB. "
                "Use the host SlidingEsrrf or a smaller window"
            )
        self._shape = (h, w)
        cap = self._cfg.window
        mshape = (h * m, w * m)
        self._raw = cp.empty((cap, h, w), dtype=cp.float32)
        self._maps = cp.empty((cap + 1, *mshape), dtype=cp.float32)
        self._sums = [cp.zeros(mshape, dtype=cp.float64) for _ in range(6)]
        self._ref = cp.zeros(mshape, dtype=cp.float32)
        self._shifts = np.zeros((cap, 2), dtype=np.float64)
        mem = cp.cuda.alloc_pinned_memory(h * w * 4)
        self._pinned = np.frombuffer(mem, dtype=np.float32, count=h * w).reshape(h, w)
        self._upd, self._comb = _kernels(cp.cuda.Device().id)
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

    def _map_into(self, i: int, f32: np.ndarray, shift: tuple[float, float]) -> Any:
        """Upload frame ``i`` (pinned), store it, compute its map into its slot."""
        assert self._pinned is not None
        cap = self._cfg.window
        np.copyto(self._pinned, f32)
        dev = self._raw[i % cap]
        dev.set(self._pinned)
        self._shifts[i % cap] = shift
        return self._compute(i, f32, dev, shift)

    def _compute(self, i: int, host: np.ndarray, dev: Any, shift: Any) -> Any:
        d = self.deadline_s
        deadline = None if d is None else max(float(d), 1e-6)
        out = self._map_fn(host, dev, self._params, tuple(shift), deadline)
        slot = self._slot(i)
        if isinstance(out, np.ndarray):
            self.maps_uploaded += 1
            slot.set(np.ascontiguousarray(out, dtype=np.float32))
        else:
            slot[...] = out
        return slot

    def _launch(self, kernel: Any, args: tuple[Any, ...]) -> None:
        n = int(self._ref.size)
        kernel(((n + _THREADS - 1) // _THREADS,), (_THREADS,), (*args, np.int64(n)))

    def _update(
        self, *, rem: Any = None, nxt: Any = None, add: Any = None, prev: Any = None
    ) -> None:
        dummy = self._ref
        self._launch(
            self._upd,
            (
                *self._sums,
                self._ref,
                rem if rem is not None else dummy,
                nxt if nxt is not None else dummy,
                np.int32(rem is not None),
                np.int32(nxt is not None),
                add if add is not None else dummy,
                prev if prev is not None else dummy,
                np.int32(add is not None),
                np.int32(prev is not None),
            ),
        )

    def _start_window(self, i: int, x: Any) -> None:
        for s in self._sums:
            s.fill(0)
        self._ref[...] = x
        self._lo = i
        self._update(add=x)

    def _remove_first(self) -> None:
        lo = self._lo
        if self._hi - lo <= 1:
            self._lo = self._hi
            return
        self._update(rem=self._slot(lo), nxt=self._slot(lo + 1))
        self._lo = lo + 1

    def _rebuild(self) -> None:
        """Recompute the stored frames' maps and the sums (after a settings change)."""
        lo, hi = self._lo, self._hi
        if hi == lo:
            return
        cap = self._cfg.window
        host = np.empty(self._shape, dtype=np.float32)
        for j in range(lo, hi):
            dev = self._raw[j % cap]
            dev.get(out=host)
            x = self._compute(j, host, dev, self._shifts[j % cap])
            if j == lo:
                self._start_window(lo, x)
            else:
                self._update(add=x, prev=self._slot(j - 1))
        self._hi = hi

    def _emit(self) -> SlidingResult:
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
                self._slot(lo),
                self._slot(hi - 1),
                out,
            ),
        )
        if self._cfg.macro_pixel_correction:
            from livesr.kernels.macro_pixel._cupy import macro_pixel_cupy

            out = macro_pixel_cupy(out, self._params.magnification)
        image = cp.asnumpy(out)
        return SlidingResult(image, lo, hi - 1, n)
