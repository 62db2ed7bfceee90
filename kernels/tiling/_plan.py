"""Tile planning: the halo a tile needs, the tile grid, exact stencil checks.

Halo derivation (per axis; rows shown, columns identical with ``dx``)
---------------------------------------------------------------------
Notation: ``M`` magnification, ``R`` radius (float32 as NanoPyx), ``s`` the
sample shift along the axis (input px), ``K = int(2R)`` and ``K' = int(2R + 1)``
(RGC window offsets ``o`` in ``[-K, K')``, half pixels), ``m = int(R*M)`` the
zero margin, ``[x]`` = 1 if ``x`` else 0.  Coordinates are NanoPyx's corner
convention (input pixel ``k`` covers ``[k, k+1)``).  A core covers input rows
``[c0, c1)``, i.e. output rows ``[c0*M, c1*M)``; the tile reads input rows
``[a0, a1) = [max(0, c0 - h_lo), min(H, c1 + h_hi))``.

Stencils, from the output pixel back to the input:

1. *Magnified intensity* (Catmull-Rom, 4 taps): output row ``k`` samples
   ``r = c(k) + s`` with ``c(k) = float32(k)/float32(M)`` (``"nanopyx"``) or
   ``(k + 0.5)/M`` (``"corrected"``), reading input rows
   ``floor(r - 0.5) - 1 .. floor(r - 0.5) + 2`` (2-pixel support each side).
2. *RGC window*: output row ``k`` reads half-pixel gradient entries
   ``e = (2k + 1)//M + o``, kept if ``0 < e <= 2(H*M - 1)``, read at
   ``min(e, 2H)`` (entry ``2H`` is NanoPyx's clamped border read).  Over a core:
   ``e_lo = 2 c0 + [M == 1] - K``, ``e_hi = 2 c1 + K' - 2``.
3. *2x gradient upsampling* (Catmull-Rom, 4 taps): entry ``e`` samples the
   Roberts-cross gradient image at ``e/2 + g + s`` with ``g = 0`` (nanopyx) or
   ``0.5`` (corrected): gradient rows ``floor(e/2 + g + s - 0.5) - 1 .. + 2``.
4. *Roberts cross* (1 pixel backwards): gradient row ``p`` reads input rows
   ``p - 1`` and ``p`` (row 0 replicates itself: only at the image edge).

Hence (each term also >= 0)::

    h_lo = max( 2 - floor((e1 - K)/2 + g + s - 0.5),    # 2.+3.+4., e1 = [M == 1]
                1 - floor(i + s - 0.5),                 # 1., i = 0 or 0.5/M
                floor((K - e1)/2) + 1,                  # entries kept: e - 2 a0 > 0
                ceil(m / M) )                           # tile's own zero margin
    h_hi = max( floor((K' - 2)/2 + g + s - 0.5) + 3,    # 2.+3. (gradient taps)
                floor(s - 0.5) + 3,                     # 1.
                ceil((K' - 2)/2) + [M == 1],            # entry e_hi inside the tile
                ceil(m / M) )                           #   (and kept when M == 1)

Examples (``s = 0``, nanopyx geometry, ``M >= 2``; ``(h_lo, h_hi)``): R = 1 or
1.5 -> (4, 3), R = 2 -> (5, 4), R = 3 -> (6, 5); corrected geometry R = 1.5 ->
(4, 4).  The halo grows with ``R`` and with ``|s|`` on one side; ``M`` enters only
through the ``[M == 1]`` terms and the margin.  The formula uses the full 4-tap
Catmull-Rom support.  A sample exactly on a pixel centre has zero-weight outer
taps, so the exact need can be one pixel less: checked exhaustively against the
exact stencil test of :func:`verify_tile` over M in {1, 2, 3, 5}, R in {0.3 .. 3},
both geometries and several shifts, ``h_lo`` is always tight and ``h_hi`` is
tight or one pixel larger than needed.

Image edges are special and need no halo: a tile edge that is an image edge
(``a0 == 0`` or ``a1 == H``) sees exactly NanoPyx's border behaviour (zero
Catmull-Rom padding, replicated Roberts row 0, rejected samples, the clamped
read ``2H``), because those tiles start/end where the image does.  An interior
tile edge sees real neighbours: every tap of every core output pixel lies inside
the tile (checked exactly by :func:`plan_tiles`, see :func:`verify_tile`).  Cores
near the image edge whose output lies in the global zero margin always have
``a0 == 0`` (or ``a1 == H``) because ``h >= ceil(m/M)``.  A core smaller than the
halo is allowed: tiles then simply overlap more.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesr.kernels._params import EsrrfParams, validate_shift

# the numpy modules directly (not the engine-kernel packages): importable from a
# bare source tree, as bench/multi_gpu_tiling.py does on a GPU machine
from livesr.kernels.catmull_rom._numpy import (
    gradient_coordinates,
    magnification_coordinates,
    sample_taps,
)

logger = logging.getLogger("livesr.kernels.tiling")


# ----------------------------------------------------------------------------- halo
@dataclass(frozen=True, slots=True)
class Halo:
    """Input pixels a tile needs beyond its core on each side.

    Attributes
    ----------
    top, bottom, left, right : int
        Input pixels (>= 0), from the formula in the module docstring.
    """

    top: int
    bottom: int
    left: int
    right: int


def _axis_halo(params: EsrrfParams, s: float) -> tuple[int, int]:
    m = params.magnification
    start, stop = params.window
    k, kp = -start, stop
    e1 = 1 if m == 1 else 0
    g = 0.5 if params.geometry == "corrected" else 0.0
    i0 = 0.5 / m if params.geometry == "corrected" else 0.0
    mm = math.ceil(params.margin / m)
    lo = max(
        2 - math.floor((e1 - k) / 2 + g + s - 0.5),
        1 - math.floor(i0 + s - 0.5),
        (k - e1) // 2 + 1,
        mm,
        0,
    )
    hi = max(
        math.floor((kp - 2) / 2 + g + s - 0.5) + 3,
        math.floor(s - 0.5) + 3,
        -((2 - kp) // 2) + e1,
        mm,
        0,
    )
    return int(lo), int(hi)


def halo(params: EsrrfParams, shift: tuple[float, float] = (0.0, 0.0)) -> Halo:
    """Halo of a tile for these parameters and sample shift.

    Parameters
    ----------
    params : EsrrfParams
    shift : (dy, dx), input pixels

    Returns
    -------
    Halo
        See the module docstring for the derivation.
    """
    if not isinstance(params, EsrrfParams):
        raise TypeError(f"params must be an EsrrfParams, got {type(params).__name__}")
    dy, dx = validate_shift(shift)
    top, bottom = _axis_halo(params, dy)
    left, right = _axis_halo(params, dx)
    return Halo(top, bottom, left, right)


# ---------------------------------------------------------------------------- tiles
@dataclass(frozen=True, slots=True)
class Tile:
    """One tile of a frame.

    Attributes
    ----------
    index : (i, j)
        Position in the tile grid (row, column).
    core : (slice, slice)
        Input pixels this tile is responsible for (the cores partition the frame).
    input : (slice, slice)
        Input pixels read: core plus halo, clipped to the frame.
    output : (slice, slice)
        Where the tile's result goes in the ``(H*M, W*M)`` magnified image
        (``core * M``).
    crop : (slice, slice)
        The same region inside the tile's own ``(h_in*M, w_in*M)`` map.
    """

    index: tuple[int, int]
    core: tuple[slice, slice]
    input: tuple[slice, slice]
    output: tuple[slice, slice]
    crop: tuple[slice, slice]

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(h_in, w_in)`` of the haloed tile."""
        return (
            self.input[0].stop - self.input[0].start,
            self.input[1].stop - self.input[1].start,
        )


