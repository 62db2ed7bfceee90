"""Shared precomputation for the fused per-frame eSRRF map (all backends).

The per-frame eSRRF map of NanoPyx 2.1.5 (``/work/shared/ESRRF.md`` §2.1) is, for
each output pixel ``(yM, xM)`` of an ``(H·M, W·M)`` image, a radial-gradient
convergence (RGC) over a ``n × n`` window of half-pixel samples, times the
Catmull-Rom magnified intensity.  Everything that does not depend on the frame
is computed here once per ``(M, R)`` or per ``(H, W, M, R, shift)``:

* :func:`rgc_constants` -- NanoPyx's float32 ``sigma``, ``tSS``, ``tSO``, window
  offsets ``[start, start + n)`` and zero margin ``int(R·M)``.
* :func:`window_table` -- ``(M, M, n, n, 3)`` float32 table of
  ``(w, dx/d, dy/d)`` per sub-pixel phase ``(yM mod M, xM mod M)`` and window
  offset ``(j, i)``.  The weight ``w = (d·exp(-d²/tSS))⁴`` and the unit vector
  depend only on those four indices (the "precomputed weights"); samples with
  ``d == 0`` or ``d > tSO`` get ``w = 0`` and a zero unit vector, which makes
  them contribute exactly nothing.
* :func:`axis_plan` -- per output row (or column): the Catmull-Rom taps of the
  magnified intensity, the index of each window sample in the 2×-upsampled
  gradient grid (with NanoPyx's clamped border read mapped to the extra last
  index), and the range of window offsets NanoPyx keeps (``0 < v <= H·M - 1``).
* :func:`normalised_gradients` -- the frame's Roberts-cross gradients
  upsampled ×2 with Catmull-Rom on the half-pixel grid plus one extra
  row/column for the clamped border read, normalised to unit length:
  ``(2H + 1, 2W + 1, 2)`` float32 ``(gx/|g|, gy/|g|)`` (zero where ``g = 0``).
  With unit gradients ``n`` and unit offsets ``u``, NanoPyx's
  ``Dk = 1 - |G × r| / (|G| d)`` is ``1 - |n × u|`` and its inward test
  ``G·r < 0`` is ``n·u < 0``: no square root or exponential per sample.

Arithmetic follows NanoPyx where it matters for parity: Catmull-Rom sums in
float64 in NanoPyx's order, cast to float32; the window distances in float32.
The small remaining differences (float32 rounding of ``vx - xc`` at large
coordinates) are ~1e-6 relative.

Shift: ``shift = (dy, dx)`` input pixels is added (in float64) to every
Catmull-Rom sample coordinate (of the intensity and of the gradients), so the map
is computed on the frame translated by ``-shift``; ``(0, 0)`` reproduces NanoPyx.
The zero margin and sample validity stay tied to the output grid.  Only NanoPyx's
geometry (``EsrrfParams.geometry == "nanopyx"``) is implemented.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "AxisPlan",
    "RgcConstants",
    "axis_plan",
    "catmull_rom_taps",
    "frame_plan",
    "grid_taps",
    "normalised_gradients",
    "parity_planes",
    "phase_runs",
    "rgc_constants",
    "roberts_cross",
    "window_table",
]

_F32 = np.float32


class RgcConstants(NamedTuple):
    """NanoPyx's RGC constants for one radius and magnification.

    Attributes
    ----------
    sigma, tss, tso : float
        float32 values of ``R / 2.355``, ``2 σ²`` and ``2 σ + 1`` (input px).
    start : int
        First window offset, ``-int(2R)`` (half-pixel units).
    n : int
        Window width in samples, ``int(2R + 1) - start``.
    margin : int
        Zero margin of the output, ``int(R · M)`` output px.
    """

    sigma: float
    tss: float
    tso: float
    start: int
    n: int
    margin: int


def rgc_constants(magnification: int, radius: float) -> RgcConstants:
    """Compute NanoPyx's RGC constants (float32 rounding reproduced).

    Parameters
    ----------
    magnification : int
        Magnification ``M >= 1``.
    radius : float
        Radius ``R > 0`` in input pixels.

    Returns
    -------
    RgcConstants
    """
    fwhm = _F32(radius)
    sigma = _F32(radius / 2.355)
    tss = _F32(2.0 * float(sigma) * float(sigma))
    tso = _F32(2.0 * float(sigma) + 1.0)
    two = _F32(2.0)
    start = -int(two * fwhm)
    stop = int(two * fwhm + _F32(1.0))
    margin = int(float(fwhm) * magnification)
    return RgcConstants(
        float(sigma), float(tss), float(tso), start, stop - start, margin
    )


def _phase_offsets(magnification: int, start: int, n: int) -> np.ndarray:
    """Return float32 ``v - c`` per phase and offset, as NanoPyx computes at q = 0.

    Returns
    -------
    numpy.ndarray
        ``(M, n)`` float32: for phase ``p`` (centre ``c = (p + 0.5)/M``) and
        window index ``k``, ``(int(2c) + start + k)/2 - c``.
    """
    m = magnification
    out = np.empty((m, n), dtype=_F32)
    for p in range(m):
        c = _F32((p + 0.5) / m)
        base = int(_F32(2.0) * c)
        v = (np.arange(n, dtype=np.int64) + base + start).astype(_F32) / _F32(2.0)
        out[p] = v - c
    return out


@functools.lru_cache(maxsize=32)
def window_table(magnification: int, radius: float) -> np.ndarray:
    """Return the per-phase window table ``(w, ux, uy)``.

    Parameters
    ----------
    magnification : int
        Magnification ``M``.
    radius : float
        Radius ``R`` (input px).

    Returns
    -------
    numpy.ndarray
        ``(M, M, n, n, 3)`` float32, read-only: ``[py, px, j, i]`` holds the
        weight ``(d·exp(-d²/tSS))⁴`` and ``dx/d, dy/d`` of the sample at
        window offset ``(j, i)`` (row, column) from an output pixel of
        sub-pixel phase ``(py, px)``; all zero when ``d == 0`` or ``d > tSO``.
    """
    k = rgc_constants(magnification, radius)
    off = _phase_offsets(magnification, k.start, k.n)  # (M, n) float32
    dy = off[:, None, :, None]  # (M, 1, n, 1)
    dx = off[None, :, None, :]  # (1, M, 1, n)
    d = np.sqrt(dx * dx + dy * dy).astype(_F32)  # float32 like NanoPyx
    keep = (d != 0) & (d <= _F32(k.tso))
    d64 = d.astype(np.float64)
    w = np.power(d64 * np.exp((-d64 * d64) / float(k.tss)), 4).astype(_F32)
    safe = np.where(keep, d, _F32(1.0))
    table = np.zeros((magnification, magnification, k.n, k.n, 3), dtype=_F32)
    table[..., 0] = np.where(keep, w, 0)
    table[..., 1] = np.where(keep, (dx.astype(np.float64) / safe), 0)
    table[..., 2] = np.where(keep, (dy.astype(np.float64) / safe), 0)
    table.flags.writeable = False
    return table


def _cubic(x: np.ndarray) -> np.ndarray:
    """Catmull-Rom kernel in float64, NanoPyx's evaluation order."""
    a = 0.5
    v = np.abs(x)
    near = ((v * v) * ((v * (-a + 2)) + (a - 3))) + 1
    far = (((((-a) * v) * v) * v) + (((5 * a) * v) * v)) - ((8 * a) * v) + (4 * a)
    return np.where(v < 1, near, np.where(v < 2, far, 0.0))


