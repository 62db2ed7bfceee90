"""Two-pass registration of one image against a reference.

Shared by the batch and rolling drift estimators. Pass 1 finds the integer lag
on the whole (mean-subtracted, Tukey-apodised) frames. Pass 2 crops both images
to their overlap at that integer lag, so the content of the two crops differs
only by a sub-pixel shift, and refines it by DFT upsampling (Guizar-Sicairos,
maximised axis by axis). If the refined lag rounds to another integer, the crop
is redone there (at most three crops). Cropping removes the bias towards zero
lag that a fixed apodisation window causes when the content moves under it
(measured during development on 96x96 blinking 10-frame blocks, lags up to
15 px: the error grows by 0.4-0.8 % of the lag without the crop, < 0.2 % with
it, and the RMS error drops from 0.066-0.087 px to 0.036-0.040 px).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from livesr.kernels.xcorr._numpy import (
    Method,
    Registration,
    integer_peak,
    peak_to_sidelobe_ratio,
    subpixel_peak,
    tukey_window,
    upsampled_peak_axes,
)

__all__ = ["COARSE_ALPHA", "FINE_ALPHA", "coarse_spectrum", "register_two_pass"]

COARSE_ALPHA = 0.25
FINE_ALPHA = 0.1
_MAX_CROPS = 3  # re-crop when the refined lag rounds to another integer
_CACHE_BYTES = 64 * 2**20  # bound of one reference's crop-spectrum cache


@lru_cache(maxsize=16)
def _window(shape: tuple[int, int], alpha: float) -> np.ndarray:
    w = tukey_window(shape, alpha)
    w.setflags(write=False)
    return w


def _spectrum(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Same as :func:`livesr.kernels.xcorr.prepare_spectrum` (weighted mean
    subtracted, apodised, ``fft2``) with ``scipy.fft`` in single precision
    (complex64; 3-4x faster than ``numpy.fft`` in double here)."""
    from scipy import fft

    a = np.asarray(image, dtype=np.float64)
    m = float((a * window).sum() / window.sum())
    # single precision: ~2x faster, errors ~1e-7 relative (1e-5 px), far below noise
    return np.asarray(fft.fft2(((a - m) * window).astype(np.float32)))


def _cross(f_ref: np.ndarray, f_img: np.ndarray) -> np.ndarray:
    """Normalised cross-power spectrum, as ``correlation_spectrum(..., "cc")``."""
    # element-wise sums, not np.vdot: BLAS threads stall on a loaded machine
    e_ref = float(np.square(f_ref.real).sum() + np.square(f_ref.imag).sum())
    e_img = float(np.square(f_img.real).sum() + np.square(f_img.imag).sum())
    norm = math.sqrt(e_ref * e_img)
    x = np.conj(f_ref) * f_img
    if norm > 0:
        x *= x.size / norm
    return x


def coarse_spectrum(image: np.ndarray) -> np.ndarray:
    """Spectrum of ``image`` as pass 1 of :func:`register_two_pass` uses it."""
    return _spectrum(image, _window(image.shape, COARSE_ALPHA))


