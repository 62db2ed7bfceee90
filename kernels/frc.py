"""Fourier ring correlation (FRC): image resolution from two independent halves.

Two reconstructions of the same field from disjoint frame sets (odd / even
frames) differ only by noise; their correlation per spatial-frequency ring,

    FRC(q) = Re sum_ring A B* / sqrt(sum_ring |A|^2 * sum_ring |B|^2),

drops from ~1 at low frequencies to ~0 where noise dominates. The resolution is
``1 / q`` at the first crossing of a threshold (default the fixed 1/7 of
Banterle et al. 2013, J. Struct. Biol. 183:363). Pure numpy, no state.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a = rng.random((64, 64)); b = a + 0.1 * rng.random((64, 64))
>>> res = frc_resolution(a, b, pixel_size=0.05)   # same unit as pixel_size

Images are apodised by a separable Tukey window (edges to zero over
``edge_fraction`` of each side) so the image border does not correlate.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FRC_THRESHOLD", "frc_curve", "frc_resolution"]

#: The fixed 1/7 threshold.
FRC_THRESHOLD = 1.0 / 7.0


def _tukey(n: int, edge_fraction: float) -> np.ndarray:
    w = np.ones(n)
    m = int(round(edge_fraction * n))
    if m > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(m) + 0.5) / m))
        w[:m] = ramp
        w[n - m :] = ramp[::-1]
    return w


def frc_curve(
    a: np.ndarray, b: np.ndarray, *, edge_fraction: float = 0.125
) -> tuple[np.ndarray, np.ndarray]:
    """FRC of two images, one value per ring of width 1 frequency bin.

    Parameters
    ----------
    a, b : numpy.ndarray
        (H, W) real images of the same shape (H, W >= 8), finite.
    edge_fraction : float
        Width of the Tukey apodisation on each side, fraction of the size, in
        [0, 0.5].

    Returns
    -------
    freq : numpy.ndarray
        (n,) ring centre frequencies, cycles per pixel, up to Nyquist (0.5).
    frc : numpy.ndarray
        (n,) float64 correlation per ring, in [-1, 1] (NaN for an empty ring).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or min(a.shape) < 8:
        raise ValueError(
            f"frc_curve needs two 2-D images of the same shape, each side >= 8; got "
            f"{a.shape} and {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("frc_curve: images must be finite (found NaN or inf)")
    if not 0 <= edge_fraction <= 0.5:
        raise ValueError(
            f"frc_curve edge_fraction={edge_fraction!r} is out of range; "
            "expected [0, 0.5]"
        )
    h, w = a.shape
    win = np.outer(_tukey(h, edge_fraction), _tukey(w, edge_fraction))
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    qy = np.fft.fftfreq(h)[:, None]
    qx = np.fft.fftfreq(w)[None, :]
    # radius in units of the frequency step of the larger side
    n = max(h, w)
    r = np.sqrt((qy * n) ** 2 + (qx * n) ** 2)
    ring = np.rint(r).astype(np.int64).ravel()
    n_rings = n // 2 + 1
    keep = ring < n_rings
    ring = ring[keep]
    cross = np.bincount(ring, (fa * np.conj(fb)).real.ravel()[keep], n_rings)
    pa = np.bincount(ring, (np.abs(fa) ** 2).ravel()[keep], n_rings)
    pb = np.bincount(ring, (np.abs(fb) ** 2).ravel()[keep], n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = cross / np.sqrt(pa * pb)
    freq = np.arange(n_rings) / n
    return freq[1:], frc[1:]  # drop the DC ring (mean removed)


def frc_resolution(
    a: np.ndarray,
    b: np.ndarray,
    *,
    pixel_size: float = 1.0,
    threshold: float = FRC_THRESHOLD,
    smooth: int = 3,
    edge_fraction: float = 0.125,
) -> float:
    """Resolution from the first FRC threshold crossing, in ``pixel_size`` units.

    Parameters
    ----------
    a, b : numpy.ndarray
        (H, W) independent reconstructions of the same field.
    pixel_size : float
        Pixel size of ``a`` / ``b`` (e.g. nm or um), > 0.
    threshold : float
        Correlation threshold, in (0, 1).
    smooth : int
        Moving-average length (rings) applied to the curve before the crossing
        is searched, odd >= 1.
    edge_fraction : float
        See :func:`frc_curve`.

    Returns
    -------
    float
        ``pixel_size / q`` at the crossing (linear interpolation between rings);
        ``2 * pixel_size`` (the Nyquist limit) if the curve never falls below
        the threshold; NaN if it is below the threshold already at the lowest
        frequency (no common signal).
    """
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"frc_resolution pixel_size={pixel_size!r}; expected > 0")
    if not 0 < threshold < 1:
        raise ValueError(f"frc_resolution threshold={threshold!r}; expected in (0, 1)")
    if not (isinstance(smooth, int) and smooth >= 1 and smooth % 2 == 1):
        raise ValueError(f"frc_resolution smooth={smooth!r}; expected an odd int >= 1")
    freq, frc = frc_curve(a, b, edge_fraction=edge_fraction)
    frc = np.nan_to_num(frc, nan=0.0)
    if smooth > 1:
        k = smooth // 2
        padded = np.pad(frc, k, mode="edge")
        frc = np.convolve(padded, np.ones(smooth) / smooth, mode="valid")
    below = np.nonzero(frc < threshold)[0]
    if below.size == 0:
        return 2.0 * pixel_size
    i = int(below[0])
    if i == 0:
        return math.nan
    f0, f1, c0, c1 = freq[i - 1], freq[i], frc[i - 1], frc[i]
    q = f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)
    return float(pixel_size / q)
