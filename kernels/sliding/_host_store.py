"""Storage of the host sliding window: strategy, rings, spare maps, running sums.

:class:`HostStorage` is the part of :class:`~livesr.kernels.sliding.SlidingEsrrf`
that decides and holds what is stored (module docstring of
:mod:`livesr.kernels.sliding`: the ``"maps"`` and ``"raw"`` strategies, shadow
sums) and keeps the running sums in step with the stored frames ``[lo, hi)``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from livesr.kernels._params import EsrrfParams
from livesr.kernels._window import WindowMoments, window_mean
from livesr.kernels.sliding._base import SlidingBase
from livesr.kernels.sliding._config import (
    COMPACT_DTYPES,
    FrameMap,
    SlidingConfig,
    Strategy,
    estimate_memory,
)

__all__ = ["HostStorage"]

logger = logging.getLogger(__name__)


class HostStorage(SlidingBase):
    """Stored frames, maps and sums of the host window (no public API)."""

    _sums_backend: str
    _strategy: Strategy | None
    _raw: np.ndarray | None
    _shifts: np.ndarray | None
    _maps: np.ndarray | None
    _moments: WindowMoments | None
    _head: np.ndarray | None
    _tail: np.ndarray | None
    _spare: list[np.ndarray]
    _shadow: WindowMoments | None
    _since_resync: int
    _map_fn: FrameMap | None
    _premapped: dict[int, np.ndarray]
    _shadow_swaps: int
    #: the running sums do not hold the stored window (deferred sums, below)
    _stale: bool

    #: deferred sums when ``window <= DEFERRED_MAX_RATIO * stride`` (the emission then
    #: reads at most this many maps per frame, against about 10 map-sized transfers
    #: of a per-frame add-and-remove)
    DEFERRED_MAX_RATIO = 8

    # ---------------------------------------------------------- deferred sums
    # With the maps strategy and AVG every map of the window is stored, so the sum
    # can be taken when an image is emitted, from the stored maps at once
    # (:func:`livesr.kernels._window.window_mean`), instead of adding and removing
    # one map per frame.  The running sums are then left alone and marked stale;
    # anything else that needs them (a settings change, TAC2/VAR, shadow sums,
    # resynchronisation) rebuilds them from the stored maps first.
    def _deferred(self) -> bool:
        """Whether this push leaves the running sums alone (deferred sums)."""
        cfg = self._cfg
        return (
            self._maps is not None
            and cfg.temporal == "avg"
            and self._shadow is None
            and not cfg.resync_every
            and cfg.window <= self.DEFERRED_MAX_RATIO * cfg.stride
        )

    def _sync_sums(self) -> None:
        """Make the running sums hold the stored window again (after deferred sums)."""
        if self._stale:
            logger.debug("rebuilding the running sums from %d stored maps", self.n_stored)
            self._rebuild(recompute_maps=False)

    @property
    def can_make_halves(self) -> bool:
        """Whether an emitted image can carry its even/odd half images
        (:attr:`SlidingResult.halves`): every map of the window is stored (the
        ``"maps"`` strategy) and the statistic is AVG, so each half is the mean of
        half the stored maps -- no map is computed again."""
        return self._maps is not None and self._cfg.temporal == "avg"

    def _halves(self) -> tuple[np.ndarray, np.ndarray] | None:
        """AVG of the stored window's even- and odd-indexed maps (before the
        macro-pixel correction), or None when they cannot be summed."""
        if not self.can_make_halves or self.n_stored < 4:
            return None
        assert self._maps is not None and self._moments is not None
        slots = np.arange(self._lo, self._hi, dtype=np.int64) % self._maps.shape[0]
        backend = self._moments.backend
        return (
            window_mean(self._maps, slots[0::2], backend),
            window_mean(self._maps, slots[1::2], backend),
        )

    def _deferred_mean(self) -> np.ndarray | None:
        """The AVG of the stored window summed now, or None when the running sums
        are current (they are combined then)."""
        if not self._stale or self._cfg.temporal != "avg" or self._maps is None:
            self._sync_sums()
            return None
        assert self._moments is not None
        slots = np.arange(self._lo, self._hi, dtype=np.int64) % self._maps.shape[0]
        return window_mean(self._maps, slots, self._moments.backend)

    @property
    def memory_bytes(self) -> int:
        """Bytes held now by stored frames, maps and running sums (arrays only)."""
        total = 0
        for arr in (self._raw, self._shifts, self._maps):
            if arr is not None:
                total += arr.nbytes
        for mom in (self._moments, self._shadow):
            if mom is not None:
                total += mom.nbytes
        if self._strategy == "raw":
            for arr in (self._head, self._tail, *self._spare):
                if arr is not None:
                    total += arr.nbytes
        return total

    def _map_shape(self, shape: tuple[int, int] | None = None) -> tuple[int, int]:
        h, w = shape if shape is not None else self._shape  # type: ignore[misc]
        m = self._params.magnification
        return h * m, w * m

    def _check_budget(self, cfg: SlidingConfig, params: EsrrfParams) -> None:
        """Raise (changing nothing) if ``cfg``/``params`` cannot fit the budget."""
        assert self._shape is not None and self._raw is not None
        kw: dict[str, Any] = {
            "window": cfg.window,
            "frame_shape": self._shape,
            "magnification": params.magnification,
            "temporal": cfg.temporal,
            "raw_itemsize": self._raw.dtype.itemsize,
            "sums_backend": self._sums_backend,
        }
        forced = cfg.strategy if cfg.strategy != "auto" else None
        strategy = forced or "raw"
        need = estimate_memory(strategy, shadow_sums=cfg.shadow_for(strategy), **kw)
        if need > cfg.memory_budget_bytes:
            raise ValueError(
                f"memory_budget_bytes={cfg.memory_budget_bytes} is too small for "
                f"window={cfg.window}, frames {self._shape[0]}x{self._shape[1]}, "
                f"magnification={params.magnification}, temporal={cfg.temporal!r}: "
                f"strategy {strategy!r} needs about {need} bytes; nothing was changed"
            )

    def _choose_strategy(self, shape: tuple[int, int], raw_itemsize: int) -> Strategy:
        cfg = self._cfg
        kw: dict[str, Any] = {
            "window": cfg.window,
            "frame_shape": shape,
            "magnification": self._params.magnification,
            "temporal": cfg.temporal,
            "raw_itemsize": raw_itemsize,
            "sums_backend": self._sums_backend,
        }
        need_maps = estimate_memory("maps", shadow_sums=cfg.shadow_for("maps"), **kw)
        need_raw = estimate_memory("raw", shadow_sums=cfg.shadow_for("raw"), **kw)
        budget = cfg.memory_budget_bytes
        if cfg.strategy == "maps":
            chosen: Strategy = "maps"
            need = need_maps
        elif cfg.strategy == "raw":
            chosen, need = "raw", need_raw
        elif need_maps <= budget:
            chosen, need = "maps", need_maps
        else:
            chosen, need = "raw", need_raw
        if need > budget:
            raise ValueError(
                f"memory_budget_bytes={budget} is too small for window={cfg.window}, "
                "frames "
                f"{shape[0]}x{shape[1]}, magnification={self._params.magnification}, "
                f"temporal={cfg.temporal!r}: strategy {chosen!r} needs about "
                f"{need} bytes "
                f"(maps: {need_maps}, raw: {need_raw}); raise the budget or shrink the "
                "window, frame or magnification"
            )
        logger.debug(
            "strategy %s (maps needs %d B, raw %d B, budget %d B)",
            chosen,
            need_maps,
            need_raw,
            budget,
        )
        return chosen

    def _allocate(self, shape: tuple[int, int], dtype: np.dtype) -> None:
        shape = (int(shape[0]), int(shape[1]))
        raw_dtype = dtype if dtype in COMPACT_DTYPES else np.dtype(np.float32)
        self._shape = shape
        self._strategy = self._choose_strategy(shape, raw_dtype.itemsize)
        cap = self._cfg.window
        self._raw = np.empty((cap, *shape), dtype=raw_dtype)
        self._shifts = np.zeros((cap, 2), dtype=np.float64)
        mshape = self._map_shape()
        # one spare map slot: the entering map is written before the leaving one is used
        self._maps = (
            np.empty((cap + 1, *mshape), dtype=np.float32)
            if self._strategy == "maps"
            else None
        )
        self._moments = WindowMoments.for_mode(
            mshape, self._cfg.temporal, self._sums_backend
        )
        self._reset_shadow()
        logger.debug(
            "allocated %s strategy for %s frames: %d bytes",
            self._strategy,
            shape,
            self.memory_bytes,
        )

    def _strategy_after_resize(self, raw_itemsize: int) -> Strategy | None:
        """The strategy for the current settings: re-chosen when the window is
        empty, else kept -- but maps move to raw when they no longer fit."""
        assert self._shape is not None
        cfg = self._cfg
        cap = cfg.window
        new_strategy: Strategy | None
        if self._hi == self._lo:
            new_strategy = self._choose_strategy(self._shape, raw_itemsize)
        else:
            new_strategy = self._strategy
            need_maps = estimate_memory(
                "maps",
                window=cap,
                frame_shape=self._shape,
                magnification=self._params.magnification,
                temporal=cfg.temporal,
                raw_itemsize=raw_itemsize,
                sums_backend=self._sums_backend,
                shadow_sums=cfg.shadow_for("maps"),
            )
            if self._strategy == "maps" and need_maps > cfg.memory_budget_bytes:
                if cfg.strategy == "maps":
                    raise ValueError(
                        f"strategy='maps' needs about {need_maps} bytes with "
                        f"window={cap}, more than memory_budget_bytes="
                        f"{cfg.memory_budget_bytes}; raise "
                        "the budget or use strategy='auto'"
                    )
                logger.info(
                    "window %d no longer fits the maps strategy: switching to raw", cap
                )
                new_strategy = "raw"
        return new_strategy

    def _resize_storage(self) -> None:
        """Fit storage to the current window, magnification and budget.

        The stored frames ``[lo, hi)`` must already fit the window. Raw frames are
        copied; maps are copied when both old and new strategy keep them and their
        shape is unchanged (otherwise the caller rebuilds or the window is empty).
        The strategy is re-chosen when the window is empty; otherwise it only moves
        from maps to raw, when the maps no longer fit the budget.
        """
        assert (
            self._shape is not None
            and self._raw is not None
            and self._shifts is not None
        )
        cfg = self._cfg
        old_raw, old_shifts, old_maps = self._raw, self._shifts, self._maps
        old_cap = old_raw.shape[0]
        cap = cfg.window
        if self._hi - self._lo > cap:
            raise AssertionError(
                "stored frames exceed the new window"
            )  # pragma: no cover
        raw_dtype = old_raw.dtype
        mshape = self._map_shape()
        new_strategy = self._strategy_after_resize(raw_dtype.itemsize)
        self._raw = np.empty((cap, *self._shape), dtype=raw_dtype)
        self._shifts = np.zeros((cap, 2), dtype=np.float64)
        for j in range(self._lo, self._hi):
            self._raw[j % cap] = old_raw[j % old_cap]
            self._shifts[j % cap] = old_shifts[j % old_cap]
        if new_strategy == "maps":
            self._maps = np.empty((cap + 1, *mshape), dtype=np.float32)
            if (
                old_maps is not None
                and old_maps.shape[1:] == mshape
                and self._hi > self._lo
            ):
                for j in range(self._lo, self._hi):
                    self._maps[j % (cap + 1)] = old_maps[j % old_maps.shape[0]]
                self._head = self._maps[self._lo % (cap + 1)]
                self._tail = self._maps[(self._hi - 1) % (cap + 1)]
        else:
            self._maps = None
            if old_maps is not None:
                # head/tail were views into the dropped ring: keep copies
                self._head = None if self._head is None else self._head.copy()
                self._tail = None if self._tail is None else self._tail.copy()
        self._strategy = new_strategy
        if (
            self._moments is None
            or self._moments.shape != mshape
            or (self._hi == self._lo and not self._moments.supports(cfg.temporal))
        ):
            self._moments = WindowMoments.for_mode(
                mshape, cfg.temporal, self._sums_backend
            )

    def _keep_window(
        self, old_cfg: SlidingConfig, old_params: EsrrfParams, *, maps_invalid: bool
    ) -> None:
        """After a settings change that keeps the window: drop the stored frames
        before the new window start and fit the storage to the new settings."""
        cfg, params = self._cfg, self._params
        keep_from = self._next_emit - cfg.window + 1
        if maps_invalid:
            if self._hi > self._lo:
                self._lo = min(max(self._lo, keep_from), self._hi)
        else:
            while self._hi > self._lo and self._lo < keep_from:
                self._evict_first()
        if (
            cfg.window != old_cfg.window
            or cfg.memory_budget_bytes != old_cfg.memory_budget_bytes
            or params.magnification != old_params.magnification
        ):
            self._resize_storage()

    def _after_push(self) -> None:
        """Swap in the shadow sums when they hold exactly the window, count the
        frame, and resynchronise the sums when ``resync_every`` says so."""
        window = self._cfg.window
        if (
            self._shadow is not None
            and self._shadow.n == window
            and self._hi - self._lo == window
        ):
            # the shadow sums hold exactly this window, built by additions only
            self._moments, self._shadow = self._shadow, self._moments
            self._shadow.clear()
            self._shadow_swaps += 1
        self._frames_seen += 1
        self._since_resync += 1
        period = self._cfg.resync_every
        if period and self._since_resync >= period:
            logger.debug("resynchronising sums from %d stored frames", self.n_stored)
            self._rebuild(recompute_maps=False)

    def _clear_window(self) -> None:
        self._lo = self._hi = self._frames_seen
        old = (self._head, self._tail)
        self._head = self._tail = None
        self._release(*old)
        if self._moments is not None:
            self._moments.clear()
        self._since_resync = 0
        self._stale = False
        self._reset_shadow()

    def _reset_shadow(self) -> None:
        """Empty (or create / drop) the shadow sums for the current settings."""
        if self._shape is None or self._strategy is None:
            self._shadow = None
            return
        if not self._cfg.shadow_for(self._strategy):
            self._shadow = None
            return
        mshape = self._map_shape()
        sh = self._shadow
        if sh is None or sh.shape != mshape or not sh.supports(self._cfg.temporal):
            self._shadow = WindowMoments.for_mode(
                mshape, self._cfg.temporal, self._sums_backend
            )
        else:
            sh.clear()

    def _shadow_append(self, x: np.ndarray, previous: np.ndarray | None) -> None:
        sh = self._shadow
        if sh is not None:
            sh.append(x, previous if sh.n > 0 else None)

    def _map_slot(self, i: int) -> np.ndarray | None:
        """Where frame ``i``'s map goes: its ring slot, or a reused work map (raw)."""
        if self._maps is None:
            return self._take_spare()
        return self._maps[i % self._maps.shape[0]]

    def _take_spare(self) -> np.ndarray | None:
        mshape = self._map_shape()
        while self._spare:
            arr = self._spare.pop()
            if arr.shape == mshape:
                return arr
        return None

    def _release(self, *arrays: np.ndarray | None) -> None:
        """Keep no-longer-needed maps (raw strategy) for reuse as ``out`` buffers.

        A map is reused only if it is not the window's first or last map and the map
        function wrote into a buffer we own (maps never leave this object: emitted
        images are separate arrays).
        """
        if self._maps is not None or self._shape is None:
            return
        mshape = self._map_shape()
        for arr in arrays:
            if (
                arr is not None
                and arr is not self._head
                and arr is not self._tail
                and len(self._spare) < 2
                and arr.shape == mshape
                and arr.dtype == np.float32
                and arr.flags.c_contiguous
                and arr.flags.writeable
                and all(arr is not s for s in self._spare)
            ):
                self._spare.append(arr)

    def _entering_map(
        self, i: int, frame32: np.ndarray, shift: tuple[float, float]
    ) -> np.ndarray:
        """Frame ``i``'s map: from the batch map (:meth:`push_many`) or computed."""
        out = self._map_slot(i)
        pre = self._premapped.pop(i, None)
        if pre is None:
            return self._compute_map(frame32, shift, out)
        if out is None:
            return np.array(pre, dtype=np.float32, order="C")
        out[...] = pre
        return out

    def _compute_map(
        self, frame32: np.ndarray, shift: tuple[float, float], out: np.ndarray | None
    ) -> np.ndarray:
        fn = self._map_fn
        if fn is None:
            from livesr.kernels.esrrf_stack import esrrf_frame

            fn = self._map_fn = esrrf_frame
        result = fn(frame32, self._params, shift=shift, out=out)
        mshape = self._map_shape()
        if result.shape != mshape or result.dtype != np.float32:
            raise RuntimeError(
                f"the frame map function returned {result.dtype} {result.shape}, "
                "expected "
                f"float32 {mshape}"
            )
        return result

    def _store_raw(
        self, i: int, raw_in: np.ndarray, f32: np.ndarray, shift: tuple[float, float]
    ) -> None:
        assert self._raw is not None and self._shifts is not None
        cap = self._raw.shape[0]
        if raw_in.dtype != self._raw.dtype and not np.can_cast(
            raw_in.dtype, self._raw.dtype, "safe"
        ):
            logger.debug("frame dtype %s: storing raw frames as float32", raw_in.dtype)
            self._raw = self._raw.astype(np.float32)
        if self._raw.dtype == np.float32:
            self._raw[i % cap] = f32
        else:
            self._raw[i % cap] = raw_in
        self._shifts[i % cap] = shift

    def _stored_map(self, j: int) -> np.ndarray:
        """Map of stored frame ``j``: from the ring (maps) or recomputed (raw)."""
        if self._maps is not None:
            return self._maps[j % self._maps.shape[0]]
        assert self._raw is not None and self._shifts is not None
        cap = self._raw.shape[0]
        frame = np.ascontiguousarray(self._raw[j % cap], dtype=np.float32)
        dy, dx = self._shifts[j % cap]
        return self._compute_map(frame, (float(dy), float(dx)), self._take_spare())

    def _evict_first(self) -> None:
        assert self._moments is not None and self._head is not None
        lo, hi = self._lo, self._hi
        if hi - lo == 1:
            self._clear_window()
            return
        following = self._tail if lo + 1 == hi - 1 else self._stored_map(lo + 1)
        if not self._stale:
            self._moments.pop_first(self._head, following)
        old_head, self._head = self._head, following
        self._release(old_head)
        self._lo = lo + 1

    def _rebuild(self, *, recompute_maps: bool) -> None:
        """Recompute the running sums (and maps if asked) from the stored frames."""
        mshape = self._map_shape()
        moments = self._moments
        if (
            moments is None
            or moments.shape != mshape
            or not moments.supports(self._cfg.temporal)
        ):
            moments = self._moments = WindowMoments.for_mode(
                mshape, self._cfg.temporal, self._sums_backend
            )
        moments.clear()
        moments.drop_unneeded(self._cfg.temporal)
        prev: np.ndarray | None = None
        old = (self._head, self._tail)
        self._head = self._tail = None
        self._release(*old)
        for j in range(self._lo, self._hi):
            if self._maps is not None and recompute_maps:
                assert self._raw is not None and self._shifts is not None
                cap = self._raw.shape[0]
                frame = np.ascontiguousarray(self._raw[j % cap], dtype=np.float32)
                dy, dx = self._shifts[j % cap]
                x = self._compute_map(frame, (float(dy), float(dx)), self._map_slot(j))
            else:
                x = self._stored_map(j)
            moments.append(x, prev)
            if j == self._lo:
                self._head = x
            self._release(prev)  # a middle frame's map is not needed any more
            prev = x
        self._tail = prev
        self._since_resync = 0
        self._stale = False
        self._reset_shadow()

