"""Frame-by-frame Markov blinking: off <-> on, on -> bleached (absorbing).

Per frame of length ``dt`` the transition probabilities are
``p_on = 1 - exp(-on_rate * dt)`` (off -> on), ``p_off = 1 - exp(-off_rate * dt)``
(on -> off) and ``p_bleach = 1 - exp(-bleach_rate * dt)`` (on -> bleached); an on
emitter that draws ``u < p_bleach`` bleaches, ``p_bleach <= u < p_bleach + p_off``
switches off (probabilities clipped to sum <= 1). Without bleaching the
steady-state on-fraction (duty cycle) is ``p_on / (p_on + p_off)``; the initial
states are drawn from it, so there is no start-up transient.
"""

from __future__ import annotations

import math

import numpy as np

from livesr.sim._config import SampleConfig

__all__ = ["Blinking", "steady_state_on_fraction", "transition_probabilities"]


def transition_probabilities(
    cfg: SampleConfig, dt_s: float
) -> tuple[float, float, float]:
    """(p_on, p_off, p_bleach) per frame of ``dt_s`` seconds."""
    p_on = -math.expm1(-cfg.on_rate_hz * dt_s)
    p_off = -math.expm1(-cfg.off_rate_hz * dt_s)
    p_b = -math.expm1(-cfg.bleach_rate_hz * dt_s)
    if p_off + p_b > 1.0:  # pragma: no cover - only for absurd rates
        p_off = 1.0 - p_b
    return p_on, p_off, p_b


def steady_state_on_fraction(cfg: SampleConfig, dt_s: float) -> float:
    """Duty cycle ``p_on / (p_on + p_off)`` ignoring bleaching (1 if both are 0)."""
    p_on, p_off, _ = transition_probabilities(cfg, dt_s)
    if p_on + p_off == 0.0:
        return 1.0
    return p_on / (p_on + p_off)


class Blinking:
    """On/off/bleached state of ``n`` emitters, advanced one frame at a time.

    Parameters
    ----------
    n : int
        Number of emitters.
    cfg : SampleConfig
        Kinetics.
    dt_s : float
        Frame interval, s.
    rng : numpy.random.Generator
        Dedicated generator (consumed sequentially: determinism needs the same
        sequence of ``step`` calls).
    """

    def __init__(
        self, n: int, cfg: SampleConfig, dt_s: float, rng: np.random.Generator
    ) -> None:
        self._rng = rng
        self.p_on, self.p_off, self.p_bleach = transition_probabilities(cfg, dt_s)
        frac = steady_state_on_fraction(cfg, dt_s)
        self.on: np.ndarray = rng.random(n) < frac
        self.bleached: np.ndarray = np.zeros(n, dtype=bool)

    def step(self) -> None:
        """Advance every emitter by one frame."""
        u = self._rng.random(self.on.shape[0])
        on = self.on
        bleach = on & (u < self.p_bleach)
        stay_on = on & (u >= self.p_bleach + self.p_off)
        turn_on = ~on & ~self.bleached & (u < self.p_on)
        self.bleached |= bleach
        self.on = stay_on | turn_on
