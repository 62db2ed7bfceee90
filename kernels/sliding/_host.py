"""The host sliding window, :class:`SlidingEsrrf`, and :func:`esrrf_movie`.

See :mod:`livesr.kernels.sliding` for how it works; the storage half of the class
is :class:`~livesr.kernels.sliding._host_store.HostStorage`, the schedule
:class:`~livesr.kernels.sliding._base.SlidingBase`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from livesr.kernels._params import (
    EsrrfParams,
    stack_shape,
    validate_frame,
    validate_shift,
)
from livesr.kernels._window import WindowMoments, warm_up_kernels
from livesr.kernels.sliding._base import ESRRF_FIELDS, WINDOW_FIELDS
from livesr.kernels.sliding._config import (
    DEFAULT_MEMORY_BUDGET,
    BatchMap,
    FrameMap,
    SlidingConfig,
    SlidingResult,
    Strategy,
    validate_shape,
)
from livesr.kernels.sliding._host_store import HostStorage

__all__ = ["SlidingEsrrf", "esrrf_movie"]

logger = logging.getLogger(__name__)

#: window settings only the host window has (besides ``WINDOW_FIELDS``)
_HOST_WINDOW_FIELDS: tuple[str, ...] = (
    "memory_budget_bytes",
    "resync_every",
    "shadow_sums",
)


class SlidingEsrrf(HostStorage):
    """Sliding-window eSRRF over a stream of frames (see :mod:`livesr.kernels.sliding`).

    Parameters
    ----------
    window : int
        Frames per emitted image, ``>= 1`` (``>= 2`` for TAC2).
    stride : int
        Frames between emitted images, ``>= 1``. May exceed ``window``.
    magnification, radius, sensitivity, intensity_weighting, geometry
        Per-frame eSRRF parameters, as in :class:`livesr.kernels.EsrrfParams`.
    macro_pixel_correction : bool
        Apply the macro-pixel correction to every emitted image (default True).
    temporal : {"avg", "var", "tac2"}
        Temporal statistic (default ``"avg"``).
    memory_budget_bytes : int
        Memory this object may hold (default 512 MiB); see :func:`estimate_memory`.
    strategy : {"auto", "maps", "raw"}
        ``"auto"`` chooses from the budget when the frame shape is known.
    resync_every : int
        See :class:`SlidingConfig`.
    shadow_sums : bool or None
        See :class:`SlidingConfig` (default: on with the raw strategy).
    frame_shape : (int, int), optional
        ``(H, W)`` of the frames, to allocate and choose the strategy now rather than
        at the first frame.
    frame_map : callable, optional
        Per-frame map function with the signature of
        :func:`livesr.kernels.esrrf_frame` (the default). Meant for tests and
        benchmarks; it must return ``(H*M, W*M)`` float32 and honour ``out``.
    sums_backend : {"auto", "numba", "numpy"}
        Who updates the running sums: fused numba kernels (default when numba
        imports; multi-threaded from 65 536 output pixels) or numpy array operations.
        Same bits either way.
    batch_map : callable, optional
        ``fn(frames (N, H, W) float32, params, shifts (N, 2), deadline_s) ->
        (N, H*M, W*M) float32``: :meth:`push_many` maps all the frames of a batch
        that enter a window with one call (e.g. the engine's ``esrrf_map_batch``,
        :func:`livesr.kernels.framemap.engine_batch_map`); ``frame_map`` (or the
        default) still maps single pushes and recomputed frames, so both must
        compute the same map.  Default: no batching (frame by frame).

    Notes
    -----
    Not thread-safe: push from one thread (or serialise calls). The first push with
    the numba sums compiles two small kernels (about 1-2 s here) unless numba's
    on-disk cache already holds them.

    Examples
    --------
    >>> sr = SlidingEsrrf(window=100, stride=10, magnification=5)   # doctest: +SKIP
    >>> for frame, drift in camera:                                 # doctest: +SKIP
    ...     result = sr.push(frame, shift=drift)
    ...     if result is not None:
    ...         show(result.image)
    """

    SETTABLE = frozenset(ESRRF_FIELDS + WINDOW_FIELDS + _HOST_WINDOW_FIELDS)
    SETTABLE_HINT = " (the strategy is fixed: reset() re-chooses it)"

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
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        strategy: str = "auto",
        resync_every: int = 0,
        shadow_sums: bool | None = None,
        frame_shape: tuple[int, int] | None = None,
        frame_map: FrameMap | None = None,
        sums_backend: str = "auto",
        batch_map: BatchMap | None = None,
    ) -> None:
        self._cfg = SlidingConfig(
            window=window,
            stride=stride,
            temporal=temporal,
            macro_pixel_correction=macro_pixel_correction,
            memory_budget_bytes=memory_budget_bytes,
            strategy=strategy,
            resync_every=resync_every,
            shadow_sums=shadow_sums,
        )
        self._params = EsrrfParams(
            magnification=magnification,
            radius=radius,
            sensitivity=sensitivity,
            intensity_weighting=intensity_weighting,
            geometry=geometry,
        )
        if frame_map is not None and not callable(frame_map):
            raise ValueError(f"frame_map must be callable or None, got {frame_map!r}")
        self._map_fn: FrameMap | None = frame_map
        if batch_map is not None and not callable(batch_map):
            raise ValueError(f"batch_map must be callable or None, got {batch_map!r}")
        self._batch_fn: BatchMap | None = batch_map
        self._premapped: dict[int, np.ndarray] = {}
        #: emitted images also carry their even/odd half images when the window can
        #: sum them from its stored maps (``can_make_halves``; the live FRC)
        self.want_halves = False
        #: throughput deadline per frame, s (a batch of n: n * deadline_s)
        self.deadline_s: float | None = None
        if sums_backend not in ("auto", "numba", "numpy"):
            raise ValueError(
                f"sums_backend must be 'auto', 'numba' or 'numpy', got {sums_backend!r}"
            )
        self._sums_backend = sums_backend
        self._fixed_shape = (
            validate_shape(frame_shape) if frame_shape is not None else None
        )
        self._mpc: Callable[[np.ndarray, int], np.ndarray] | None = None
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every frame: counters to 0, window empty, schedule from the start.

        Settings are kept. Storage is released; the frame shape (unless given as
        ``frame_shape``) and the strategy are decided again at the next frame.
        """
        self._reset_schedule()
        self._strategy = None
        self._raw = None
        self._shifts = None
        self._maps = None
        self._moments = None
        self._head = None
        self._tail = None
        self._spare = []  # reusable map buffers (raw strategy)
        self._shadow = None
        self._shadow_swaps = 0
        self._since_resync = 0
        self._stale = False
        if self._fixed_shape is not None:
            self._allocate(self._fixed_shape, np.dtype(np.float32))

    @property
    def strategy(self) -> Strategy | None:
        """``"maps"`` or ``"raw"`` (``None`` until the frame shape is known)."""
        return self._strategy


    @property
    def sums_backend(self) -> str | None:
        """Who updates the running sums, ``"numba"`` or ``"numpy"`` (None: not yet)."""
        return None if self._moments is None else self._moments.backend

    @property
    def shadow_swaps(self) -> int:
        """Times the shadow sums replaced the running sums (see ``shadow_sums``)."""
        return self._shadow_swaps

    @property
    def n_stored(self) -> int:
        """Frames currently held in the window (at most ``window``)."""
        return self._hi - self._lo

    def warm_up(
        self, frame_shape: tuple[int, int] | None = None, max_batch: int | None = None
    ) -> None:
        """Do the first-call set-up now, before streaming.

        Compiles the numba kernels of the running sums (about 1-3 s without numba's
        on-disk cache; no-op with numpy).  With ``frame_shape``, also runs the map
        once at that shape (plans and builds per shape: OpenCL, CuPy) and, with a
        ``batch_map``, the batch map on 1 and ``max_batch`` frames (the engine's
        first calls for those batch signatures).  The window is left untouched.
        """
        if self._sums_backend != "numpy":
            warm_up_kernels()
        if frame_shape is None:
            return
        h, w = validate_shape(frame_shape)
        rng = np.random.default_rng(0)
        frame = rng.poisson(100.0, (h, w)).astype(np.float32)
        if self._map_fn is None:
            from livesr.kernels.esrrf_stack import esrrf_frame

            self._map_fn = esrrf_frame
        self._map_fn(frame, self._params, shift=(0.25, -0.25), out=None)
        if self._batch_fn is not None:
            for n in sorted({1, max(1, int(max_batch or 1))}):
                stack = np.ascontiguousarray(np.broadcast_to(frame, (n, h, w)))
                self._batch_fn(stack, self._params, np.full((n, 2), 0.25), None)
        if self._cfg.macro_pixel_correction:
            self._mpc = _fastest_mpc(self._map_shape((h, w)), self._params.magnification)


    def push(
        self, frame: np.ndarray, *, shift: Sequence[float] = (0.0, 0.0)
    ) -> SlidingResult | None:
        """Add one frame; return the window's image if this frame completes one.

        Parameters
        ----------
        frame : array-like, (H, W), real dtype
            Camera frame (cast to float32 for the map, as NanoPyx does).
        shift : (dy, dx), input pixels
            Sample displacement to undo, passed to ``esrrf_frame`` so drift is
            corrected inside the magnification.

        Returns
        -------
        SlidingResult or None
            The image of frames ``frame_index - window + 1 .. frame_index`` when this
            frame's index is on the emission schedule (module docstring), else None.
        """
        i = self._frames_seen
        raw_in = np.asarray(frame)
        self._check_shape(raw_in.shape)
        if self._skip_if_between_windows(i):
            return None
        window = self._cfg.window
        start = self._next_emit - window + 1
        f32 = validate_frame(raw_in)
        dy, dx = validate_shift(shift)
        if self._shape is None:
            self._allocate(f32.shape, raw_in.dtype)

        if self._hi > self._lo and (self._hi != i or self._hi - 1 < start):
            self._clear_window()
        assert self._moments is not None
        deferred = self._deferred()  # the sums are taken at emission (_host_store)
        if not deferred:
            self._sync_sums()
        if self._hi - self._lo >= 2 and self._lo == i - window:
            # steady state: one frame leaves, one enters -- a single pass over the sums
            lo = self._lo
            following = self._tail if lo + 1 == i - 1 else self._stored_map(lo + 1)
            self._store_raw(i, raw_in, f32, (dy, dx))
            x = self._entering_map(i, f32, (dy, dx))
            assert self._head is not None
            if deferred:
                self._stale = True
            else:
                self._moments.slide(self._head, following, x, self._tail)
            old = (self._head, self._tail)
            self._head, self._tail = following, x
            self._shadow_append(x, old[1])
            self._release(*old)
            self._lo = lo + 1
        else:
            while self._hi > self._lo and self._lo < i - window + 1:
                self._evict_first()
            if self._hi == self._lo:
                self._lo = self._hi = i
            self._store_raw(i, raw_in, f32, (dy, dx))
            x = self._entering_map(i, f32, (dy, dx))
            if deferred:
                self._stale = True
            else:
                self._moments.append(x, self._tail)
            if self._hi == self._lo:
                self._head = x
            old_tail, self._tail = self._tail, x
            self._shadow_append(x, old_tail)
            self._release(old_tail)
        self._hi = i + 1
        self._after_push()
        if i == self._next_emit:
            result = self._emit()
            self._emitted(i)
            return result
        return None

    def push_many(
        self,
        frames: Iterable[np.ndarray] | np.ndarray,
        shifts: Sequence[Sequence[float]] | np.ndarray | None = None,
        *,
        deadline_s: float | None = None,
    ) -> list[SlidingResult]:
        """Push several frames in order; return the images they complete.

        With a ``batch_map`` the maps of every frame of the batch that enters a
        window are computed by one call of it first (one engine decision, one
        Python step); the window sums are then updated frame by frame.  The
        result equals pushing the frames one by one.

        Parameters
        ----------
        frames : (N, H, W) array or iterable of (H, W) frames
        shifts : (N, 2) array-like of (dy, dx), optional
            One shift per frame (default: no shift).
        deadline_s : float, optional
            Throughput deadline of the batch's maps, s (default
            ``N * self.deadline_s`` when set); ignored without ``batch_map``.

        Returns
        -------
        list of SlidingResult
            In emission order (possibly empty).
        """
        frame_list, shift_arr = self._batch(frames, shifts)
        n = len(frame_list)
        if self._batch_fn is not None and n > 0:
            self._map_ahead(frame_list, shift_arr, deadline_s)
        results = []
        try:
            for k in range(n):
                r = self.push(frame_list[k], shift=(shift_arr[k, 0], shift_arr[k, 1]))
                if r is not None:
                    results.append(r)
        finally:
            self._premapped.clear()
        return results

    def _map_ahead(
        self, frames: Any, shifts: np.ndarray, deadline_s: float | None
    ) -> None:
        """Map, in one call of the batch map, the frames of the batch that will enter
        a window (the others, between windows when ``stride > window``, never are)."""
        i0 = self._frames_seen
        need = self._entering(len(shifts))
        if not need:
            return
        stack = np.stack([validate_frame(frames[k]) for k in need])
        if self._shape is not None and stack.shape[1:] != self._shape:
            return  # push() reports the shape error at that frame
        if deadline_s is None and self.deadline_s is not None:
            deadline_s = self.deadline_s * len(need)
        assert self._batch_fn is not None
        maps = self._batch_fn(stack, self._params, shifts[need], deadline_s)
        mshape = (len(need), *self._map_shape(stack.shape[1:]))
        if maps.shape != mshape or maps.dtype != np.float32:
            raise RuntimeError(
                f"the batch map function returned {maps.dtype} {maps.shape}, "
                f"expected float32 {mshape}"
            )
        self._premapped = {i0 + k: maps[j] for j, k in enumerate(need)}

    # --------------------------------------------------------------- set_params
    def set_params(self, *, recompute: bool = False, **changes: Any) -> None:
        """Change settings while streaming.

        Parameters
        ----------
        recompute : bool
            What to do when the stored running state can no longer be used (see below):
            ``False`` (default) restarts the window -- the stored frames are dropped and
            the next image is emitted once ``window`` new frames have arrived;
            ``True`` recomputes the maps of the stored frames from their raw frames
            (kept by both strategies) so the window carries on, at the one-off cost
            of up to ``window`` map computations.
        **changes
            Any of ``window``, ``stride``, ``temporal``, ``macro_pixel_correction``,
            ``memory_budget_bytes``, ``resync_every`` (window settings) and
            ``magnification``, ``radius``, ``sensitivity``, ``intensity_weighting``,
            ``geometry`` (map settings). ``strategy`` cannot be changed (call
            :meth:`reset` on a new object instead).

        Notes
        -----
        - Map settings (radius, sensitivity, ...) invalidate every stored map: restart
          or recompute, per ``recompute``.
        - ``temporal``: dropping to a statistic needing fewer sums is free; needing a
          sum not kept (e.g. AVG -> VAR) rebuilds the sums from the stored maps (maps
          strategy, cheap) or, with the raw strategy, restarts or recomputes per
          ``recompute``.
        - ``macro_pixel_correction``: applies from the next image, free.
        - ``window`` / ``stride``: stored frames are kept (the oldest dropped if the
          window shrinks). The next image is emitted at the first frame index that is
          ``>= last emission + stride``, not yet pushed, and for which the window can
          be full of contiguous frames; then every ``stride`` frames. If the maps
          strategy no longer fits the budget it switches to raw (the strategy never
          switches from raw to maps while streaming; :meth:`reset` re-chooses).
        """
        new_cfg, new_params = self._changed(changes)  # validates
        self._sync_sums()  # the running sums, current, before the window changes
        old_cfg, old_params = self._cfg, self._params
        if self._shape is not None:
            self._check_budget(new_cfg, new_params)
        self._cfg, self._params = new_cfg, new_params

        if self._shape is None:
            self._next_emit = self._schedule_after_change(old_cfg)
            return

        maps_invalid = new_params != old_params
        moments = self._moments
        assert moments is not None
        needs_sums = not moments.supports(new_cfg.temporal)
        if not recompute and (maps_invalid or (needs_sums and self._strategy == "raw")):
            logger.info(
                "set_params(%s) invalidates the stored state: "
                "window restarts at frame %d",
                sorted(changes),
                self._frames_seen,
            )
            self._restart()
            return
        self._next_emit = self._schedule_after_change(old_cfg)
        self._keep_window(old_cfg, old_params, maps_invalid=maps_invalid)
        if self._hi == self._lo:
            self._clear_window()
            if not self._moments.supports(new_cfg.temporal):  # type: ignore[union-attr]
                self._moments = WindowMoments.for_mode(
                    self._map_shape(), new_cfg.temporal, self._sums_backend
                )
        elif maps_invalid or needs_sums:
            self._rebuild(recompute_maps=maps_invalid)
        else:
            self._moments.drop_unneeded(new_cfg.temporal)  # type: ignore[union-attr]
            self._reset_shadow()


    def _restart(self) -> None:
        self._clear_window()
        self._restart_schedule()
        self._resize_storage()
        self._reset_shadow()

    def _emit(self) -> SlidingResult:
        assert self._moments is not None
        image = self._deferred_mean()
        if image is None:
            image = self._moments.combine(
                self._cfg.temporal, first=self._head, last=self._tail
            )
        halves = self._halves() if self.want_halves else None
        if self._cfg.macro_pixel_correction:
            image = self._corrected(image)
            if halves is not None:
                halves = (self._corrected(halves[0]), self._corrected(halves[1]))
        return SlidingResult(
            image=image,
            first_frame=self._lo,
            last_frame=self._hi - 1,
            n_frames=self._hi - self._lo,
            halves=halves,
        )

    def _corrected(self, image: np.ndarray) -> np.ndarray:
        """``image`` after the macro-pixel correction, float32."""
        if self._mpc is None:
            from livesr.kernels.esrrf_stack import macro_pixel_correction

            self._mpc = macro_pixel_correction
        return np.asarray(self._mpc(image, self._params.magnification), dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"SlidingEsrrf(window={self.window}, stride={self.stride}, "
            f"temporal={self.temporal!r}, "
            f"magnification={self._params.magnification}, strategy={self._strategy!r}, "
            f"sums_backend={self.sums_backend!r}, "
            f"frames_seen={self._frames_seen}, windows_emitted={self._windows_emitted})"
        )


