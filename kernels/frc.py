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

__all__ = [
    "FRC_THRESHOLD",
    "decorrelation_resolution",
    "fire_number",
    "frc_curve",
    "frc_resolution",
]

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


def _decorr_image(
    image: np.ndarray,
    pixel_size: float,
    n_radii: int,
    n_filters: int,
    min_amplitude: float,
) -> np.ndarray:
    """``image`` as float64, with the arguments of :func:`decorrelation_resolution`
    checked."""
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
    return img


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
    img = _decorr_image(image, pixel_size, n_radii, n_filters, min_amplitude)
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


# -- FIRE number exactly as NanoPyx 2.1.5 (FIRECalculator) -----------------------


def _nanopyx_taper(img: np.ndarray) -> np.ndarray:
    from scipy.signal.windows import tukey

    tx = tukey(img.shape[1], alpha=0.25).astype(np.float32)
    ty = tukey(img.shape[0], alpha=0.25).astype(np.float32)
    return (img * tx[None, :]) * ty[:, None]


def _even_square(img: np.ndarray) -> np.ndarray:
    """NanoPyx ``_make_even_square``: centred crop to the largest even square."""
    h, w = img.shape
    if h == w and w % 2 == 0:
        return img
    n = min(h, w)
    n -= n % 2
    h0 = (h - n) // 2
    h1 = h - (h - n) // 2 - ((h - n) % 2 != 0)
    w0 = (w - n) // 2
    w1 = w - (w - n) // 2 - ((w - n) % 2 != 0)
    return img[h0:h1, w0:w1]


def _nanopyx_frc_curve(img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
    """(max_r, 2) float32: spatial frequency (cycles/pixel) and FRC per ring,
    sampled as NanoPyx does (bilinear samples on each ring, 1/r rad apart)."""
    a = _nanopyx_taper(_even_square(img1))
    b = _nanopyx_taper(_even_square(img2))
    f1 = np.fft.fftshift(np.fft.fft2(a)).astype(np.complex64)
    f2 = np.fft.fftshift(np.fft.fft2(b)).astype(np.complex64)
    a1, b1 = np.real(f1).ravel(), np.imag(f1).ravel()
    a2, b2 = np.real(f2).ravel(), np.imag(f2).ravel()
    images = np.stack([a1 * a2 + b1 * b2, a1 * a1 + b1 * b1, a2 * a2 + b2 * b2])
    size = f1.shape[0]
    max_r = size // 2 - 1
    freq = np.linspace(0, 1 / 2, max_r, dtype=np.float32)
    out = np.zeros((max_r, 2), dtype=np.float32)
    out[0] = (0, 1)
    limit = float(np.float32(np.pi * 2))
    centre = np.float32(max_r + 1)
    for r in range(1, max_r):
        angles = np.arange(0, limit, float(np.float32(1.0 / r)), dtype=np.float32)
        cos_a = np.cos(angles.astype(np.float64)).astype(np.float32)
        sine = np.sqrt((1 - cos_a * cos_a).astype(np.float64)).astype(np.float32)
        sine = np.where(angles > np.pi, -sine, sine)
        x = centre + np.float32(r) * cos_a
        y = centre + np.float32(r) * sine
        xb = x.astype(np.int64)
        yb = y.astype(np.int64)
        xf = np.maximum(x - xb.astype(np.float32), 0).astype(np.float32)
        yf = np.maximum(y - yb.astype(np.float32), 0).astype(np.float32)
        ll = yb * size + xb
        lower_left, lower_right = images[:, ll], images[:, ll + 1]
        upper_left, upper_right = images[:, ll + size], images[:, ll + size + 1]
        upper = upper_left + xf * (upper_right - upper_left)
        lower = lower_left + xf * (lower_right - lower_left)
        values = lower + yf * (upper - lower)
        s0, s1, s2 = values.astype(np.float64).sum(axis=1)
        out[r] = (freq[r], np.float32(s0) / np.sqrt(np.float32(s1) * np.float32(s2)))
    return out


def fire_number(a: np.ndarray, b: np.ndarray, *, pixel_size: float = 1.0) -> float:
    """FIRE resolution of two half-data images, numerically equal to NanoPyx 2.1.5.

    NanoPyx's ``FIRECalculator.calculate_fire_number``: centred crop to an even
    square, Tukey taper (alpha 0.25), FRC sampled on rings of radius 1 .. N/2 - 2
    (bilinear samples 1/r rad apart), Savitzky-Golay smoothing (window
    ``int(0.0707 * n)``, at least 4, order 3), first crossing of 1/7, resolution
    ``1 / frequency``.  Unlike :func:`frc_resolution` this reproduces NanoPyx's
    numbers (its frequency axis runs linearly from 0 at ring 0 to 1/2 at ring
    N/2 - 2, not ``r / N``).

    Parameters
    ----------
    a, b : (H, W) array-like
        Two reconstructions of the same field from disjoint frame sets (NanoPyx:
        odd and even frames), any real dtype, finite, each side >= 8.
    pixel_size : float > 0
        Unit of the result (1: pixels of ``a``).

    Returns
    -------
    float
        The FIRE resolution in the unit of ``pixel_size``; 0 when the smoothed FRC
        never crosses 1/7 (as NanoPyx).
    """
    from scipy.signal import savgol_filter

    x = np.asarray(a, dtype=np.float32)
    y = np.asarray(b, dtype=np.float32)
    if x.ndim != 2 or x.shape != y.shape or min(x.shape) < 8:
        raise ValueError(
            f"fire_number needs two 2-D images of the same shape, each side >= 8; "
            f"got {x.shape} and {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("fire_number: images must be finite (found NaN or inf)")
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be > 0, got {pixel_size!r}")
    with np.errstate(divide="ignore", invalid="ignore"):  # empty rings: NaN, as C
        curve = _nanopyx_frc_curve(x, y)
    if not np.isfinite(curve[:, 1]).all():
        raise ValueError(
            "fire_number: the FRC is undefined (a ring of either image has no "
            "signal, e.g. a constant image)"
        )
    window = int(0.0707 * curve.shape[0])
    if window <= 3:
        window = 4
    curve[:, 1] = savgol_filter(curve[:, 1], window_length=window, polyorder=3)
    thr = np.float32(1.0 / 7.0)
    for i in range(1, curve.shape[0]):
        y1, y2 = curve[i - 1, 1], curve[i, 1]
        if not ((thr >= y1 and thr < y2) or (y1 >= thr and y2 < thr)):
            continue
        x1, x2 = curve[i - 1, 0], curve[i, 0]
        x1_x2 = np.float32(x1 - x2)
        y1_y2 = np.float32(y1 - y2)
        den = np.float32(x1_x2 * np.float32(0) - y1_y2 * x1_x2)
        if den == 0:
            if y1 == thr:
                return float(np.float32(1) / x1) * pixel_size
            continue
        num = np.float32(
            np.float32(x1 * y2 - y1 * x2) * x1_x2
            - x1_x2 * np.float32(x1 * thr - thr * x2)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            px = np.float32(num / den)
            return float(np.float32(1) / px) * pixel_size
    return 0.0
