"""Radial gradient convergence (RGC) in numpy: the reference (oracle) implementation.

Exactly NanoPyx 2.1.5's ``RadialGradientConvergence`` (ESRRF.md section 2.1,
step 4), vectorised over output pixels.  For an output pixel ``(yM, xM)`` with
centre ``(yc, xc) = ((yM + 0.5)/M, (xM + 0.5)/M)`` (input pixels, corner
convention), the samples sit on the half-pixel grid ``v = n / 2`` with
``n = int(2 c) + offset = (2 k + 1) // M + offset``, ``offset`` in
``[-int(2R), int(2R + 1))``.  Hence ``v - c`` (and the distance weight and the
direction of the sample) depend only on the output pixel's phase ``k mod M`` and
the offset: they are tabulated once per (phase, offset) and broadcast over a
``(H, M, W, M)`` view of the output, and the only loop in Python is over the
``<= (2 int(2R) + 1)^2`` window offsets.

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

import numpy as np

from livesr.kernels._params import EsrrfParams

__all__ = ["radial_gradient_convergence", "window_tables"]


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
            f"gx2 and gy2 must both have shape (2H+1, 2W+1), got {gx2.shape} and {gy2.shape}"
        )
    h, w = (h2 - 1) // 2, (w2 - 1) // 2
    hm, wm = h * m, w * m
    if params.intensity_weighting:
        if intensity is None or intensity.shape != (hm, wm):
            got = None if intensity is None else intensity.shape
            raise ValueError(
                f"intensity must have shape {(hm, wm)} when intensity_weighting=True, got {got}"
            )

    offsets, _, delta = window_tables(params)
    tss = params.two_sigma_squared
    tso = params.cutoff

    # Absolute half-pixel index n = (2k + 1) // M + offset per output row / column.
    ky = (2 * np.arange(hm) + 1) // m
    kx = (2 * np.arange(wm) + 1) // m

    rgc = np.zeros((h, m, w, m), dtype=np.float32)
    wsum = np.zeros((h, m, w, m), dtype=np.float32)
    gx2 = np.asarray(gx2, dtype=np.float32)
    gy2 = np.asarray(gy2, dtype=np.float32)

    for oj, j in enumerate(offsets):  # rows (y) outer, as NanoPyx
        ny = ky + j
        ok_y = (ny > 0) & (ny <= 2 * (hm - 1))
        iy = np.clip(ny, 0, 2 * h)
        gx_rows = gx2[iy]
        gy_rows = gy2[iy]
        dy = delta[:, oj]  # (M,) per row phase
        for oi, i in enumerate(offsets):
            nx = kx + i
            ok_x = (nx > 0) & (nx <= 2 * (wm - 1))
            ix = np.clip(nx, 0, 2 * w)
            dx = delta[:, oi]  # (M,) per column phase

            d = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)  # (M, M)
            keep = (d > 0) & (d <= tso)
            if not keep.any():
                continue
            dsafe = np.where(keep, d, 1.0)
            weight = np.where(keep, (dsafe * np.exp(-(dsafe**2) / tss)) ** 4, 0.0)
            weight = weight.astype(np.float32)
            ux = np.where(keep, dx[None, :] / dsafe, 0.0).astype(np.float32)
            uy = np.where(keep, dy[:, None] / dsafe, 0.0).astype(np.float32)

            valid = ok_y.reshape(h, m, 1, 1) & ok_x.reshape(1, 1, w, m)
            wmap = weight[None, :, None, :] * valid  # (H, M, W, M) float32
            wsum += wmap

            gx = gx_rows[:, ix].reshape(h, m, w, m)
            gy = gy_rows[:, ix].reshape(h, m, w, m)
            uxb = ux[None, :, None, :]
            uyb = uy[None, :, None, :]
            inward = (gx * uxb + gy * uyb) < 0
            cross = np.abs(gy * uxb - gx * uyb)
            norm = np.sqrt(gx * gx + gy * gy)
            ratio = np.divide(cross, norm, out=np.ones_like(cross), where=inward)
            rgc += (1 - ratio) * wmap * inward

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
    if out is None:
        return result
    out[...] = result
    return out
