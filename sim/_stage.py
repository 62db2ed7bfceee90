"""Sample drift (linear + random walk + oscillation) and the commanded stage.

The drift is the motion of the sample relative to the objective. The stage
carries the sample: commanding it to ``(x, y)`` um moves the field of view over
the sample, i.e. the sample moves by ``(-y, -x)`` in the image. The true
displacement of the sample in the image, relative to frame 0 with the stage at
its start position (0, 0), is ``drift - stage``. Axially, the Z stage is the
focus drive: the sample's distance from the focal plane (focus offset) is
``drift_z - stage_z``, so moving Z by the axial drift refocuses.
"""

from __future__ import annotations

import math

import numpy as np

from livesr.sim._config import DriftConfig

__all__ = ["Drift"]


class Drift:
    """Drift trajectory, evaluated frame by frame in order.

    Parameters
    ----------
    cfg : DriftConfig
        Components.
    rng : numpy.random.Generator
        Dedicated generator of the random-walk steps (one (y, x, z) step per frame).
    """

    def __init__(self, cfg: DriftConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self._rng = rng
        self._walk = np.zeros(3)
        self._walk_index = 0

    def at(self, index: int, t_s: float) -> tuple[float, float, float]:
        """Drift (dy, dx, dz) in um at frame ``index`` (time ``t_s``).

        Frames must be requested in non-decreasing order (the random walk is
        sequential); repeated indices return the same walk value.
        """
        c = self.cfg
        if index < self._walk_index:
            raise ValueError(
                f"drift requested for frame {index} after frame {self._walk_index}; "
                "frames are rendered in order"
            )
        if c.random_walk_um > 0 or c.random_walk_z_um > 0:
            scale = np.array([c.random_walk_um, c.random_walk_um, c.random_walk_z_um])
            while self._walk_index < index:
                self._walk += scale * self._rng.standard_normal(3)
                self._walk_index += 1
        else:
            self._walk_index = index
        s = math.sin(2.0 * math.pi * t_s / c.oscillation_period_s)
        vy, vx = c.velocity_um_per_s
        ay, ax = c.oscillation_amplitude_um
        return (
            vy * t_s + ay * s + float(self._walk[0]),
            vx * t_s + ax * s + float(self._walk[1]),
            c.velocity_z_um_per_s * t_s + c.oscillation_z_um * s + float(self._walk[2]),
        )
