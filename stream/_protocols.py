"""The seams of the pipeline: what a source, a sink and a hook look like, and the
:class:`Result` every hook and sink receives.

Stream consumes these and adapters implement them (the way pymmcore-plus declares
the protocols of its MDA engine and sinks in the layer that drives them), so stream
never imports an adapter outside the CLI:

- :class:`Source` -- pushes raw frames into a pipeline's ingest endpoint over the
  lossless link (:class:`livesr.stream.SourceLink`), on its own thread:
  ``start() -> join() -> summary``.  Implementations:
  ``livesr.adapters.sources.simulated.SimulatedSource``,
  ``livesr.adapters.sources.replay.ReplaySource``,
  ``livesr.adapters.sources.mmcore_push.MMCorePushSource`` (all on
  ``livesr.adapters.sources.ThreadedSource``).
- :class:`Sink` -- takes every published window, never blocking the processing
  thread (:class:`livesr.stream.HookRunner` is the pipeline's sink of hooks; a
  subscriber of the results stream, like the napari viewer, decodes the same
  messages with :func:`livesr.stream.decode_result`).
- :class:`Hook` -- ``hook(result, controller)`` run by a :class:`HookRunner`.

>>> r = Result(index=0, drift_px=(0.4, -0.1), pixel_size_um=0.1, magnification=4)
>>> r.sr_pixel_size_um
0.025
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from livesr.stream._wire_result import (
    RESULT_TIMESTAMPS,
    ResultMessage,
    finite_or_nan,
    result_message,
)

__all__ = ["Hook", "Result", "Sink", "Source"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Result:
    """One published reconstruction window, as hooks and sinks see it.

    Attributes
    ----------
    index : int
        Window (result) number, >= 0, increasing.
    image : numpy.ndarray or None
        (H * M, W * M) float32 super-resolved image, or None when not sent.
    drift_px : (float, float)
        Measured (dy, dx) displacement of the sample in the image, camera px,
        positive towards larger row / column, relative to the pipeline's drift
        reference, for the window's newest frames. Stage moves made by hooks
        show up in it (it is what the camera sees).
    drift_sigma_px : float
        Standard uncertainty of ``drift_px`` per axis, px (NaN if unknown).
    metrics : Mapping[str, float]
        Named scalar metrics, e.g. ``"frc_resolution_nm"``, ``"photons"``
        (detected photons in the window), ``"quality"``.
    timestamps : Mapping[str, float]
        Named times, s. Keys used by the built-in hooks: ``"t_acq_first"`` /
        ``"t_acq_last"``: acquisition time (``time.time()``) of the window's
        first / newest frame; ``"t_publish"``.
    pixel_size_um : float
        Camera pixel size in the sample plane, um (the unit of ``drift_px``);
        the SR pixel is ``pixel_size_um / magnification``.
    magnification : int
        eSRRF magnification M, >= 1.
    frame_range : (int, int) or None
        (first, last) raw frame seq of the window, inclusive.
    halves : (numpy.ndarray, numpy.ndarray) or None
        Two independent SR reconstructions of the window (odd / even frames),
        (H * M, W * M) each, for FRC (:mod:`livesr.kernels.frc`).
    """

    index: int
    image: np.ndarray | None = None
    drift_px: tuple[float, float] = (0.0, 0.0)
    drift_sigma_px: float = math.nan
    metrics: Mapping[str, float] = field(default_factory=dict)
    timestamps: Mapping[str, float] = field(default_factory=dict)
    pixel_size_um: float = math.nan
    magnification: int = 1
    frame_range: tuple[int, int] | None = None
    halves: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.index, (int, np.integer)) or self.index < 0:
            raise ValueError(
                f"Result.index={self.index!r} is invalid; expected an int >= 0"
            )
        if len(self.drift_px) != 2:
            raise ValueError(
                f"Result.drift_px={self.drift_px!r} is invalid; expected (dy, dx) px"
            )
        m = self.magnification
        if not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(
                f"Result.magnification={m!r} is invalid; expected an int >= 1"
            )
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        object.__setattr__(self, "timestamps", MappingProxyType(dict(self.timestamps)))

    @property
    def sr_pixel_size_um(self) -> float:
        """Pixel size of ``image``, um."""
        return self.pixel_size_um / self.magnification

    @classmethod
    def from_message(cls, msg: ResultMessage) -> Result:
        """The Result of one decoded ``kind="sr"`` results message
        (:func:`livesr.stream.decode_result`).

        Returns
        -------
        Result
            ``timestamps`` has ``t_acq_last`` (acquisition of the window's newest
            frame), ``t_recv``, ``t_proc`` and ``t_publish`` (``time.time()`` s; a
            missing or zero stamp is left out); ``metrics`` has ``quality`` when the
            header has a finite one, and the live resolution estimates published
            with this window (most windows carry none; each measured an image at
            most a few windows older): ``live_frc_nm`` / ``live_frc_resolved`` (the
            even/odd FRC) and ``live_decorr_nm`` / ``live_decorr_resolved``
            (decorrelation, resolved only when the FRC of its window confirms
            it; see :mod:`livesr.stream._resolution`), and ``live_estimates`` (1.0)
            when the header has the fields of these estimates, even empty (the
            result comes from a livesr pipeline).  ``drift_px`` is the
            displacement the camera sees at the newest frame, (0, 0) with NaN sigma
            when drift estimation is off.
        """
        metrics = {"quality": msg.quality} if math.isfinite(msg.quality) else {}
        if "frc" in msg.header or "resolution" in msg.header:  # a livesr pipeline's
            metrics["live_estimates"] = 1.0
        for key, name in (("frc", "live_frc"), ("resolution", "live_decorr")):
            est = msg.header.get(key)
            if not isinstance(est, Mapping):
                continue
            nm = finite_or_nan(est.get("value_nm"))
            if math.isfinite(nm):
                metrics[f"{name}_nm"] = nm
                metrics[f"{name}_resolved"] = bool(est.get("resolved"))
        stamps: dict[str, float] = {}
        for key, value in msg.timestamps.items():
            if key in RESULT_TIMESTAMPS and not isinstance(value, bool):
                try:
                    t = float(value)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(t) and t:
                    stamps[RESULT_TIMESTAMPS[key]] = t
        first, last = msg.first_frame, msg.last_frame
        d = msg.header.get("drift")
        drift_px = (0.0, 0.0)
        if isinstance(d, Mapping) and d:  # NaN until the drift estimate is known
            drift_px = (finite_or_nan(d.get("dy", 0.0)), finite_or_nan(d.get("dx", 0.0)))
        return cls(
            index=msg.index,
            image=msg.image,
            drift_px=drift_px,
            drift_sigma_px=msg.drift_sigma_px,
            metrics=metrics,
            timestamps=stamps,
            pixel_size_um=msg.raw_pixel_size_um,
            magnification=msg.magnification,
            frame_range=(first, last) if first is not None and last is not None else None,
        )

    @classmethod
    def from_header(
        cls, header: Mapping[str, Any], image: np.ndarray | None = None
    ) -> Result:
        """The Result of one published window from its header (decoded by
        :func:`livesr.stream._wire_result.result_message`, the results-stream codec) and
        image; see :meth:`from_message`.

        Raises
        ------
        livesr.stream.WireError
            A header that does not follow the results format (a ValueError).
        """
        return cls.from_message(result_message(header, image))


@runtime_checkable
class Hook(Protocol):
    """A feedback hook: a callable ``hook(result, controller) -> None``.

    A class may instead define ``on_result(result, controller)`` (and optionally
    ``report() -> dict`` for the run summary).  It runs on the hook's own worker
    thread (:class:`livesr.stream.HookRunner`), may take its time (newer results
    then replace the pending one) and commands the microscope only through the
    controller it is given (``livesr.adapters.feedback.MicroscopeController``).
    Exceptions are logged and counted, never propagated to the pipeline.
    """

    def __call__(self, result: Result, controller: Any) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Takes every published window of a pipeline (``Pipeline(hooks=sink)``).

    ``submit`` is called on the processing thread and must never block (queue or
    drop, newest-only); ``close`` lets pending work finish and returns the sink's
    final state; ``report`` is a JSON-ready dict for the run summary (the
    summary's ``hooks`` key).
    """

    def submit(self, result: Result) -> None: ...

    def close(self, timeout_s: float = ...) -> Any: ...

    def report(
        self,
        *,
        frames_acquired: int | None = None,
        frames_planned: int = 0,
        frame_interval_s: float = math.nan,
    ) -> dict[str, Any]: ...


@runtime_checkable
class Source(Protocol):
    """Pushes raw frames into a pipeline's ingest endpoint on its own thread.

    Attributes
    ----------
    summary : dict or None
        The link summary once the run ended (``frames_acquired``, ``frames_acked``,
        gaps...), None before.
    error : BaseException or None
        What ended the background run, if it failed.
    """

    summary: dict[str, Any] | None
    error: BaseException | None

    def run(self) -> dict[str, Any]:
        """Acquire and send until done or stopped (blocking); the link summary."""
        ...

    def start(self) -> Source:
        """Run :meth:`run` on a background thread; returns self."""
        ...

    def stop(self) -> None:
        """Ask the acquisition to stop after the current frame."""
        ...

    def join(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for the background run; the summary (None while still running)."""
        ...
