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
15). The first block's own registration error (0.015-0.025 px at 256² on the
quick start's sample) would be the whole run's offset: after 20, 40 and 80
accepted blocks the frame is moved so the first block sits where a smoother
through the blocks puts it (``origin_blocks``; :mod:`._origin`), leaving
<= 0.015 px. :meth:`RollingDrift.drift_table`
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
  prediction is spread over ``blend_blocks``, or fewer frames for a small
  change (``blend_rate_px``; no jumps between consecutive frames). See :mod:`livesr.kernels.drift._causal`. With ``predictor="kalman"``
  (default) a bank of Kalman filters (:mod:`._kalman`) competes with that fit;
  each epoch takes the one whose recent predictions of the next block were
  better.
* **Uncertainty.** Each block is also registered in two halves; the half-to-half
  difference (minus the predicted motion between the half centres) measures the
  block's own noise independently of the drift's shape
  (``var(half A - half B) = 4 sigma_block^2``). A running mean of it over
  ``noise_window`` blocks, scaled by the block's PSR relative to the running
  median, plus the reference key's offset variance, gives ``sigma_px``.

Code: :mod:`._rolling_params` (parameters, the estimate), :mod:`._blocks` (block
sums, the completed blocks and the fits through them), :mod:`._keyframes` (key
frames and registration against them), :mod:`._causal` (the causal predictor).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from typing import Any

import numpy as np

from livesr.kernels.drift._blocks import BlockHistory, BlockSums
from livesr.kernels.drift._causal import CausalShifts, fit_predictor
from livesr.kernels.drift._kalman import PredictorRace
from livesr.kernels.drift._keyframes import KeyChain, KeyFrame
from livesr.kernels.drift._origin import OriginRefiner
from livesr.kernels.drift._register import array_module, to_host
from livesr.kernels.drift._rolling_params import DriftEstimate, RollingDriftParams

__all__ = ["DriftEstimate", "RollingDrift", "RollingDriftParams"]

logger = logging.getLogger(__name__)

