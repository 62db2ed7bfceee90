"""Blocks of frames in :class:`~livesr.kernels.drift.RollingDrift`: the running
sums of the block being filled, and the fits through completed blocks' values
(the recent-block polynomial that predicts the next block, the local quadratic
that smooths the drift table)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from livesr.kernels.drift._kalman import KalmanBank
from livesr.kernels.drift._rolling_params import DriftEstimate

_N_FIT = 6  # accepted blocks in the prediction / extrapolation fit


class BlockSums:
    """Sums of the frames of the block being filled: all of them (``acc``) and
    the first ``n_half`` (``half``, for the split-half noise), float64 on the
    frames' device."""

    def __init__(self, block: int, shape: tuple[int, int], xp: Any) -> None:
        self.n_half = max(1, block // 2)
        self.acc = xp.zeros(shape)
        self.half = xp.zeros(shape)
        self.count = 0

    def add(self, seg: Any, dt: Any) -> None:
        """Add (n, h, w) frames ``seg`` (that fit in the block), summed in ``dt``."""
        take = int(seg.shape[0])
        n_half = min(take, max(0, self.n_half - self.count))
        if take == 1:
            f = seg[0].astype(dt, copy=False)
            self.acc += f
            if n_half:
                self.half += f
        else:
            if n_half:
                self.half += seg[:n_half].sum(axis=0, dtype=dt)
            self.acc += seg.sum(axis=0, dtype=dt)
        self.count += take

    def reset(self) -> None:
        self.acc[...] = 0.0
        self.half[...] = 0.0
        self.count = 0


def recent_polynomial(
    accepted: Iterable[tuple[float, float, float]], block: int
) -> np.ndarray:
    """(deg + 1, 2) polynomial in (t - last accepted centre) / block through
    the recent accepted blocks ``(centre, dy, dx)``: quadratic from 5 points,
    else linear (the value itself for one point, zero for none)."""
    pts = np.asarray(list(accepted))
    if len(pts) == 0:
        return np.zeros((1, 2))
    if len(pts) == 1:
        return pts[:1, 1:]
    deg = 2 if len(pts) >= 5 else 1
    t = (pts[:, 0] - pts[-1, 0]) / block
    a = np.vander(t, deg + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(a, pts[:, 1:], rcond=None)
    return np.asarray(coef)


def smooth_values(
    vals: np.ndarray,
    centres: np.ndarray,
    estimates: Sequence[DriftEstimate],
    smoothing: int,
    block: int,
) -> np.ndarray:
    """(B, 2) block values ``vals`` at ``centres`` after a local quadratic fit over
    ``smoothing`` blocks each side, weighted by 1 / sigma^2, accepted blocks only
    (linear with fewer than 4 of them, unchanged with fewer than 2)."""
    n = len(vals)
    if smoothing <= 0 or n <= 1:
        return vals
    s = smoothing
    ok = np.array([not e.rejected for e in estimates])
    sig = np.array([max(e.sigma_px, 1e-3) for e in estimates])
    w_all = ok / sig**2
    out = vals.copy()
    for i in range(n):
        lo, hi = max(0, i - s), min(n, i + s + 1)
        w = w_all[lo:hi]
        m = int(np.count_nonzero(w))
        if m < 2:
            continue
        deg = 2 if m >= 4 else 1
        t = (centres[lo:hi] - centres[i]) / max(1.0, block)
        a = np.vander(t, deg + 1, increasing=True) * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(a, vals[lo:hi] * np.sqrt(w)[:, None], rcond=None)
        out[i] = coef[0]
    return out


class BlockHistory:
    """The completed blocks: their estimates (values revised when the root key
    freezes), the recent accepted ones the prediction is fitted through, the
    ``fit_blocks`` accepted ones of the causal predictor (``track``: centre, dy,
    dx, sigma), and the smoothed values of the drift table."""

    def __init__(self, block: int, smoothing: int, fit_blocks: int) -> None:
        self.block = block
        self.smoothing = smoothing
        self.fit_blocks = fit_blocks
        self.estimates: list[DriftEstimate] = []
        self.centres: list[float] = []
        self.values: list[tuple[float, float]] = []
        self.accepted: deque[tuple[float, float, float]] = deque(maxlen=_N_FIT)
        self.track: deque[tuple[float, float, float, float]] = deque(maxlen=fit_blocks)
        self._smooth_cache: tuple[int, np.ndarray] | None = None
        #: the causal predictor's bank of Kalman filters, fed the accepted blocks
        self.kalman = KalmanBank(block)

    def record(
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
        """Append the estimate of block ``b`` (``last``: its last frame)."""
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
        self.estimates.append(e)
        self.centres.append(centre)
        self.values.append((e.dy, e.dx))
        if b == 0:
            self.accepted.append((centre, 0.0, 0.0))
            self.kalman.update(centre, np.zeros(2), 0.05)
        return e

    def accept(self, centre: float, est: np.ndarray, sigma: float) -> None:
        """An accepted block enters the prediction and the causal predictor."""
        self.accepted.append((centre, float(est[0]), float(est[1])))
        self.track.append((centre, float(est[0]), float(est[1]), sigma))
        self.kalman.update(centre, est, sigma)

    def restart(self) -> None:
        """Forget the fits' blocks (a re-lock after a real step)."""
        self.accepted.clear()
        self.track.clear()
        self.kalman.reset()

    def revise(self, indices: list[int], new: np.ndarray, s0: float) -> np.ndarray:
        """Replace the values of blocks ``indices`` by ``new`` (n, 2), shift every
        other block by their mean change, and refit from the revised blocks
        (``s0``: sigma of a block without one).  Returns the mean change."""
        old = np.asarray([self.values[i] for i in indices])
        delta = (new - old).mean(axis=0)
        for k, i in enumerate(indices):
            self.values[i] = (float(new[k, 0]), float(new[k, 1]))
        accepted = set(indices)
        for i in range(len(self.values)):
            if i not in accepted:
                v = np.asarray(self.values[i]) + delta
                self.values[i] = (float(v[0]), float(v[1]))
        self.accepted = deque(
            ((self.centres[i], *self.values[i]) for i in sorted(accepted)[-_N_FIT:]),
            maxlen=_N_FIT,
        )
        sig = {e.block_index: e.sigma_px for e in self.estimates}
        self.track = deque(
            (
                (self.centres[i], *self.values[i], sig.get(i, 0.0) or s0)
                for i in sorted(accepted)[-self.fit_blocks :]
            ),
            maxlen=self.fit_blocks,
        )
        self.kalman.reset()
        for i in sorted(accepted):
            self.kalman.update(
                self.centres[i], np.asarray(self.values[i]), sig.get(i, 0.0) or s0
            )
        return np.asarray(delta)

    def shift(self, delta: np.ndarray) -> None:
        """Add ``delta`` (2,) px to every block value and to the fits' blocks (a
        change of the run's frame; the estimates already returned keep theirs)."""
        dy, dx = float(delta[0]), float(delta[1])
        self.values = [(a + dy, b + dx) for a, b in self.values]
        self.accepted = deque(
            ((c, a + dy, b + dx) for c, a, b in self.accepted), maxlen=_N_FIT
        )
        self.track = deque(
            ((c, a + dy, b + dx, s) for c, a, b, s in self.track),
            maxlen=self.fit_blocks,
        )
        self._smooth_cache = None
        self.kalman.shift(np.array([dy, dx]))

    def coef(self) -> np.ndarray:
        return recent_polynomial(self.accepted, self.block)

    def extrapolate(self, t: np.ndarray) -> np.ndarray:
        """(n, 2) displacement at frames ``t`` from the recent-block polynomial."""
        coef = self.coef()
        last = self.accepted[-1][0] if self.accepted else 0.0
        x = (np.asarray(t, dtype=np.float64) - last) / self.block
        return np.vander(x, len(coef), increasing=True) @ coef

    def fit(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, velocity in px/frame) at the last accepted centre."""
        coef = self.coef()
        v = coef[1] / self.block if len(coef) > 1 else np.zeros(2)
        return coef[0], v

    def predict(self, centre: float) -> np.ndarray:
        return self.extrapolate(np.array([centre]))[0]

    def smoothed(self) -> np.ndarray:
        """(B, 2) block values after the local quadratic fit (cached)."""
        n = len(self.values)
        if self._smooth_cache is not None and self._smooth_cache[0] == n:
            return self._smooth_cache[1]
        vals = smooth_values(
            np.asarray(self.values, dtype=np.float64),
            np.asarray(self.centres),
            self.estimates,
            self.smoothing,
            self.block,
        )
        self._smooth_cache = (n, vals)
        return vals
