"""Stop the acquisition once the super-resolved image stops improving.

:class:`StopWhenConverged` tracks the FRC resolution of successive results --
``result.metrics["frc_resolution_nm"]`` when the pipeline provides it,
otherwise computed here from ``result.halves`` (two reconstructions from the
odd / even frames) with :func:`livesr.kernels.frc.frc_resolution`, or, with
neither, by decorrelation analysis of ``result.image``. With
``ConvergedConfig(accumulate=True)`` (what ``livesr run --hook
stop-when-converged`` uses: the live pipeline publishes sliding-window images,
each of the same length) it measures everything acquired so far instead: the
mean of the images of even- and of odd-numbered results are two independent
halves for FRC when the results' frame windows do not overlap (otherwise the
decorrelation resolution of the mean of all images). When the
resolution of the last ``windows`` results spans less than ``rel_change`` of
the newest value (and at least ``min_results`` have been seen), it calls
``controller.stop_acquisition`` once and records where it stopped
(:attr:`StopWhenConverged.stopped`).

:meth:`StopWhenConverged.savings` reports the frames, photons and time saved
against a fixed-length acquisition of ``planned_frames`` frames.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesr.adapters.feedback._api import Result

__all__ = ["ConvergedConfig", "StopWhenConverged"]

logger = logging.getLogger(__name__)

KEY_FRC_NM = "frc_resolution_nm"
KEY_PHOTONS = "photons"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvergedConfig:
    """Parameters of :class:`StopWhenConverged`.

    Attributes
    ----------
    rel_change : float
        Converged when (max - min) of the last ``windows`` resolutions is below
        this fraction of the newest one, in (0, 1).
    windows : int
        Results compared, >= 2.
    min_results : int
        Never stop before this many results with a finite resolution, >= windows.
    accumulate : bool
        Resolution of the accumulated images (see the module docstring), not of
        each result alone.
    """

    rel_change: float = 0.05
    windows: int = 3
    min_results: int = 3
    accumulate: bool = False

    def __post_init__(self) -> None:
        r = self.rel_change
        if not (isinstance(r, (int, float)) and math.isfinite(r) and 0 < r < 1):
            raise ValueError(
                f"ConvergedConfig.rel_change={r!r} is out of range; expected a number "
                "in (0, 1)"
            )
        k = self.windows
        if not (isinstance(k, int) and not isinstance(k, bool) and k >= 2):
            raise ValueError(
                f"ConvergedConfig.windows={k!r} is out of range; "
                "expected an integer >= 2"
            )
        m = self.min_results
        if not (isinstance(m, int) and not isinstance(m, bool) and m >= k):
            raise ValueError(
                f"ConvergedConfig.min_results={m!r} is out of range; expected an "
                f"integer >= windows ({k})"
            )
        if not isinstance(self.accumulate, bool):
            raise ValueError(
                f"ConvergedConfig.accumulate={self.accumulate!r} is invalid; expected "
                "true or false"
            )


@dataclass(frozen=True, slots=True)
class StopRecord:
    """Where :class:`StopWhenConverged` stopped the acquisition.

    Attributes
    ----------
    result_index : int
    frames : int
        Frames acquired up to that result (``frame_range[1] + 1``; -1 if unknown).
    resolution_nm : float
        FRC resolution at the stop, nm.
    photons : float
        ``result.metrics["photons"]`` at the stop (cumulative detected photons;
        NaN if absent).
    """

    result_index: int
    frames: int
    resolution_nm: float
    photons: float


class StopWhenConverged:
    """Feedback hook: stop acquiring when the FRC resolution has converged.

    Parameters
    ----------
    config : ConvergedConfig, optional

    Attributes
    ----------
    history : list of (int, float)
        (result index, resolution nm) of every result seen.
    stopped : StopRecord or None
    """

    name = "stop_when_converged"

    def __init__(self, config: ConvergedConfig | None = None) -> None:
        self.config = config if config is not None else ConvergedConfig()
        self.history: list[tuple[int, float]] = []
        self._recent: deque[float] = deque(maxlen=self.config.windows)
        self._n_finite = 0
        self.stopped: StopRecord | None = None
        # accumulate mode: sums of the even / odd results' images
        self._sums: list[np.ndarray] | None = None
        self._counts = [0, 0]
        self._last_frame: int | None = None
        self._overlap = False

    @staticmethod
    def resolution_nm(result: Result) -> float:
        """Resolution of a result, nm.

        ``metrics["frc_resolution_nm"]`` if present, else the FRC of
        ``result.halves``, else decorrelation analysis of ``result.image``
        (NaN when it finds no peak).
        """
        v = result.metrics.get(KEY_FRC_NM)
        if v is not None:
            return float(v)
        px_nm = 1000.0 * result.sr_pixel_size_um
        if result.halves is not None:
            from livesr.kernels.frc import frc_resolution

            a, b = result.halves
            return frc_resolution(a, b, pixel_size=px_nm)
        if result.image is not None:
            from livesr.kernels.frc import decorrelation_resolution

            return decorrelation_resolution(result.image, pixel_size=px_nm)
        raise ValueError(
            f"result {result.index} has no metrics['{KEY_FRC_NM}'], halves or "
            "image; StopWhenConverged needs one of them"
        )

    def _accumulated_nm(self, result: Result) -> float:
        """Resolution of all images so far (``accumulate=True``), nm."""
        if result.image is None:
            raise ValueError(
                f"result {result.index} has no image; StopWhenConverged("
                "accumulate=True) needs the SR image of every result"
            )
        img = np.asarray(result.image, dtype=np.float64)
        if self._sums is None or self._sums[0].shape != img.shape:
            if self._sums is not None:
                logger.info("image shape changed: accumulation restarts")
            self._sums = [np.zeros_like(img), np.zeros_like(img)]
            self._counts = [0, 0]
            self._last_frame = None
        fr = result.frame_range
        if fr is None or (self._last_frame is not None and fr[0] <= self._last_frame):
            self._overlap = True
        if fr is not None:
            self._last_frame = fr[1]
        h = result.index % 2
        self._sums[h] += img
        self._counts[h] += 1
        px_nm = 1000.0 * result.sr_pixel_size_um
        n0, n1 = self._counts
        if not self._overlap and n0 and n1:
            from livesr.kernels.frc import frc_resolution

            return frc_resolution(
                self._sums[0] / n0, self._sums[1] / n1, pixel_size=px_nm
            )
        from livesr.kernels.frc import decorrelation_resolution

        mean = (self._sums[0] + self._sums[1]) / (n0 + n1)
        return decorrelation_resolution(mean, pixel_size=px_nm)

    def on_result(self, result: Result, controller: Any) -> None:
        """Record the resolution; stop the acquisition once converged."""
        if self.stopped is not None:
            return
        res = (
            self._accumulated_nm(result)
            if self.config.accumulate
            else self.resolution_nm(result)
        )
        self.history.append((result.index, res))
        if not math.isfinite(res):
            return
        self._n_finite += 1
        self._recent.append(res)
        cfg = self.config
        if self._n_finite < cfg.min_results or len(self._recent) < cfg.windows:
            return
        spread = max(self._recent) - min(self._recent)
        if spread >= cfg.rel_change * res:
            return
        frames = result.frame_range[1] + 1 if result.frame_range else -1
        self.stopped = StopRecord(
            result.index, frames, res, float(result.metrics.get(KEY_PHOTONS, math.nan))
        )
        logger.info(
            "converged at result %d (%d frames): FRC %.1f nm, last %d within %.1f %%; "
            "stopping acquisition",
            result.index,
            frames,
            res,
            cfg.windows,
            100 * spread / res,
        )
        controller.stop_acquisition(f"FRC resolution converged at {res:.1f} nm")

    __call__ = on_result

    def report(self) -> dict[str, Any]:
        """JSON-ready state: ``results`` seen, ``resolution_nm`` of the last
        ``windows`` results and ``stopped`` (the :class:`StopRecord` as a dict, or
        None)."""
        st = self.stopped
        return {
            "results": len(self.history),
            "resolution_nm": [
                r if math.isfinite(r) else None
                for _, r in self.history[-self.config.windows :]
            ],
            "stopped": None
            if st is None
            else {
                "result_index": st.result_index,
                "frames": st.frames,
                "resolution_nm": st.resolution_nm,
                "photons": st.photons if math.isfinite(st.photons) else None,
            },
        }

    def savings(
        self, planned_frames: int, frame_interval_s: float, photons_per_frame: float
    ) -> dict[str, float]:
        """Frames, photons and time saved against ``planned_frames`` frames.

        Parameters
        ----------
        planned_frames : int
            Length of the fixed acquisition compared with.
        frame_interval_s : float
            Time per frame, s.
        photons_per_frame : float
            Mean detected photons per frame (the light dose saved per frame).

        Returns
        -------
        dict
            ``frames_used, frames_saved, time_saved_s, photons_saved,
            fraction_saved``; zeros saved if it never stopped.
        """
        used = self.stopped.frames if self.stopped is not None else planned_frames
        saved = max(0, planned_frames - used)
        return {
            "frames_used": float(used),
            "frames_saved": float(saved),
            "time_saved_s": saved * frame_interval_s,
            "photons_saved": saved * photons_per_frame,
            "fraction_saved": saved / planned_frames if planned_frames else 0.0,
        }
