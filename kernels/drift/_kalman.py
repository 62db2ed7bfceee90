"""Causal drift prediction by a bank of Kalman filters (issue 15: live at least
as good as batch).

The causal shift of a frame is a prediction from the blocks completed before it
(:mod:`livesr.kernels.drift._causal`). A line through the last ``fit_blocks``
blocks is a fixed compromise: too short for a steady drift (it re-fits the block
noise every block), too long for a random walk (it lags). Here each axis is
followed by constant-velocity Kalman filters with a random walk of the position
(variance ``qp`` px² per block) and white acceleration (``qv`` px² per block³),
one per pair of a grid, all updated with every accepted block (vectorised: ~0.1
ms per block); the prediction comes from the filter of the largest recent
likelihood (innovations, exponentially forgotten over ``memory`` blocks). A
steady drift selects ``qp = qv = 0`` (a line through every block so far), a
random walk a short memory: the model that predicts best is the one that has
predicted best. Same family as the origin smoother (:mod:`._origin`).

Measured offline on the block values of the simulator scenarios (256², 2 000
frames, block 10; the error less its constant part, frames 100-1999): no drift
and linear drift 0.013-0.018 px with the line through 8 blocks, 0.007-0.008 px
with the bank; linear + random walk 0.025-0.029 -> 0.022-0.024 px.
"""

from __future__ import annotations

import numpy as np

from livesr.kernels.drift._origin import _QP, _QV

__all__ = ["KalmanBank"]

_DIFFUSE = 1e4  # px², prior variance of the first position and velocity
#: an innovation beyond this many of its standard deviations is a step
STEP_SIGMAS = 6.0


class KalmanBank:
    """Constant-velocity Kalman filters of a grid of process noises, both axes.

    Parameters
    ----------
    block : float
        Time unit, frames (the block length).
    memory : float
        Blocks over which the log-likelihood that picks the model is averaged
        (exponential forgetting, factor ``1 - 1 / memory``).
    """

    def __init__(self, block: float, memory: float = 50.0) -> None:
        self.block = float(block)
        self.forget = 1.0 - 1.0 / float(memory)
        qp, qv = (a.ravel() for a in np.meshgrid(_QP, _QV, indexing="ij"))
        self._nm = len(qp)
        self._qp = np.tile(qp, 2)
        self._qv = np.tile(qv, 2)
        self.reset()

    def reset(self) -> None:
        """Forget every block (a re-lock after a real step)."""
        g = len(self._qp)
        self._x = np.zeros((g, 2))
        self._p = np.zeros((g, 2, 2))
        self._p[:, 0, 0] = self._p[:, 1, 1] = _DIFFUSE
        self._ll = np.zeros(g)
        self._t: float | None = None
        self.n = 0
        #: steps detected (restarts of the filters' positions)
        self.steps = 0

    def update(self, centre: float, value: np.ndarray, sigma: float) -> None:
        """Add one accepted block: (dy, dx) ``value`` at frame ``centre``, per-axis
        standard uncertainty ``sigma`` px."""
        y = np.repeat(np.asarray(value, dtype=np.float64), self._nm)
        r = max(float(sigma), 1e-4) ** 2
        x, p = self._x, self._p
        if self._t is None:
            x[:, 0] = y
            x[:, 1] = 0.0
        else:
            dt = (float(centre) - self._t) / self.block
            x[:, 0] += dt * x[:, 1]
            p00, p01, p11 = p[:, 0, 0], p[:, 0, 1], p[:, 1, 1]
            n00 = p00 + 2 * dt * p01 + dt * dt * p11 + self._qp * dt
            n00 += self._qv * dt**3 / 3.0
            n01 = p01 + dt * p11 + self._qv * dt * dt / 2.0
            n11 = p11 + self._qv * dt
            p[:, 0, 0], p[:, 0, 1], p[:, 1, 0], p[:, 1, 1] = n00, n01, n01, n11
        s = p[:, 0, 0] + r
        innov = y - x[:, 0]
        if self.n >= 3 and self._is_step(innov, s):
            self._restart_at(y, r, centre)
            return
        if self.n >= 2:  # the first two only set the diffuse start
            self._ll = self.forget * self._ll - 0.5 * (np.log(s) + innov * innov / s)
        k0 = p[:, 0, 0] / s
        k1 = p[:, 1, 0] / s
        x[:, 0] += k0 * innov
        x[:, 1] += k1 * innov
        p00, p01, p11 = p[:, 0, 0].copy(), p[:, 0, 1].copy(), p[:, 1, 1].copy()
        p[:, 0, 0] = p00 - k0 * p00
        p[:, 0, 1] = p[:, 1, 0] = p01 - k0 * p01
        p[:, 1, 1] = p11 - k1 * p01
        self._t = float(centre)
        self.n += 1

    def _is_step(self, innov: np.ndarray, s: np.ndarray) -> bool:
        """The chosen filter of either axis is off by more than ``STEP_SIGMAS``
        of its innovation's standard deviation: the sample stepped (a stage
        move, a knock), which no drift model predicts."""
        best = self._ll.reshape(2, self._nm).argmax(axis=1)
        idx = np.arange(2) * self._nm + best
        return bool(np.any(np.abs(innov[idx]) > STEP_SIGMAS * np.sqrt(s[idx])))

    def _restart_at(self, y: np.ndarray, r: float, centre: float) -> None:
        """After a step: every filter's position is the new block's value (its
        variance the block's), the velocities are kept (the drift goes on), the
        model choice starts again."""
        self._x[:, 0] = y
        self._p[:, 0, 0] = r
        self._p[:, 0, 1] = self._p[:, 1, 0] = 0.0
        self._ll[:] = 0.0
        self._t = float(centre)
        self.steps += 1

    def shift(self, delta: np.ndarray) -> None:
        """Add ``delta`` (2,) px to the filtered positions (a change of frame)."""
        self._x[:, 0] += np.repeat(np.asarray(delta, dtype=np.float64), self._nm)

    def predictor(self) -> tuple[float, np.ndarray] | None:
        """``(t0, coef)`` as :func:`~livesr.kernels.drift._causal.fit_predictor`
        gives it (position and velocity of the chosen filter per axis at the last
        block, ``x = (t - t0) / block``), or None before three blocks."""
        if self.n < 3 or self._t is None:
            return None
        best = self._ll.reshape(2, self._nm).argmax(axis=1)
        idx = np.arange(2) * self._nm + best
        coef = np.zeros((3, 2))
        coef[0] = self._x[idx, 0]
        coef[1] = self._x[idx, 1]
        return self._t, coef


