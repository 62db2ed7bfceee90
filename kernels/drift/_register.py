"""Two-pass registration of one image against a reference (shared by the batch
and rolling drift estimators).

Pass 1 finds the integer lag on the whole (mean-subtracted, Tukey-apodised)
frames. Pass 2 crops both images to their overlap at that integer lag, so the
content of the two crops differs only by a sub-pixel shift, and refines it by
DFT upsampling (Guizar-Sicairos). Cropping removes the bias towards zero lag
that a fixed apodisation window causes when the content moves under it
(measured: ~0.4-0.8 % of the lag without the crop, < 0.2 % with it, and about
half the RMS error on 96x96 blinking blocks; see the xcorr tests).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from livesr.kernels.xcorr._numpy import (
    Registration,
    prepare_spectrum,
    register_spectra,
    tukey_window,
)

__all__ = ["COARSE_ALPHA", "FINE_ALPHA", "coarse_spectrum", "register_two_pass"]

COARSE_ALPHA = 0.25
FINE_ALPHA = 0.1


@lru_cache(maxsize=16)
def _window(shape: tuple[int, int], alpha: float) -> np.ndarray:
    w = tukey_window(shape, alpha)
    w.setflags(write=False)
    return w


def coarse_spectrum(image: np.ndarray) -> np.ndarray:
    """Spectrum of ``image`` as pass 1 of :func:`register_two_pass` uses it."""
    return prepare_spectrum(image, _window(image.shape, COARSE_ALPHA))


def register_two_pass(
    ref: np.ndarray,
    img: np.ndarray,
    *,
    upsample: int = 50,
    max_shift: float = 0.0,
    center: tuple[float, float] = (0.0, 0.0),
    f_ref: np.ndarray | None = None,
    f_img: np.ndarray | None = None,
) -> Registration:
    """Lag (dy, dx) of ``img`` relative to ``ref`` with overlap-crop refinement.

    Parameters
    ----------
    ref, img : numpy.ndarray
        (h, w) float64 images.
    upsample : int
        DFT upsampling factor of the refinement (1 / upsample px grid, then a
        parabola).
    max_shift : float
        Half-width (px) of the integer search window around ``center``; 0 searches
        the whole map.
    center : (float, float)
        Expected lag (dy, dx), px.
    f_ref, f_img : numpy.ndarray, optional
        Precomputed :func:`coarse_spectrum` of ``ref`` / ``img``.

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
    coarse = register_spectra(
        f_ref, f_img, method="parabolic", max_shift=max_shift, center=center
    )
    iy, ix = int(round(coarse.dy)), int(round(coarse.dx))
    hh, ww = h - abs(iy), w - abs(ix)
    if hh < 8 or ww < 8:
        return coarse
    ya, yb = (0, iy) if iy >= 0 else (-iy, 0)
    xa, xb = (0, ix) if ix >= 0 else (-ix, 0)
    a = ref[ya : ya + hh, xa : xa + ww]
    b = img[yb : yb + hh, xb : xb + ww]
    win = _window((hh, ww), FINE_ALPHA)
    fine = register_spectra(
        prepare_spectrum(a, win),
        prepare_spectrum(b, win),
        method="upsampled",
        upsample=upsample,
        max_shift=1.5,
    )
    return Registration(fine.dy + iy, fine.dx + ix, coarse.peak, coarse.psr)
