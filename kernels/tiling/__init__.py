"""Tiled per-frame eSRRF: split a frame into haloed tiles, map them, stitch.

A frame too large for one device, or a machine with several GPUs (or CPU
workers), is cut into rectangular *cores* that partition the input frame; each
core is widened by a *halo* of real neighbouring input pixels, the per-frame
eSRRF map (``ESRRF.md`` section 2.1) is computed on the widened tile, and the
tile's magnified core is copied into the full ``(H*M, W*M)`` output.  The halo is
exactly as wide as the stencils need, so the stitched result equals the untiled
map.

Layout: :mod:`._plan` cuts the frame (:func:`halo`, :func:`plan_tiles`,
:func:`verify_tile`; the halo derivation is in its docstring), :mod:`._maps` maps
one tile exactly (:func:`tile_map`, :func:`numba_tile_map`, the CuPy runner) and
:mod:`._run` drives the tiles over workers or GPUs (:func:`esrrf_frame_tiled`,
:class:`TiledFrameMap`, :func:`esrrf_tiled`).

Exactness
---------
With the default ``map_fn=None`` each tile is computed by :func:`tile_map`: the
numpy reference stages of eSRRF (``catmull_rom.magnify`` / ``upsample_gradient``,
``roberts_cross``, ``rgc.radial_gradient_convergence``, the oracle every backend of
:func:`livesr.kernels.esrrf_frame` is checked against) but with the
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

from livesr.kernels.tiling._maps import (
    _cupy_tile_runner,
    fused_tile_taps,
    numba_tile_map,
    tile_map,
)
from livesr.kernels.tiling._plan import Halo, Tile, halo, plan_tiles, verify_tile
from livesr.kernels.tiling._run import (
    BACKENDS,
    MapFn,
    TiledFrameMap,
    esrrf_frame_tiled,
    esrrf_tiled,
)

__all__ = [
    "BACKENDS",
    "Halo",
    "MapFn",
    "Tile",
    "TiledFrameMap",
    "_cupy_tile_runner",  # bench/multi_gpu_tiling.py builds per-device runners
    "esrrf_frame_tiled",
    "esrrf_tiled",
    "fused_tile_taps",
    "halo",
    "numba_tile_map",
    "plan_tiles",
    "tile_map",
    "verify_tile",
]