def catmull_rom_taps(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Catmull-Rom taps of NanoPyx's interpolator along one axis.

    Parameters
    ----------
    coords : numpy.ndarray
        ``(L,)`` sample coordinates, used in float64 (corner convention:
        pixel ``k`` covers ``[k, k+1)``).
    size : int
        Number of input pixels along the axis.

    Returns
    -------
    idx : numpy.ndarray
        ``(L, 4)`` int32 neighbour indices, clamped into ``[0, size)``.
    wt : numpy.ndarray
        ``(L, 4)`` float64 weights; 0 for neighbours outside the image and for
        coordinates outside ``[0, size)`` (NanoPyx returns 0 there).
    """
    r = np.asarray(coords, dtype=np.float64)
    r0 = np.floor(r - 0.5).astype(np.int64)
    nb = r0[:, None] - 1 + np.arange(4)[None, :]
    wt = _cubic(r[:, None] - (nb + 0.5))
    inside = (nb >= 0) & (nb < size)
    wt = np.where(inside, wt, 0.0)
    wt[(r < 0) | (r >= size)] = 0.0
    idx = np.clip(nb, 0, size - 1).astype(np.int32)
    return idx, np.ascontiguousarray(wt)


class AxisPlan(NamedTuple):
    """Per output row (or column) lookups for the fused kernels.

    Attributes
    ----------
    cr_idx, cr_wt : numpy.ndarray
        ``(L, 4)`` int32 / float64 Catmull-Rom taps of the magnified intensity.
    g_idx : numpy.ndarray
        ``(L, n)`` int32 index of each window sample in the gradient grid
        (``0 .. 2S``; ``2S`` is the clamped border read).
    lo, hi : numpy.ndarray
        ``(L,)`` int32: window offsets ``lo <= k < hi`` are kept.
    """

    cr_idx: np.ndarray
    cr_wt: np.ndarray
    g_idx: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


class _AxisStatic(NamedTuple):
    """The shift-independent part of :class:`AxisPlan` (see :func:`_axis_static`)."""

    g_idx: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@functools.lru_cache(maxsize=32)
def _axis_static(size: int, magnification: int, radius: float) -> _AxisStatic:
    """Window lookups along one axis; they depend on the shape, ``M`` and ``R``
    only (the shift moves the interpolation taps, not the RGC window), so a stream
    whose shift changes every frame builds them once."""
    m = magnification
    k = rgc_constants(m, radius)
    big = size * m
    out = np.arange(big, dtype=np.int64)
    centre = ((out + 0.5) / m).astype(_F32)
    base = (_F32(2.0) * centre).astype(np.int64)
    kk = base[:, None] + k.start + np.arange(k.n)[None, :]  # half-pixel index
    g_idx = np.clip(kk, 0, 2 * size).astype(np.int32)
    # NanoPyx keeps 0 < v <= size*M - 1 with v = kk / 2 (a quirk: magnified units)
    lo = np.clip(1 - (base + k.start), 0, k.n).astype(np.int32)
    hi = np.clip(2 * (big - 1) - (base + k.start) + 1, 0, k.n).astype(np.int32)
    static = _AxisStatic(g_idx, lo, hi)
    for a in static:
        a.flags.writeable = False
    return static


@functools.lru_cache(maxsize=16)
def _base_coords(size: int, magnification: int) -> np.ndarray:
    """Unshifted sample coordinate of every output row/column, float64 (read-only)."""
    out = np.arange(size * magnification, dtype=np.int64)
    c = (out.astype(_F32) / _F32(magnification)).astype(np.float64)
    c.flags.writeable = False
    return c


@functools.lru_cache(maxsize=64)
def axis_plan(size: int, magnification: int, radius: float, shift: float) -> AxisPlan:
    """Build the lookups along one axis of ``size`` input pixels.

    Only the Catmull-Rom taps depend on ``shift``; the window lookups come from a
    cache keyed by ``(size, magnification, radius)``.

    Parameters
    ----------
    size : int
        Input pixels along the axis (``H`` or ``W``).
    magnification, radius : int, float
        eSRRF parameters.
    shift : float
        Sample displacement along the axis (input px).

    Returns
    -------
    AxisPlan
        Read-only arrays.
    """
    static = _axis_static(size, magnification, float(radius))
    cr_idx, cr_wt = catmull_rom_taps(_base_coords(size, magnification) + float(shift), size)
    cr_idx.flags.writeable = False
    cr_wt.flags.writeable = False
    return AxisPlan(cr_idx, cr_wt, static.g_idx, static.lo, static.hi)


def gradient_coords(size: int, magnification: int, shift: float) -> np.ndarray:
    """Coordinates of the 2× gradient grid along one axis.

    Returns
    -------
    numpy.ndarray
        ``(2·size + 1,)`` float64: ``k/2`` for ``k < 2·size`` and NanoPyx's
        clamped border read ``float32((2·size·M - 1)/(2M))`` last, each
        ``+ shift`` (added in float64, as ``livesr.kernels.esrrf_frame`` does).
    """
    m = magnification
    c = np.arange(2 * size + 1, dtype=np.float64) / 2.0
    c[-1] = float(_F32(2 * size * m - 1) / _F32(2 * m))
    return c + float(shift)


def roberts_cross(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NanoPyx's Roberts-cross gradients at input resolution.

    Parameters
    ----------
    frame : numpy.ndarray
        ``(H, W)`` float32.

    Returns
    -------
    gx, gy : numpy.ndarray
        ``(H, W)`` float32 column (x) and row (y) gradients, NanoPyx's
        operation order (row/column 0 replicate their neighbour).
    """
    im = frame
    r0 = np.concatenate(([0], np.arange(im.shape[0] - 1)))
    c0 = np.concatenate(([0], np.arange(im.shape[1] - 1)))
    a = im[r0, :]  # I[r0, c1]
    b = im[:, c0]  # I[r1, c0]
    c = im[r0][:, c0]  # I[r0, c0]
    gx = ((a - b) + im) - c
    gy = ((b - a) + im) - c
    return gx, gy


@functools.lru_cache(maxsize=64)
def grid_taps(
    size: int, magnification: int, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    """Catmull-Rom taps of the 2× gradient grid along one axis (cached, read-only).

    Returns
    -------
    idx, wt : numpy.ndarray
        ``(2·size + 1, 4)`` int32 / float64, see :func:`catmull_rom_taps` and
        :func:`gradient_coords`.
    """
    idx, wt = catmull_rom_taps(gradient_coords(size, magnification, shift), size)
    idx.flags.writeable = False
    wt.flags.writeable = False
    return idx, wt


def normalised_gradients(
    frame: np.ndarray, magnification: int, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Unit gradients of the frame on the 2× half-pixel grid (plus border read).

    Parameters
    ----------
    frame : numpy.ndarray
        ``(H, W)`` float32.
    magnification : int
        Magnification ``M`` (only the clamped border coordinate depends on it).
    shift : tuple of float
        ``(dy, dx)`` added to the sample coordinates (input px).

    Returns
    -------
    numpy.ndarray
        ``(2H + 1, 2W + 1, 2)`` float32 ``(gx, gy) / |g|`` (0 where ``g = 0``):
        element ``[k, l]`` is NanoPyx's ×2M-magnified gradient at index
        ``(k·M, l·M)``, the last row/column its clamped index ``2HM - 1``.
    """
    h, w = frame.shape
    ri, rw = grid_taps(h, magnification, float(shift[0]))
    ci, cw = grid_taps(w, magnification, float(shift[1]))
    out = np.empty((2 * h + 1, 2 * w + 1, 2), dtype=np.float64)
    for ch, g in enumerate(roberts_cross(frame)):
        g64 = g.astype(np.float64)
        t = g64[ri[:, 0]] * rw[:, 0:1]
        for a in range(1, 4):
            t = t + g64[ri[:, a]] * rw[:, a : a + 1]
        u = t[:, ci[:, 0]] * cw[:, 0]
        for b in range(1, 4):
            u = u + t[:, ci[:, b]] * cw[:, b]
        out[..., ch] = u.astype(_F32)
    norm = np.sqrt(out[..., 0] ** 2 + out[..., 1] ** 2)
    inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    out *= inv[..., None]
    return out.astype(_F32)


class PhaseRuns(NamedTuple):
    """Output columns where the window is complete and unclamped, per phase.

    For output column ``x = q·M + p`` with ``qa[p] <= q < qb[p]``, every window
    offset ``i`` is kept and reads gradient column ``2q + offset[p, i]``, so a
    kernel can vectorise over ``q`` with the table entry fixed.  Columns in
    ``[margin, W·M - margin)`` outside those runs go through the general path.

    Attributes
    ----------
    offset : numpy.ndarray
        ``(M, n)`` int32.
    qa, qb : numpy.ndarray
        ``(M,)`` int32 half-open ``q`` range (empty when ``qa >= qb``).
    """

    offset: np.ndarray
    qa: np.ndarray
    qb: np.ndarray


def phase_runs(
    size: int, magnification: int, radius: float, shift: float = 0.0
) -> PhaseRuns:
    """Find the vectorisable interior per phase along one axis.

    Parameters
    ----------
    size, magnification, radius, shift
        As for :func:`axis_plan`; the runs do not depend on ``shift`` (the window
        lookups do not), which is accepted for symmetry and ignored.

    Returns
    -------
    PhaseRuns
        Read-only arrays (cached per ``(size, magnification, radius)``).
    """
    return _phase_runs(size, magnification, float(radius))


@functools.lru_cache(maxsize=32)
def _phase_runs(size: int, magnification: int, radius: float) -> PhaseRuns:
    m = magnification
    k = rgc_constants(m, radius)
    plan = _axis_static(size, m, radius)
    offset = np.empty((m, k.n), dtype=np.int32)
    qa = np.zeros(m, dtype=np.int32)
    qb = np.zeros(m, dtype=np.int32)
    q = np.arange(size)
    for p in range(m):
        base0 = int(_F32(2.0) * _F32((p + 0.5) / m))
        offset[p] = base0 + k.start + np.arange(k.n)
        x = q * m + p
        ok = (x >= k.margin) & (x < size * m - k.margin)
        ok &= (plan.lo[x] == 0) & (plan.hi[x] == k.n)
        ok &= np.all(plan.g_idx[x] == 2 * q[:, None] + offset[p][None, :], axis=1)
        if ok.any():
            first = int(np.argmax(ok))
            stop = first
            while stop < size and ok[stop]:
                stop += 1
            qa[p], qb[p] = first, stop
    runs = PhaseRuns(offset, qa, qb)
    for a in runs:
        a.flags.writeable = False
    return runs


def parity_planes(grad: np.ndarray) -> np.ndarray:
    """Split the gradient grid by column parity for contiguous strided reads.

    Parameters
    ----------
    grad : numpy.ndarray
        ``(2H + 1, 2W + 1, 2)`` float32 from :func:`normalised_gradients`.

    Returns
    -------
    numpy.ndarray
        ``(2, 2, 2H + 1, W + 1)`` float32 ``[parity, component, row, q]`` with
        ``planes[c % 2, :, r, c // 2] == grad[r, c]`` (odd plane zero-padded).
    """
    rows, cols = grad.shape[:2]
    wq = (cols + 1) // 2
    planes = np.zeros((2, 2, rows, wq), dtype=np.float32)
    planes[0] = np.moveaxis(grad[:, 0::2, :], 2, 0)
    planes[1, :, :, : cols // 2] = np.moveaxis(grad[:, 1::2, :], 2, 0)
    return planes


class FramePlan(NamedTuple):
    """Everything a fused kernel needs besides the frame (see module doc)."""

    table: np.ndarray
    rows: AxisPlan
    cols: AxisPlan
    consts: RgcConstants
    runs: PhaseRuns


def frame_plan(
    shape: tuple[int, int],
    magnification: int,
    radius: float,
    shift: tuple[float, float] = (0.0, 0.0),
) -> FramePlan:
    """Collect the cached frame-independent lookups for one frame shape.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` input frame shape.
    magnification, radius : int, float
        eSRRF parameters.
    shift : tuple of float
        ``(dy, dx)`` sample displacement (input px).

    Returns
    -------
    FramePlan
    """
    h, w = shape
    r = float(radius)
    return FramePlan(
        window_table(magnification, r),
        axis_plan(h, magnification, r, float(shift[0])),
        axis_plan(w, magnification, r, float(shift[1])),
        rgc_constants(magnification, r),
        phase_runs(w, magnification, r, float(shift[1])),
    )


def check_inputs(frame: np.ndarray, magnification: int, radius: float) -> None:
    """Raise ``ValueError`` for inputs the fused kernels cannot take."""
    if frame.ndim != 2 or frame.dtype != np.float32 or not frame.flags.c_contiguous:
        raise ValueError(
            f"frame must be a 2-D float32 C-contiguous array; got ndim={frame.ndim}, "
            f"dtype={frame.dtype}, c_contiguous={frame.flags.c_contiguous} "
            "(use np.ascontiguousarray(frame, dtype=np.float32))"
        )
    if int(magnification) != magnification or magnification < 1:
        raise ValueError(
            f"magnification must be an integer >= 1; got {magnification!r}"
        )
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"radius must be a finite number > 0; got {radius!r}")
