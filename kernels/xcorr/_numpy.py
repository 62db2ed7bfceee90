"""Plain-numpy cross-correlation and sub-pixel peak location (the oracle backend).

Pure functions on arrays; faster backends added beside this module must agree
with it. Conventions used throughout:

* A *lag* (dy, dx) is the displacement of ``img`` relative to ``ref``:
  ``img(r) ~= ref(r - d)``; positive = content moved towards larger row / column.
* A *correlation map* is ``fftshift``-ed: zero lag sits at index
  ``(h // 2, w // 2)`` and the map value at ``(h // 2 + dy, w // 2 + dx)`` is the
  (circular) correlation ``sum_r ref(r) * img(r + d)``.
* Spectra are unshifted ``numpy.fft.fft2`` outputs (complex128).

Sub-pixel methods (accuracy measured on simulated blinking stacks, see
``tests/kernels/test_kernels_xcorr.py``):

* ``"gaussian"``: three-point Gaussian fit per axis on the log of the peak
  neighbourhood (falls back to parabolic where a neighbour is not positive).
* ``"parabolic"``: three-point parabola per axis.
* ``"upsampled"``: Guizar-Sicairos matrix-multiply DFT upsampling of the
  correlation around the integer peak (band-limited interpolation, exact for
  the circular correlation), then a parabola on the fine grid.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np

__all__ = [
    "Registration",
    "correlation_spectrum",
    "cross_correlation_map",
    "integer_peak",
    "peak_to_sidelobe_ratio",
    "prepare_spectrum",
    "register",
    "register_spectra",
    "subpixel_peak",
    "tukey_window",
    "upsampled_peak",
    "upsampled_peak_axes",
]

Mode = Literal["cc", "phase"]
Method = Literal["gaussian", "parabolic", "upsampled"]


class Registration(NamedTuple):
    """Result of registering one image against a reference.

    Attributes
    ----------
    dy, dx : float
        Lag of the image relative to the reference, px (see module conventions).
    peak : float
        Height of the correlation map at the integer peak (normalised
        correlation coefficient for ``mode="cc"``, in [-1, 1]).
    psr : float
        Peak-to-sidelobe ratio ``(peak - mean) / std`` of the map outside a
        small exclusion disc around the peak (dimensionless; larger = better).
    """

    dy: float
    dx: float
    peak: float
    psr: float


def tukey_window(shape: tuple[int, int], alpha: float = 0.25) -> np.ndarray:
    """Separable 2-D Tukey (tapered cosine) window.

    Parameters
    ----------
    shape : (int, int)
        (h, w) of the window.
    alpha : float
        Fraction of each axis inside the cosine taper, in [0, 1]; 0 gives a
        rectangular window, 1 a Hann window.

    Returns
    -------
    numpy.ndarray
        (h, w) float64 window, maximum 1.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} is out of range; expected 0 <= alpha <= 1")

    def one(n: int) -> np.ndarray:
        if alpha == 0 or n < 3:
            return np.ones(n)
        x = np.arange(n) / (n - 1)
        w = np.ones(n)
        a = alpha / 2.0
        lo = x < a
        hi = x > 1 - a
        w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / a - 1)))
        w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / a + 1)))
        return w

    return np.outer(one(shape[0]), one(shape[1]))


def prepare_spectrum(image: np.ndarray, window: np.ndarray | None = None) -> np.ndarray:
    """Mean-subtract, apodise and Fourier-transform one image.

    Parameters
    ----------
    image : numpy.ndarray
        (h, w) real image (any real dtype; computed in float64).
    window : numpy.ndarray, optional
        (h, w) apodisation window applied after mean subtraction (weighted mean,
        so the windowed image has zero mean).

    Returns
    -------
    numpy.ndarray
        (h, w) complex128 spectrum (unshifted ``fft2``).
    """
    a = np.asarray(image, dtype=np.float64)
    if window is None:
        a = a - a.mean()
    else:
        m = float((a * window).sum() / window.sum())
        a = (a - m) * window
    return np.fft.fft2(a)


def correlation_spectrum(
    f_ref: np.ndarray, f_img: np.ndarray, mode: Mode = "cc", eps: float = 1e-12
) -> np.ndarray:
    """Cross-power spectrum ``conj(F_ref) * F_img`` (normalised for ``"phase"``).

    For ``mode="cc"`` it is divided by ``sqrt(sum|F_ref|^2 * sum|F_img|^2) / N`` so
    that the inverse transform is the normalised correlation coefficient (1 at
    the peak for identical images). For ``mode="phase"`` each frequency is divided
    by its magnitude (classic phase correlation).
    """
    x = np.conj(f_ref) * f_img
    if mode == "phase":
        return x / (np.abs(x) + eps)
    if mode != "cc":
        raise ValueError(f"mode={mode!r} is not valid; expected 'cc' or 'phase'")
    norm = math.sqrt(
        float(np.sum(np.abs(f_ref) ** 2)) * float(np.sum(np.abs(f_img) ** 2))
    )
    return x * (x.size / norm) if norm > 0 else x


