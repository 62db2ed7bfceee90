"""Fused per-frame eSRRF map with numba: one parallel pass over output rows.

Per frame: Roberts-cross gradients, their 2× Catmull-Rom upsampling and
normalisation (numpy, ``_weights.normalised_gradients``, ~4·H·W values), then
one ``prange`` loop over output rows that computes, per output pixel, the
Catmull-Rom magnified intensity (row pass cached per output row), the RGC sum
over the precomputed ``(w, ux, uy)`` window table (no ``exp``/``sqrt`` per
sample), the sensitivity exponent and the intensity weighting.  RGC and weight
sums are accumulated in float32 in row-major ``(j, i)`` order, as NanoPyx does.
No array the size of the magnified image is allocated besides the output.

Compiled on first call (``cache=True`` keeps the machine code on disk).
"""

from __future__ import annotations

import numba
import numpy as np

from livesr.kernels.esrrf_map._weights import (
    check_inputs,
    frame_plan,
    normalised_gradients,
)

__all__ = ["esrrf_map_numba"]


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False)
def _fused(  # noqa: PLR0913
    frame, grad, table,
    r_idx, r_wt, r_g, r_lo, r_hi,
    c_idx, c_wt, c_g, c_lo, c_hi,
    magnification, margin, sensitivity, weighted, out,
):
    h_m, w_m = out.shape
    w_in = frame.shape[1]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    apply_pow = np.float32(sensitivity) > one
    for y in numba.prange(margin, h_m - margin):
        line = np.empty(w_in, dtype=np.float64)
        ra0 = r_idx[y, 0]
        ra1 = r_idx[y, 1]
        ra2 = r_idx[y, 2]
        ra3 = r_idx[y, 3]
        rw0 = r_wt[y, 0]
        rw1 = r_wt[y, 1]
        rw2 = r_wt[y, 2]
        rw3 = r_wt[y, 3]
        for c in range(w_in):
            p = 0.0
            p += frame[ra0, c] * rw0
            p += frame[ra1, c] * rw1
            p += frame[ra2, c] * rw2
            p += frame[ra3, c] * rw3
            line[c] = p
        py = y % magnification
        jlo = r_lo[y]
        jhi = r_hi[y]
        for x in range(margin, w_m - margin):
            px = x % magnification
            tab = table[py, px]
            ilo = c_lo[x]
            ihi = c_hi[x]
            rgc = zero
            wsum = zero
            for j in range(jlo, jhi):
                grow = grad[r_g[y, j]]
                trow = tab[j]
                for i in range(ilo, ihi):
                    g = grow[c_g[x, i]]
                    t = trow[i]
                    w = t[0]
                    wsum += w
                    nx = g[0]
                    ny = g[1]
                    if nx * t[1] + ny * t[2] < zero:
                        rgc += (one - abs(ny * t[1] - nx * t[2])) * w
            if wsum > zero:
                rgc = rgc / wsum
            else:
                rgc = zero
            if rgc < zero:
                rgc = zero
            elif apply_pow:
                rgc = np.float32(float(rgc) ** sensitivity)
            if weighted:
                q = 0.0
                q += line[c_idx[x, 0]] * c_wt[x, 0]
                q += line[c_idx[x, 1]] * c_wt[x, 1]
                q += line[c_idx[x, 2]] * c_wt[x, 2]
                q += line[c_idx[x, 3]] * c_wt[x, 3]
                out[y, x] = rgc * np.float32(q)
            else:
                out[y, x] = rgc


def esrrf_map_numba(
    frame: np.ndarray,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Per-frame eSRRF map (RGC × magnified intensity), numba backend.

    Parameters
    ----------
    frame : numpy.ndarray
        ``(H, W)`` float32, C-contiguous.
    magnification : int
        Magnification ``M``.
    radius : float
        RGC radius ``R`` (input px).
    sensitivity : float
        Exponent applied to RGC when ``> 1``.
    intensity_weighting : bool
        Multiply RGC by the Catmull-Rom magnified frame.
    shift : tuple of float
        ``(dy, dx)`` sample displacement in input px added to every sample
        coordinate; ``(0, 0)`` equals NanoPyx's ``eSRRF_ST``.

    Returns
    -------
    numpy.ndarray
        ``(H·M, W·M)`` float32; the outer ``int(R·M)`` pixels are 0.
    """
    check_inputs(frame, magnification, radius)
    m = int(magnification)
    plan = frame_plan(frame.shape, m, radius, shift)
    grad = normalised_gradients(frame, m, shift)
    h, w = frame.shape
    out = np.zeros((h * m, w * m), dtype=np.float32)
    rp, cp = plan.rows, plan.cols
    _fused(
        frame, grad, plan.table,
        rp.cr_idx, rp.cr_wt, rp.g_idx, rp.lo, rp.hi,
        cp.cr_idx, cp.cr_wt, cp.g_idx, cp.lo, cp.hi,
        m, plan.consts.margin, float(sensitivity), bool(intensity_weighting), out,
    )
    return out
