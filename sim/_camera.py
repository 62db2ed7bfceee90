"""sCMOS noise model: photons -> electrons -> ADU (uint16).

``ADU = rint(offset + gain * (Poisson(qe * photons) + read_noise_e * N(0, 1)))``
clipped to [0, 65535], so per pixel ``mean = offset + gain * qe * photons`` and
``var = gain**2 * (qe * photons + read_noise_e**2) + 1/12`` (quantisation).

Speed: the uniform background and the emitter signal are independent Poisson
variables (their sum is Poisson of the summed mean). The background part is
drawn for every pixel by exact inverse-CDF lookup in a precomputed table with a
guide table (Chen & Asau's indexed search: one gather and a rarely-taken
correction loop), ~4x faster than ``Generator.poisson``; the signal part is drawn
with ``Generator.poisson`` only where the emitters put light.
"""

from __future__ import annotations

import math

import numpy as np

from livesr.sim._config import CameraConfig

__all__ = ["PoissonTable", "to_adu"]

_GUIDE = 4096


class PoissonTable:
    """Exact sampler for Poisson variables of one fixed mean ``lam``.

    Parameters
    ----------
    lam : float
        Mean, >= 0.
    """

    def __init__(self, lam: float) -> None:
        self.lam = float(lam)
        kmax = int(math.ceil(lam + 12.0 * math.sqrt(lam) + 20.0))
        k = np.arange(kmax + 1, dtype=np.float64)
        from scipy.special import gammaln  # lazy import

        logp = -lam + k * math.log(lam) - gammaln(k + 1) if lam > 0 else np.where(k == 0, 0.0, -np.inf)
        cdf = np.cumsum(np.exp(logp))
        cdf[-1] = 2.0  # the neglected tail (< 1e-20) goes to kmax; ends the search
        self._cdf = cdf
        j = np.arange(_GUIDE, dtype=np.float64) / _GUIDE
        # guide[j] = smallest k with cdf[k] > j / G  (a lower bound of the answer)
        self._guide = np.searchsorted(cdf, j, side="right").astype(np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` variates, (n,) int64."""
        u = rng.random(n)
        k = self._guide[(u * _GUIDE).astype(np.int64)]
        cdf = self._cdf
        idx = np.flatnonzero(cdf[k] <= u)
        while idx.size:
            k[idx] += 1
            idx = idx[cdf[k[idx]] <= u[idx]]
        return k


def to_adu(
    signal: np.ndarray,
    background: float,
    cam: CameraConfig,
    rng: np.random.Generator | None,
    table: PoissonTable | None,
    out: np.ndarray,
) -> None:
    """Convert an expected photon image to camera counts, in place into ``out``.

    Parameters
    ----------
    signal : numpy.ndarray
        (h, w) float64 expected emitter photons per pixel (may be modified).
    background : float
        Uniform background photons per pixel.
    cam : CameraConfig
        Offset, gain, read noise, QE, noise switch.
    rng : numpy.random.Generator or None
        Noise generator (unused when ``cam.noise`` is False).
    table : PoissonTable or None
        Sampler for ``Poisson(qe * background)``; built if None.
    out : numpy.ndarray
        (h, w) uint16 destination.
    """
    h, w = signal.shape
    if not cam.noise or rng is None:
        e = signal
        e += background
        e *= cam.qe
    else:
        if table is None:
            table = PoissonTable(cam.qe * background)
        e = table.sample(rng, h * w).astype(np.float64).reshape(h, w)
        flat = signal.reshape(-1)
        nz = np.flatnonzero(flat > 0.0)
        if nz.size:
            e.reshape(-1)[nz] += rng.poisson(cam.qe * flat[nz])
        if cam.read_noise_e > 0:
            e += cam.read_noise_e * rng.standard_normal((h, w), dtype=np.float32)
    e *= cam.gain
    e += cam.offset
    np.rint(e, out=e)
    np.clip(e, 0, 65535, out=e)
    np.copyto(out, e, casting="unsafe")
