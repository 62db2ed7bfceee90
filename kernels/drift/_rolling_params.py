"""Types of :class:`~livesr.kernels.drift.RollingDrift`: its validated parameters
and the estimate it returns per block."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

__all__ = ["DriftEstimate", "RollingDriftParams"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftEstimate:
    """Drift estimate of one completed block of frames.

    Attributes
    ----------
    block_index : int
        0-based index of the block.
    frame_index : int
        Index of the block's *last* frame (the frame whose arrival completed it).
    center : float
        Mean frame index of the block, where the estimate applies
        (``frame_index - (block - 1) / 2``).
    dy, dx : float
        Displacement of the sample, px, positive towards larger row / column,
        relative to the reference (see the module notes; provisional, relative
        to the first block, until the first key frame is complete).
    sigma_px : float
        Estimated standard uncertainty of (dy, dx), px per axis.
    rejected : bool
        True when the block was rejected as an outlier; (dy, dx) is then the
        prediction.
    psr : float
        Peak-to-sidelobe ratio of the correlation against the main reference
        (dimensionless; NaN for the first block).
    key_index : int
        Index of the key frame used as main reference.
    """

    block_index: int
    frame_index: int
    center: float
    dy: float
    dx: float
    sigma_px: float
    rejected: bool
    psr: float
    key_index: int


def _check_int(name: str, v: object, lo: int) -> None:
    if not isinstance(v, Integral) or isinstance(v, bool) or v < lo:
        raise ValueError(
            f"RollingDrift {name}={v!r} is out of range; expected an integer >= {lo}"
        )


def _check_real(
    name: str, v: object, lo: float, hi: float, lo_open: bool = False
) -> None:
    ok = isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))  # type: ignore[arg-type]
    if ok:
        f = float(v)  # type: ignore[arg-type]
        ok = (f > lo if lo_open else f >= lo) and f <= hi
    if not ok:
        lo_s = f"> {lo}" if lo_open else f">= {lo}"
        raise ValueError(
            f"RollingDrift {name}={v!r} is out of range; "
            f"expected a finite number {lo_s} and <= {hi}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RollingDriftParams:
    """Parameters of :class:`RollingDrift` (validated on construction).

    Attributes
    ----------
    block : int
        Frames averaged per estimate, >= 1 (2 or more for the split-half noise
        estimate; with 1 the noise comes from the PSR only).
    max_drift : float
        Search half-width (px) of the correlation peak around the predicted
        lag; 0 searches the whole frame.
    keyframe_every : int
        Promote a new key frame every this many blocks (0 = only when the
        overlap or the peak degrades).
    upsample : int
        DFT upsampling factor of the sub-pixel refinement, >= 1.
    key_blocks : int
        Blocks averaged into a key template before it is frozen, >= 1.
    n_references : int
        Keys registered against per block, >= 1.
    min_overlap : float
        Overlap fraction (of the frame area) below which a new key is needed, in
        (0, 1).
    min_ref_overlap : float
        Smallest overlap fraction for a key to be used as a reference, in (0, 1).
    max_velocity : float
        Largest plausible drift speed, px per frame (> 0); jumps beyond
        ``max_velocity * block`` px (+ 5 sigma) from the prediction are outliers.
    min_psr : float
        Absolute peak-to-sidelobe floor of an accepted block, >= 0.
    psr_drop : float
        Relative PSR floor (fraction of the running median), in [0, 1).
    relock_after : int
        Consecutive rejections after which a good-peak block is accepted
        whatever its jump, >= 1.
    noise_window : int
        Split-half noise measurements in the running noise (sigma) estimate, >= 1.
    noise_every : int
        Measure the split-half noise every this many blocks (each measurement
        costs two extra registrations), >= 1.
    smoothing : int
        Half-width, in blocks, of the local quadratic fit (weighted by
        1 / sigma^2, accepted blocks only) that :meth:`RollingDrift.drift_table`
        and :meth:`RollingDrift.displacement_at` apply to the block values, >= 0
        (0 = raw block values). A frame's smoothed value is final once
        ``smoothing`` more blocks have arrived; newer frames use a one-sided fit.
    fit_blocks : int
        Accepted blocks in the causal predictor (the shift of frames whose block
        is not complete yet, :mod:`livesr.kernels.drift._causal`), >= 2.
    horizon_blocks : float
        Where the causal predictor chooses between a line and a parabola (the
        one with the smaller expected error there), blocks past the newest block
        centre, >= 0 (1: the middle of the frames it serves).
    blend_blocks : float
        Blocks over which a change of the causal prediction at a completed block
        is spread at most (0 = applied at once), >= 0.
    blend_rate_px : float
        A change is spread over no more frames than keep the added motion at or
        below this many px per frame (0: always ``blend_blocks``), >= 0.  The
        default 0.005 is what one block allowed a 0.05 px change (the issue's
        bound on a step between consecutive frames); smaller changes, the usual
        block noise, are no longer held back a whole block (linear + random walk
        on the simulator, seeds 1-4: causal RMS 0.029-0.032 -> 0.029-0.031 px,
        largest step unchanged; no drift and linear within 2e-5 px).
    precision : {"single", "double"}
        FFT precision of the registrations (complex64 or complex128).
    history_blocks : int
        Blocks whose causal predictors :meth:`RollingDrift.shifts_for` keeps.
    predictor : {"kalman", "poly"}
        Causal predictor of the frames whose block is not complete yet: the
        bank of Kalman filters of :mod:`livesr.kernels.drift._kalman` (from the
        third accepted block on), or the weighted line / parabola through the
        last ``fit_blocks`` accepted blocks (:mod:`livesr.kernels.drift._causal`).
    origin_blocks : int
        The run's origin (the first block's position) is re-estimated from a
        smoother through the first 20, 40, ... accepted blocks (doubling) up to
        this many, >= 0 (0 = never; :mod:`livesr.kernels.drift._origin`).
    """

    block: int = 10
    max_drift: float = 0.0
    keyframe_every: int = 0
    upsample: int = 10
    key_blocks: int = 10
    n_references: int = 2
    min_overlap: float = 0.8
    min_ref_overlap: float = 0.55
    max_velocity: float = 0.3
    min_psr: float = 4.0
    psr_drop: float = 0.3
    relock_after: int = 5
    noise_window: int = 30
    noise_every: int = 4
    smoothing: int = 2
    fit_blocks: int = 8
    horizon_blocks: float = 1.0
    blend_blocks: float = 1.0
    blend_rate_px: float = 0.005
    precision: str = "single"
    history_blocks: int = 1 << 14
    predictor: str = "kalman"
    origin_blocks: int = 80

    def __post_init__(self) -> None:
        _check_int("block", self.block, 1)
        _check_real("max_drift", self.max_drift, 0.0, 1e6)
        _check_int("keyframe_every", self.keyframe_every, 0)
        _check_int("upsample", self.upsample, 1)
        _check_int("key_blocks", self.key_blocks, 1)
        _check_int("n_references", self.n_references, 1)
        _check_real("min_overlap", self.min_overlap, 0.0, 0.999, lo_open=True)
        _check_real("min_ref_overlap", self.min_ref_overlap, 0.0, 0.999, lo_open=True)
        if self.min_ref_overlap > self.min_overlap:
            raise ValueError(
                f"RollingDrift min_ref_overlap={self.min_ref_overlap!r} must be <= "
                f"min_overlap={self.min_overlap!r}"
            )
        _check_real("max_velocity", self.max_velocity, 0.0, 1e6, lo_open=True)
        _check_real("min_psr", self.min_psr, 0.0, 1e9)
        _check_real("psr_drop", self.psr_drop, 0.0, 0.999)
        _check_int("relock_after", self.relock_after, 1)
        _check_int("noise_window", self.noise_window, 1)
        _check_int("noise_every", self.noise_every, 1)
        _check_int("smoothing", self.smoothing, 0)
        _check_int("fit_blocks", self.fit_blocks, 2)
        _check_real("horizon_blocks", self.horizon_blocks, 0.0, 1e3)
        _check_real("blend_blocks", self.blend_blocks, 0.0, 1e6)
        _check_real("blend_rate_px", self.blend_rate_px, 0.0, 1e3)
        if self.precision not in ("single", "double"):
            raise ValueError(
                f"RollingDrift precision={self.precision!r} is not valid; "
                "expected 'single' or 'double'"
            )
        _check_int("history_blocks", self.history_blocks, 1)
        _check_int("origin_blocks", self.origin_blocks, 0)
        if self.predictor not in ("kalman", "poly"):
            raise ValueError(
                f"RollingDrift predictor={self.predictor!r} is not valid; "
                "expected 'kalman' or 'poly'"
            )
