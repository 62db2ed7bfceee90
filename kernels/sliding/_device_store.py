"""Device storage of :class:`~livesr.kernels.sliding.DeviceSlidingEsrrf`.

:class:`DeviceStorage` allocates the rings (raw frames, maps), the six float64
sums and the reference map on the CUDA device, maps batches of frames, and queues
the window updates as pointer quadruples applied by one ``window_update_many``
launch (:mod:`livesr.kernels.window_sums._cupy`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from livesr.kernels._lazy import LazyModule
from livesr.kernels.sliding._base import SlidingBase
from livesr.kernels.sliding._device_maps import DeviceBatchMap, pinned
from livesr.kernels.window_sums._cupy import THREADS, cuda_kernels, grid

__all__ = ["DeviceStorage"]

logger = logging.getLogger(__name__)

cp: Any = LazyModule("cupy")


class DeviceStorage(SlidingBase):
    """Device rings, sums and batch buffers of the device window (no public API)."""

    _batch_fn: DeviceBatchMap
    _fraction: float
    _max_batch: int
    _n_results: int
    _raw: Any
    _maps: Any
    _sums: list[Any]
    _ref: Any
    _shifts: np.ndarray
    _pinned: np.ndarray | None
    _bframes: Any
    _bmaps: Any
    _in_batch: dict[int, Any]
    _ops: list[int]
    maps_uploaded: int

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
        self._pinned = pinned((nb, h, w), np.float32)
        self._pinned_shifts = pinned((nb, 2), np.float64)
        self._uploaded = cp.cuda.Event(block=False, disable_timing=True)
        self._results = [pinned(mshape, np.float32) for _ in range(self._n_results)]
        self._next_result = 0
        self._upd, self._comb, self._upd_many = cuda_kernels(cp.cuda.Device().id)
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
            grid(n),
            (THREADS,),
            (*self._sums, self._ref, ops, np.int32(len(self._ops) // 4), np.int64(n)),
        )
        self._ops = []

    def _launch(self, kernel: Any, args: tuple[Any, ...]) -> None:
        n = int(self._ref.size)
        kernel(grid(n), (THREADS,), (*args, np.int64(n)))

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
        assert self._pinned is not None
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