def _map_from_spectrum(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(x).real)


def cross_correlation_map(
    ref: np.ndarray,
    img: np.ndarray,
    *,
    mode: Mode = "cc",
    window_alpha: float | None = 0.25,
) -> np.ndarray:
    """Circular cross-correlation map of ``img`` against ``ref``.

    Parameters
    ----------
    ref, img : numpy.ndarray
        (h, w) real images of the same shape.
    mode : {"cc", "phase"}
        Normalised cross-correlation or phase correlation.
    window_alpha : float or None
        Tukey taper fraction applied after mean subtraction; None for no window.

    Returns
    -------
    numpy.ndarray
        (h, w) float64 map, zero lag at ``(h // 2, w // 2)``; a peak at
        ``(h // 2 + dy, w // 2 + dx)`` means ``img`` is ``ref`` displaced by (dy, dx).
    """
    ref = np.asarray(ref)
    img = np.asarray(img)
    if ref.ndim != 2 or ref.shape != img.shape:
        raise ValueError(
            "ref and img must be 2-D arrays of one shape; "
            f"got {ref.shape} and {img.shape}"
        )
    win = None if window_alpha is None else tukey_window(ref.shape, window_alpha)
    x = correlation_spectrum(
        prepare_spectrum(ref, win), prepare_spectrum(img, win), mode
    )
    return _map_from_spectrum(x)


def integer_peak(
    cmap: np.ndarray,
    *,
    max_shift: float = 0.0,
    center: tuple[float, float] = (0.0, 0.0),
) -> tuple[int, int]:
    """Index (row, col) of the map maximum, optionally within a search disc.

    Parameters
    ----------
    cmap : numpy.ndarray
        (h, w) correlation map (zero lag at ``(h // 2, w // 2)``).
    max_shift : float
        If > 0, only lags within a square of half-width ``max_shift`` px around
        ``center`` are searched (inclusive, rounded to whole pixels).
    center : (float, float)
        Centre lag (dy, dx) of the search window, px.
    """
    h, w = cmap.shape
    if max_shift <= 0:
        r, c = np.unravel_index(int(np.argmax(cmap)), cmap.shape)
        return int(r), int(c)
    cy = h // 2 + center[0]
    cx = w // 2 + center[1]
    r0 = max(0, int(math.floor(cy - max_shift + 1e-9)))
    r1 = min(h - 1, int(math.ceil(cy + max_shift - 1e-9)))
    c0 = max(0, int(math.floor(cx - max_shift + 1e-9)))
    c1 = min(w - 1, int(math.ceil(cx + max_shift - 1e-9)))
    if r1 < r0 or c1 < c0:
        r, c = np.unravel_index(int(np.argmax(cmap)), cmap.shape)
        return int(r), int(c)
    sub = cmap[r0 : r1 + 1, c0 : c1 + 1]
    r, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
    return int(r) + r0, int(c) + c0


def _three_point(m: float, z: float, p: float, gaussian: bool) -> float:
    if gaussian and m > 0 and z > 0 and p > 0:
        lm, lz, lp = math.log(m), math.log(z), math.log(p)
        den = lm - 2 * lz + lp
        if den < 0:
            return float(np.clip(0.5 * (lm - lp) / den, -0.5, 0.5))
    den = m - 2 * z + p
    if den < 0:
        return float(np.clip(0.5 * (m - p) / den, -0.5, 0.5))
    return 0.0


