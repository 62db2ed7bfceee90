"""The frame-map glue of a stream: map stages, batch maps, the window choice.

What a pipeline needs to turn camera frames into sliding-window eSRRF images,
with every implementation chosen by the engine (``livesr.engine``; there is no
other cache of choices).

API for the pipeline
--------------------
Before acquisition (frame shape ``(H, W)`` known, e.g. from the source)::

    params = EsrrfParams(magnification=5, radius=1.5, ...)
    where = choose_window(esrrf_map_batch_kernel(), (H, W), params,
                          batch=max_batch)               # "host" or "device"
    sl = new_window(params, window=50, stride=10, frame_shape=(H, W),
                    prefer=where, max_batch=max_batch,
                    temporal="avg", macro_pixel_correction=True)
    sl.warm_up((H, W), max_batch)   # compiles / plans / first engine calls now

Per batch (every frame that waited since the last step, in order, ``n <=
max_batch`` or more: the window splits)::

    results = sl.push_many(frames,            # (n, H, W) any real dtype
                           shifts,            # (n, 2) float (dy, dx) input px
                           deadline_s=batch_deadline(n, frame_interval_s))
    for r in results:                          # each SlidingResult completed
        publish(r.image, r.first_frame, r.last_frame)

Deadline semantics (issue 13): the engine judges an implementation on the
whole call, so a batch of ``n`` frames has the throughput deadline ``n x frame
interval`` (:func:`batch_deadline`); leaving ``deadline_s`` out uses
``n * sl.deadline_s`` when the pipeline set ``sl.deadline_s = frame_interval_s``
once.  Skipping to the newest complete window when behind stays the pipeline's
business (``sl.reset()`` and drop frames).

Settings changes between batches: ``sl.set_params(recompute=True, **changes)``.
Result images: new host arrays; ``new_window(..., result_buffers=k)`` makes the
device window download into ``k`` pinned buffers instead (an image stays valid
until ``k`` more images are emitted: publish or copy it before).

Pieces
------
:class:`MapStage`, :func:`engine_map`, :func:`default_map`
    The per-frame map with the ``esrrf_frame`` signature (moved here from
    ``stream/_pipeline.py``): the engine-dispatched ``esrrf_map`` for the
    ``"nanopyx"`` geometry, :func:`livesr.kernels.esrrf_frame` otherwise.
:func:`engine_batch_map`
    ``fn(frames, params, shifts, deadline_s)``: the engine-dispatched
    ``esrrf_map_batch`` for the host window's ``batch_map``.
:func:`engine_device_map`, :func:`engine_device_map_batch`
    The device window's maps (re-exported from :mod:`livesr.kernels.sliding`).
:func:`choose_window`, :func:`new_window`, :func:`batch_deadline`
    See above.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from livesr.kernels._params import EsrrfParams
from livesr.kernels.sliding import engine_device_map, engine_device_map_batch

__all__ = [
    "MapStage",
    "batch_deadline",
    "choose_window",
    "default_map",
    "engine_batch_map",
    "engine_device_map",
    "engine_device_map_batch",
    "engine_map",
    "esrrf_map_batch_kernel",
    "new_window",
]

logger = logging.getLogger(__name__)

#: smallest deadline handed to the engine (it requires > 0): "as fast as possible"
MIN_DEADLINE_S = 1e-6

Where = Literal["host", "device"]


def batch_deadline(n: int, frame_interval_s: float | None) -> float | None:
    """Throughput deadline of a batch of ``n`` frames: ``n`` frame intervals, s.

    ``None`` when the frame interval is unknown (no deadline); never below
    :data:`MIN_DEADLINE_S`.
    """
    if frame_interval_s is None:
        return None
    if n < 1:
        raise ValueError(f"a batch has n >= 1 frames, got {n}")
    return max(float(n) * float(frame_interval_s), MIN_DEADLINE_S)


def esrrf_map_batch_kernel() -> Any:
    """The engine's ``esrrf_map_batch`` kernel."""
    from livesr.kernels.esrrf_map_batch import kernel

    return kernel


