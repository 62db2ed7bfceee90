"""Host-side preparation shared by the compiled ``rgc`` implementations.

Everything here is small (input-sized or window-sized) and computed in numpy with
exactly the reference's arithmetic, so the compiled loops only do the per-output
pixel work:

- unit gradients ``gxn, gyn`` (2H+1, 2W+1) float32: ``g / sqrt(gx^2 + gy^2)`` in
  float32, 0 where the norm is 0 (as the reference);
- the window offsets ``offs`` (n, 2) int32 ``(j, i)`` in the reference's row-major
  order and the table ``table`` (n, M, M, 4) float32 ``(w, ux, uy, 0)`` per (row
  phase, column phase) from :func:`livesr.kernels.rgc.offset_tables`.

Per output pixel ``(y, x)`` and offset ``(j, i)`` the half-pixel sample index is
``t = (2y + 1) // M + j``; the sample is kept when ``0 < t <= 2(H M - 1)`` and reads
row ``min(t, 2H)`` (columns alike).  Kept samples add ``w`` to ``Wsum`` and, when
``g . u < 0``, ``(1 - |gy ux - gx uy|) w`` to RGC, both in float32, in offset order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livesr.kernels._params import EsrrfParams
from livesr.kernels.rgc._numpy import offset_tables


@dataclass(frozen=True)
class RgcInputs:
    """Host arrays and constants of one RGC call (see the module docs)."""

    gxn: np.ndarray
    gyn: np.ndarray
    offs: np.ndarray
    table: np.ndarray
    intensity: np.ndarray
    h: int
    w: int
    m: int
    margin: int
    weighted: bool
    apply_pow: bool
    sensitivity: float


def window(params: EsrrfParams) -> tuple[np.ndarray, np.ndarray]:
    """``offs`` (n, 2) int32 and ``table`` (n, M, M, 4) float32 of ``params``."""
    m = params.magnification
    entries = offset_tables(params)
    offs = np.array([(j, i) for j, i, *_ in entries], dtype=np.int32).reshape(-1, 2)
    table = np.zeros((len(entries), m, m, 4), dtype=np.float32)
    for n, (_, _, weight, ux, uy) in enumerate(entries):
        table[n, :, :, 0] = weight.reshape(m, m)
        table[n, :, :, 1] = ux.reshape(m, m)
        table[n, :, :, 2] = uy.reshape(m, m)
    return offs, table


def prepare(
    gx2: np.ndarray, gy2: np.ndarray, intensity: np.ndarray | None, params: EsrrfParams
) -> RgcInputs:
    """Check shapes and build the :class:`RgcInputs` of one call."""
    h2, w2 = gx2.shape
    if gy2.shape != gx2.shape or h2 % 2 != 1 or w2 % 2 != 1:
        raise ValueError(
            "gx2 and gy2 must both have shape (2H+1, 2W+1), "
            f"got {gx2.shape} and {gy2.shape}"
        )
    h, w = (h2 - 1) // 2, (w2 - 1) // 2
    m = params.magnification
    weighted = bool(params.intensity_weighting)
    if weighted:
        if intensity is None or intensity.shape != (h * m, w * m):
            got = None if intensity is None else intensity.shape
            raise ValueError(
                f"intensity must have shape {(h * m, w * m)} when "
                f"intensity_weighting=True, got {got}"
            )
        inten = np.ascontiguousarray(intensity, dtype=np.float32)
    else:
        inten = np.zeros((1, 1), dtype=np.float32)
    gx = np.asarray(gx2, dtype=np.float32)
    gy = np.asarray(gy2, dtype=np.float32)
    norm = np.sqrt(gx * gx + gy * gy)
    gxn = np.zeros((h2, w2), dtype=np.float32)
    gyn = np.zeros((h2, w2), dtype=np.float32)
    np.divide(gx, norm, out=gxn, where=norm > 0)
    np.divide(gy, norm, out=gyn, where=norm > 0)
    offs, table = window(params)
    return RgcInputs(
        gxn,
        gyn,
        offs,
        table,
        inten,
        h,
        w,
        m,
        params.margin,
        weighted,
        params.sensitivity > 1,
        float(np.float32(params.sensitivity)),
    )