def subpixel_peak(
    cmap: np.ndarray,
    *,
    method: Literal["gaussian", "parabolic"] = "gaussian",
    peak: tuple[int, int] | None = None,
) -> tuple[float, float]:
    """Sub-pixel position (row, col) of a correlation-map peak, in map indices.

    Parameters
    ----------
    cmap : numpy.ndarray
        (h, w) correlation map.
    method : {"gaussian", "parabolic"}
        Three-point fit per axis on the log of the values (Gaussian) or on the
        values (parabola). The Gaussian falls back to the parabola where a value
        is not positive. Neighbours wrap around (the map is circular).
    peak : (int, int), optional
        Integer peak to refine; default the global maximum.

    Returns
    -------
    (float, float)
        Row and column of the peak in map index units; subtract
        ``(h // 2, w // 2)`` to get the lag.
    """
    h, w = cmap.shape
    r, c = peak if peak is not None else integer_peak(cmap)
    g = method == "gaussian"
    if method not in ("gaussian", "parabolic"):
        raise ValueError(
            f"method={method!r} is not valid; expected 'gaussian' or 'parabolic'"
        )
    z = float(cmap[r, c])
    dr = _three_point(float(cmap[(r - 1) % h, c]), z, float(cmap[(r + 1) % h, c]), g)
    dc = _three_point(float(cmap[r, (c - 1) % w]), z, float(cmap[r, (c + 1) % w]), g)
    return r + dr, c + dc


def upsampled_peak(
    cross_spectrum: np.ndarray,
    lag: tuple[float, float],
    *,
    upsample: int = 20,
    region: float = 1.5,
) -> tuple[float, float]:
    """Refine a lag by DFT upsampling (Guizar-Sicairos et al., Opt. Lett. 2008).

    The correlation ``ifft2(cross_spectrum)`` is evaluated exactly (band-limited
    interpolation) on a grid of step ``1 / upsample`` px covering
    ``lag +- region`` px, with two small matrix products; its maximum is then
    refined by a parabola on that fine grid.

    Parameters
    ----------
    cross_spectrum : numpy.ndarray
        (h, w) complex cross-power spectrum (unshifted).
    lag : (float, float)
        Starting lag (dy, dx), px, e.g. the integer peak.
    upsample : int
        Upsampling factor (>= 1).
    region : float
        Half-width of the refined neighbourhood, px.

    Returns
    -------
    (float, float)
        Refined lag (dy, dx), px.
    """
    h, w = cross_spectrum.shape
    n = int(math.ceil(2 * region * upsample)) + 1
    off = (np.arange(n) - n // 2) / upsample
    py = lag[0] + off
    px = lag[1] + off
    ey = np.exp(2j * np.pi * np.outer(py, np.fft.fftfreq(h)))  # (n, h)
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(w), px))  # (w, n)
    up = (ey @ cross_spectrum @ ex).real
    i, j = np.unravel_index(int(np.argmax(up)), up.shape)
    di = dj = 0.0
    if 0 < i < n - 1:
        di = _three_point(
            float(up[i - 1, j]), float(up[i, j]), float(up[i + 1, j]), False
        )
    if 0 < j < n - 1:
        dj = _three_point(
            float(up[i, j - 1]), float(up[i, j]), float(up[i, j + 1]), False
        )
    return float(py[i] + di / upsample), float(px[j] + dj / upsample)


