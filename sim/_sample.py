"""Structures (filaments, rings, point clusters) and their fluorophore labels.

Sample coordinates are (y, x) in um with the origin at the centre of sensor
pixel (0, 0); a point at (y, x) um images (at zero displacement) onto sensor
pixel coordinates ``(y / pixel_size_um, x / pixel_size_um)``, pixel centres at
integers.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from livesr.sim._config import SampleConfig

__all__ = ["ground_truth_histogram", "place_emitters"]

logger = logging.getLogger(__name__)

_FILAMENT_STEP_UM = 0.02


def _filament(
    rng: np.random.Generator, cfg: SampleConfig, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Emitters along one worm-like filament, (n, 2) um."""
    n_steps = max(2, int(math.ceil(cfg.filament_length_um / _FILAMENT_STEP_UM)))
    ds = cfg.filament_length_um / n_steps
    theta0 = rng.uniform(0.0, 2 * math.pi)
    dtheta = rng.normal(0.0, math.sqrt(ds / cfg.filament_persistence_um), n_steps)
    theta = theta0 + np.cumsum(dtheta)
    steps = ds * np.stack([np.sin(theta), np.cos(theta)], axis=1)
    # centre the curve on a random point so that it crosses the field
    path = np.vstack([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    path -= path.mean(axis=0)
    path += rng.uniform(lo, hi)
    n = int(round(cfg.filament_length_um * cfg.labelling_density_per_um))
    s = np.sort(rng.uniform(0.0, n_steps, n))
    i = np.minimum(s.astype(np.int64), n_steps - 1)
    f = (s - i)[:, None]
    return path[i] * (1 - f) + path[i + 1] * f


def _ring(
    rng: np.random.Generator, cfg: SampleConfig, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    centre = rng.uniform(lo, hi)
    n = int(round(2 * math.pi * cfg.ring_radius_um * cfg.labelling_density_per_um))
    a = rng.uniform(0.0, 2 * math.pi, n)
    return centre + cfg.ring_radius_um * np.stack([np.sin(a), np.cos(a)], axis=1)


def _cluster(
    rng: np.random.Generator, cfg: SampleConfig, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    centre = rng.uniform(lo, hi)
    return centre + rng.normal(0.0, cfg.cluster_radius_um, (cfg.cluster_size, 2))


def place_emitters(
    cfg: SampleConfig,
    field_um: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Place all structures and label them.

    Parameters
    ----------
    cfg : SampleConfig
        Structure counts, sizes and labelling.
    field_um : (float, float)
        Extent (y, x) of the sensor in um (``shape * pixel_size_um``); structures
        are centred in ``[-margin, extent - 1 px + margin]`` on each axis.
    rng : numpy.random.Generator
        Source of randomness (structure placement).

    Returns
    -------
    numpy.ndarray
        (n, 2) float64 emitter positions (y, x) in um, sample frame.
    """
    lo = np.full(2, -cfg.margin_um)
    hi = np.asarray(field_um, dtype=np.float64) + cfg.margin_um
    parts: list[np.ndarray] = [np.empty((0, 2))]
    parts += [_filament(rng, cfg, lo, hi) for _ in range(cfg.n_filaments)]
    parts += [_ring(rng, cfg, lo, hi) for _ in range(cfg.n_rings)]
    parts += [_cluster(rng, cfg, lo, hi) for _ in range(cfg.n_clusters)]
    if cfg.points_um:
        parts.append(np.asarray(cfg.points_um, dtype=np.float64).reshape(-1, 2))
    pos = np.concatenate(parts, axis=0)
    if cfg.linkage_error_um > 0:
        pos = pos + rng.normal(0.0, cfg.linkage_error_um, pos.shape)
    logger.debug("placed %d emitters", len(pos))
    return np.ascontiguousarray(pos, dtype=np.float64)


def ground_truth_histogram(
    positions_px: np.ndarray, shape: tuple[int, int], upsample: int
) -> np.ndarray:
    """Count emitters per high-resolution pixel.

    Parameters
    ----------
    positions_px : numpy.ndarray
        (n, 2) emitter positions (y, x) in camera pixels, pixel centres at integers.
    shape : (int, int)
        Camera image shape (h, w).
    upsample : int
        High-resolution pixels per camera pixel along each axis.

    Returns
    -------
    numpy.ndarray
        (h * upsample, w * upsample) float32; high-res pixel ``i`` covers camera
        coordinates ``[i / upsample - 0.5, (i + 1) / upsample - 0.5)``, so camera
        pixel ``r`` is high-res pixels ``r*upsample .. r*upsample + upsample - 1``
        and high-res pixel ``i`` has its centre at ``(i + 0.5) / upsample - 0.5``.
    """
    h, w = shape
    u = int(upsample)
    hi = np.floor((positions_px + 0.5) * u).astype(np.int64)
    ok = (hi[:, 0] >= 0) & (hi[:, 0] < h * u) & (hi[:, 1] >= 0) & (hi[:, 1] < w * u)
    flat = hi[ok, 0] * (w * u) + hi[ok, 1]
    img = np.bincount(flat, minlength=h * u * w * u).astype(np.float32)
    return img.reshape(h * u, w * u)