def _fastest_mpc(shape: tuple[int, int], magnification: int) -> Any:
    """The engine's fastest ``macro_pixel`` implementation at this image shape, as a
    callable (chosen before streaming: at 512² the compiled ones take 0.9 ms per
    image, numpy 1.9), or None (then numpy, the reference, is used)."""
    try:
        from livesr.kernels.macro_pixel import kernel

        image = np.random.default_rng(0).random(shape, dtype=np.float32) + 0.5
        fn = kernel.using(kernel.fastest(image, magnification))
        fn(image, magnification)
    except Exception as exc:  # the reference always works
        logger.info("macro-pixel correction: numpy (no implementation chosen: %s)", exc)
        return None
    return fn


def esrrf_movie(
    stack: Any,
    window: int,
    stride: int,
    *,
    shifts: Any = None,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """eSRRF movie from rolling windows over a recorded stack.

    Runs :class:`SlidingEsrrf` over the frames in order (read one at a time, so a
    memmap or zarr array is never loaded whole).

    Parameters
    ----------
    stack : (N, H, W) array-like, real dtype
        Frames in time order.
    window, stride : int
        As :class:`SlidingEsrrf`: image ``k`` covers frames
        ``k*stride .. k*stride + window - 1``.
    shifts : (N, 2) array-like of (dy, dx) input pixels, optional
        Per-frame drift to undo (see :meth:`SlidingEsrrf.push`).
    **kwargs
        Any other :class:`SlidingEsrrf` argument (``magnification``, ``temporal``,
        ``memory_budget_bytes``, ...).

    Returns
    -------
    images : (K, H*M, W*M) float32
        ``K = (N - window) // stride + 1`` images (0 when ``N < window``).
    frames : (K, 2) int64
        First and last frame index of each image's window.
    """
    shape = getattr(stack, "shape", None)
    if shape is None:
        stack = np.asarray(stack)
        shape = stack.shape
    if len(shape) != 3:
        raise ValueError(
            f"stack must be 3-D (frames, rows, columns), got shape {tuple(shape)}; "
            "for one image use esrrf()"
        )
    n, h, w = stack_shape(stack)
    sr = SlidingEsrrf(window, stride, **kwargs)
    if shifts is None:
        shift_arr = np.zeros((n, 2), dtype=np.float64)
    else:
        shift_arr = np.asarray(shifts, dtype=np.float64)
        if shift_arr.shape != (n, 2):
            raise ValueError(
                f"shifts must have shape ({n}, 2) -- one (dy, dx) per frame -- "
                f"got {shift_arr.shape}"
            )
    m = sr.params.magnification
    count = 0 if n < sr.window else (n - sr.window) // sr.stride + 1
    images = np.empty((count, h * m, w * m), dtype=np.float32)
    frames = np.empty((count, 2), dtype=np.int64)
    k = 0
    for i in range(n):
        r = sr.push(stack[i], shift=(shift_arr[i, 0], shift_arr[i, 1]))
        if r is not None:
            images[k] = r.image
            frames[k] = (r.first_frame, r.last_frame)
            k += 1
    assert k == count
    return images, frames