def upsampled_peak_axes(
    cross_spectrum: np.ndarray,
    lag: tuple[float, float],
    *,
    upsample: int = 20,
    region: float = 1.0,
    sweeps: int = 3,
) -> tuple[float, float]:
    """Refine a lag by 1-D DFT upsampling along each axis in turn.

    Same band-limited interpolation as :func:`upsampled_peak`, but maximised by
    coordinate ascent: ``sweeps`` alternations of a row profile and a column
    profile through the current estimate (each ``n = 2 * region * upsample + 1``
    points, then a parabola). Uses only element-wise products and sums (no
    BLAS matrix product, which is erratic on loaded shared machines); cost
    O(h * w) per profile.

    Parameters
    ----------
    cross_spectrum : numpy.ndarray
        (h, w) complex cross-power spectrum (unshifted).
    lag : (float, float)
        Starting lag (dy, dx), px.
    upsample : int
        Points per px of the profiles (>= 1).
    region : float
        Half-width of each profile, px.
    sweeps : int
        Number of (row, column) alternations (>= 1).

    Returns
    -------
    (float, float)
        Refined lag (dy, dx), px.
    """
    h, w = cross_spectrum.shape
    fy = np.fft.fftfreq(h)
    fx = np.fft.fftfreq(w)
    n = int(math.ceil(2 * region * upsample)) + 1
    off = (np.arange(n) - n // 2) / upsample
    y, x = float(lag[0]), float(lag[1])

    def best(profile: np.ndarray, pos: np.ndarray) -> float:
        i = int(np.argmax(profile))
        d = 0.0
        if 0 < i < n - 1:
            d = _three_point(
                float(profile[i - 1]), float(profile[i]), float(profile[i + 1]), False
            )
        return float(pos[i] + d / upsample)

    for _ in range(max(1, sweeps)):
        # row profile at column x: collapse the x frequencies first
        col = (cross_spectrum * np.exp(2j * np.pi * fx * x)[None, :]).sum(
            axis=1
        )  # (h,)
        py = y + off
        prof = (
            (np.exp(2j * np.pi * py[:, None] * fy[None, :]) * col[None, :])
            .sum(axis=1)
            .real
        )
        y = best(prof, py)
        row = (cross_spectrum * np.exp(2j * np.pi * fy * y)[:, None]).sum(
            axis=0
        )  # (w,)
        px = x + off
        prof = (
            (np.exp(2j * np.pi * px[:, None] * fx[None, :]) * row[None, :])
            .sum(axis=1)
            .real
        )
        x = best(prof, px)
    return y, x


def peak_to_sidelobe_ratio(
    cmap: np.ndarray, peak: tuple[int, int], exclude: int = 3
) -> float:
    """``(peak - mean) / std`` of the map outside a square of half-width ``exclude``.

    Parameters
    ----------
    cmap : numpy.ndarray
        (h, w) correlation map.
    peak : (int, int)
        Integer peak index (row, col).
    exclude : int
        Half-width (px) of the square around the peak left out of the sidelobe
        statistics.
    """
    h, w = cmap.shape
    r, c = peak
    mask = np.ones((h, w), dtype=bool)
    rows = np.arange(r - exclude, r + exclude + 1) % h
    cols = np.arange(c - exclude, c + exclude + 1) % w
    mask[np.ix_(rows, cols)] = False
    side = cmap[mask]
    sd = float(side.std())
    if sd <= 0:
        return math.inf
    return (float(cmap[r, c]) - float(side.mean())) / sd


def register_spectra(
    f_ref: np.ndarray,
    f_img: np.ndarray,
    *,
    mode: Mode = "cc",
    method: Method = "upsampled",
    upsample: int = 20,
    max_shift: float = 0.0,
    center: tuple[float, float] = (0.0, 0.0),
) -> Registration:
    """Register two prepared spectra (see :func:`prepare_spectrum`).

    Parameters
    ----------
    f_ref, f_img : numpy.ndarray
        (h, w) complex spectra of the reference and of the image.
    mode : {"cc", "phase"}
        Correlation flavour, see :func:`correlation_spectrum`.
    method : {"upsampled", "gaussian", "parabolic"}
        Sub-pixel refinement.
    upsample : int
        DFT upsampling factor for ``method="upsampled"``.
    max_shift : float
        Search half-width around ``center`` in px (0 = whole map).
    center : (float, float)
        Expected lag (dy, dx), px.

    Returns
    -------
    Registration
        Lag of the image relative to the reference (px), peak height and PSR.
    """
    x = correlation_spectrum(f_ref, f_img, mode)
    cmap = _map_from_spectrum(x)
    h, w = cmap.shape
    pk = integer_peak(cmap, max_shift=max_shift, center=center)
    if method == "upsampled":
        dy, dx = upsampled_peak(x, (pk[0] - h // 2, pk[1] - w // 2), upsample=upsample)
    else:
        r, c = subpixel_peak(cmap, method=method, peak=pk)
        dy, dx = r - h // 2, c - w // 2
    psr = peak_to_sidelobe_ratio(cmap, pk)
    return Registration(float(dy), float(dx), float(cmap[pk]), float(psr))


def register(
    ref: np.ndarray,
    img: np.ndarray,
    *,
    mode: Mode = "cc",
    method: Method = "upsampled",
    upsample: int = 20,
    window_alpha: float | None = 0.25,
    max_shift: float = 0.0,
    center: tuple[float, float] = (0.0, 0.0),
) -> Registration:
    """Lag of ``img`` relative to ``ref`` (convenience wrapper, see
    :func:`register_spectra`).

    Parameters
    ----------
    ref, img : numpy.ndarray
        (h, w) real images of one shape.
    window_alpha : float or None
        Tukey taper applied after mean subtraction (None: no window).

    Other parameters are those of :func:`register_spectra`.
    """
    ref = np.asarray(ref)
    img = np.asarray(img)
    if ref.ndim != 2 or ref.shape != img.shape:
        raise ValueError(
            "ref and img must be 2-D arrays of one shape; "
            f"got {ref.shape} and {img.shape}"
        )
    win = None if window_alpha is None else tukey_window(ref.shape, window_alpha)
    return register_spectra(
        prepare_spectrum(ref, win),
        prepare_spectrum(img, win),
        mode=mode,
        method=method,
        upsample=upsample,
        max_shift=max_shift,
        center=center,
    )


def _register() -> None:
    from livesr.engine import implementation

    implementation("xcorr", backend="numpy")(upsampled_peak_axes)


_register()
