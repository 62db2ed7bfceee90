"""Incremental sliding-window eSRRF for streams: eSRRF movies from rolling windows.

:class:`SlidingEsrrf` takes camera frames one at a time (or in small batches) and,
every ``stride`` frames, returns the eSRRF image of the last ``window`` frames,
equal to batch :func:`livesr.kernels.esrrf` on those frames (to float32 rounding).

How it works
------------
Each frame's radial-gradient-convergence map (:func:`livesr.kernels.esrrf_frame`,
``(H*M, W*M)`` float32) is computed once when the frame arrives. The temporal
statistic is kept as running sums (:mod:`livesr.kernels._window`): ``S = sum x``
(AVG), ``Q = sum x**2`` (VAR) and ``P = sum x_t x_{t+1}`` over the pairs inside the
window (TAC2), in float64 with error-free compensation, so adding a frame and later
removing it leaves no residue and nothing drifts however long the stream. The cost
per frame does not grow with the window.

Removing the frame that leaves the window needs its map. Two strategies:

``"maps"``
    Keep the maps of the window's frames (``(window + 1) * H*M * W*M * 4`` bytes).
    One map computation per frame.
``"raw"``
    Keep only the raw input frames (M**2 times smaller, half again for 16-bit
    cameras) plus the maps of the first and last frame of the window and two reused
    work maps; when the first frame leaves, the map of the next one is recomputed
    from its raw frame and shift. Two map computations per frame, whatever the
    window. If the map function is not deterministic (e.g. a dispatcher switching
    between implementations that differ in the last bits), a recomputed map differs
    from the one added and removals leave a residue; the *shadow sums* (on by
    default with this strategy, ``shadow_sums``) discard it every ``window`` frames
    by swapping in sums built from additions only -- one more sum update per frame,
    no extra map, no latency spike (tested with a map that is noisy at 1e-3).

Both strategies give bit-identical images (tested). The running sums are updated by
fused numba kernels when numba imports (``sums_backend``), else by numpy; same bits.

``strategy="auto"`` (default) picks ``"maps"`` when its memory estimate fits
``memory_budget_bytes``, else ``"raw"``; :attr:`SlidingEsrrf.strategy` reports the
active one (``None`` until the frame shape is known).

Emission rule
-------------
Frames are numbered from 0 in arrival order (every pushed frame counts, see
:attr:`SlidingEsrrf.frames_seen`). The first image is emitted when frame
``window - 1`` arrives and then every ``stride`` frames: when frame ``e`` arrives with
``e = window - 1 + k * stride`` (k = 0, 1, ...), the image of frames
``e - window + 1 .. e`` is returned. When ``stride > window`` the frames between two
windows (``i mod stride >= window``) belong to no window: they are counted but their
maps are never computed. :meth:`SlidingEsrrf.set_params` may move this schedule (see
there).

Memory
------
Bounded, whatever the stream length (:func:`estimate_memory`): the float64 running
sums (16 bytes per output pixel for AVG, 36 for VAR/TAC2 with the numba kernels; 40 /
76 / 84 with the numpy fallback, which needs work arrays), the stored window
(``window + 1`` maps, or ``window`` raw frames and three maps), and the temporaries
of one emission. NanoPyx holds ``40 * N * H * W * M**2`` bytes per call.
Example, 256x256 frames, M = 5, TAC2, window 100: 793 MB with the maps strategy
(662 MB of maps, 59 MB of sums), 151 MB with the raw one (26 MB of float32 frames);
NanoPyx: 6.6 GB for the same 100 frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np

from livesr.kernels._params import (
    EsrrfParams,
    stack_shape,
    validate_frame,
    validate_shift,
    validate_temporal,
)
from livesr.kernels._window import WindowMoments, warm_up_kernels

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "FrameMap",
    "SlidingConfig",
    "SlidingEsrrf",
    "SlidingResult",
    "esrrf_movie",
    "estimate_memory",
]

logger = logging.getLogger(__name__)

#: Default ``memory_budget_bytes`` (512 MiB).
DEFAULT_MEMORY_BUDGET: int = 512 * 2**20

Strategy = Literal["maps", "raw"]
_STRATEGIES: tuple[str, ...] = ("auto", "maps", "raw")
#: raw frames of these dtypes are stored as they are (exact in float32)
_COMPACT_DTYPES = (
    np.dtype(np.uint8),
    np.dtype(np.int8),
    np.dtype(np.uint16),
    np.dtype(np.int16),
)
_ESRRF_FIELDS: tuple[str, ...] = (
    "magnification",
    "radius",
    "sensitivity",
    "intensity_weighting",
    "geometry",
)
_WINDOW_FIELDS: tuple[str, ...] = (
    "window",
    "stride",
    "temporal",
    "macro_pixel_correction",
    "memory_budget_bytes",
    "resync_every",
    "shadow_sums",
)
_SETTABLE = frozenset(_ESRRF_FIELDS + _WINDOW_FIELDS)


class FrameMap(Protocol):
    """Signature of a per-frame map function (:func:`livesr.kernels.esrrf_frame`'s)."""

    def __call__(
        self,
        frame: np.ndarray,
        params: EsrrfParams,
        *,
        shift: tuple[float, float] = ...,
        out: np.ndarray | None = ...,
    ) -> np.ndarray: ...


#: ``fn(frames (N, H, W) float32, params, shifts (N, 2) px, deadline_s) -> maps``
BatchMap = Callable[..., np.ndarray]


@dataclass(frozen=True, slots=True)
class SlidingResult:
    """One emitted image of a sliding-window eSRRF stream.

    Attributes
    ----------
    image : ndarray, float32, shape (H*M, W*M)
        eSRRF image of the window (temporal statistic, then macro-pixel correction
        when enabled). A fresh array owned by the caller.
    first_frame, last_frame : int
        Indices (arrival order, from 0) of the first and last frame of the window.
    n_frames : int
        Frames in the window, ``last_frame - first_frame + 1``.
    quality : float or None
        :func:`livesr.stream._quality.quality_metric` of the image, when computed
        by the producer (None: compute it from ``image``).
    """

    image: np.ndarray
    first_frame: int
    last_frame: int
    n_frames: int
    #: ``normalized_gradient_energy`` of the image when the producer computed it
    #: where the image was made (the GPU window: no host pass over a large image)
    quality: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlidingConfig:
    """Window and bookkeeping settings of :class:`SlidingEsrrf` (validated).

    Parameters
    ----------
    window : int
        Frames per image, ``>= 1`` (``>= 2`` for ``temporal="tac2"``).
    stride : int
        Frames between two emitted images, ``>= 1``.
    temporal : {"avg", "var", "tac2"}
        Temporal statistic (case-insensitive).
    macro_pixel_correction : bool
        Apply NanoPyx's macro-pixel correction to each emitted image.
    memory_budget_bytes : int
        Memory the object may hold, ``> 0``; decides the strategy under ``"auto"``.
    strategy : {"auto", "maps", "raw"}
        Storage strategy (module docstring).
    resync_every : int
        Recompute the running sums from the stored window after this many stored
        frames, ``>= 0`` (default ``0`` = never). Not needed for accuracy: the
        compensated sums do not drift (tested over 10 000 frames), and the residue
        of a non-deterministic map function under the raw strategy is better
        handled by ``shadow_sums``. A resync costs, on the frame
        that triggers it, ``n`` additions (maps) or ``n`` map computations (raw): a
        latency spike in a live stream.
    shadow_sums : bool or None
        Keep a second set of sums that restarts empty and only ever adds frames;
        when it holds exactly the window (every ``window`` frames) it replaces the
        running sums. Any residue left by removals -- nonzero only when a
        recomputed map differs from the original, i.e. a non-deterministic map
        function under the raw strategy -- is thereby discarded every ``window``
        frames, with no extra map computation and no latency spike, for one more
        sum update per frame and one more set of sums in memory. ``None``
        (default): on with the raw strategy, off with the maps strategy (where a
        removed map is always the stored original).
    """

    window: int
    stride: int
    temporal: str = "avg"
    macro_pixel_correction: bool = True
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    strategy: str = "auto"
    resync_every: int = 0
    shadow_sums: bool | None = None

    def __post_init__(self) -> None:
        for name in ("window", "stride"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < 1
            ):
                raise ValueError(
                    f"{name} must be an integer >= 1 (frames), got {value!r}"
                )
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "temporal", validate_temporal(self.temporal))
        if self.temporal == "tac2" and self.window < 2:
            raise ValueError(
                "temporal='tac2' needs window >= 2 (a lag-1 pair), "
                f"got window={self.window}"
            )
        if not isinstance(self.macro_pixel_correction, (bool, np.bool_)):
            raise ValueError(
                "macro_pixel_correction must be True or False, "
                f"got {self.macro_pixel_correction!r}"
            )
        object.__setattr__(
            self, "macro_pixel_correction", bool(self.macro_pixel_correction)
        )
        budget = self.memory_budget_bytes
        if (
            isinstance(budget, bool)
            or not isinstance(budget, (int, np.integer))
            or budget < 1
        ):
            raise ValueError(
                f"memory_budget_bytes must be an integer > 0 (bytes), got {budget!r}"
            )
        object.__setattr__(self, "memory_budget_bytes", int(budget))
        if self.strategy not in _STRATEGIES:
            raise ValueError(
                f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}"
            )
        r = self.resync_every
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
            raise ValueError(
                f"resync_every must be an integer >= 0 (frames, 0 = never), got {r!r}"
            )
        object.__setattr__(self, "resync_every", int(r))
        if self.shadow_sums is not None:
            if not isinstance(self.shadow_sums, (bool, np.bool_)):
                raise ValueError(
                    "shadow_sums must be None (automatic), True or False, "
                    f"got {self.shadow_sums!r}"
                )
            object.__setattr__(self, "shadow_sums", bool(self.shadow_sums))

    def shadow_for(self, strategy: str) -> bool:
        """Whether shadow sums are kept with ``strategy`` (``None`` = raw only)."""
        if self.shadow_sums is not None:
            return self.shadow_sums
        return strategy == "raw"