def _coarse(
    f_ref: np.ndarray, f_img: np.ndarray, max_shift: float, center: tuple[float, float]
) -> Registration:
    """Pass 1: integer peak (within the search window) + parabola, and its PSR."""
    from scipy import fft

    cmap = np.fft.fftshift(fft.ifft2(_cross(f_ref, f_img)).real)
    h, w = cmap.shape
    pk = integer_peak(cmap, max_shift=max_shift, center=center)
    r, c = subpixel_peak(cmap, method="parabolic", peak=pk)
    psr = peak_to_sidelobe_ratio(cmap, pk)
    return Registration(r - h // 2, c - w // 2, float(cmap[pk]), float(psr))


def register_two_pass(
    ref: np.ndarray,
    img: np.ndarray,
    *,
    upsample: int = 10,
    method: Method = "upsampled",
    max_shift: float = 0.0,
    center: tuple[float, float] = (0.0, 0.0),
    f_ref: np.ndarray | None = None,
    f_img: np.ndarray | None = None,
    ref_cache: dict[tuple[int, int], np.ndarray] | None = None,
) -> Registration:
    """Lag (dy, dx) of ``img`` relative to ``ref`` with overlap-crop refinement.

    Parameters
    ----------
    ref, img : numpy.ndarray
        (h, w) float64 images.
    upsample : int
        DFT upsampling factor of the refinement (1 / upsample px grid, then a
        parabola).
    method : {"upsampled", "gaussian", "parabolic"}
        Sub-pixel refinement of pass 2 (pass 1 always uses a parabola).
    max_shift : float
        Half-width (px) of the integer search window around ``center``; 0 searches
        the whole map.
    center : (float, float)
        Expected lag (dy, dx), px.
    f_ref, f_img : numpy.ndarray, optional
        Precomputed :func:`coarse_spectrum` of ``ref`` / ``img``.
    ref_cache : dict, optional
        Caller-owned cache of the reference's pass-2 crop spectra by integer lag
        (filled up to 64 MiB); pass the same dict for every image registered
        against one ``ref`` (and a new one for a new ``ref``).

    Returns
    -------
    Registration
        Full lag (px), and the peak height / PSR of the coarse pass.
    """
    h, w = ref.shape
    if f_ref is None:
        f_ref = coarse_spectrum(ref)
    if f_img is None:
        f_img = coarse_spectrum(img)
    coarse = _coarse(f_ref, f_img, max_shift, center)
    dy, dx = coarse.dy, coarse.dx
    for _ in range(_MAX_CROPS):
        iy, ix = int(round(dy)), int(round(dx))
        fine = _refine(
            ref, img, iy, ix, (dy - iy, dx - ix), method, upsample, ref_cache
        )
        if fine is None:
            return coarse
        if max_shift > 0 and (
            abs(round(fine[0]) - center[0]) > max_shift + 0.5
            or abs(round(fine[1]) - center[1]) > max_shift + 0.5
        ):
            break  # the refinement may not leave the search window
        dy, dx = fine
        if int(round(dy)) == iy and int(round(dx)) == ix:
            break
    return Registration(dy, dx, coarse.peak, coarse.psr)


def _refine(
    ref: np.ndarray,
    img: np.ndarray,
    iy: int,
    ix: int,
    start: tuple[float, float],
    method: Method,
    upsample: int,
    ref_cache: dict[tuple[int, int], np.ndarray] | None = None,
) -> tuple[float, float] | None:
    """Sub-pixel lag on the overlap of ``ref`` and ``img`` at integer lag (iy, ix)."""
    h, w = ref.shape
    hh, ww = h - abs(iy), w - abs(ix)
    if hh < 8 or ww < 8:
        return None
    ya, yb = (0, iy) if iy >= 0 else (-iy, 0)
    xa, xb = (0, ix) if ix >= 0 else (-ix, 0)
    b = img[yb : yb + hh, xb : xb + ww]
    win = _window((hh, ww), FINE_ALPHA)
    fa = None if ref_cache is None else ref_cache.get((iy, ix))
    if fa is None:
        fa = _spectrum(ref[ya : ya + hh, xa : xa + ww], win)
        if ref_cache is not None and len(ref_cache) * fa.nbytes < _CACHE_BYTES:
            ref_cache[(iy, ix)] = fa
    x = _cross(fa, _spectrum(b, win))
    if method == "upsampled":
        fy, fx = upsampled_peak_axes(x, start, upsample=upsample, region=1.0, sweeps=2)
    else:
        cmap = np.fft.fftshift(np.fft.ifft2(x).real)  # (rarely used methods)
        pk = integer_peak(cmap, max_shift=1.0)
        r, c = subpixel_peak(cmap, method=method, peak=pk)
        fy, fx = r - hh // 2, c - ww // 2
    return fy + iy, fx + ix
