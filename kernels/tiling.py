"""Tiled per-frame eSRRF: split a frame into haloed tiles, map them, stitch.

A frame too large for one device, or a machine with several GPUs (or CPU
workers), is cut into rectangular *cores* that partition the input frame; each
core is widened by a *halo* of real neighbouring input pixels, the per-frame
eSRRF map (``ESRRF.md`` section 2.1) is computed on the widened tile, and the
tile's magnified core is copied into the full ``(H*M, W*M)`` output.  The halo is
exactly as wide as the stencils need, so the stitched result equals the untiled
map.

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

Exactness
---------
With the default ``map_fn=None`` each tile is computed by :func:`tile_map`: the
numpy reference stages of eSRRF (``catmull_rom.magnify`` / ``upsample_gradient``,
``roberts_cross``, ``rgc.radial_gradient_convergence``, the oracle every backend of
:func:`livesr.kernels.esrrf.esrrf_frame` is checked against) but with the
Catmull-Rom taps computed on *global* coordinates and then re-based into the tile:
the stitched map is **bitwise equal** to those stages run on the whole frame, for
both geometries and any shift (tested). Merely translating (calling a per-frame map
on the cut-out tile) is *not* bitwise: NanoPyx samples output pixel ``k`` at
``float32(k)/float32(M)``, and ``float32(k/M)`` is not ``float32(k'/M) + a0`` (e.g.
``101.4f != 1.4f + 100``), the clamped border read ``float32((2HM-1)/(2M))``
likewise, and with a shift the tap base ``floor(float32(r - 0.5))`` rounds at a
magnitude-dependent precision. A user ``map_fn`` (any per-frame map with
:func:`esrrf_frame`'s signature, e.g. a fast backend) is called on the cut-out tile,
i.e. translated: equal to the untiled map up to those float32 coordinate roundings
(measured <= 4.7e-6 of the map maximum with the numba backend, 96x80, M = 5,
R = 1.5, with and without shift; the tests allow 1e-5).

``backend="numba"`` does the same for the fused numba kernels
(:func:`numba_tile_map`): their intensity and gradient-grid tap tables are built
for the whole frame and re-based into the tile (:func:`fused_tile_taps`); the
rest of those kernels (RGC window, validity, phase runs, margin) only depends on
local indices in a translation-invariant way, so the stitched map is bitwise
equal to ``esrrf_map_numba`` on the whole frame (tested).

On GPUs (``devices=[0, 1, ...]``) each tile runs on ``cupy.cuda.Device(i)`` with
:class:`livesr.kernels.esrrf_map._cupy.CupyEsrrfMap` built for the tile shape,
whose Catmull-Rom tap tables are replaced by the global, re-based ones (the
window / validity logic of that kernel is translation invariant), so the tiled
GPU map should equal the single-GPU untiled map bit for bit;
``bench/multi_gpu_tiling.py`` checks it.  Only the ``"nanopyx"`` geometry
exists there.

Stacks: :func:`esrrf_tiled` runs the temporal statistic per tile (per-pixel,
so identical) and the macro-pixel correction *after stitching* (it needs the
global per-phase means, margin included).  :class:`TiledFrameMap` is a
:class:`livesr.kernels.sliding.FrameMap`, so ``SlidingEsrrf(frame_map=...)``
streams with tiled maps.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livesr.kernels._params import (
    EsrrfParams,
    stack_shape,
    validate_batch,
    validate_frame,
    validate_shift,
)

# the numpy modules directly (not the engine-kernel packages): importable from a
# bare source tree, as bench/multi_gpu_tiling.py does on a GPU machine
from livesr.kernels.catmull_rom._numpy import (
    gradient_coordinates,
    magnification_coordinates,
    sample_taps,
)
from livesr.kernels.rgc._numpy import radial_gradient_convergence
from livesr.kernels.roberts_cross._numpy import roberts_cross

__all__ = [
    "Halo",
    "Tile",
    "TiledFrameMap",
    "esrrf_frame_tiled",
    "esrrf_tiled",
    "BACKENDS",
    "fused_tile_taps",
    "halo",
    "numba_tile_map",
    "plan_tiles",
    "tile_map",
    "verify_tile",
]

logger = logging.getLogger(__name__)

MapFn = Callable[..., np.ndarray]

#: Exact CPU tile maps: numpy reference stages, fused numba kernels.
BACKENDS: tuple[str, ...] = ("numpy", "numba")


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


# ------------------------------------------------------------------ reference map
def _local_taps(
    coords: np.ndarray, n: int, a0: int, nt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Global Catmull-Rom taps re-based into a tile starting at ``a0``."""
    idx, wt = sample_taps(coords, n)
    return np.clip(idx - a0, 0, nt - 1), wt


