"""Decorrelation analysis (Descloux, Grussmayer & Radenovic 2019, Nat. Methods
16:918): the resolution of a *single* image, numerically equal to NanoPyx 2.1.5.

The image spectrum ``I(k)`` is correlated with its phase-only version
``I(k)/|I(k)|`` inside a growing low-pass disc of normalised radius ``r``::

    d(r) = sqrt(2) * sum_{|k|<r} Re(I conj(In)) / (|I| * sqrt(sum_{|k|<r} |In|^2))

``d`` peaks at the highest frequency that still carries signal. The analysis is
repeated on high-pass filtered copies (image minus its Gaussian blur, ``n_g``
widths log-spaced, then refined once around the best); the largest peak
frequency ``kc_max`` (Nyquist = 1) gives the resolution ``2 * pixel_size /
kc_max``.

This follows ``nanopyx.core.analysis.decorr.DecorrAnalysis`` 2.1.5 step by step
(edge apodisation over 20 px, padding to a power-of-two square with the first
pixel's value, only half of the spectrum in the ring sums, its peak search with
a 0.001 tolerance, float32 ring sums in scan order), so ``resolution`` agrees
to float32 rounding. One known difference: when no curve of a refinement step
has a peak (``kc * a`` or ``kc`` never > 0, seen on sparse, noisy images),
NanoPyx reads an uninitialised ``np.empty(3)`` buffer; here that step scores 0,
which gives ``kc_max = 0`` and resolution inf. Pure numpy / scipy; a few
milliseconds for a 256^2 image.

>>> res = decorrelation_analysis(image, pixel_size=50.0)   # doctest: +SKIP
>>> res.resolution   # nm, as pixel_size
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DecorrResult", "decorrelation_analysis"]

_F32 = np.float32
_APODIZE_OFFSET = 20  # px, NanoPyx's smooth apodisation width


@dataclass(frozen=True)
class DecorrResult:
    """Result of :func:`decorrelation_analysis`.

    Attributes
    ----------
    resolution : float
        ``2 * pixel_size / kc_max``, in the unit of ``pixel_size`` (inf when no
        peak was found, as NanoPyx).
    kc_max : float
        Highest peak frequency, normalised (Nyquist = 1).
    a_max : float
        Peak amplitude at ``kc_max``.
    kc_gm : float
        Frequency of the best ``kc * a`` (geometric-mean criterion).
    a_gm : float
        Its amplitude.
    d0 : (n_r,) float32
        Decorrelation curve of the unfiltered image over ``[0, 1]``.
    """

    resolution: float
    kc_max: float
    a_max: float
    kc_gm: float
    a_gm: float
    d0: np.ndarray


def _apodize_edges(img: np.ndarray) -> np.ndarray:
    """NanoPyx ``_apodize_edges``: cosine roll-off to the outer mean over 20 px."""
    h, w = img.shape
    off = _APODIZE_OFFSET
    radius = _F32(w // 2 - off)
    yy, xx = np.mgrid[0:h, 0:w]
    dist = ((yy - h // 2) ** 2 + (xx - w // 2) ** 2).astype(_F32)
    outside = dist > radius * radius
    count = int(outside.sum())
    edge_mean = (
        _F32(img[outside].astype(np.float64).sum() / count) if count else _F32(np.nan)
    )
    x0 = np.abs(xx - w // 2).astype(np.float64)
    y0 = np.abs(yy - h // 2).astype(np.float64)
    ex = np.abs(x0 - w // 2)
    ey = np.abs(y0 - h // 2)
    band = (ex <= off) | (ey <= off)
    d = np.minimum(ex, ey).astype(_F32).astype(np.float64)
    c = ((np.cos(d * math.pi / off - math.pi) + 1) / 2).astype(_F32)
    out = img.astype(_F32, copy=True)
    rolled = (c * (out - edge_mean)).astype(_F32) + edge_mean
    out[band] = rolled[band]
    return out


def _preprocess(img: np.ndarray) -> np.ndarray:
    """Pad to a power-of-two square filled with the first pixel (NanoPyx; its copy
    loop offsets columns only, rows start at 0)."""
    h, w = img.shape
    n = int(math.pow(2, math.ceil(math.log(max(h, w)) / math.log(2.0))))
    out = np.full((n, n), img.flat[0], dtype=_F32)
    ox = (n - w) // 2
    out[:h, ox : ox + w] = img
    return out


def _fft(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.fft.fftshift(np.fft.fft2(img)).astype(np.complex64)
    return np.real(f).astype(_F32), np.imag(f).astype(_F32)


def _normalize(re: np.ndarray, im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mag = np.sqrt((re * re + im * im).astype(np.float64))
    nz = mag != 0
    safe = np.where(nz, mag, 1.0)
    nre = np.where(nz, re / safe, 0).astype(_F32)
    nim = np.where(nz, im / safe, 0).astype(_F32)
    return nre, nim


def _log(x: np.float32) -> float:
    """C ``log``: -inf at 0 (NanoPyx reaches log(0) when its filter range collapses;
    the resulting NaN sigma makes scipy's gaussian_filter skip the blur, as there)."""
    v = float(x)
    return math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)


