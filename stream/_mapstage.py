"""The per-frame eSRRF map stage of the live pipeline (the engine's hook).

The per-frame map goes through :class:`MapStage`: any callable with the signature of
:func:`livesr.kernels.esrrf_frame` (a dispatched ``livesr.engine`` kernel when one is
registered); if it accepts ``deadline_s`` the frame's deadline is passed (the camera's
frame interval: the throughput an implementation must sustain; see
:mod:`livesr.stream._processing`).  Its ``implementation`` (or the callable's name;
``"numpy"`` for the default) is reported per stage.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MapStage", "default_map", "engine_map"]


class MapStage:
    """The per-frame eSRRF map stage, the engine's hook (see the module docstring).

    Parameters
    ----------
    fn : callable, optional
        ``fn(frame, params, *, shift, out[, deadline_s])``; default
        :func:`livesr.kernels.esrrf_frame` (numpy).  For a dispatched
        ``livesr.engine`` kernel with the ``esrrf_map`` signature use
        :func:`engine_map`.
    name : str, optional
        Implementation name to report (default: the engine's last decision when
        ``fn`` (or ``fn.kernel``) has ``last_decision``, else ``fn.implementation``
        or the function's name).
    """

    #: smallest deadline handed to the engine (it requires > 0): "as fast as possible"
    MIN_DEADLINE_S = 1e-6

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
        #: remaining latency budget of the frame being mapped, s (None: no deadline)
        self.deadline_s: float | None = None
        self.calls = 0

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
        if params.geometry != "nanopyx":
            raise ValueError(
                f"engine esrrf_map implements geometry 'nanopyx' only, got "
                f"{params.geometry!r}; use the default map (esrrf_frame) for it"
            )
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
    """The pipeline's per-frame map: the engine-dispatched ``esrrf_map`` kernel (with
    the remaining latency budget as its deadline) for the ``"nanopyx"`` geometry, and
    :func:`livesr.kernels.esrrf_frame` (fastest stage implementations) otherwise."""
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