class MapStage:
    """The per-frame eSRRF map stage, the engine's hook.

    Parameters
    ----------
    fn : callable, optional
        ``fn(frame, params, *, shift, out[, deadline_s])``; default
        :func:`default_map`.  For a dispatched ``livesr.engine`` kernel with the
        ``esrrf_map`` signature use :func:`engine_map`.
    name : str, optional
        Implementation name to report (default: the engine's last decision when
        ``fn`` (or ``fn.kernel``) has ``last_decision``, else ``fn.implementation``
        or the function's name).
    """

    MIN_DEADLINE_S = MIN_DEADLINE_S

    def __init__(
        self, fn: Callable[..., np.ndarray] | None = None, name: str | None = None
    ) -> None:
        if fn is None:
            fn = default_map()
            name = name or "esrrf_map"  # until the engine's first decision
        self.fn = fn
        self._engine = getattr(fn, "kernel", fn)
        self._name = name or str(
            getattr(fn, "implementation", None) or getattr(fn, "__name__", "custom")
        )
        try:
            sig = inspect.signature(fn)
            self.accepts_deadline = "deadline_s" in sig.parameters or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
            )
        except (TypeError, ValueError):
            self.accepts_deadline = False
        #: deadline of the next call, s (None: no deadline)
        self.deadline_s: float | None = None
        self.calls = 0

    @property
    def engine(self) -> Any:
        """The engine kernel behind ``fn`` (or ``fn`` itself)."""
        return self._engine

    @property
    def name(self) -> str:
        """Implementation that ran the last call (engine decision when dispatched)."""
        decision = getattr(self._engine, "last_decision", None)
        impl = getattr(decision, "impl", None)
        return str(impl) if impl else self._name

    def __call__(
        self,
        frame: np.ndarray,
        params: Any,
        *,
        shift: Any = (0.0, 0.0),
        out: Any = None,
    ) -> np.ndarray:
        self.calls += 1
        if self.accepts_deadline:
            d = self.deadline_s
            deadline = None if d is None else max(float(d), self.MIN_DEADLINE_S)
            return self.fn(frame, params, shift=shift, out=out, deadline_s=deadline)
        return self.fn(frame, params, shift=shift, out=out)


def _nanopyx_only(params: Any) -> None:
    if params.geometry != "nanopyx":
        raise ValueError(
            f"engine esrrf_map implements geometry 'nanopyx' only, got "
            f"{params.geometry!r}; use the default map (esrrf_frame) for it"
        )


