"""Exact maps of one tile: numpy reference stages and fused numba kernels on
global, re-based Catmull-Rom taps, and the CuPy runner with the same tables (see
the package docstring for why translating a per-frame map is not bitwise)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from livesr.kernels._params import EsrrfParams

# the numpy modules directly (not the engine-kernel packages): importable from a
# bare source tree, as bench/multi_gpu_tiling.py does on a GPU machine
from livesr.kernels.catmull_rom._numpy import (
    gradient_coordinates,
    magnification_coordinates,
    sample_taps,
)
from livesr.kernels.rgc._numpy import radial_gradient_convergence
from livesr.kernels.roberts_cross._numpy import roberts_cross
from livesr.kernels.tiling._plan import Tile


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