class PredictorRace:
    """Of several causal predictors, the one whose recent predictions of the next
    block were best (squared error against the block's value, exponentially
    forgotten over ``memory`` blocks). The block noise is common to every
    candidate, so the comparison is fair; a candidate missing (None) is skipped.

    Parameters
    ----------
    scale : float
        Time unit of the predictors' polynomials, frames (the block length).
    memory : float
        Blocks the running error is averaged over.
    """

    def __init__(self, scale: float, memory: float = 20.0) -> None:
        self.scale = float(scale)
        self.forget = 1.0 - 1.0 / float(memory)
        self.err: dict[str, float] = {}
        self._prev: dict[str, tuple[float, np.ndarray]] = {}
        self._last: float | None = None
        #: epochs each candidate served
        self.chosen: dict[str, int] = {}

    def reset(self) -> None:
        """Forget the predictions (a re-lock: the old ones predicted another track)."""
        self._prev = {}
        self._last = None

    def pick(
        self,
        newest: tuple[float, float, float] | None,
        candidates: dict[str, tuple[float, np.ndarray] | None],
    ) -> tuple[str, tuple[float, np.ndarray]]:
        """Score the previous predictions on ``newest`` (centre, dy, dx: the newest
        accepted block; scored once) and return the best candidate's name and
        ``(t0, coef)``. The first available candidate wins ties and unscored
        starts."""
        # scored only where every candidate predicted (like with like: a late
        # starter is not compared on easier blocks)
        full = len(self._prev) == len(candidates)
        if newest is not None and newest[0] != self._last and full:
            c = float(newest[0])
            val = np.array(newest[1:3], dtype=np.float64)
            for name, (t0, coef) in self._prev.items():
                x = (c - t0) / self.scale
                pred = coef[0] + coef[1] * x + coef[2] * x * x
                e = float(np.sum((pred - val) ** 2))
                self.err[name] = (
                    self.forget * self.err.get(name, e) + (1 - self.forget) * e
                )
            self._last = c
        avail = {k: v for k, v in candidates.items() if v is not None}
        self._prev = avail
        names = list(avail)
        best = min(names, key=lambda k: (self.err.get(k, np.inf), names.index(k)))
        if all(k not in self.err for k in names):
            best = names[0]
        self.chosen[best] = self.chosen.get(best, 0) + 1
        return best, avail[best]