def _sample(
    img: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    cols: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """``catmull_rom_sample`` with given taps (same float64 order, one rounding)."""
    ri, rw = rows
    ci, cw = cols
    im = np.asarray(img, dtype=np.float64)
    p = np.zeros((ri.shape[0], im.shape[1]), dtype=np.float64)
    for t in range(4):
        p += rw[:, t, None] * im[ri[:, t], :]
    q = np.zeros((ri.shape[0], ci.shape[0]), dtype=np.float64)
    for t in range(4):
        q += p[:, ci[:, t]] * cw[None, :, t]
    return q.astype(np.float32)


def tile_map(
    frame: np.ndarray,
    tile: Tile,
    params: EsrrfParams,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Reference per-frame map of one tile, computed in frame coordinates.

    Parameters
    ----------
    frame : (H, W) float32
        The whole frame (only ``frame[tile.input]`` is read).
    tile : Tile
    params : EsrrfParams
    shift : (dy, dx), input pixels

    Returns
    -------
    (h_core*M, w_core*M) float32
        Bitwise equal to the numpy reference stages run on the whole frame,
        cropped to ``tile.output``.
    """
    h, w = frame.shape
    dy, dx = shift
    m, geo = params.magnification, params.geometry
    (ys, xs) = tile.input
    img = np.ascontiguousarray(frame[ys, xs], dtype=np.float32)
    nh, nw = img.shape
    intensity = None
    if params.intensity_weighting:
        rows = _local_taps(
            magnification_coordinates(h, m, dy, geo)[ys.start * m : ys.stop * m],
            h,
            ys.start,
            nh,
        )
        cols = _local_taps(
            magnification_coordinates(w, m, dx, geo)[xs.start * m : xs.stop * m],
            w,
            xs.start,
            nw,
        )
        intensity = _sample(img, rows, cols)
    grows = _local_taps(
        gradient_coordinates(h, m, dy, geo)[2 * ys.start : 2 * ys.stop + 1],
        h,
        ys.start,
        nh,
    )
    gcols = _local_taps(
        gradient_coordinates(w, m, dx, geo)[2 * xs.start : 2 * xs.stop + 1],
        w,
        xs.start,
        nw,
    )
    gx, gy = roberts_cross(img)
    gx2 = _sample(gx, grows, gcols)
    gy2 = _sample(gy, grows, gcols)
    full = radial_gradient_convergence(gx2, gy2, intensity, params)
    return full[tile.crop]


# ------------------------------------------------------- fused backends (numba, cupy)
def fused_tile_taps(
    frame_shape: tuple[int, int],
    tile: Tile,
    magnification: int,
    shift: tuple[float, float],
) -> tuple[np.ndarray, ...]:
    """Catmull-Rom tap tables of the fused ``esrrf_map`` kernels for one tile.

    The tables ``axis_plan`` / ``gradient_coords`` build for the *whole* frame
    (NanoPyx's ``float32(k)/float32(M)`` intensity coordinates, the half-pixel
    gradient grid with the clamped border read, ``+ shift``), sliced to the tile
    and re-based into it (``index - a0``, clipped; taps outside the tile only
    occur for halo outputs, which are cropped away).

    Returns
    -------
    r_idx, r_wt, c_idx, c_wt : (h_in*M, 4), (w_in*M, 4)
        int32 / float64 intensity taps (rows, columns).
    gr_idx, gr_wt, gc_idx, gc_wt : (2 h_in + 1, 4), (2 w_in + 1, 4)
        int32 / float64 gradient-grid taps.
    """
    from livesr.kernels.esrrf_map._weights import catmull_rom_taps, gradient_coords

    h, w = frame_shape
    m = int(magnification)
    f32 = np.float32
    out: list[np.ndarray] = []
    pairs = []
    for n, sl, s in ((h, tile.input[0], shift[0]), (w, tile.input[1], shift[1])):
        k = np.arange(sl.start * m, sl.stop * m, dtype=np.int64)
        icoords = (k.astype(f32) / f32(m)).astype(np.float64) + float(s)
        gcoords = gradient_coords(n, m, float(s))[2 * sl.start : 2 * sl.stop + 1]
        pairs.append((n, sl, icoords, gcoords))
    for kind in (0, 1):  # intensity (rows, cols), then gradient grid (rows, cols)
        for n, sl, icoords, gcoords in pairs:
            idx, wt = catmull_rom_taps(gcoords if kind else icoords, n)
            nt = sl.stop - sl.start
            out.append(
                np.clip(idx.astype(np.int64) - sl.start, 0, nt - 1).astype(np.int32)
            )
            out.append(np.ascontiguousarray(wt))
    return tuple(out)


_NUMBA_LOCK = threading.Lock()


def _numba_needs_lock() -> bool:
    try:
        import numba

        return numba.threading_layer() not in ("omp", "tbb")
    except (ImportError, ValueError):  # ValueError: no parallel kernel run yet
        return True


def numba_tile_map(
    frame: np.ndarray,
    tile: Tile,
    params: EsrrfParams,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Tile map with the fused numba backend, in frame coordinates.

    Runs :mod:`livesr.kernels.esrrf_map._numba`'s kernels on the haloed tile with
    :func:`fused_tile_taps` (the RGC window, validity and phase-run logic of
    those kernels is translation invariant), so the stitched result is bitwise
    equal to ``esrrf_map_numba`` on the whole frame (tested).  Geometry
    ``"nanopyx"`` only.  Concurrent calls are serialised when numba's threading
    layer is not thread-safe (``workqueue``).

    Returns
    -------
    (h_core*M, w_core*M) float32
    """
    from livesr.kernels.esrrf_map import _numba as nbk
    from livesr.kernels.esrrf_map._weights import frame_plan, parity_planes

    m = params.magnification
    img = np.ascontiguousarray(frame[tile.input], dtype=np.float32)
    nh, nw = img.shape
    plan = frame_plan((nh, nw), m, params.radius, (0.0, 0.0))
    ri, rw, ci, cw, gri, grw, gci, gcw = fused_tile_taps(frame.shape, tile, m, shift)
    grad = np.empty((2 * nh + 1, 2 * nw + 1, 2), dtype=np.float32)
    out = np.zeros((nh * m, nw * m), dtype=np.float32)
    rp, cp_, runs = plan.rows, plan.cols, plan.runs

    def run() -> None:
        nbk._unit_gradients(img, gri, grw, gci, gcw, grad)
        nbk._fused(
            img,
            grad,
            parity_planes(grad),
            plan.table,
            ri,
            rw,
            rp.g_idx,
            rp.lo,
            rp.hi,
            ci,
            cw,
            cp_.g_idx,
            cp_.lo,
            cp_.hi,
            runs.offset,
            runs.qa,
            runs.qb,
            m,
            plan.consts.margin,
            float(params.sensitivity),
            bool(params.intensity_weighting),
            out,
        )

    if _numba_needs_lock():
        with _NUMBA_LOCK:
            run()
    else:
        run()
    return out[tile.crop]


_CUPY_LOCK = threading.Lock()


def _cupy_tile_runner(
    frame_shape: tuple[int, int],
    tile: Tile,
    params: EsrrfParams,
    shift: tuple[float, float],
) -> Any:
    """A ``CupyEsrrfMap`` for the tile shape with global, re-based tap tables.

    Must be called with the target ``cupy.cuda.Device`` current.
    """
    import cupy as cp

    from livesr.kernels.esrrf_map._cupy import CupyEsrrfMap

    runner = CupyEsrrfMap(
        tile.input_shape,
        params.magnification,
        params.radius,
        params.sensitivity,
        params.intensity_weighting,
        (0.0, 0.0),
        batch=1,
    )
    taps = [
        cp.asarray(a)
        for a in fused_tile_taps(frame_shape, tile, params.magnification, shift)
    ]
    (
        runner._r_idx,
        runner._r_wt,
        runner._c_idx,
        runner._c_wt,
        runner._gr_idx,
        runner._gr_wt,
        runner._gc_idx,
        runner._gc_wt,
    ) = taps
    return runner


# ----------------------------------------------------------------------- driver
def _validate_workers(workers: Any) -> int:
    if (
        isinstance(workers, bool)
        or not isinstance(workers, (int, np.integer))
        or (workers < 1)
    ):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return int(workers)


def _validate_devices(devices: Any) -> list[int] | None:
    if devices is None:
        return None
    try:
        devs = [int(d) for d in devices]
    except (TypeError, ValueError):
        raise ValueError(
            f"devices must be a list of GPU ids, got {devices!r}"
        ) from None
    if not devs or any(d < 0 for d in devs) or len(set(devs)) != len(devs):
        raise ValueError(f"devices must be distinct GPU ids >= 0, got {devices!r}")
    return devs


class _TileComputer:
    """Computes tile maps of frames with one strategy (reference, map_fn, cupy)."""

    def __init__(
        self,
        frame_shape: tuple[int, int],
        params: EsrrfParams,
        tiles: list[Tile],
        shift: tuple[float, float],
        map_fn: MapFn | None,
        devices: list[int] | None,
        backend: str = "numpy",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "numba" and params.geometry != "nanopyx":
            raise ValueError(
                "the numba backend implements only geometry='nanopyx', "
                f"got {params.geometry!r}"
            )
        self.backend = backend
        self.key = (tuple(frame_shape), params, tuple(shift))
        self.frame_shape = frame_shape
        self.params = params
        self.tiles = tiles
        self.shift = shift
        self.map_fn = map_fn
        self.devices = devices
        self._runners: dict[int, Any] = {}
        if devices is not None:
            if map_fn is not None:
                raise ValueError(
                    "pass either devices (CuPy backend) or map_fn, not both"
                )
            if params.geometry != "nanopyx":
                raise ValueError(
                    "the CuPy backend implements only geometry='nanopyx', "
                    f"got {params.geometry!r}"
                )
            try:
                import cupy  # noqa: F401
            except ImportError as err:
                raise RuntimeError(
                    f"devices={devices} needs CuPy, which does not import: {err}"
                ) from None

    def device_of(self, n: int) -> int | None:
        return None if self.devices is None else self.devices[n % len(self.devices)]

    def __call__(self, n: int, frame: np.ndarray) -> np.ndarray:
        tile = self.tiles[n]
        if self.devices is not None:
            import cupy as cp

            with cp.cuda.Device(self.device_of(n)):
                runner = self._runners.get(n)
                if runner is None:
                    with _CUPY_LOCK:
                        runner = _cupy_tile_runner(
                            self.frame_shape, tile, self.params, self.shift
                        )
                    self._runners[n] = runner
                sub = cp.asarray(np.ascontiguousarray(frame[tile.input]))
                res = runner.maps(sub[None])[0][tile.crop]
                return cp.asnumpy(res)
        if self.map_fn is None:
            fn = numba_tile_map if self.backend == "numba" else tile_map
            return fn(frame, tile, self.params, shift=self.shift)
        sub = np.ascontiguousarray(frame[tile.input])
        res = self.map_fn(sub, self.params, shift=self.shift)
        return np.asarray(res)[tile.crop]


def _run_tiles(
    job: Callable[[int], None], n: int, workers: int, devices: list[int] | None
) -> None:
    """Run ``job(tile_number)`` for all tiles: one thread per device, or a pool."""
    if devices is not None:
        groups = [
            [t for t in range(n) if t % len(devices) == d] for d in range(len(devices))
        ]

        def run_group(g: list[int]) -> None:
            for t in g:
                job(t)

        with ThreadPoolExecutor(max_workers=len(devices)) as pool:
            for f in [pool.submit(run_group, g) for g in groups if g]:
                f.result()
        return
    if workers == 1 or n == 1:
        for t in range(n):
            job(t)
        return
    with ThreadPoolExecutor(max_workers=min(workers, n)) as pool:
        for f in [pool.submit(job, t) for t in range(n)]:
            f.result()


def esrrf_frame_tiled(
    frame: Any,
    params: EsrrfParams,
    *,
    tile: int | tuple[int, int] | None = None,
    n_tiles: int | tuple[int, int] | None = None,
    workers: int = 1,
    devices: Sequence[int] | None = None,
    shift: tuple[float, float] = (0.0, 0.0),
    map_fn: MapFn | None = None,
    backend: str = "numpy",
    out: np.ndarray | None = None,
    _computer: _TileComputer | None = None,
    _keep: Callable[[_TileComputer], None] | None = None,
) -> np.ndarray:
    """Per-frame eSRRF map computed tile by tile, on workers or GPUs.

    Parameters
    ----------
    frame : (H, W) array-like, any real dtype
        Cast to float32; must be finite.
    params : EsrrfParams
    tile, n_tiles
        Tiling, see :func:`plan_tiles` (exactly one).
    workers : int >= 1
        CPU threads, each mapping whole tiles (ignored with ``devices``).
    devices : list of int, optional
        CUDA device ids: tile ``n`` runs on ``devices[n % len(devices)]`` with
        the CuPy backend (one host thread per device).  Needs CuPy, geometry
        ``"nanopyx"`` and no ``map_fn``.
    shift : (dy, dx), input pixels
        As :func:`livesr.kernels.esrrf.esrrf_frame`.
    map_fn : callable, optional
        ``map_fn(tile_frame, params, shift=...) -> (h_in*M, w_in*M)`` applied to
        the cut-out haloed tile (translation; equal to the untiled ``map_fn`` up
        to float32 coordinate rounding, see the module docstring).  Default: the
        exact reference :func:`tile_map` (bitwise equal to the untiled numpy
        reference stages).
    backend : {"numpy", "numba"}
        Exact CPU tile map when ``map_fn`` and ``devices`` are not given:
        :func:`tile_map` (numpy reference, both geometries) or
        :func:`numba_tile_map` (fused numba kernels, ``"nanopyx"`` only; bitwise
        equal to ``esrrf_map_numba`` on the whole frame).
    out : (H*M, W*M) float32 array, optional
        Written in place and returned.

    Returns
    -------
    (H*M, W*M) float32
    """
    if not isinstance(params, EsrrfParams):
        raise TypeError(f"params must be an EsrrfParams, got {type(params).__name__}")
    img = validate_frame(frame)
    sh = validate_shift(shift)
    nw = _validate_workers(workers)
    devs = _validate_devices(devices)
    if _computer is not None and _computer.key == (img.shape, params, sh):
        comp = _computer
    else:
        tiles = plan_tiles(img.shape, params, tile=tile, n_tiles=n_tiles, shift=sh)
        comp = _TileComputer(img.shape, params, tiles, sh, map_fn, devs, backend)
    tiles = comp.tiles
    m = params.magnification
    shape_out = (img.shape[0] * m, img.shape[1] * m)
    if out is None:
        out = np.empty(shape_out, dtype=np.float32)
    elif (
        not isinstance(out, np.ndarray)
        or out.shape != shape_out
        or out.dtype != np.float32
    ):
        raise ValueError(
            f"out must be a float32 array of shape {shape_out}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )

    def job(n: int) -> None:
        out[tiles[n].output] = comp(n, img)

    _run_tiles(job, len(tiles), nw, devs)
    if _keep is not None:
        _keep(comp)
    return out


@dataclass(frozen=True, slots=True)
class TiledFrameMap:
    """A per-frame map with :func:`esrrf_frame`'s signature that tiles.

    Plug into ``SlidingEsrrf(frame_map=TiledFrameMap(n_tiles=2, devices=[0, 1]))``
    or call like ``esrrf_frame``.  Fields are :func:`esrrf_frame_tiled`'s.  The
    tile plan and, on GPUs, the per-tile kernels and device tables of the last
    (frame shape, params, shift) are kept between calls (a new shift rebuilds
    them: the tap tables depend on it).
    """

    tile: int | tuple[int, int] | None = None
    n_tiles: int | tuple[int, int] | None = None
    workers: int = 1
    devices: tuple[int, ...] | None = None
    map_fn: MapFn | None = None
    backend: str = "numpy"
    _cache: list = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if (self.tile is None) == (self.n_tiles is None):
            raise ValueError("pass exactly one of tile and n_tiles")
        _validate_workers(self.workers)
        devs = _validate_devices(self.devices)
        object.__setattr__(self, "devices", None if devs is None else tuple(devs))

    def __call__(
        self,
        frame: np.ndarray,
        params: EsrrfParams,
        *,
        shift: tuple[float, float] = (0.0, 0.0),
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        return esrrf_frame_tiled(
            frame,
            params,
            tile=self.tile,
            n_tiles=self.n_tiles,
            workers=self.workers,
            devices=self.devices,
            shift=shift,
            map_fn=self.map_fn,
            backend=self.backend,
            out=out,
            _computer=self._cache[0] if self._cache else None,
            _keep=self._remember,
        )

    def _remember(self, comp: _TileComputer) -> None:
        self._cache[:] = [comp]


# ------------------------------------------------------------------------- stacks
def esrrf_tiled(
    stack: Any,
    *,
    tile: int | tuple[int, int] | None = None,
    n_tiles: int | tuple[int, int] | None = None,
    workers: int = 1,
    devices: Sequence[int] | None = None,
    map_fn: MapFn | None = None,
    backend: str = "numpy",
    magnification: int = 5,
    radius: float = 1.5,
    sensitivity: float = 1.0,
    intensity_weighting: bool = True,
    macro_pixel_correction: bool = True,
    temporal: str = "avg",
    frames_per_timepoint: int = 0,
    geometry: str = "nanopyx",
) -> np.ndarray:
    """Batch eSRRF (:func:`livesr.kernels.esrrf.esrrf`) computed tile by tile.

    Each worker / device takes whole tiles and runs every frame of a block
    through them, accumulating the temporal statistic (per pixel) for its core
    only; the block image is stitched and then macro-pixel corrected (the
    correction divides by per-phase means over the *whole* image, margin
    included, so it cannot run per tile).  Parameters as :func:`esrrf` plus
    the tiling ones of :func:`esrrf_frame_tiled`.

    Returns
    -------
    float32
        ``(H*M, W*M)`` or ``(n_blocks, H*M, W*M)`` exactly as :func:`esrrf`;
        bitwise equal to it when both use the numpy reference maps (default
        ``map_fn``), else equal up to the per-frame map differences.
    """
    from livesr.kernels.macro_pixel import macro_pixel_correction as mp_correct
    from livesr.kernels.temporal import TemporalAccumulator

    settings = validate_batch(
        magnification=magnification,
        radius=radius,
        sensitivity=sensitivity,
        intensity_weighting=intensity_weighting,
        geometry=geometry,
        temporal=temporal,
        frames_per_timepoint=frames_per_timepoint,
        macro_pixel_correction=macro_pixel_correction,
    )
    params, mode, f_per = settings.params, settings.temporal, settings.frames_per_timepoint
    nw = _validate_workers(workers)
    devs = _validate_devices(devices)
    t, h, w = stack_shape(stack)
    if getattr(stack, "ndim", np.ndim(stack)) == 2:
        stack = np.asarray(stack)[None]
    block = t if f_per == 0 or f_per > t else f_per
    n_blocks = -(-t // block)
    m = params.magnification
    tiles = plan_tiles((h, w), params, tile=tile, n_tiles=n_tiles)
    comp = _TileComputer((h, w), params, tiles, (0.0, 0.0), map_fn, devs, backend)
    out = np.empty((n_blocks, h * m, w * m), dtype=np.float32)
    for b in range(n_blocks):
        frames = []
        for i in range(b * block, min((b + 1) * block, t)):
            try:
                frames.append(validate_frame(stack[i]))
            except ValueError as err:
                raise ValueError(f"stack frame {i}: {err}") from None
        image = out[b]

        def job(n: int) -> None:
            core = tiles[n].output
            shape = (core[0].stop - core[0].start, core[1].stop - core[1].start)
            acc = TemporalAccumulator(mode, shape)
            for f in frames:  # noqa: B023 - consumed before the next block
                acc.add(comp(n, f))
            image[core] = acc.result()  # noqa: B023

        _run_tiles(job, len(tiles), nw, devs)
        if mode == "tac2" and len(frames) < 2:
            logger.warning(
                "temporal='tac2' needs at least 2 frames per block; block %d has "
                "%d frame, its image is NaN (as NanoPyx)",
                b,
                len(frames),
            )
        if macro_pixel_correction:
            out[b] = mp_correct(image, m)
    return out[0] if f_per == 0 else out
