"""Image resolution: Fourier ring correlation (two halves) and decorrelation analysis.

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

:func:`decorrelation_resolution` estimates the resolution of a *single* image
(decorrelation analysis, Descloux, Grussmayer & Radenovic 2019, Nat. Methods
16:918): the correlation of the image spectrum with its phase-only
(normalised) version inside a growing low-pass disc peaks at the highest
frequency that still carries signal; repeated on high-pass filtered copies, the
largest peak frequency ``kc`` (Nyquist = 1) gives ``2 * pixel_size / kc``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FRC_THRESHOLD", "decorrelation_resolution", "frc_curve", "frc_resolution"]

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


def _decorr_peak(d: np.ndarray, r: np.ndarray, min_drop: float) -> tuple[float, float]:
    """(position, amplitude) of the last local maximum of ``d(r)`` (0, 0 if none)."""
    d = d.copy()
    while d.size > 1:
        i = int(np.argmax(d))
        if i == d.size - 1:  # rising to the end: not a peak, trim and retry
            d = d[:-1]
            continue
        if i == 0:
            return 0.0, 0.0
        if d[i] - d[i:].min() >= min_drop:
            return float(r[i]), float(d[i])
        d = d[:-1]
    return 0.0, 0.0


def decorrelation_resolution(
    image: np.ndarray,
    *,
    pixel_size: float = 1.0,
    n_radii: int = 50,
    n_filters: int = 10,
    min_amplitude: float = 0.05,
    edge_fraction: float = 0.125,
) -> float:
    """Resolution of one image by decorrelation analysis, ``pixel_size`` units.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) real image (H, W >= 16), finite.
    pixel_size : float
        Pixel size (e.g. nm), > 0.
    n_radii : int
        Disc radii sampled between 0 and Nyquist, >= 10.
    n_filters : int
        High-pass filtered copies analysed, >= 1.
    min_amplitude : float
        Peaks lower than this (correlation, in (0, 1)) are ignored.
    edge_fraction : float
        Tukey apodisation, see :func:`frc_curve`.

    Returns
    -------
    float
        ``2 * pixel_size / kc``; NaN when no curve has a peak (no structure).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 16:
        raise ValueError(
            f"decorrelation_resolution needs a 2-D image, each side >= 16; got "
            f"{img.shape}"
        )
    if not np.isfinite(img).all():
        raise ValueError("decorrelation_resolution: image must be finite")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(
            f"decorrelation_resolution pixel_size={pixel_size!r}; expected > 0"
        )
    if n_radii < 10 or n_filters < 1 or not 0 < min_amplitude < 1:
        raise ValueError(
            f"decorrelation_resolution n_radii={n_radii!r} (>= 10), n_filters="
            f"{n_filters!r} (>= 1), min_amplitude={min_amplitude!r} (in (0, 1))"
        )
    h, w = img.shape
    win = np.outer(_tukey(h, edge_fraction), _tukey(w, edge_fraction))
    spec = np.abs(np.fft.fft2((img - img.mean()) * win))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    f2 = fy**2 + fx**2
    kr = np.sqrt(f2) / 0.5  # normalised: Nyquist = 1
    inside = kr <= 1.0
    order = np.argsort(kr[inside])
    kr_s = kr[inside][order]
    radii = np.linspace(0.0, 1.0, n_radii + 1)[1:]
    idx = np.searchsorted(kr_s, radii, side="right")  # pixels with kr <= r
    n_in = np.maximum(idx, 1)

    def curve(amp: np.ndarray) -> np.ndarray:
        # Re(I In*) = |I| (In = I / |I|); |In|^2 = 1 inside the disc
        a = amp[inside][order]
        csum = np.concatenate([[0.0], np.cumsum(a)])[idx]
        norm = math.sqrt(float((amp[inside] ** 2).sum())) or 1.0
        return csum / (norm * np.sqrt(n_in))

    r0, a0 = _decorr_peak(curve(spec), radii, 1e-3)
    peaks = [(r0, a0)]
    if r0 > 0:
        # high-pass filters: Gaussian low-pass of real-space sigma s removed,
        # s from the scale of the first peak down to 0.15 px
        s_max = 1.0 / (0.5 * r0)
        for s in np.exp(np.linspace(math.log(s_max), math.log(0.15), n_filters)):
            hp = 1.0 - np.exp(-2.0 * math.pi**2 * s**2 * f2)
            peaks.append(_decorr_peak(curve(spec * hp), radii, 1e-3))
    good = [r for r, a in peaks if r > 0 and a >= min_amplitude]
    if not good:
        return math.nan
    return float(2.0 * pixel_size / max(good))