def _circular_mask(w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:w, 0:w]
    return ((yy - w // 2) ** 2 + (xx - w // 2) ** 2) < w * w / 4


class _Analysis:
    """The state of one NanoPyx ``DecorrAnalysis`` run (rmin 0, rmax 1)."""

    def __init__(self, n_r: int, n_g: int, pixel_size: float = 1.0) -> None:
        self.n_r, self.n_g = n_r, n_g
        self.pixel_size = pixel_size
        self.rmin, self.rmax = _F32(0), _F32(1)

    # -- the ring sums -------------------------------------------------------
    def _ring_geometry(self, shape: tuple[int, int]) -> None:
        h, w = shape
        yy, xx = np.mgrid[0:h, 0:w]
        dist = ((xx - w // 2) ** 2 + (yy - h // 2) ** 2).astype(_F32)
        self._dist = np.sqrt(4.0 * dist.astype(np.float64) / float(_F32(w * w))).astype(
            _F32
        )
        # scan order x outer, y inner; stops once x*h + y > w*h//2 + h//2
        self._scan = (xx * h + yy) <= (w * h) // 2 + h // 2
        self._shape = shape

    def _coef_ring(
        self,
        re: np.ndarray,
        im: np.ndarray,
        nre: np.ndarray,
        nim: np.ndarray,
        crmin: np.float32,
        crmax: np.float32,
    ) -> np.ndarray:
        h, w = self._shape
        n_r = self.n_r
        ox = int(w * (1.0 - float(crmax)) / 2.0)
        oy = int(h * (1.0 - float(crmax)) / 2.0)
        ww = int(w * float(crmax))
        hh = int(h * float(crmax))
        sel = np.zeros((h, w), dtype=bool)
        sel[oy : oy + hh, ox : ox + ww] = True
        sel &= self._scan
        sel &= (self._dist >= 0) & (self._dist <= crmax)
        # column-major = NanoPyx's scan order, for identical float32 sums
        sel_t = sel.T
        dist = self._dist.T[sel_t]
        val = (dist - crmin) / (crmax - crmin)
        val = val * _F32(n_r - 1 - 0) + _F32(0)
        val = np.where(val < 0, _F32(0), val)
        base = np.trunc(val)
        idx = (base + ((val - base) >= 0.5)).astype(np.intp)
        prod = re.T[sel_t] * nre.T[sel_t] + im.T[sel_t] * nim.T[sel_t]
        norm = nre.T[sel_t] ** 2 + nim.T[sel_t] ** 2
        out = np.zeros(2 * n_r, dtype=_F32)
        np.add.at(out, idx, prod.astype(_F32))
        np.add.at(out, idx + n_r, norm.astype(_F32))
        return out

    def _curve(
        self, re: np.ndarray, im: np.ndarray, crmin: np.float32, crmax: np.float32
    ) -> np.ndarray:
        nre, nim = _normalize(re, im)
        cr = _F32(
            math.sqrt(
                float(
                    (
                        re[self._mask].astype(np.float64) ** 2
                        + im[self._mask].astype(np.float64) ** 2
                    ).sum()
                )
            )
        )
        coef = self._coef_ring(re, im, nre, nim, crmin, crmax)
        n_r = self.n_r
        d = np.cumsum(coef[:n_r], dtype=_F32)
        c = np.cumsum(coef[n_r:], dtype=_F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            curve = (
                math.sqrt(2)
                * d.astype(np.float64)
                / (float(cr) * np.sqrt(c.astype(np.float64)))
            ).astype(_F32)
        if cr == 0:
            curve[:] = np.nan
        curve[c == 0] = np.nan
        if np.isnan(curve[0]):
            curve[0] = 0
        return curve

    # -- peak search (NanoPyx _get_d_corr_max and helpers) -------------------
    @staticmethod
    def _get_max(arr: np.ndarray, x1: int, x2: int) -> list[np.float32]:
        out = [_F32(x1), arr[x1]]
        for k in range(x1, x2):
            if arr[k] > out[1]:
                out = [_F32(k), arr[k]]
        return out

    @staticmethod
    def _get_min(arr: np.ndarray, x1: int, x2: int) -> list[np.float32]:
        out = [_F32(x1), arr[x1]]
        for k in range(x1, x2):
            if arr[k] < out[1]:
                out = [_F32(k), arr[k]]
        return out

    def _d_corr_max(
        self, d: np.ndarray, r1: np.float32, r2: np.float32
    ) -> list[np.float32]:
        n_r = self.n_r
        t = d.astype(_F32, copy=True)
        out = self._get_max(d, 0, n_r)
        length = t.shape[0]
        while out[0] == length - 1:
            t[length - 1] = 0
            length -= 1
            if length == 0:
                out = [_F32(0), _F32(0)]
                break
            out = self._get_max(t, 0, n_r)
            tmin = self._get_min(t, int(out[0]), length - 1)
            if t[int(out[0])] - tmin[1] > _F32(0.001):
                break
            t[int(out[0])] = tmin[1]
            out[0] = _F32(length - 1)
        out[0] = _F32(r1 + (r2 - r1) * out[0] / _F32(n_r - 1))
        return out

    @staticmethod
    def _best_score(kc: np.ndarray, a: np.ndarray) -> list[np.float32]:
        best, out = _F32(0), [_F32(0), _F32(0), _F32(0)]
        for k in range(kc.shape[0]):
            gm = _F32(kc[k] * a[k])
            if gm > best:
                best, out = gm, [kc[k], a[k], _F32(k)]
        return out

    @staticmethod
    def _max_score(kc: np.ndarray, a: np.ndarray) -> list[np.float32]:
        best, out = _F32(0), [_F32(0), _F32(0), _F32(0)]
        for k in range(kc.shape[0]):
            if kc[k] > best:
                best, out = kc[k], [kc[k], a[k], _F32(k)]
        return out

    # -- the analysis --------------------------------------------------------
    def run(self, img: np.ndarray) -> DecorrResult:
        from scipy.ndimage import gaussian_filter

        ref = _preprocess(_apodize_edges(img))
        self._ring_geometry(ref.shape)
        self._mask = _circular_mask(ref.shape[1])
        re, im = _fft(ref)
        re[re.shape[0] // 2, re.shape[1] // 2] = 0
        im[im.shape[0] // 2, im.shape[1] // 2] = 0
        d0 = self._curve(re, im, self.rmin, self.rmax)
        kc0 = self._d_corr_max(d0, _F32(0), _F32(1))[0]

        n_g = self.n_g
        g_max = _F32(ref.shape[1] // 2) if kc0 == 0 else _F32(2.0 / float(kc0))
        g_min = _F32(0.14)
        crmin, crmax = self.rmin, self.rmax
        kc_gm = a_gm = kc_max = a_max = _F32(0)
        for refine in range(2):
            curves = []
            for k in range(n_g):
                frac = float(_F32(_F32(k) / _F32(n_g - 1)))
                lo, hi = _log(g_min), _log(g_max)
                sig = math.exp(lo + (hi - lo) * frac)
                high = ref - gaussian_filter(ref.copy(), sig)
                hre, him = _fft(high)
                curves.append(self._curve(hre, him, crmin, crmax))
            peaks = [self._d_corr_max(c, crmin, crmax) for c in curves]
            if refine == 0:
                peaks.append(self._d_corr_max(d0, crmin, crmax))
            kc = np.array([p[0] for p in peaks], dtype=_F32)
            a = np.array([p[1] for p in peaks], dtype=_F32)
            gm = self._best_score(kc, a)
            mx = self._max_score(kc, a)
            if refine == 0:
                crmin = _F32(min(float(gm[0]), float(mx[0])) - 0.05)
                crmin = max(crmin, self.rmin)
                crmax = _F32(max(float(gm[0]), float(mx[0])) + 0.3)
                crmax = min(crmax, self.rmax)
                ind1 = _F32(min(float(gm[2]), float(mx[2])) - 1.0)
                ind2 = _F32(max(float(gm[2]), float(mx[2])))
                if ind2 < n_g:
                    lo, hi = _log(g_min), _log(g_max)
                    g_temp = math.exp(
                        lo + (hi - lo) * float(_F32(ind1 / _F32(n_g - 1)))
                    )
                    g_max = _F32(
                        math.exp(lo + (hi - lo) * float(_F32(ind2 / _F32(n_g - 1))))
                    )
                    g_min = _F32(g_temp)
                else:
                    g_max = g_min
                    g_min = _F32(2 // ref.shape[1])
            else:
                kc_gm, a_gm = gm[0], gm[1]
                kc_max, a_max = mx[0], mx[1]
        with np.errstate(divide="ignore"):
            resolution = (
                float(_F32(2) * _F32(self.pixel_size) / kc_max) if kc_max else math.inf
            )
        return DecorrResult(
            resolution=resolution,
            kc_max=float(kc_max),
            a_max=float(a_max),
            kc_gm=float(kc_gm),
            a_gm=float(a_gm),
            d0=d0,
        )


def decorrelation_analysis(
    image: np.ndarray,
    *,
    pixel_size: float = 1.0,
    n_r: int = 50,
    n_g: int = 10,
) -> DecorrResult:
    """Resolution of one image by decorrelation analysis (as NanoPyx 2.1.5).

    Parameters
    ----------
    image : (H, W) array-like
        Any real dtype (cast to float32), finite, each side >= 41 px (NanoPyx's
        20-px edge apodisation needs room; smaller images are refused).
    pixel_size : float > 0
        Pixel size; the resolution comes in its unit (1: pixels).
    n_r : int >= 2
        Number of low-pass radii sampled in [0, 1] (NanoPyx default 50).
    n_g : int >= 2
        Number of high-pass filters per refinement step (NanoPyx default 10).

    Returns
    -------
    DecorrResult
        ``resolution = 2 * pixel_size / kc_max``.
    """
    img = np.asarray(image, dtype=_F32)
    if img.ndim != 2:
        raise ValueError(
            f"decorrelation_analysis needs a 2-D image, got shape {img.shape}"
        )
    if min(img.shape) <= 2 * _APODIZE_OFFSET:
        raise ValueError(
            f"decorrelation_analysis needs each side > {2 * _APODIZE_OFFSET} px "
            f"(20-px edge apodisation), got {img.shape}"
        )
    if not np.isfinite(img).all():
        raise ValueError(
            "decorrelation_analysis: image must be finite (found NaN or inf)"
        )
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be > 0, got {pixel_size!r}")
    if int(n_r) < 2 or int(n_g) < 2:
        raise ValueError(f"n_r and n_g must be >= 2, got n_r={n_r}, n_g={n_g}")
    return _Analysis(int(n_r), int(n_g), float(pixel_size)).run(img)
