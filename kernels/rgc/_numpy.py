"""Radial gradient convergence (RGC) in numpy: the reference (oracle) implementation.

Exactly NanoPyx 2.1.5's ``RadialGradientConvergence`` (ESRRF.md section 2.1,
step 4), vectorised over output pixels.  For an output pixel ``(yM, xM)`` with
centre ``(yc, xc) = ((yM + 0.5)/M, (xM + 0.5)/M)`` (input pixels, corner
convention), the samples sit on the half-pixel grid ``v = n / 2`` with
``n = int(2 c) + offset = (2 k + 1) // M + offset``, ``offset`` in
``[-int(2R), int(2R + 1))``.  Hence ``v - c`` (and the distance weight and the
direction of the sample) depend only on the output pixel's phase ``k mod M`` and
the offset: they are tabulated once per (phase, offset), laid out along whole
output rows and broadcast over an ``(H, M, W*M)`` view of the output; the only
loop in Python is over the ``<= (2 int(2R) + 1)^2`` window offsets.

Per kept sample (``0 < v <= H*M - 1`` per axis -- NanoPyx compares input-unit
positions to magnified sizes -- and ``0 < d <= 2 sigma + 1``):

- ``w = (d exp(-d^2 / (2 sigma^2)))^4``, ``sigma = R / 2.355``; ``Wsum += w``;
- if the gradient points towards the centre (``g . (v - c) < 0``):
  ``RGC += w (1 - |g x (v - c)| / (|g| d))``.

``RGC / Wsum`` (0 if ``Wsum == 0``), then ``RGC ** S`` only when ``S > 1``,
negative values to 0, times the magnified intensity when intensity weighting is
on.  Output pixels closer than ``margin = int(R * M)`` to the border are 0.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from livesr.kernels._params import EsrrfParams

__all__ = ["offset_tables", "radial_gradient_convergence", "window_tables"]


def window_tables(params: EsrrfParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-axis sample geometry of the RGC window.

    Returns
    -------
    offsets : (K,) int64
        Half-pixel window offsets ``-int(2R) .. int(2R + 1) - 1``.
    base : (M,) int64
        ``int(2 c) - 2 q`` for each phase ``p`` of an output pixel ``k = q M + p``,
        i.e. ``(2p + 1) // M``.
    delta : (M, K) float64
        ``v - c`` (input pixels) for phase ``p`` and offset index ``o``.
    """
    m = params.magnification
    start, stop = params.window
    offsets = np.arange(start, stop, dtype=np.int64)
    phase = np.arange(m, dtype=np.int64)
    base = (2 * phase + 1) // m
    delta = (base[:, None] + offsets[None, :]) / 2.0 - ((phase + 0.5) / m)[:, None]
    return offsets, base, delta


@lru_cache(maxsize=64)
def offset_tables(
    params: EsrrfParams,
) -> tuple[tuple[int, int, np.ndarray, np.ndarray, np.ndarray], ...]:
    """Distance weight and unit direction of every window offset, per phase.

    Returns
    -------
    tuple of (j, i, weight, ux, uy)
        One entry per window offset ``(j, i)`` (row, column; row-major order as
        NanoPyx) that keeps at least one sample; ``weight`` (float32, NanoPyx's
        ``(d exp(-d^2 / 2 sigma^2))^4`` computed in float64, 0 where the sample is
        cut: ``d == 0`` or ``d > 2 sigma + 1``), ``ux``, ``uy`` (float32 unit
        vector of ``v - c``) are ``(1, M, 1, M)`` arrays indexed by (row phase,
        column phase), ready to broadcast over a ``(H, M, W, M)`` view.
    """
    offsets, _, delta = window_tables(params)
    tss = params.two_sigma_squared
    tso = params.cutoff
    out: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
    for oj, j in enumerate(offsets):
        dy = delta[:, oj][:, None]  # (M, 1) per row phase
        for oi, i in enumerate(offsets):
            dx = delta[:, oi][None, :]  # (1, M) per column phase
            d = np.sqrt(dy**2 + dx**2)
            keep = (d > 0) & (d <= tso)
            if not keep.any():
                continue
            dsafe = np.where(keep, d, 1.0)
            weight = np.where(keep, (dsafe * np.exp(-(dsafe**2) / tss)) ** 4, 0.0)
            ux = np.where(keep, dx / dsafe, 0.0)
            uy = np.where(keep, dy / dsafe, 0.0)
            w4, ux4, uy4 = (
                a.astype(np.float32)[None, :, None, :] for a in (weight, ux, uy)
            )
            for a in (w4, ux4, uy4):
                a.setflags(write=False)
            out.append((int(j), int(i), w4, ux4, uy4))
    return tuple(out)


