"""Stop the acquisition once the super-resolved image stops improving.

:class:`StopWhenConverged` tracks the resolution of successive results --
``result.metrics["frc_resolution_nm"]`` when the pipeline provides it,
otherwise computed here from ``result.halves`` (two reconstructions from the
odd / even frames) by FRC (:func:`livesr.kernels.frc.frc_resolution`), and, when
that is unavailable or unresolved, by decorrelation analysis of ``result.image``
(:func:`livesr.kernels.decorr.decorrelation_analysis`, NanoPyx's). With
``ConvergedConfig(accumulate=True)`` (what ``livesr run --hook
stop-when-converged`` uses: the live pipeline publishes sliding-window images,
each of the same length) it measures everything acquired so far instead: the
mean of the images of even- and of odd-numbered results are two independent
halves for FRC when the results' frame windows do not overlap; the
decorrelation analysis measures the mean of all images.

Resolved or not
    A value at the Nyquist floor is a sampling limit, not a measurement, and never
    counts towards convergence.  FRC is *resolved* when its curve crosses the 1/7
    threshold before Nyquist and the value is at least ``floor_margin`` times the
    2-pixel floor; decorrelation when its peak frequency ``kc_max`` is above 0 and
    the value is at least ``floor_margin`` times the floor (``kc_max <= 1 /
    floor_margin``).  FRC is used when resolved, else decorrelation when resolved
    (dense, noise-free data correlate up to Nyquist in FRC, yet decorrelation
    finds where their spectrum ends), else the result is unresolved.  A
    ``metrics["frc_resolution_nm"]`` value is resolved when it lies ``floor_margin``
    above the floor of the result's SR pixel (any finite value when the pixel size
    is unknown) unless ``metrics["frc_resolved"]`` says otherwise.

Stop rule
    The acquisition stops once (1) the last ``windows`` results are all resolved,
    by the same method, (2) their resolutions span less than ``rel_change`` of the
    newest (so the improvement over them is below it too), (3) at least
    ``min_results`` resolved results have been seen and (4) at least
    ``min_frames`` frames have been acquired (``frame_range[1] + 1``).  An
    unresolved result restarts (1).  The hook then calls
    ``controller.stop_acquisition(reason)`` once; :meth:`StopWhenConverged.report`
    (the run summary's ``hooks``) says ``stopped: true`` with the reason.

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

from livesr.stream import Result

__all__ = ["ConvergedConfig", "Measured", "StopWhenConverged"]

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
    min_frames : int
        Never stop before this many frames were acquired, >= 0.
    floor_margin : float
        A resolution counts as resolved only at least this factor above the 2-px
        Nyquist floor, > 1.
    """

    rel_change: float = 0.05
    windows: int = 3
    min_results: int = 3
    accumulate: bool = False
    min_frames: int = 100
    floor_margin: float = 1.25

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
        f = self.min_frames
        if not (isinstance(f, int) and not isinstance(f, bool) and f >= 0):
            raise ValueError(
                f"ConvergedConfig.min_frames={f!r} is out of range; expected an "
                "integer >= 0"
            )
        g = self.floor_margin
        if not (isinstance(g, (int, float)) and math.isfinite(g) and g > 1):
            raise ValueError(
                f"ConvergedConfig.floor_margin={g!r} is out of range; expected a "
                "number > 1"
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
        Resolution at the stop, nm (pixels when the pixel size is unknown).
    photons : float
        ``result.metrics["photons"]`` at the stop (cumulative detected photons;
        NaN if absent).
    method : str
        ``"frc"`` or ``"decorrelation"``.
    reason : str
        Why it stopped (also given to ``stop_acquisition``).
    """

    result_index: int
    frames: int
    resolution_nm: float
    photons: float
    method: str = "frc"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Measured:
    """One resolution measurement of a result.

    Attributes
    ----------
    value : float
        nm (pixels when the pixel size is unknown); NaN when none.
    method : str
        ``"frc"``, ``"decorrelation"`` or ``"metric"``.
    resolved : bool
        Clearly above the Nyquist floor (module docstring).
    image_resolved : bool or None
        Whether decorrelation analysis of the (accumulated) image is resolved
        (None: no image).
    """

    value: float
    method: str
    resolved: bool
    image_resolved: bool | None = None


class StopWhenConverged:
    """Feedback hook: stop acquiring once the resolution has converged (module
    docstring: resolved values only, ``rel_change`` over ``windows`` results,
    ``min_results`` and ``min_frames``).

    Parameters
    ----------
    config : ConvergedConfig, optional

    Attributes
    ----------
    history : list of (int, float)
        (result index, resolution nm; NaN when unresolved) of every result seen.
    measured : list of Measured
        Every measurement, resolved or not.
    stopped : StopRecord or None
    """

    name = "stop_when_converged"

    def __init__(self, config: ConvergedConfig | None = None) -> None:
        self.config = config if config is not None else ConvergedConfig()
        self.history: list[tuple[int, float]] = []
        self.measured: list[Measured] = []
        self._recent: deque[Measured] = deque(maxlen=self.config.windows)
        self._n_resolved = 0
        self._first_frame: int | None = None
        #: (frames acquired, Measured) of every resolved result
        self._resolved: list[tuple[int, Measured]] = []
        self.stopped: StopRecord | None = None
        # accumulate mode: sums of the even / odd results' images
        self._sums: list[np.ndarray] | None = None
        self._counts = [0, 0]
        self._last_frame: int | None = None
        self._overlap = False

    # -- measuring ------------------------------------------------------------
    def _floor_ok(self, value_px: float) -> bool:
        return math.isfinite(value_px) and value_px >= 2.0 * self.config.floor_margin

    def _frc(self, a: np.ndarray, b: np.ndarray, px_nm: float) -> Measured:
        from livesr.kernels.frc import frc_resolution

        v_px = frc_resolution(a, b, pixel_size=1.0)  # 2.0 exactly: no crossing
        unit = px_nm if math.isfinite(px_nm) else 1.0
        return Measured(v_px * unit, "frc", self._floor_ok(v_px) and v_px != 2.0)

    def _decorr(self, image: np.ndarray, px_nm: float) -> Measured:
        from livesr.kernels.decorr import decorrelation_analysis

        img = np.asarray(image, dtype=np.float32)
        if min(img.shape) <= 40:  # the analysis apodises 20 px on each edge
            return Measured(math.nan, "decorrelation", False)
        kc = decorrelation_analysis(img, pixel_size=1.0).kc_max
        v_px = 2.0 / kc if kc > 0 else math.nan
        unit = px_nm if math.isfinite(px_nm) else 1.0
        return Measured(v_px * unit, "decorrelation", self._floor_ok(v_px))

    def _best(
        self, halves: tuple[np.ndarray, np.ndarray] | None, image: Any, px_nm: float
    ) -> Measured:
        frc = self._frc(*halves, px_nm) if halves is not None else None
        dec = self._decorr(image, px_nm) if image is not None else None
        flag = None if dec is None else dec.resolved
        if frc is not None and (frc.resolved or dec is None or not dec.resolved):
            return Measured(frc.value, "frc", frc.resolved, flag)
        if dec is not None:
            return Measured(dec.value, "decorrelation", dec.resolved, flag)
        return Measured(math.nan, "none", False)

    def measure(self, result: Result) -> Measured:
        """Resolution of a result alone (module docstring)."""
        px_nm = 1000.0 * result.sr_pixel_size_um
        v = result.metrics.get(KEY_FRC_NM)
        if v is not None:
            v = float(v)
            resolved = math.isfinite(v) and (
                not math.isfinite(px_nm) or v >= 2.0 * px_nm * self.config.floor_margin
            )
            flag = result.metrics.get("frc_resolved")
            if flag is not None:
                resolved = resolved and bool(flag)
            return Measured(v, "metric", resolved)
        if result.halves is None and result.image is None:
            raise ValueError(
                f"result {result.index} has no metrics['{KEY_FRC_NM}'], halves or "
                "image; StopWhenConverged needs one of them"
            )
        return self._best(result.halves, result.image, px_nm)

    @staticmethod
    def resolution_nm(result: Result) -> float:
        """Resolution of a result, nm (NaN when unresolved; see :meth:`measure`)."""
        m = StopWhenConverged().measure(result)
        return m.value if m.resolved else math.nan

    def _accumulated(self, result: Result) -> Measured:
        """Resolution of all images so far (``accumulate=True``)."""
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
        mean = (self._sums[0] + self._sums[1]) / (n0 + n1)
        halves = None
        if not self._overlap and n0 and n1:
            halves = (self._sums[0] / n0, self._sums[1] / n1)
        return self._best(halves, mean, px_nm)

    # -- the rule -------------------------------------------------------------
    def _frames(self, result: Result) -> int:
        """Frames acquired up to this result since the first result's first frame."""
        fr = result.frame_range
        if fr is None:
            return -1
        if self._first_frame is None:
            self._first_frame = int(fr[0])
        return int(fr[1]) + 1 - self._first_frame

    def on_result(self, result: Result, controller: Any) -> None:
        """Record the resolution; stop the acquisition once converged."""
        if self.stopped is not None:
            return
        cfg = self.config
        m = self._accumulated(result) if cfg.accumulate else self.measure(result)
        frames = self._frames(result)
        usable = m.resolved and m.image_resolved is not False
        self.measured.append(m)
        self.history.append((result.index, m.value if m.resolved else math.nan))
        if not usable:
            # a floor value, or an image still noisy up to Nyquist: no evidence
            self._recent.clear()
            return
        if self._recent and self._recent[-1].method != m.method:
            self._recent.clear()
        self._n_resolved += 1
        self._recent.append(m)
        self._resolved.append((frames, m))
        if self._n_resolved < cfg.min_results or len(self._recent) < cfg.windows:
            return
        if frames < cfg.min_frames:
            return
        values = [r.value for r in self._recent]
        spread = max(values) - min(values)
        res = m.value
        if spread >= cfg.rel_change * res:
            return
        # twice the data must not have helped either: the resolution at half the
        # frames (same method, resolved) within rel_change of the newest
        half = [
            r
            for f, r in self._resolved
            if 0 < f <= frames // 2 and r.method == m.method
        ]
        if not half:
            return
        gain = abs(half[-1].value - res)
        if gain >= cfg.rel_change * res:
            return
        reason = (
            f"{m.method} resolution converged at {res:.1f} nm after {frames} frames: "
            f"the last {cfg.windows} resolved values within {100 * spread / res:.1f} "
            f"%, {100 * gain / res:.1f} % from the value at half the frames "
            f"(< {100 * cfg.rel_change:.1f} %)"
        )
        acquired = result.frame_range[1] + 1 if result.frame_range else -1
        self.stopped = StopRecord(
            result.index,
            acquired,
            res,
            float(result.metrics.get(KEY_PHOTONS, math.nan)),
            m.method,
            reason,
        )
        logger.info("result %d: %s; stopping acquisition", result.index, reason)
        controller.stop_acquisition(reason)

    __call__ = on_result

    def report(self) -> dict[str, Any]:
        """JSON-ready state: ``results`` seen, ``resolution_nm`` / ``resolved`` /
        ``method`` of the last ``windows`` results, ``stopped`` (bool), ``reason``
        (None unless stopped) and ``stop`` (the :class:`StopRecord` as a dict, or
        None)."""
        st = self.stopped
        last = self.measured[-self.config.windows :]
        return {
            "results": len(self.history),
            "resolution_nm": [
                r.value if math.isfinite(r.value) else None for r in last
            ],
            "resolved": [r.resolved for r in last],
            "method": [r.method for r in last],
            "stopped": st is not None,
            "reason": None if st is None else st.reason,
            "stop": None
            if st is None
            else {
                "result_index": st.result_index,
                "frames": st.frames,
                "resolution_nm": st.resolution_nm,
                "method": st.method,
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
