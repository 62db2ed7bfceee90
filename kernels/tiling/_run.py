"""Tiled eSRRF drivers: tiles over CPU workers or GPUs, one frame or a stack."""

from __future__ import annotations

import logging
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
    validate_out,
    validate_shift,
)
from livesr.kernels.tiling._maps import (
    _CUPY_LOCK,
    _cupy_tile_runner,
    numba_tile_map,
    tile_map,
)
from livesr.kernels.tiling._plan import Tile, plan_tiles

logger = logging.getLogger("livesr.kernels.tiling")

MapFn = Callable[..., np.ndarray]

#: Exact CPU tile maps: numpy reference stages, fused numba kernels.
BACKENDS: tuple[str, ...] = ("numpy", "numba")


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
        As :func:`livesr.kernels.esrrf_frame`.
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
    image = validate_out(out, shape_out)
    if image is None:
        image = np.empty(shape_out, dtype=np.float32)

    def job(n: int) -> None:
        image[tiles[n].output] = comp(n, img)

    _run_tiles(job, len(tiles), nw, devs)
    if _keep is not None:
        _keep(comp)
    return image


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
    """Batch eSRRF (:func:`livesr.kernels.esrrf`) computed tile by tile.

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
        _temporal_tiled(out[b], frames, comp, mode, nw, devs)
        if mode == "tac2" and len(frames) < 2:
            logger.warning(
                "temporal='tac2' needs at least 2 frames per block; block %d has "
                "%d frame, its image is NaN (as NanoPyx)",
                b,
                len(frames),
            )
        if macro_pixel_correction:
            out[b] = mp_correct(out[b], m)
    return out[0] if f_per == 0 else out


def _temporal_tiled(
    image: np.ndarray,
    frames: list[np.ndarray],
    comp: _TileComputer,
    mode: str,
    workers: int,
    devices: list[int] | None,
) -> None:
    """Write into ``image`` the temporal statistic ``mode`` of the maps of
    ``frames``, each worker / device accumulating whole tiles over all frames."""
    from livesr.kernels.temporal import TemporalAccumulator

    tiles = comp.tiles

    def job(n: int) -> None:
        core = tiles[n].output
        shape = (core[0].stop - core[0].start, core[1].stop - core[1].start)
        acc = TemporalAccumulator(mode, shape)
        for f in frames:
            acc.add(comp(n, f))
        image[core] = acc.result()

    _run_tiles(job, len(tiles), workers, devices)
