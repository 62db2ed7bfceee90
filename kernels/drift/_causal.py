"""The causal shift of every frame of a stream: :class:`CausalShifts`.

A stream must correct each frame when it arrives, before the block holding it
is complete: the shift of frame ``i`` is a prediction from the blocks completed
by then. :class:`~livesr.kernels.drift.RollingDrift` starts a new *epoch* at
every completed block; the epoch's predictor serves every frame until the next
block completes, so the causal shift of any frame of a batch is known without
replaying the stream frame by frame.

Predictor (one per epoch, per axis): a least-squares polynomial, weighted by
``1 / sigma^2``, through the last ``fit_blocks`` accepted block estimates:
linear, or quadratic where that is expected to predict better one block ahead
(the line's variance plus its squared bias from the fitted curvature, against
the parabola's variance: oscillating drift). A linear fit over several blocks
averages the block noise instead of amplifying it (measured on the simulator at
256², blocks of 10 frames, drift 5-10 px over 2 000 frames: the old quadratic
through the last 6 blocks gave 0.034-0.055 px RMS and jumps of 0.12-0.17 px at
block boundaries; this predictor 0.020-0.026 px and <= 0.01 px).

Continuity: when a new epoch starts, its prediction generally differs from the
old one at that frame by some ``delta`` (block noise). The new epoch adds
``delta * max(0, 1 - (t - start + 1) / blend)``, spreading the change over
``blend`` frames, so consecutive frames never jump by more than ``delta /
blend`` more than the drift itself moves; with a ``rate`` (px per frame) over
only ``ceil(|delta| / rate)`` frames when that is fewer: a small change (block
noise) is not held back for the whole ``blend``, a large one is spread as
before. A re-lock after a real step is not blended (the step is real).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

__all__ = ["CausalShifts", "fit_predictor"]


def fit_predictor(
    centres: np.ndarray,
    values: np.ndarray,
    sigmas: np.ndarray,
    *,
    scale: float,
    horizon: float = 1.0,
) -> tuple[float, np.ndarray]:
    """Predictor through block estimates: ``(t0, coef)``.

    Per axis, a line or a parabola (weighted least squares), whichever has the
    smaller expected squared error at ``horizon`` (time units past the last
    centre): the parabola's variance there against the line's variance plus its
    squared bias (the parabola's curvature, less its own variance, times the
    part of ``x^2`` a line cannot follow).

    Parameters
    ----------
    centres : numpy.ndarray
        (n,) block centres, frames, increasing.
    values : numpy.ndarray
        (n, 2) block values (dy, dx), px.
    sigmas : numpy.ndarray
        (n,) standard uncertainty per axis, px (> 0).
    scale : float
        Time unit of the polynomial, frames (the block length).
    horizon : float
        Where the prediction matters, in time units past the last centre.

    Returns
    -------
    t0 : float
        Time origin (the last centre), frames.
    coef : numpy.ndarray
        (3, 2) coefficients of ``c0 + c1 x + c2 x^2`` per axis, ``x = (t - t0) /
        scale``.
    """
    n = len(centres)
    coef = np.zeros((3, 2))
    if n == 0:
        return 0.0, coef
    t0 = float(centres[-1])
    if n == 1:
        coef[0] = values[0]
        return t0, coef
    x = (np.asarray(centres, dtype=np.float64) - t0) / scale
    sw = 1.0 / np.asarray(sigmas, dtype=np.float64)
    vw = np.asarray(values, dtype=np.float64) * sw[:, None]
    a1 = np.vander(x, 2, increasing=True) * sw[:, None]
    coef[:2] = np.linalg.lstsq(a1, vw, rcond=None)[0]
    if n < 4:
        return t0, coef
    a2 = np.vander(x, 3, increasing=True) * sw[:, None]
    q = np.linalg.lstsq(a2, vw, rcond=None)[0]
    cov2 = np.linalg.inv(a2.T @ a2)
    cov1 = np.linalg.inv(a1.T @ a1)
    h = float(horizon)
    v2 = np.array([1.0, h, h * h])
    v1 = np.array([1.0, h])
    var_q = float(v2 @ cov2 @ v2)
    var_l = float(v1 @ cov1 @ v1)
    # the line's bias at h for a curvature c2: c2 * (h^2 - its line fit at h)
    ab = np.linalg.lstsq(a1, (x * x) * sw, rcond=None)[0]
    r = h * h - (ab[0] + ab[1] * h)
    c2_sq = np.maximum(q[2] ** 2 - cov2[2, 2], 0.0)
    use_q = c2_sq * r * r + var_l > var_q
    coef[:, use_q] = q[:, use_q]
    return t0, coef


class CausalShifts:
    """Per-epoch predictors of the causal shift (see the module notes).

    Parameters
    ----------
    scale : float
        Time unit of the predictors, frames (the block length).
    blend : int
        Frames over which a change of prediction at a new epoch is spread (0 =
        none).
    history : int
        Epochs kept; :meth:`shifts` of frames of older epochs raises.
    rate : float
        Largest added motion per frame while blending, px (0: always ``blend``
        frames; module notes).
    """

    def __init__(
        self, scale: float, blend: int, history: int = 1 << 14, rate: float = 0.0
    ) -> None:
        self.scale = float(scale)
        self.blend = int(blend)
        self.rate = float(rate)
        self._start: deque[int] = deque(maxlen=history)
        self._len: deque[float] = deque(maxlen=history)
        self._t0: deque[float] = deque(maxlen=history)
        self._coef: deque[np.ndarray] = deque(maxlen=history)
        self._delta: deque[np.ndarray] = deque(maxlen=history)

    def __len__(self) -> int:
        return len(self._start)

    def _eval(self, k: int, t: np.ndarray) -> np.ndarray:
        x = (t - self._t0[k]) / self.scale
        out = np.vander(x, 3, increasing=True) @ self._coef[k]
        d = self._delta[k]
        if self.blend > 0 and (d[0] != 0.0 or d[1] != 0.0):
            f = np.clip(1.0 - (t - self._start[k] + 1) / self._len[k], 0.0, 1.0)
            out = out + f[:, None] * d[None, :]
        return out

    def add(self, start: int, t0: float, coef: np.ndarray, *, jump: bool) -> None:
        """Start an epoch at frame ``start`` (the frame that completed the block).

        ``jump=True`` (a re-lock on a real step): no blending from the previous
        epoch.
        """
        delta = np.zeros(2)
        if self._start and self.blend > 0 and not jump:
            t = np.array([float(start)])
            prev = self._eval(len(self._start) - 1, t)[0]
            self._start.append(int(start))
            self._t0.append(float(t0))
            self._coef.append(np.asarray(coef, dtype=np.float64))
            self._delta.append(delta)
            self._len.append(float(self.blend))
            new = self._eval(len(self._start) - 1, t)[0]
            d = prev - new
            self._delta[-1] = d
            if self.rate > 0:  # no longer than continuity asks for
                need = float(np.abs(d).max()) / self.rate
                self._len[-1] = float(min(self.blend, max(1.0, math.ceil(need))))
            return
        self._start.append(int(start))
        self._t0.append(float(t0))
        self._coef.append(np.asarray(coef, dtype=np.float64))
        self._delta.append(delta)
        self._len.append(float(max(self.blend, 1)))

    def current(self, t: Sequence[float] | np.ndarray) -> np.ndarray:
        """(n, 2) shifts at frames ``t`` by the newest epoch's predictor (zeros
        before the first epoch)."""
        ta = np.asarray(t, dtype=np.float64).reshape(-1)
        if not self._start:
            return np.zeros((ta.size, 2))
        return self._eval(len(self._start) - 1, ta)

    def shifts(self, first: int, n: int) -> np.ndarray:
        """(n, 2) causal shift of frames ``first .. first + n - 1``: each by the
        epoch that was current when that frame arrived (zeros before the first
        epoch)."""
        out = np.zeros((n, 2))
        if n <= 0 or not self._start:
            return out
        frames = np.arange(first, first + n, dtype=np.int64)
        starts = np.asarray(self._start, dtype=np.int64)
        ep = np.searchsorted(starts, frames, side="right") - 1
        dropped = self._start[0] > 0 and len(self._start) == self._start.maxlen
        if dropped and (ep < 0).any():
            raise ValueError(
                f"shifts of frames {first}..{first + n - 1} requested; frames before "
                f"{self._start[0]} are no longer kept (history of {len(self._start)} "
                "blocks)"
            )
        t = frames.astype(np.float64)
        for k in np.unique(ep):
            if k < 0:
                continue
            sel = ep == k
            out[sel] = self._eval(int(k), t[sel])
        return out