def _sample_index(k: np.ndarray, offset: int, m: int, n: int) -> np.ndarray:
    """Half-pixel index read by output rows / columns ``k`` at window ``offset``.

    ``t = (2k + 1) // M + offset``; NanoPyx keeps the sample when ``0 < t/2 <= n*M
    - 1`` and reads index ``min(t, 2n)`` (its clamp); rejected samples are sent to
    index ``2n + 1``, a row / column of zero gradient appended by the caller, which
    never points inwards (their weight is left out of ``Wsum`` separately).
    """
    t = (2 * k + 1) // m + offset
    ok = (t > 0) & (t <= 2 * (n * m - 1))
    return np.where(ok, np.minimum(t, 2 * n), 2 * n + 1)


@lru_cache(maxsize=4)
def _row_tables(
    params: EsrrfParams, w: int
) -> tuple[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]:
    """:func:`offset_tables` laid out along whole output rows of a W-column frame.

    Per offset ``(j, i)``: ``j``; ``weight``, ``ux``, ``uy`` as ``(1, M, W*M)``
    float32 (column phase tiled ``W`` times); ``ix`` ``(W*M,)`` the half-pixel
    column index each output column reads (:func:`_sample_index`).
    """
    m = params.magnification
    kx = np.arange(w * m)
    out: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for j, i, weight, ux, uy in offset_tables(params):
        tw, tux, tuy = (
            np.tile(a.reshape(m, m), (1, w))[None] for a in (weight, ux, uy)
        )
        ix = _sample_index(kx, i, m, w)
        for a in (tw, tux, tuy, ix):
            a.setflags(write=False)
        out.append((j, tw, tux, tuy, ix))
    return tuple(out)


@lru_cache(maxsize=2)
def _weight_sum(params: EsrrfParams, h: int, w: int) -> np.ndarray:
    """``Wsum`` of every output pixel, ``(H, M, W*M)`` float32.

    It does not depend on the gradients: the sum of the weights of the kept
    samples, accumulated in float32 in NanoPyx's (j, i) order. Cached for the two
    most recent (params, frame shape) pairs: one output-sized map each.
    """
    m = params.magnification
    ky = np.arange(h * m)
    wsum = np.zeros((h, m, w * m), dtype=np.float32)
    for j, weight, _, _, ix in _row_tables(params, w):
        ok_y = (_sample_index(ky, j, m, h) <= 2 * h).astype(np.float32)
        ok_x = (ix <= 2 * w).astype(np.float32)
        wsum += (weight * ok_x) * ok_y.reshape(h, m, 1)
    wsum.setflags(write=False)
    return wsum