def engine_map(kernel: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Adapt a dispatched ``esrrf_map(frame, magnification, radius, sensitivity,
    intensity_weighting, shift=, deadline_s=)`` kernel to the ``esrrf_frame``
    signature :class:`MapStage` and :class:`livesr.kernels.SlidingEsrrf` use.

    Only the ``"nanopyx"`` geometry is mapped (the engine kernels implement it).
    """

    def esrrf_map_stage(
        frame: np.ndarray,
        params: Any,
        *,
        shift: Any = (0.0, 0.0),
        out: np.ndarray | None = None,
        deadline_s: float | None = None,
    ) -> np.ndarray:
        _nanopyx_only(params)
        kw = {} if deadline_s is None else {"deadline_s": deadline_s}
        img = kernel(
            frame,
            params.magnification,
            params.radius,
            params.sensitivity,
            params.intensity_weighting,
            shift=tuple(shift),
            **kw,
        )
        if out is None:
            return np.asarray(img, dtype=np.float32)
        out[...] = img
        return out

    esrrf_map_stage.kernel = kernel  # type: ignore[attr-defined]
    return esrrf_map_stage


def default_map() -> Callable[..., np.ndarray]:
    """The stream's per-frame map: the engine-dispatched ``esrrf_map`` kernel (with
    the caller's deadline) for the ``"nanopyx"`` geometry, and
    :func:`livesr.kernels.esrrf_frame` (the engine's kept fastest stages) otherwise."""
    from livesr.kernels import esrrf_frame
    from livesr.kernels.esrrf_map import kernel as esrrf_map_kernel

    dispatched = engine_map(esrrf_map_kernel)

    def esrrf_map_or_frame(
        frame: np.ndarray,
        params: Any,
        *,
        shift: Any = (0.0, 0.0),
        out: np.ndarray | None = None,
        deadline_s: float | None = None,
    ) -> np.ndarray:
        if params.geometry == "nanopyx":
            return dispatched(frame, params, shift=shift, out=out, deadline_s=deadline_s)
        return esrrf_frame(frame, params, shift=shift, out=out)

    esrrf_map_or_frame.kernel = esrrf_map_kernel  # type: ignore[attr-defined]
    return esrrf_map_or_frame


def engine_batch_map(kernel: Any = None) -> Callable[..., np.ndarray]:
    """``fn(frames (N, H, W), params, shifts (N, 2), deadline_s) -> (N, H*M, W*M)``
    through the engine's ``esrrf_map_batch`` (or ``kernel``), for the host window's
    ``batch_map``; ``"nanopyx"`` geometry only."""
    k = kernel if kernel is not None else esrrf_map_batch_kernel()

    def esrrf_map_batch(
        frames: np.ndarray,
        params: Any,
        shifts: np.ndarray,
        deadline_s: float | None = None,
    ) -> np.ndarray:
        _nanopyx_only(params)
        kw = {} if deadline_s is None else {"deadline_s": max(deadline_s, MIN_DEADLINE_S)}
        maps = k(
            frames,
            params.magnification,
            params.radius,
            params.sensitivity,
            params.intensity_weighting,
            shifts=shifts,
            **kw,
        )
        return np.asarray(maps, dtype=np.float32)

    esrrf_map_batch.kernel = k  # type: ignore[attr-defined]
    return esrrf_map_batch


def choose_window(
    kernel: Any,
    frame_shape: tuple[int, int],
    params: EsrrfParams,
    *,
    batch: int = 1,
    frame: np.ndarray | None = None,
) -> Where:
    """Where the sliding window should run: ``"device"`` when the engine's fastest
    implementation of ``kernel`` (``esrrf_map`` or ``esrrf_map_batch``) for this
    frame shape is the CuPy one, else ``"host"``.

    Implementations with no timing or prior for the input are timed now through
    the engine (:meth:`livesr.engine.Kernel.fastest` with ``record=True``: three
    recorded runs each), so call this before acquisition.  ``LIVESR_DEVICE_WINDOW=off``
    (or ``0``) keeps the host window whatever the engine says; the ``"corrected"``
    geometry, a kernel that is not an engine kernel, or any failure while timing
    (logged) give ``"host"``.

    Parameters
    ----------
    kernel : livesr.engine.Kernel
    frame_shape : (H, W)
    params : EsrrfParams
    batch : int
        Frames per call for ``esrrf_map_batch`` (ignored for ``esrrf_map``).
    frame : (H, W) array, optional
        A real frame to time on (default: a synthetic Poisson frame).
    """
    if os.environ.get("LIVESR_DEVICE_WINDOW", "auto").lower() in ("off", "0"):
        return "host"
    if params.geometry != "nanopyx" or not hasattr(kernel, "fastest"):
        return "host"
    h, w = (int(v) for v in frame_shape)
    if frame is None:
        frame = np.random.default_rng(0).poisson(100.0, (h, w)).astype(np.float32)
    img = np.ascontiguousarray(frame, dtype=np.float32)
    rest = (params.magnification, params.radius, params.sensitivity,
            params.intensity_weighting)
    if getattr(kernel, "name", "") == "esrrf_map_batch":
        n = max(1, int(batch))
        args: tuple[Any, ...] = (np.ascontiguousarray(np.broadcast_to(img, (n, h, w))),
                                 *rest)
    else:
        args = (img, *rest)
    try:
        best = kernel.fastest(*args, record=True)
    except Exception as exc:  # an implementation failing here must not stop us
        logger.warning("could not time %s implementations: %s", kernel, exc)
        return "host"
    logger.debug("%s favourite for %sx%s: %s", getattr(kernel, "name", kernel), h, w,
                 best)
    return "device" if best.split("-", 1)[0] == "cupy" else "host"


def new_window(
    params: EsrrfParams,
    window: int,
    stride: int,
    frame_shape: tuple[int, int],
    *,
    prefer: Where | Literal["auto"] = "auto",
    temporal: str = "avg",
    macro_pixel_correction: bool = True,
    max_batch: int = 32,
    result_buffers: int = 0,
    device_fraction: float = 0.5,
    frame_map: Callable[..., np.ndarray] | None = None,
    **host_options: Any,
) -> Any:
    """A sliding window for these settings: :class:`DeviceSlidingEsrrf` or
    :class:`SlidingEsrrf`.

    Parameters
    ----------
    params : EsrrfParams
    window, stride : int
    frame_shape : (H, W)
    prefer : {"auto", "host", "device"}
        ``"auto"``: :func:`choose_window` with the engine's ``esrrf_map_batch``.
        ``"device"`` falls back to the host window (logged) when the device one
        cannot be made (no CUDA device, too little device memory, the
        ``"corrected"`` geometry).
    temporal, macro_pixel_correction
        As the windows'.
    max_batch : int
        Frames per batch map call (device buffers are sized for it; halved until
        the device window fits ``device_fraction`` of the free device memory).
    result_buffers : int
        Device window: pinned result buffers (see
        :class:`~livesr.kernels.sliding.DeviceSlidingEsrrf`).
    device_fraction : float
        Device window: largest share of the free device memory it may take.
    frame_map : callable, optional
        Host window: per-frame map (default :func:`default_map`); its batch map is
        :func:`engine_batch_map` for the ``"nanopyx"`` geometry when ``frame_map``
        is not given (so single pushes and batches use the same engine kernels).
    **host_options
        More :class:`SlidingEsrrf` options (``memory_budget_bytes``, ...).
    """
    if prefer not in ("auto", "host", "device"):
        raise ValueError(f"prefer must be 'auto', 'host' or 'device', got {prefer!r}")
    where = prefer
    if where == "auto":
        where = choose_window(
            esrrf_map_batch_kernel(), frame_shape, params, batch=max_batch
        )
    common: dict[str, Any] = {
        "magnification": params.magnification,
        "radius": params.radius,
        "sensitivity": params.sensitivity,
        "intensity_weighting": params.intensity_weighting,
        "macro_pixel_correction": macro_pixel_correction,
        "temporal": temporal,
    }
    if where == "device" and params.geometry == "nanopyx":
        device = _device_window(
            window,
            stride,
            frame_shape,
            max_batch=max_batch,
            result_buffers=result_buffers,
            device_fraction=device_fraction,
            **common,
        )
        if device is not None:
            return device
    return _host_window(
        params, window, stride, frame_shape, frame_map, **common, **host_options
    )


def _host_window(
    params: EsrrfParams,
    window: int,
    stride: int,
    frame_shape: tuple[int, int],
    frame_map: Callable[..., np.ndarray] | None,
    **options: Any,
) -> Any:
    """A :class:`SlidingEsrrf`; without ``frame_map``, the stream's default map and,
    for the ``"nanopyx"`` geometry, the engine's batch map (same engine kernels)."""
    from livesr.kernels.sliding import SlidingEsrrf

    batch_map = None
    if frame_map is None:
        frame_map = default_map()
        if params.geometry == "nanopyx":
            batch_map = engine_batch_map()
    return SlidingEsrrf(
        window,
        stride,
        geometry=params.geometry,
        frame_shape=frame_shape,
        frame_map=frame_map,
        batch_map=batch_map,
        **options,
    )


def _device_window(
    window: int,
    stride: int,
    frame_shape: tuple[int, int],
    *,
    max_batch: int,
    **options: Any,
) -> Any:
    """A :class:`DeviceSlidingEsrrf` with batch buffers halved from ``max_batch``
    until it fits the device, or None (logged) when there is no usable device or
    not even one frame per batch fits."""
    from livesr.kernels.sliding import DeviceSlidingEsrrf, device_available

    ok, why = device_available()
    if not ok:
        logger.warning("GPU-resident window not used: %s", why)
        return None
    mb = max(1, int(max_batch))
    while True:
        try:
            sl = DeviceSlidingEsrrf(
                window, stride, frame_shape=frame_shape, max_batch=mb, **options
            )
        except MemoryError as exc:
            if mb == 1:
                logger.warning("GPU-resident window not used: %s", exc)
                return None
            mb //= 2
            continue
        logger.info(
            "sliding window on the GPU (frames stay on the device; %d MiB)",
            sl.memory_bytes // 2**20,
        )
        return sl
