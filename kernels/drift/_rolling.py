"""Causal drift estimation for streams: :class:`RollingDrift`.

Frames arrive one by one (:meth:`RollingDrift.push`) or in batches
(:meth:`RollingDrift.push_many`; numpy or CuPy arrays: CuPy frames keep the
block sums, FFTs, peak search and crops on their device, a few scalars per
block come back). Every ``block`` frames are averaged into a block and
registered as soon as the block is complete; the estimate is the displacement
of the block's mean image, placed at the block's centre frame. The causal
shift of every frame (the prediction from the blocks complete when it arrived,
what a stream applies) is kept per block: :meth:`RollingDrift.shifts_for`.

Reference and sign
------------------
(dy, dx) is the displacement of the sample in px, positive towards larger row /
column index. The reference (0, 0) is the position of the first block (frames
``0 .. block - 1``), for the whole run: one coordinate frame. When the first key
frame is complete (``key_blocks`` blocks) its blocks are re-registered against
it and revised, with the key's offset chosen so the revised values keep the
provisional ones' mean: the reference does not jump (it used to move to the
key's mean position, a jump of the drift over half the key, ~1 px in issue
15). The origin is known to about the block noise (sigma of one block; 0.015-
0.025 px at 256² on the quick start's sample). :meth:`RollingDrift.drift_table`
and :meth:`RollingDrift.displacement_at` use the revised values, the
:class:`DriftEstimate` objects already returned are not changed.

Algorithm
---------
* **Key frames.** A key frame is a template (the mean of ``key_blocks`` blocks,
  each shifted by its own estimate into the key's coordinates, then frozen) with
  a known offset and offset uncertainty. The first block starts the root key
  (offset 0 by definition, used as reference while it accumulates).
* **Registration.** Each block is registered against up to ``n_references``
  frozen keys (the current key and the other key that overlaps the predicted
  position most) by normalised cross-correlation: integer peak on apodised
  frames, then both frames cropped to their overlap and the lag refined by DFT
  upsampling (:func:`~livesr.kernels.drift._register.register_two_pass`). The
  per-key estimates (key offset + lag) are combined with inverse-variance
  weights (variance = block noise + the key's offset variance).
* **New keys.** When the overlap of the predicted position with the current key
  falls below ``min_overlap`` (fraction of the frame area), every
  ``keyframe_every`` blocks (0 = never), or when the correlation peak against
  the key has dropped below half its initial value (sample changed), an
  existing key overlapping better is reused if there is one (oscillating drift
  revisits old keys: no error accumulates); otherwise the current block starts a
  new key. While it accumulates, the new key's offset is measured against the
  older keys on every block and averaged, so one key transition adds an error
  of about ``sigma / sqrt(key_blocks)``, not ``sigma``: the chain grows far
  slower than a block-to-block random walk.
* **Outliers.** A block is rejected when its peak-to-sidelobe ratio is below
  ``min_psr`` or below ``psr_drop`` times the running median, or when its
  estimate is further than ``max_velocity * block + 5 sigma`` px from the
  prediction (least-squares quadratic through the last 6 accepted estimates,
  linear with fewer than 5). A
  rejected block reports the prediction (``rejected=True``, larger sigma) and
  does not enter templates or predictions. After ``relock_after`` consecutive
  rejections the next block with a good peak is accepted whatever its jump
  (a real sudden move, e.g. a stage step).
* **Causal shift.** After each block a predictor for the frames that follow
  (until the next block) is fitted: a weighted line through the last
  ``fit_blocks`` accepted blocks, or a parabola where that is expected to
  predict better ``horizon_blocks`` ahead; the change from the previous
  prediction is spread over ``blend_blocks`` (no jumps between consecutive
  frames). See :mod:`livesr.kernels.drift._causal`.
* **Uncertainty.** Each block is also registered in two halves; the half-to-half
  difference (minus the predicted motion between the half centres) measures the
  block's own noise independently of the drift's shape
  (``var(half A - half B) = 4 sigma_block^2``). A running mean of it over
  ``noise_window`` blocks, scaled by the block's PSR relative to the running
  median, plus the reference key's offset variance, gives ``sigma_px``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

from livesr.kernels.drift._causal import CausalShifts, fit_predictor
from livesr.kernels.drift._register import (
    array_module,
    coarse_spectrum,
    register_two_pass,
    to_host,
)

__all__ = ["DriftEstimate", "RollingDrift", "RollingDriftParams"]

logger = logging.getLogger(__name__)

_N_FIT = 6  # accepted blocks in the prediction / extrapolation fit
#: (shape, on device) warmed up in this process (RollingDrift.warm_up)
_WARM: dict[tuple[tuple[int, int], bool], bool] = {}


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
        is spread (0 = applied at once), >= 0.
    precision : {"single", "double"}
        FFT precision of the registrations (complex64 or complex128).
    history_blocks : int
        Blocks whose causal predictors :meth:`RollingDrift.shifts_for` keeps.
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
    precision: str = "single"
    history_blocks: int = 1 << 14

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
        if self.precision not in ("single", "double"):
            raise ValueError(
                f"RollingDrift precision={self.precision!r} is not valid; "
                "expected 'single' or 'double'"
            )
        _check_int("history_blocks", self.history_blocks, 1)


@dataclass(slots=True)
class _Key:
    index: int
    offset: np.ndarray  # (2,) displacement of the template, px
    var: float  # offset variance per axis, px^2
    acc: Any  # weighted sum of shifted blocks (numpy or cupy, as the frames)
    wsum: Any  # weight of each pixel
    n: int = 1
    frozen: bool = False
    image: Any = None
    spectrum: Any = None
    psr0: float = math.nan
    offset_samples: list[np.ndarray] = field(default_factory=list)
    sample_vars: list[float] = field(default_factory=list)
    blocks: list[tuple[int, Any, np.ndarray]] = field(default_factory=list)
    crops: dict[tuple[int, int], Any] = field(default_factory=dict)

    def template(self) -> Any:
        if self.image is not None:
            return self.image
        xp = array_module(self.acc)
        valid = self.wsum > 0.5
        img = xp.where(valid, self.acc / xp.maximum(self.wsum, 1e-12), 0.0)
        if not bool(valid.all()):
            img[~valid] = img[valid].mean() if bool(valid.any()) else 0.0
        return img

    def freeze(self, double: bool = False) -> None:
        self.image = self.template()
        self.spectrum = coarse_spectrum(self.image, double=double)
        self.frozen = True
        xp = array_module(self.image)
        self.acc = self.wsum = xp.empty((0, 0))  # accumulators no longer needed


def _shift_into(img: Any, lag: np.ndarray) -> tuple[Any, Any]:
    """Shift ``img`` by ``-lag`` (cubic spline); returns (shifted, weight)."""
    xp = array_module(img)
    if xp is np:
        from scipy import ndimage
    else:
        from cupyx.scipy import ndimage
    lag_t = (-float(lag[0]), -float(lag[1]))
    sh = ndimage.shift(img, lag_t, order=3, mode="constant", cval=0.0)
    w = ndimage.shift(xp.ones_like(img), lag_t, order=1, mode="constant", cval=0.0)
    w = (w > 0.999).astype(xp.float64)
    return sh * w, w


class RollingDrift:
    """Causal, block-wise drift estimator for a stream of frames.

    Parameters
    ----------
    block : int
        Frames per block (one estimate per completed block), >= 1.
    **params
        Any other field of :class:`RollingDriftParams` (``max_drift``,
        ``keyframe_every``, ``upsample``, ``key_blocks``, ``n_references``,
        ``min_overlap``, ``max_velocity``, ...).

    Notes
    -----
    Not thread-safe: feed it from one thread. Frames must all have one (h, w)
    shape (h, w >= 16); any real dtype; computed in float64.

    Examples
    --------
    >>> rd = RollingDrift(block=10)
    >>> for frame in frames:                      # doctest: +SKIP
    ...     est = rd.push(frame)                  # a DriftEstimate every 10 frames
    >>> rd.displacement_at(123)                   # doctest: +SKIP
    """

    def __init__(self, block: int = 10, **params: object) -> None:
        self.params = RollingDriftParams(block=block, **params)  # type: ignore[arg-type]
        p = self.params
        self._shape: tuple[int, int] | None = None
        self._n_frames = 0
        self._acc: np.ndarray | None = None
        self._half: np.ndarray | None = None
        self._count = 0
        self._n_half = max(1, p.block // 2)
        self._keys: list[_Key] = []
        self._current = (
            0  # index of the current (main) frozen key, or accumulating root
        )
        self._pending: _Key | None = None  # non-root key being accumulated
        self._since_key = 0
        self._estimates: list[DriftEstimate] = []
        self._centres: list[float] = []
        self._values: list[tuple[float, float]] = []
        self._accepted: deque[tuple[float, float, float]] = deque(maxlen=_N_FIT)
        self._noise: deque[float] = deque(maxlen=p.noise_window)
        self._psrs: deque[float] = deque(maxlen=p.noise_window)
        self._n_rejected = 0
        self._smooth_cache: tuple[int, np.ndarray] | None = None
        self._xp: Any = None
        self._double = p.precision == "double"
        # accepted blocks (centre, dy, dx, sigma) of the causal predictor
        self._track: deque[tuple[float, float, float, float]] = deque(
            maxlen=p.fit_blocks
        )
        self._relocked = False
        self._causal = CausalShifts(
            p.block,
            int(round(p.blend_blocks * p.block)),
            history=p.history_blocks,
        )

    # ------------------------------------------------------------------ input
    def push(self, frame: Any) -> DriftEstimate | None:
        """Add one frame; return the new estimate if it completed a block.

        Parameters
        ----------
        frame : numpy.ndarray or cupy.ndarray
            (h, w) real image; finite. A CuPy frame keeps the estimator's
            accumulation and registration on its device.
        """
        xp = array_module(frame)
        a = frame if xp is not np else np.asarray(frame)
        if a.ndim != 2:
            raise ValueError(f"frame must be 2-D (rows, cols); got shape {a.shape}")
        out = self._ingest(a[None])
        return out[-1] if out else None

    def push_many(self, frames: Any) -> list[DriftEstimate]:
        """Add a batch of frames; return the estimates of the blocks they completed.

        Equal to :meth:`push` frame by frame (the block sums are taken over the
        batch at once); :meth:`shifts_for` then gives the causal shift of every
        frame of the batch in one call.

        Parameters
        ----------
        frames : numpy.ndarray or cupy.ndarray
            (n, h, w) real frames (or one (h, w) frame), finite.

        Returns
        -------
        list of DriftEstimate
            Oldest first; empty when no block was completed.
        """
        xp = array_module(frames)
        a = frames if xp is not np else np.asarray(frames)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"frames must be (n, h, w) or (h, w); got shape {a.shape}")
        return self._ingest(a)

    def update(self, frames: Any) -> list[DriftEstimate]:
        """Add (n, h, w) frames (or one (h, w) frame); return the estimates of
        every block completed by them, oldest first (same as :meth:`push_many`)."""
        return self.push_many(frames)

    def shifts_for(self, first_index: int, n: int) -> np.ndarray:
        """Causal shift (dy, dx) of frames ``first_index .. first_index + n - 1``.

        The shift each frame got when it arrived: the value of
        ``displacement_at(i)`` right after frame ``i`` was pushed (the prediction
        from the blocks complete by then), for frames already pushed.

        Parameters
        ----------
        first_index : int
            Index of the first frame (0 = the first frame pushed), >= 0.
        n : int
            Number of frames, >= 0; ``first_index + n <= n_frames``.

        Returns
        -------
        numpy.ndarray
            (n, 2) float64 displacement, px.
        """
        first, n = int(first_index), int(n)
        if first < 0 or n < 0 or first + n > self._n_frames:
            raise ValueError(
                f"shifts_for({first_index}, {n}): frames {first}..{first + n - 1} "
                f"are not all pushed yet; expected 0 <= first_index and "
                f"first_index + n <= n_frames = {self._n_frames}"
            )
        return self._causal.shifts(first, n)

    def _ingest(self, a: Any) -> list[DriftEstimate]:
        """Accumulate (n, h, w) frames block by block; complete blocks on the way."""
        xp = array_module(a)
        shape = (int(a.shape[1]), int(a.shape[2]))
        if self._shape is None:
            if shape[0] < 16 or shape[1] < 16:
                raise ValueError(f"frames must be at least 16x16 px; got {shape}")
            if not _WARM.get((shape, xp is not np)):
                # first-call set-up now, at the first frame, not at some block in
                # the middle of the stream (a no-op after warm_up at this shape)
                self.warm_up(shape, device=xp is not np)
            self._shape = shape
            self._xp = xp
            self._acc = xp.zeros(shape)
            self._half = xp.zeros(shape)
        elif shape != self._shape:
            raise ValueError(
                f"frame shape {shape} differs from the stream's {self._shape}; "
                "start a new RollingDrift for a new frame size"
            )
        if xp is not self._xp:  # keep the state where the first frames were
            a = to_host(a) if self._xp is np else self._xp.asarray(a)
            xp = self._xp
        if a.dtype.kind not in "uif":
            raise ValueError(f"frames must have a real dtype; got {a.dtype}")
        if a.dtype.kind == "f" and not bool(xp.isfinite(a).all()):
            raise ValueError(
                f"frames {self._n_frames}..{self._n_frames + len(a) - 1} hold "
                "non-finite values; replace them before pushing"
            )
        assert self._acc is not None and self._half is not None
        p = self.params
        out: list[DriftEstimate] = []
        i, n = 0, int(a.shape[0])
        exact32 = a.dtype.kind in "ui" and a.dtype.itemsize <= 2 and p.block <= 256
        while i < n:
            take = min(n - i, p.block - self._count)
            seg = a[i : i + take]
            n_half = min(take, max(0, self._n_half - self._count))
            # integer frames (<= 16 bit) summed in float32: exact up to 256 frames
            dt = xp.float32 if exact32 else xp.float64
            if take == 1:
                f = seg[0].astype(dt, copy=False)
                self._acc += f
                if n_half:
                    self._half += f
            else:
                if n_half:
                    self._half += seg[:n_half].sum(axis=0, dtype=dt)
                self._acc += seg.sum(axis=0, dtype=dt)
            self._count += take
            self._n_frames += take
            i += take
            if self._count < p.block:
                continue
            self._relocked = False
            est = self._complete_block()
            self._acc[...] = 0.0
            self._half[...] = 0.0
            self._count = 0
            self._new_epoch()
            out.append(est)
        return out

    def _new_epoch(self) -> None:
        """The causal predictor serving the frames from this one on."""
        p = self.params
        tr = np.asarray(self._track, dtype=np.float64).reshape(-1, 4)
        t0, coef = fit_predictor(
            tr[:, 0],
            tr[:, 1:3],
            np.maximum(tr[:, 3], 1e-3),
            scale=float(p.block),
            horizon=p.horizon_blocks,
        )
        self._causal.add(self._n_frames - 1, t0, coef, jump=self._relocked)

    def warm_up(self, shape: tuple[int, int], *, device: bool = False) -> float:
        """Run the registration path once at ``shape`` before acquisition starts.

        Imports and first-call set-up (the engine's ``xcorr`` discovery, JIT and
        OpenCL builds, the first choice of an implementation for these sizes,
        FFT plans) cost 0.4 s or more here, several seconds on a loaded
        machine: paid inside the stream, they are a backlog the drift estimate
        (and a drift lock acting on it) lags behind. This estimator's state is
        not touched.

        Parameters
        ----------
        shape : (int, int)
            (h, w) of the stream's frames, >= 16 each.
        device : bool
            Warm the CuPy path (frames on the GPU) instead of numpy.

        Returns
        -------
        float
            Seconds spent.
        """
        import time

        t0 = time.perf_counter()
        h, w = int(shape[0]), int(shape[1])
        rng = np.random.default_rng(0)
        base = rng.poisson(50.0, size=(h + 8, w + 8)).astype(np.float64)
        from scipy import ndimage

        base = ndimage.gaussian_filter(base, 1.5)
        p = dataclasses.replace(self.params, key_blocks=1, noise_every=1)
        tmp = RollingDrift(**dataclasses.asdict(p))
        frames = np.stack(
            [base[k % 3 : k % 3 + h, k % 2 : k % 2 + w] for k in range(3 * p.block)]
        ).astype(np.float32)
        if device:
            import cupy

            frames = cupy.asarray(frames)
        _WARM[((h, w), device)] = True
        tmp.push_many(frames)
        return time.perf_counter() - t0

    # ------------------------------------------------------------- queries
    @property
    def estimates(self) -> tuple[DriftEstimate, ...]:
        """All block estimates so far, oldest first."""
        return tuple(self._estimates)

    @property
    def n_frames(self) -> int:
        """Frames pushed so far."""
        return self._n_frames

    @property
    def n_keys(self) -> int:
        """Key frames created so far (frozen or accumulating)."""
        return len(self._keys) + (self._pending is not None)

    def current(self) -> tuple[float, float]:
        """Newest estimate (dy, dx), px ((0, 0) before the first block)."""
        if not self._values:
            return (0.0, 0.0)
        return self._values[-1]

    def velocity(self) -> tuple[float, float]:
        """Drift velocity (vy, vx), px per frame, from the recent accepted blocks."""
        v = self._fit()[1]
        return float(v[0]), float(v[1])

    def displacement_at(self, frame_index: float) -> tuple[float, float]:
        """Displacement (dy, dx) at any frame index, px.

        Linear interpolation between block centres (of the block values smoothed
        as ``smoothing`` says); before the first centre the first value; from
        the last centre on, the causal predictor of the newest block (a weighted
        linear fit through the last ``fit_blocks`` accepted blocks, quadratic
        when the curvature is significant, blended over ``blend_blocks`` from
        the previous prediction; :mod:`livesr.kernels.drift._causal`): what a
        causal consumer applies to frames whose block is not complete yet.
        ``displacement_at(n_frames - 1)`` right after a push is the frame's
        causal shift, as :meth:`shifts_for` keeps it.
        """
        if not self._values:
            return (0.0, 0.0)
        c = self._centres
        t = float(frame_index)
        vals = self._smoothed()
        if t >= c[-1]:
            out = self._causal.current([t])[0]
            return float(out[0]), float(out[1])
        return (
            float(np.interp(t, c, vals[:, 0])),
            float(np.interp(t, c, vals[:, 1])),
        )

    def drift_table(self, n_frames: int | None = None) -> np.ndarray:
        """(n, 2) float64 displacement (dy, dx) of frames 0 .. n - 1 (default:
        every frame pushed), as :meth:`displacement_at` gives it."""
        n = self._n_frames if n_frames is None else int(n_frames)
        t = np.arange(n, dtype=np.float64)
        if not self._values:
            return np.zeros((n, 2))
        c = np.asarray(self._centres)
        vals = self._smoothed()
        out = np.stack(
            [np.interp(t, c, vals[:, 0]), np.interp(t, c, vals[:, 1])], axis=1
        )
        hi = t > c[-1]
        if hi.any():
            out[hi] = self._causal.current(t[hi])
        return out

    # ------------------------------------------------------------ internals
    def _coef(self) -> np.ndarray:
        """(deg + 1, 2) polynomial in (t - last accepted centre) / block through
        the recent accepted blocks: quadratic from 5 points, else linear."""
        pts = np.asarray(self._accepted)
        if len(pts) == 0:
            return np.zeros((1, 2))
        if len(pts) == 1:
            return pts[:1, 1:]
        deg = 2 if len(pts) >= 5 else 1
        t = (pts[:, 0] - pts[-1, 0]) / self.params.block
        a = np.vander(t, deg + 1, increasing=True)
        coef, *_ = np.linalg.lstsq(a, pts[:, 1:], rcond=None)
        return np.asarray(coef)

    def _extrapolate(self, t: np.ndarray) -> np.ndarray:
        """(n, 2) displacement at frames ``t`` from the recent-block polynomial."""
        coef = self._coef()
        last = self._accepted[-1][0] if self._accepted else 0.0
        x = (np.asarray(t, dtype=np.float64) - last) / self.params.block
        return np.vander(x, len(coef), increasing=True) @ coef

    def _fit(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, velocity in px/frame) at the last accepted centre."""
        coef = self._coef()
        v = coef[1] / self.params.block if len(coef) > 1 else np.zeros(2)
        return coef[0], v

    def _predict(self, centre: float) -> np.ndarray:
        return self._extrapolate(np.array([centre]))[0]

    def _overlap(self, disp: np.ndarray, key: _Key) -> float:
        assert self._shape is not None
        h, w = self._shape
        d = np.abs(disp - key.offset)
        return max(0.0, 1 - d[0] / h) * max(0.0, 1 - d[1] / w)

    def _noise_var(self) -> float:
        if self._noise:
            return float(np.mean(self._noise))
        return 0.05**2

    def _spectrum(self, img: Any) -> Any:
        return coarse_spectrum(img, double=self._double)

    def _register(
        self, key: _Key, img: Any, f_img: Any, pred: np.ndarray
    ) -> tuple[np.ndarray, float]:
        p = self.params
        ref = key.template()
        f_ref = key.spectrum if key.spectrum is not None else self._spectrum(ref)
        centre = pred - key.offset
        r = register_two_pass(
            ref,
            img,
            upsample=p.upsample,
            max_shift=p.max_drift,
            center=(float(centre[0]), float(centre[1])),
            f_ref=f_ref,
            f_img=f_img,
            # pass-2 crop spectra of a frozen key, by integer lag (<= 64 MiB)
            ref_cache=key.crops if key.frozen else None,
            double=self._double,
        )
        return np.array([r.dy, r.dx]), r.psr

    def _references(self, pred: np.ndarray) -> list[_Key]:
        p = self.params
        frozen = [k for k in self._keys if k.frozen]
        if not frozen:
            return [self._keys[0]]  # the root while it accumulates
        main = self._keys[self._current]
        refs = [main] if self._overlap(pred, main) >= p.min_ref_overlap else []
        others = sorted(
            (k for k in frozen if k is not main),
            key=lambda k: -self._overlap(pred, k),
        )
        for k in others:
            if len(refs) >= p.n_references:
                break
            if self._overlap(pred, k) >= p.min_ref_overlap:
                refs.append(k)
        if not refs:
            refs = [max(frozen, key=lambda k: self._overlap(pred, k))]
        return refs

    def _complete_block(self) -> DriftEstimate:
        p = self.params
        assert self._acc is not None and self._half is not None
        b = len(self._estimates)
        last = self._n_frames - 1
        centre = last - (p.block - 1) / 2.0
        img = self._acc / p.block
        xp = self._xp
        if b == 0:
            root = _Key(
                index=0,
                offset=np.zeros(2),
                var=0.0,
                acc=img.copy(),
                wsum=xp.ones_like(img),
            )
            root.blocks.append((0, img.copy(), np.zeros(2)))
            self._keys.append(root)
            est0 = self._record(b, last, centre, np.zeros(2), 0.0, False, math.nan, 0)
            self._track.append((centre, 0.0, 0.0, math.sqrt(self._noise_var())))
            if p.key_blocks == 1:
                self._freeze_root()
            return est0

        pred = self._predict(centre)
        f_img = self._spectrum(img)
        refs = self._references(pred)
        ests, wts, psrs = [], [], []
        s2 = self._noise_var()
        for k in refs:
            lag, psr = self._register(k, img, f_img, pred)
            ests.append(k.offset + lag)
            wts.append(1.0 / (s2 + k.var + 1e-8))
            psrs.append(psr)
        ests_a = np.asarray(ests)
        w = np.asarray(wts)
        est = (ests_a * w[:, None]).sum(0) / w.sum()
        psr = psrs[0]
        main = refs[0]

        # split-half noise measurement against the main reference
        half_diff = math.nan
        if p.block >= 2 and (b % p.noise_every == 0 or len(self._noise) < 3):
            n_a = self._n_half
            n_b = p.block - n_a
            img_a = self._half / n_a
            img_b = (self._acc - self._half) / n_b
            la, _ = self._register(main, img_a, self._spectrum(img_a), pred)
            lb, _ = self._register(main, img_b, self._spectrum(img_b), pred)
            dt = (n_a + n_b) / 2.0  # distance between the half centres, frames
            v = self._fit()[1]
            resid = (lb - la) - v * dt
            # var(la - lb) ~ sigma_a^2 + sigma_b^2 = sigma^2 (B/n_a + B/n_b)
            half_diff = float(np.mean(resid**2)) / (p.block / n_a + p.block / n_b)

        # outlier tests
        med_psr = float(np.median(self._psrs)) if len(self._psrs) >= 3 else psr
        bad_peak = psr < p.min_psr or psr < p.psr_drop * med_psr
        sigma = math.sqrt(
            s2 * float(np.clip(med_psr / max(psr, 1e-6), 0.5, 4.0) ** 2) + main.var
        )
        jump = float(np.max(np.abs(est - pred)))
        limit = p.max_velocity * p.block + 5 * sigma
        bad_jump = bool(self._accepted) and jump > limit
        rejected = bad_peak or bad_jump
        if rejected and not bad_peak and self._n_rejected >= p.relock_after:
            logger.info(
                "RollingDrift: re-lock at block %d after %d rejections",
                b,
                self._n_rejected,
            )
            self._accepted.clear()
            self._track.clear()
            self._relocked = True
            rejected = False
        if rejected:
            self._n_rejected += 1
            logger.debug(
                "RollingDrift: block %d rejected "
                "(psr %.1f, median %.1f, jump %.2f px > %.2f)",
                b,
                psr,
                med_psr,
                jump,
                limit,
            )
            return self._record(
                b, last, centre, pred, 2 * sigma + 0.05, True, psr, main.index
            )
        self._n_rejected = 0
        self._psrs.append(psr)
        if math.isfinite(half_diff):
            self._noise.append(half_diff)
        self._accepted.append((centre, float(est[0]), float(est[1])))
        self._track.append((centre, float(est[0]), float(est[1]), sigma))
        out = self._record(b, last, centre, est, sigma, False, psr, main.index)
        self._maintain_keys(img, est, psr, main)
        return out

    def _freeze_root(self) -> None:
        """Freeze the root key and move the reference to the mean position of
        its blocks (revising their values); the mean of ``key_blocks`` blocks is
        known ~sqrt(key_blocks) times better than the first block alone."""
        root = self._keys[0]
        root.freeze(self._double)
        lags = []
        for _, img, est in root.blocks:
            lag, _ = self._register(root, img, self._spectrum(img), est)
            lags.append(lag)
        lags_a = np.asarray(lags)
        old = np.asarray([self._values[i] for i, _, _ in root.blocks])
        # keep the run's coordinate frame (the first block's position, in which the
        # provisional values were reported and applied): the template's offset is
        # the one that matches the provisional values on average, so the revised
        # values only lose their noise and the reference does not jump
        offset = (old - lags_a).mean(axis=0)
        new = offset + lags_a
        origin = self._origin(root, new)
        root.offset = offset - origin
        new = new - origin
        delta = (new - old).mean(axis=0)
        for k, (i, _, _) in enumerate(root.blocks):
            self._values[i] = (float(new[k, 0]), float(new[k, 1]))
        accepted = {i for i, _, _ in root.blocks}
        for i in range(len(self._values)):
            if i not in accepted:
                v = np.asarray(self._values[i]) + delta
                self._values[i] = (float(v[0]), float(v[1]))
        self._accepted = deque(
            ((self._centres[i], *self._values[i]) for i in sorted(accepted)[-_N_FIT:]),
            maxlen=_N_FIT,
        )
        sig = {e.block_index: e.sigma_px for e in self._estimates}
        s0 = math.sqrt(self._noise_var())
        self._track = deque(
            (
                (self._centres[i], *self._values[i], sig.get(i, 0.0) or s0)
                for i in sorted(accepted)[-self.params.fit_blocks :]
            ),
            maxlen=self.params.fit_blocks,
        )
        root.blocks = []
        logger.debug(
            "RollingDrift: root key frozen, reference moved by (%.4f, %.4f) px", *delta
        )

    def _origin(self, root: _Key, new: np.ndarray) -> np.ndarray:
        """Correction of the run's origin when the root key freezes (0: none).

        The provisional values were reported (and applied) relative to the first
        block; the revised ones keep that frame on average (their offset matches
        the provisional values' mean). Re-fitting the first block's position
        from the key's blocks (a line or parabola at its centre) was tried: on
        fast drift (0.1 px/frame) it moved the origin by 0.06 px, more than it
        saves on noise, so the frame is left as it is.
        """
        return np.zeros(2)

    def _smoothed(self) -> np.ndarray:
        """(B, 2) block values after the local quadratic fit (cached)."""
        n = len(self._values)
        if self._smooth_cache is not None and self._smooth_cache[0] == n:
            return self._smooth_cache[1]
        vals = np.asarray(self._values, dtype=np.float64)
        s = self.params.smoothing
        if s > 0 and n > 1:
            c = np.asarray(self._centres)
            ok = np.array([not e.rejected for e in self._estimates])
            sig = np.array([max(e.sigma_px, 1e-3) for e in self._estimates])
            w_all = ok / sig**2
            out = vals.copy()
            for i in range(n):
                lo, hi = max(0, i - s), min(n, i + s + 1)
                w = w_all[lo:hi]
                m = int(np.count_nonzero(w))
                if m < 2:
                    continue
                deg = 2 if m >= 4 else 1
                t = (c[lo:hi] - c[i]) / max(1.0, self.params.block)
                a = np.vander(t, deg + 1, increasing=True) * np.sqrt(w)[:, None]
                coef, *_ = np.linalg.lstsq(
                    a, vals[lo:hi] * np.sqrt(w)[:, None], rcond=None
                )
                out[i] = coef[0]
            vals = out
        self._smooth_cache = (n, vals)
        return vals

    def _maintain_keys(
        self, img: np.ndarray, est: np.ndarray, psr: float, main: _Key
    ) -> None:
        p = self.params
        root = self._keys[0]
        if not root.frozen:  # the root accumulates the first key_blocks blocks
            sh, w = _shift_into(img, est - root.offset)
            root.acc += sh
            root.wsum += w
            root.n += 1
            root.blocks.append((len(self._estimates) - 1, img.copy(), est.copy()))
            if root.n >= p.key_blocks:
                self._freeze_root()
                root.psr0 = psr
            return
        if math.isnan(main.psr0):
            main.psr0 = psr
        pk = self._pending
        if pk is not None:
            # measure the pending key's offset from this block, accumulate the block
            lag, _ = self._register(pk, img, self._spectrum(img), est)
            pk.offset_samples.append(est - lag)
            pk.sample_vars.append(self._noise_var() + main.var)
            pk.offset = np.mean(pk.offset_samples, axis=0)
            sh, w = _shift_into(img, est - pk.offset)
            pk.acc += sh
            pk.wsum += w
            pk.n += 1
            if pk.n >= p.key_blocks:
                m = len(pk.offset_samples)
                pk.var = float(np.mean(pk.sample_vars)) / m
                pk.freeze(self._double)
                self._keys.append(pk)
                self._current = len(self._keys) - 1
                self._pending = None
                self._since_key = 0
                logger.debug(
                    "RollingDrift: key %d frozen at offset (%.3f, %.3f) +- %.4f px",
                    pk.index,
                    pk.offset[0],
                    pk.offset[1],
                    math.sqrt(pk.var),
                )
            return
        self._since_key += 1
        cur = self._keys[self._current]
        need = (
            self._overlap(est, cur) < p.min_overlap
            or (p.keyframe_every > 0 and self._since_key >= p.keyframe_every)
            or (math.isfinite(cur.psr0) and psr < 0.5 * cur.psr0 and main is cur)
        )
        if not need:
            return
        forced = p.keyframe_every > 0 and self._since_key >= p.keyframe_every
        best = max(
            (k for k in self._keys if k.frozen and k is not cur),
            key=lambda k: self._overlap(est, k),
            default=None,
        )
        if (
            not forced
            and best is not None
            and self._overlap(est, best) >= p.min_overlap
        ):
            self._current = best.index
            self._since_key = 0
            return
        self._pending = _Key(
            index=len(self._keys),
            offset=est.copy(),
            var=self._noise_var(),
            acc=img.copy(),
            wsum=self._xp.ones_like(img),
            offset_samples=[est.copy()],
            sample_vars=[self._noise_var() + main.var],
        )

    def _record(
        self,
        b: int,
        last: int,
        centre: float,
        value: np.ndarray,
        sigma: float,
        rejected: bool,
        psr: float,
        key: int,
    ) -> DriftEstimate:
        e = DriftEstimate(
            block_index=b,
            frame_index=last,
            center=centre,
            dy=float(value[0]),
            dx=float(value[1]),
            sigma_px=float(sigma),
            rejected=rejected,
            psr=float(psr),
            key_index=key,
        )
        self._estimates.append(e)
        self._centres.append(centre)
        self._values.append((e.dy, e.dx))
        if b == 0:
            self._accepted.append((centre, 0.0, 0.0))
        return e