def radial_gradient_convergence(
    gx2: np.ndarray,
    gy2: np.ndarray,
    intensity: np.ndarray | None,
    params: EsrrfParams,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """RGC map of one frame.

    Parameters
    ----------
    gx2, gy2 : (2H + 1, 2W + 1) float32
        Column (x) and row (y) gradients on the half-pixel grid, as returned by
        :func:`livesr.kernels.catmull_rom.upsample_gradient`: ``g2[a, b]`` is the
        gradient at input position ``(a/2, b/2)`` (corner convention); the last row
        and column hold the value NanoPyx reads for every position beyond the image
        (its clamped index).
    intensity : (H*M, W*M) float32 or None
        Magnified intensity; required when ``params.intensity_weighting``.
    params : EsrrfParams
    out : (H*M, W*M) float32, optional
        Written in place and returned.

    Returns
    -------
    (H*M, W*M) float32
        RGC (times intensity when weighting); zero in the ``params.margin`` border.
    """
    m = params.magnification
    h2, w2 = gx2.shape
    if gy2.shape != gx2.shape or h2 % 2 != 1 or w2 % 2 != 1:
        raise ValueError(
            "gx2 and gy2 must both have shape (2H+1, 2W+1), "
            f"got {gx2.shape} and {gy2.shape}"
        )
    h, w = (h2 - 1) // 2, (w2 - 1) // 2
    hm, wm = h * m, w * m
    if params.intensity_weighting:
        if intensity is None or intensity.shape != (hm, wm):
            got = None if intensity is None else intensity.shape
            raise ValueError(
                f"intensity must have shape {(hm, wm)} when "
                f"intensity_weighting=True, got {got}"
            )

    gxn, gyn = _unit_gradients(gx2, gy2)
    rgc = _window_sum(gxn, gyn, params, h, w)
    result = _finish(rgc, intensity, params, h, w)
    if out is None:
        return result
    out[...] = result
    return out


def _unit_gradients(gx2: np.ndarray, gy2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gradient directions (unit vectors, zero where the gradient is zero) on
    the half-pixel grid, plus one extra row and column of zeros.

    Only the gradient's direction matters: normalise once on the half-pixel grid,
    then Dk = 1 - |g x u| / |g| = 1 - |g_hat x u| with u the unit sample direction,
    and "points inwards" is g_hat . u < 0 (zero gradients never point inwards).
    The extra row and column of zeros receive the rejected samples.
    """
    h2, w2 = gx2.shape
    gx2 = np.asarray(gx2, dtype=np.float32)
    gy2 = np.asarray(gy2, dtype=np.float32)
    norm = np.sqrt(gx2 * gx2 + gy2 * gy2)
    gxn = np.zeros((h2 + 1, w2 + 1), dtype=np.float32)
    gyn = np.zeros((h2 + 1, w2 + 1), dtype=np.float32)
    np.divide(gx2, norm, out=gxn[:h2, :w2], where=norm > 0)
    np.divide(gy2, norm, out=gyn[:h2, :w2], where=norm > 0)
    return gxn, gyn


def _window_sum(
    gxn: np.ndarray, gyn: np.ndarray, params: EsrrfParams, h: int, w: int
) -> np.ndarray:
    """(H, M, W*M) weighted sum over the window of ``1 - |g_hat x u|`` where the
    gradient points inwards.

    Works on an (H, M, W*M) view: row phase on axis 1, whole output rows on axis 2
    (numpy broadcasts fast over long inner axes, slowly over an inner axis of M).
    Scratch buffers are reused across offsets (no per-offset allocation).
    """
    m = params.magnification
    hm, wm = h * m, w * m
    shape3 = (h, m, wm)
    rgc = np.zeros(shape3, dtype=np.float32)
    gx = np.empty((hm, wm), dtype=np.float32)
    gy = np.empty((hm, wm), dtype=np.float32)
    gx3, gy3 = gx.reshape(shape3), gy.reshape(shape3)
    t1 = np.empty(shape3, dtype=np.float32)
    t2 = np.empty(shape3, dtype=np.float32)
    inward = np.empty(shape3, dtype=bool)
    ky = np.arange(hm)
    rows_j = None
    for j, weight, ux, uy, ix in _row_tables(params, w):  # (j, i) row-major order
        if rows_j != j:  # new window row: gather the gradient rows once
            rows_j = j
            iy = _sample_index(ky, j, m, h)
            gx_rows = gxn[iy]
            gy_rows = gyn[iy]
        np.take(gx_rows, ix, axis=1, out=gx)
        np.take(gy_rows, ix, axis=1, out=gy)
        # inward: g_hat . u < 0
        np.multiply(gx3, ux, out=t1)
        np.multiply(gy3, uy, out=t2)
        np.add(t1, t2, out=t1)
        np.less(t1, 0, out=inward)
        # RGC += w * (1 - |g_hat x u|) where inward
        np.multiply(gy3, ux, out=t1)
        np.multiply(gx3, uy, out=t2)
        np.subtract(t1, t2, out=t1)
        np.abs(t1, out=t1)
        np.subtract(1, t1, out=t1)
        np.multiply(t1, weight, out=t1)
        np.add(rgc, t1, out=rgc, where=inward)
    return rgc


def _finish(
    rgc: np.ndarray,
    intensity: np.ndarray | None,
    params: EsrrfParams,
    h: int,
    w: int,
) -> np.ndarray:
    """(H*M, W*M) RGC from the window sum: divided by the weight sum, raised to
    the sensitivity, times the intensity, zero in the margin."""
    hm, wm = h * params.magnification, w * params.magnification
    wsum = _weight_sum(params, h, w)
    np.divide(rgc, wsum, out=rgc, where=wsum > 0)
    rgc[wsum <= 0] = 0
    result = rgc.reshape(hm, wm)
    if params.sensitivity > 1:
        np.power(result, np.float32(params.sensitivity), out=result, where=result >= 0)
    result[result < 0] = 0
    if params.intensity_weighting:
        assert intensity is not None
        result *= intensity
    margin = params.margin
    result[:margin, :] = 0
    result[hm - margin :, :] = 0
    result[:, :margin] = 0
    result[:, wm - margin :] = 0
    return result


def _register() -> None:
    from livesr.engine import implementation

    @implementation("rgc", backend="numpy")
    def rgc_numpy(
        gx2: np.ndarray,
        gy2: np.ndarray,
        intensity: np.ndarray | None,
        params: EsrrfParams,
    ) -> np.ndarray:
        """Engine wrapper of :func:`radial_gradient_convergence` (the reference)."""
        return radial_gradient_convergence(gx2, gy2, intensity, params)


_register()