def estimate_memory(
    strategy: str,
    *,
    window: int,
    frame_shape: tuple[int, int],
    magnification: int,
    temporal: str,
    raw_itemsize: int = 4,
    sums_backend: str = "auto",
    shadow_sums: bool = False,
) -> int:
    """Bytes :class:`SlidingEsrrf` holds at most with ``strategy`` (maps or raw).

    Counts the stored raw frames, the stored maps (maps strategy) or the first/last/
    next maps (raw strategy), the float64 running sums and the temporaries of one
    emission (float64 mean and statistic, float32 output).
    """
    h, w = frame_shape
    map_px = h * w * magnification * magnification
    raw = window * h * w * raw_itemsize
    sums = WindowMoments.bytes_needed(
        (h * magnification, w * magnification), temporal, sums_backend
    ) * (2 if shadow_sums else 1)
    emission = map_px * (8 + 8 + 8 + 4) + window * 16  # + the stored shifts
    if strategy == "maps":
        maps = (window + 1) * map_px * 4
    elif strategy == "raw":
        maps = 4 * map_px * 4  # first, last, and two reused work maps
    else:
        raise ValueError(f"strategy must be 'maps' or 'raw', got {strategy!r}")
    return raw + maps + sums + emission


class SlidingEsrrf:
    """Sliding-window eSRRF over a stream of frames (see the module docstring).

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
        #: throughput deadline per frame, s (a batch of n: n * deadline_s)
        self.deadline_s: float | None = None
        if sums_backend not in ("auto", "numba", "numpy"):
            raise ValueError(
                f"sums_backend must be 'auto', 'numba' or 'numpy', got {sums_backend!r}"
            )
        self._sums_backend = sums_backend
        self._fixed_shape = (
            _validate_shape(frame_shape) if frame_shape is not None else None
        )
        self._mpc: Callable[[np.ndarray, int], np.ndarray] | None = None
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every frame: counters to 0, window empty, schedule from the start.

        Settings are kept. Storage is released; the frame shape (unless given as
        ``frame_shape``) and the strategy are decided again at the next frame.
        """
        self._frames_seen = 0
        self._windows_emitted = 0
        self._last_emit: int | None = None
        self._next_emit = self._cfg.window - 1
        self._shape: tuple[int, int] | None = None
        self._strategy: Strategy | None = None
        self._raw: np.ndarray | None = None
        self._shifts: np.ndarray | None = None
        self._maps: np.ndarray | None = None
        self._moments: WindowMoments | None = None
        self._lo = 0
        self._hi = 0
        self._head: np.ndarray | None = None
        self._tail: np.ndarray | None = None
        self._spare: list[np.ndarray] = []  # reusable map buffers (raw strategy)
        self._shadow: WindowMoments | None = None
        self._shadow_swaps = 0
        self._since_resync = 0
        if self._fixed_shape is not None:
            self._allocate(self._fixed_shape, np.dtype(np.float32))

    @property
    def frames_seen(self) -> int:
        """Frames pushed since creation or :meth:`reset` (skipped ones included)."""
        return self._frames_seen

    @property
    def windows_emitted(self) -> int:
        """Images returned since creation or :meth:`reset`."""
        return self._windows_emitted

    @property
    def strategy(self) -> Strategy | None:
        """``"maps"`` or ``"raw"`` (``None`` until the frame shape is known)."""
        return self._strategy

    @property
    def config(self) -> SlidingConfig:
        """Current window settings."""
        return self._cfg

    @property
    def params(self) -> EsrrfParams:
        """Current per-frame eSRRF parameters."""
        return self._params

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
        """Temporal statistic, ``"avg"``, ``"var"`` or ``"tac2"``."""
        return self._cfg.temporal

    @property
    def next_emission(self) -> int:
        """Index of the frame whose arrival emits the next image."""
        return self._next_emit

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
        h, w = _validate_shape(frame_shape)
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

    # ----------------------------------------------------------------- pushing
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
        if self._shape is not None and raw_in.shape != self._shape:
            raise ValueError(
                f"frame {i} has shape {raw_in.shape}, expected {self._shape} like the "
                "earlier frames; call reset() before changing the frame size"
            )
        window = self._cfg.window
        start = self._next_emit - window + 1
        if i < start:
            # belongs to no window (stride > window): counted, never computed
            self._frames_seen += 1
            return None
        f32 = validate_frame(raw_in)
        dy, dx = validate_shift(shift)
        if self._shape is None:
            self._allocate(f32.shape, raw_in.dtype)

        if self._hi > self._lo and (self._hi != i or self._hi - 1 < start):
            self._clear_window()
        assert self._moments is not None
        if self._hi - self._lo >= 2 and self._lo == i - window:
            # steady state: one frame leaves, one enters -- a single pass over the sums
            lo = self._lo
            following = self._tail if lo + 1 == i - 1 else self._stored_map(lo + 1)
            self._store_raw(i, raw_in, f32, (dy, dx))
            x = self._entering_map(i, f32, (dy, dx))
            assert self._head is not None
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
            self._moments.append(x, self._tail)
            if self._hi == self._lo:
                self._head = x
            old_tail, self._tail = self._tail, x
            self._shadow_append(x, old_tail)
            self._release(old_tail)
        self._hi = i + 1
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

        if i == self._next_emit:
            result = self._emit()
            self._last_emit = i
            self._next_emit = i + self._cfg.stride
            self._windows_emitted += 1
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
        frame_list = list(frames) if not isinstance(frames, np.ndarray) else frames
        if isinstance(frame_list, np.ndarray) and frame_list.ndim != 3:
            raise ValueError(
                f"frames must be a (N, H, W) stack or a sequence of frames, got shape "
                f"{frame_list.shape}; use push() for a single frame"
            )
        n = len(frame_list)
        if shifts is None:
            shift_arr = np.zeros((n, 2), dtype=np.float64)
        else:
            shift_arr = np.asarray(shifts, dtype=np.float64)
            if shift_arr.shape != (n, 2):
                raise ValueError(
                    f"shifts must have shape ({n}, 2) -- one (dy, dx) per frame -- "
                    f"got {shift_arr.shape}"
                )
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
        i0, nxt, window = self._frames_seen, self._next_emit, self._cfg.window
        need = []
        for k in range(len(shifts)):
            if i0 + k >= nxt - window + 1:
                need.append(k)
            if i0 + k == nxt:
                nxt += self._cfg.stride
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
        bad = sorted(set(changes) - _SETTABLE)
        if bad:
            raise ValueError(
                f"set_params got unsupported setting(s) {bad}; allowed: "
                f"{sorted(_SETTABLE)} (the strategy is fixed: reset() re-chooses it)"
            )
        cfg_changes = {k: v for k, v in changes.items() if k not in _ESRRF_FIELDS}
        map_changes = {k: v for k, v in changes.items() if k in _ESRRF_FIELDS}
        new_cfg = replace(self._cfg, **cfg_changes)  # validates
        new_params = replace(self._params, **map_changes)  # validates
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
        keep_from = self._next_emit - new_cfg.window + 1
        if maps_invalid:
            if self._hi > self._lo:
                self._lo = min(max(self._lo, keep_from), self._hi)
        else:
            while self._hi > self._lo and self._lo < keep_from:
                self._evict_first()
        if (
            new_cfg.window != old_cfg.window
            or new_cfg.memory_budget_bytes != old_cfg.memory_budget_bytes
            or new_params.magnification != old_params.magnification
        ):
            self._resize_storage()
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

    def _restart(self) -> None:
        self._clear_window()
        self._next_emit = self._frames_seen + self._cfg.window - 1
        self._last_emit = None
        self._resize_storage()
        self._reset_shadow()

    def _map_shape(self, shape: tuple[int, int] | None = None) -> tuple[int, int]:
        h, w = shape if shape is not None else self._shape  # type: ignore[misc]
        m = self._params.magnification
        return h * m, w * m

    def _check_budget(self, cfg: SlidingConfig, params: EsrrfParams) -> None:
        """Raise (changing nothing) if ``cfg``/``params`` cannot fit the budget."""
        assert self._shape is not None and self._raw is not None
        kw = {
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
        kw = {
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
        raw_dtype = dtype if dtype in _COMPACT_DTYPES else np.dtype(np.float32)
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
        if self._hi == self._lo:
            new_strategy = self._choose_strategy(self._shape, raw_dtype.itemsize)
        else:
            new_strategy = self._strategy
            need_maps = estimate_memory(
                "maps",
                window=cap,
                frame_shape=self._shape,
                magnification=self._params.magnification,
                temporal=cfg.temporal,
                raw_itemsize=raw_dtype.itemsize,
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

    def _clear_window(self) -> None:
        self._lo = self._hi = self._frames_seen
        old = (self._head, self._tail)
        self._head = self._tail = None
        self._release(*old)
        if self._moments is not None:
            self._moments.clear()
        self._since_resync = 0
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
        self._reset_shadow()

    def _emit(self) -> SlidingResult:
        assert self._moments is not None
        image = self._moments.combine(
            self._cfg.temporal, first=self._head, last=self._tail
        )
        if self._cfg.macro_pixel_correction:
            if self._mpc is None:
                from livesr.kernels.esrrf_stack import macro_pixel_correction

                self._mpc = macro_pixel_correction
            image = self._mpc(image, self._params.magnification)
            image = np.asarray(image, dtype=np.float32)
        return SlidingResult(
            image=image,
            first_frame=self._lo,
            last_frame=self._hi - 1,
            n_frames=self._hi - self._lo,
        )

    def __repr__(self) -> str:
        return (
            f"SlidingEsrrf(window={self.window}, stride={self.stride}, "
            f"temporal={self.temporal!r}, "
            f"magnification={self._params.magnification}, strategy={self._strategy!r}, "
            f"sums_backend={self.sums_backend!r}, "
            f"frames_seen={self._frames_seen}, windows_emitted={self._windows_emitted})"
        )


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


def _validate_shape(shape: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"frame_shape must be (rows, columns), got {shape!r}"
        ) from None
    if h < 1 or w < 1:
        raise ValueError(f"frame_shape must be two integers >= 1, got {shape!r}")
    return h, w