#: (shape, on device) warmed up in this process (RollingDrift.warm_up)
_WARM: dict[tuple[tuple[int, int], bool], bool] = {}


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
        self._sums: BlockSums | None = None  # created at the first frame
        self._keys = KeyChain(p)
        self._hist = BlockHistory(p.block, p.smoothing, p.fit_blocks)
        self._noise: deque[float] = deque(maxlen=p.noise_window)
        self._psrs: deque[float] = deque(maxlen=p.noise_window)
        self._n_rejected = 0
        self._xp: Any = None
        self._relocked = False
        self._origin_fit = OriginRefiner(p.block, p.origin_blocks)
        self._race = PredictorRace(p.block)
        self._causal = CausalShifts(
            p.block,
            int(round(p.blend_blocks * p.block)),
            history=p.history_blocks,
            rate=p.blend_rate_px,
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
            self._keys.shape = shape
            self._xp = xp
            self._sums = BlockSums(self.params.block, shape, xp)
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
        sums = self._sums
        assert sums is not None
        p = self.params
        out: list[DriftEstimate] = []
        i, n = 0, int(a.shape[0])
        # integer frames (<= 16 bit) summed in float32: exact up to 256 frames
        exact32 = a.dtype.kind in "ui" and a.dtype.itemsize <= 2 and p.block <= 256
        while i < n:
            take = min(n - i, p.block - sums.count)
            sums.add(a[i : i + take], xp.float32 if exact32 else xp.float64)
            self._n_frames += take
            i += take
            if sums.count < p.block:
                continue
            self._relocked = False
            est = self._complete_block()
            sums.reset()
            self._new_epoch()
            out.append(est)
        return out

    def _new_epoch(self) -> None:
        """The causal predictor serving the frames from this one on."""
        p = self.params
        tr = np.asarray(self._hist.track, dtype=np.float64).reshape(-1, 4)
        t0, coef = fit_predictor(
            tr[:, 0],
            tr[:, 1:3],
            np.maximum(tr[:, 3], 1e-3),
            scale=float(p.block),
            horizon=p.horizon_blocks,
        )
        if p.predictor == "kalman":  # the better of the two lately (:mod:`._kalman`)
            newest = self._hist.track[-1][:3] if self._hist.track else None
            _, (t0, coef) = self._race.pick(
                newest, {"kalman": self._hist.kalman.predictor(), "poly": (t0, coef)}
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
        return tuple(self._hist.estimates)

    @property
    def n_frames(self) -> int:
        """Frames pushed so far."""
        return self._n_frames

    @property
    def n_keys(self) -> int:
        """Key frames created so far (frozen or accumulating)."""
        return self._keys.n_keys

    def current(self) -> tuple[float, float]:
        """Newest estimate (dy, dx), px ((0, 0) before the first block)."""
        if not self._hist.values:
            return (0.0, 0.0)
        return self._hist.values[-1]

    def velocity(self) -> tuple[float, float]:
        """Drift velocity (vy, vx), px per frame, from the recent accepted blocks."""
        v = self._hist.fit()[1]
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
        if not self._hist.values:
            return (0.0, 0.0)
        c = self._hist.centres
        t = float(frame_index)
        vals = self._hist.smoothed()
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
        if not self._hist.values:
            return np.zeros((n, 2))
        c = np.asarray(self._hist.centres)
        vals = self._hist.smoothed()
        out = np.stack(
            [np.interp(t, c, vals[:, 0]), np.interp(t, c, vals[:, 1])], axis=1
        )
        hi = t > c[-1]
        if hi.any():
            out[hi] = self._causal.current(t[hi])
        return out

    # ------------------------------------------------------------ internals
    def _noise_var(self) -> float:
        if self._noise:
            return float(np.mean(self._noise))
        return 0.05**2

    def _complete_block(self) -> DriftEstimate:
        """Register the block just completed, judge it, record its estimate."""
        p = self.params
        assert self._sums is not None
        hist = self._hist
        b = len(hist.estimates)
        last = self._n_frames - 1
        centre = last - (p.block - 1) / 2.0
        img = self._sums.acc / p.block
        if b == 0:
            self._keys.start_root(img)
            est0 = hist.record(b, last, centre, np.zeros(2), 0.0, False, math.nan, 0)
            hist.track.append((centre, 0.0, 0.0, math.sqrt(self._noise_var())))
            if p.key_blocks == 1:
                self._freeze_root()
            return est0

        pred = hist.predict(centre)
        refs = self._keys.references(pred)
        est, psr = self._combined(refs, img, pred)
        main = refs[0]
        half_diff = self._split_half_noise(b, main, pred)
        rejected, sigma = self._gate(b, est, pred, psr, main)
        if rejected:
            return hist.record(
                b, last, centre, pred, 2 * sigma + 0.05, True, psr, main.index
            )
        self._psrs.append(psr)
        if math.isfinite(half_diff):
            self._noise.append(half_diff)
        hist.accept(centre, est, sigma)
        out = hist.record(b, last, centre, est, sigma, False, psr, main.index)
        self._maintain_keys(img, est, psr, main)
        shift = self._origin_fit.update(hist, self._relocked)
        if shift is not None:  # the first block to its smoothed position
            hist.shift(-shift)
            self._keys.shift(-shift)
        return out

    def _combined(
        self, refs: list[KeyFrame], img: Any, pred: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """The block's displacement from every reference key (key offset + lag),
        combined with inverse-variance weights, and the main reference's PSR."""
        f_img = self._keys.spectrum(img)
        ests, wts, psrs = [], [], []
        s2 = self._noise_var()
        for k in refs:
            lag, psr = self._keys.register(k, img, f_img, pred)
            ests.append(k.offset + lag)
            wts.append(1.0 / (s2 + k.var + 1e-8))
            psrs.append(psr)
        ests_a = np.asarray(ests)
        w = np.asarray(wts)
        return (ests_a * w[:, None]).sum(0) / w.sum(), psrs[0]

    def _split_half_noise(self, b: int, main: KeyFrame, pred: np.ndarray) -> float:
        """Block noise variance per axis from registering the block's two halves
        against the main reference (NaN when not measured for this block)."""
        p = self.params
        sums = self._sums
        assert sums is not None
        if not (p.block >= 2 and (b % p.noise_every == 0 or len(self._noise) < 3)):
            return math.nan
        keys = self._keys
        n_a = sums.n_half
        n_b = p.block - n_a
        img_a = sums.half / n_a
        img_b = (sums.acc - sums.half) / n_b
        la, _ = keys.register(main, img_a, keys.spectrum(img_a), pred)
        lb, _ = keys.register(main, img_b, keys.spectrum(img_b), pred)
        dt = (n_a + n_b) / 2.0  # distance between the half centres, frames
        v = self._hist.fit()[1]
        resid = (lb - la) - v * dt
        # var(la - lb) ~ sigma_a^2 + sigma_b^2 = sigma^2 (B/n_a + B/n_b)
        return float(np.mean(resid**2)) / (p.block / n_a + p.block / n_b)

    def _gate(
        self, b: int, est: np.ndarray, pred: np.ndarray, psr: float, main: KeyFrame
    ) -> tuple[bool, float]:
        """The outlier tests: (rejected, sigma_px) of block ``b``.

        Rejected for a weak peak (``min_psr``, ``psr_drop``) or a jump beyond
        ``max_velocity * block + 5 sigma`` from the prediction; after
        ``relock_after`` rejections a good-peak block is accepted and the fits
        restart from it (re-lock).
        """
        p = self.params
        med_psr = float(np.median(self._psrs)) if len(self._psrs) >= 3 else psr
        bad_peak = psr < p.min_psr or psr < p.psr_drop * med_psr
        sigma = math.sqrt(
            self._noise_var() * float(np.clip(med_psr / max(psr, 1e-6), 0.5, 4.0) ** 2)
            + main.var
        )
        jump = float(np.max(np.abs(est - pred)))
        limit = p.max_velocity * p.block + 5 * sigma
        bad_jump = bool(self._hist.accepted) and jump > limit
        rejected = bad_peak or bad_jump
        if rejected and not bad_peak and self._n_rejected >= p.relock_after:
            logger.info(
                "RollingDrift: re-lock at block %d after %d rejections",
                b,
                self._n_rejected,
            )
            self._hist.restart()
            self._relocked = True
            rejected = False
        if not rejected:
            self._n_rejected = 0
            return False, sigma
        self._n_rejected += 1
        logger.debug(
            "RollingDrift: block %d rejected (psr %.1f, median %.1f, jump %.2f px > %.2f)",
            b,
            psr,
            med_psr,
            jump,
            limit,
        )
        return True, sigma

    def _freeze_root(self) -> None:
        """Freeze the root key and move the reference to the mean position of
        its blocks (revising their values); the mean of ``key_blocks`` blocks is
        known ~sqrt(key_blocks) times better than the first block alone."""
        root = self._keys.root
        indices, lags_a = self._keys.freeze_root()
        old = np.asarray([self._hist.values[i] for i in indices])
        # keep the run's coordinate frame (the first block's position, in which the
        # provisional values were reported and applied): the template's offset is
        # the one that matches the provisional values on average, so the revised
        # values only lose their noise and the reference does not jump
        offset = (old - lags_a).mean(axis=0)
        new = offset + lags_a
        origin = self._origin(root, new)
        root.offset = offset - origin
        delta = self._hist.revise(indices, new - origin, math.sqrt(self._noise_var()))
        logger.debug(
            "RollingDrift: root key frozen, reference moved by (%.4f, %.4f) px", *delta
        )

    def _origin(self, root: KeyFrame, new: np.ndarray) -> np.ndarray:
        """Correction of the run's origin when the root key freezes (0: none).

        The provisional values were reported (and applied) relative to the first
        block; the revised ones keep that frame on average (their offset matches
        the provisional values' mean). Re-fitting the first block's position
        from the key's blocks (a line or parabola at its centre) was tried: on
        fast drift (0.1 px/frame) it moved the origin by 0.06 px, more than it
        saves on noise, so the frame is left as it is.
        """
        return np.zeros(2)

    def _maintain_keys(
        self, img: np.ndarray, est: np.ndarray, psr: float, main: KeyFrame
    ) -> None:
        """After an accepted block: grow the root (the first ``key_blocks``
        blocks) and freeze it when full, else let the key chain decide."""
        root = self._keys.root
        if not root.frozen:
            if self._keys.add_to_root(img, est, len(self._hist.estimates) - 1):
                self._freeze_root()
                root.psr0 = psr
            return
        self._keys.maintain(img, est, psr, main, self._noise_var())