def _splits(n: int, *, size: int | None = None, count: int | None = None) -> list[int]:
    if size is not None:
        return list(range(0, n, size)) + [n]
    assert count is not None
    count = min(count, n)
    return [(i * n) // count for i in range(count + 1)]


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value) if name == "tile" else (value, 1)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an int or a pair of ints, got {value!r}"
        ) from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must hold integers >= 1, got {value!r}")
    return int(a), int(b)


def plan_tiles(
    frame_shape: tuple[int, int],
    params: EsrrfParams,
    *,
    tile: int | tuple[int, int] | None = None,
    n_tiles: int | tuple[int, int] | None = None,
    shift: tuple[float, float] = (0.0, 0.0),
    check: bool = True,
) -> list[Tile]:
    """Cut a frame into haloed tiles whose stitched maps equal the untiled map.

    Parameters
    ----------
    frame_shape : (H, W)
        Input frame shape (pixels).
    params : EsrrfParams
    tile : int or (th, tw), optional
        Core size in input pixels (an int means square); the last row / column
        of tiles takes the remainder.  Cores smaller than the halo are fine.
    n_tiles : int or (ny, nx), optional
        Number of tiles instead of a size; an int ``n`` means ``n`` horizontal
        strips (``(n, 1)``: contiguous rows, best for several devices).  Capped
        at the frame size.  Exactly one of ``tile`` and ``n_tiles``.
    shift : (dy, dx), input pixels
        The sample shift the maps will use (the halo depends on it).
    check : bool
        Verify every tile with :func:`verify_tile` (exact integer checks of the
        stencils; cheap).

    Returns
    -------
    list of Tile
        Row-major.
    """
    if not isinstance(params, EsrrfParams):
        raise TypeError(f"params must be an EsrrfParams, got {type(params).__name__}")
    try:
        h, w = (int(v) for v in frame_shape)
    except (TypeError, ValueError):
        raise ValueError(f"frame_shape must be (H, W), got {frame_shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"frame_shape must be at least (1, 1), got {frame_shape!r}")
    if (tile is None) == (n_tiles is None):
        raise ValueError("pass exactly one of tile=(th, tw) and n_tiles=n or (ny, nx)")
    if tile is not None:
        th, tw = _pair(tile, "tile")
        ys, xs = _splits(h, size=th), _splits(w, size=tw)
    else:
        ny, nx = _pair(n_tiles, "n_tiles")
        ys, xs = _splits(h, count=ny), _splits(w, count=nx)
    hl = halo(params, shift)
    m = params.magnification
    tiles = []
    for i, (c0, c1) in enumerate(zip(ys[:-1], ys[1:], strict=True)):
        a0, a1 = max(0, c0 - hl.top), min(h, c1 + hl.bottom)
        for j, (d0, d1) in enumerate(zip(xs[:-1], xs[1:], strict=True)):
            b0, b1 = max(0, d0 - hl.left), min(w, d1 + hl.right)
            t = Tile(
                index=(i, j),
                core=(slice(c0, c1), slice(d0, d1)),
                input=(slice(a0, a1), slice(b0, b1)),
                output=(slice(c0 * m, c1 * m), slice(d0 * m, d1 * m)),
                crop=(
                    slice((c0 - a0) * m, (c1 - a0) * m),
                    slice((d0 - b0) * m, (d1 - b0) * m),
                ),
            )
            if check:
                verify_tile(t, (h, w), params, shift)
            tiles.append(t)
    logger.debug("plan_tiles: %dx%d frame, %d tiles, halo %s", h, w, len(tiles), hl)
    return tiles


# ------------------------------------------------------------- exact stencil checks
def _cr_span(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero-weight Catmull-Rom tap range ``[lo, hi]`` per coordinate (global)."""
    idx, wt = sample_taps(coords, n)
    nz = wt != 0
    big = np.iinfo(np.int64).max
    lo = np.where(nz, idx, big).min(axis=1)
    hi = np.where(nz, idx, -1).max(axis=1)
    return lo, hi


def _verify_axis(
    n: int, a0: int, a1: int, c0: int, c1: int, params: EsrrfParams, s: float, axis: str
) -> None:
    m = params.magnification
    mg = params.margin
    start, stop = params.window
    k = np.arange(max(c0 * m, mg), min(c1 * m, n * m - mg))
    if k.size == 0:
        return  # the whole core output is global zero margin
    nt = a1 - a0
    kl = k - a0 * m
    if kl.min() < mg or kl.max() >= nt * m - mg:
        raise AssertionError(f"{axis}: core output inside the tile's zero margin")
    geometry = params.geometry
    # 1. intensity taps inside the tile
    ci = magnification_coordinates(n, m, s, geometry)[k]
    lo, hi = _cr_span(ci, n)
    if params.intensity_weighting and (
        np.any((lo < a0) & (lo <= hi)) or np.any(hi >= a1)
    ):
        raise AssertionError(f"{axis}: intensity taps leave the tile")
    # 2. RGC samples: kept and read index identical in the tile and globally
    o = np.arange(start, stop)
    e = ((2 * k + 1) // m)[:, None] + o[None, :]
    keep = (e > 0) & (e <= 2 * (n * m - 1))
    read = np.minimum(e, 2 * n)
    el = e - 2 * a0
    keep_t = (el > 0) & (el <= 2 * (nt * m - 1))
    read_t = np.minimum(el, 2 * nt) + 2 * a0
    if np.any(keep != keep_t) or np.any(keep & (read != read_t)):
        raise AssertionError(f"{axis}: RGC window differs at a tile edge")
    # 3.+4. gradient entries read -> Catmull-Rom taps -> Roberts rows p-1, p
    entries = np.unique(read[keep])
    if entries.size:
        cg = gradient_coordinates(n, m, s, geometry)[entries]
        glo, ghi = _cr_span(cg, n)
        has = glo <= ghi
        if np.any(has & (ghi >= a1)):
            raise AssertionError(f"{axis}: gradient taps leave the tile")
        if a0 > 0 and np.any(has & (glo - 1 < a0)):
            raise AssertionError(
                f"{axis}: gradient / Roberts-cross rows leave the tile"
            )


def verify_tile(
    tile: Tile,
    frame_shape: tuple[int, int],
    params: EsrrfParams,
    shift: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Check exactly that every stencil of the tile's core stays inside the tile.

    For each axis: the intensity taps, the RGC samples kept / read (including
    NanoPyx's validity quirk and clamped read, compared between tile and frame
    coordinates), the gradient Catmull-Rom taps and the Roberts-cross rows of
    every non-margin core output pixel.  Raises AssertionError naming the failure.
    """
    h, w = frame_shape
    dy, dx = validate_shift(shift)
    (a, b), (c, d) = tile.input, tile.core
    _verify_axis(h, a.start, a.stop, c.start, c.stop, params, dy, "rows")
    _verify_axis(w, b.start, b.stop, d.start, d.stop, params, dx, "columns")
