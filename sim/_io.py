"""Write a simulated acquisition (OME-TIFF or OME-Zarr) and its ground truth.

Output folder layout (``write_acquisition``):

* ``frames.ome.tif`` or ``frames.ome.zarr``: (t, y, x) uint16 frames with pixel
  size (um) and frame interval (s) metadata;
* ``truth.npz``: per-frame ``index``, ``time_s``, ``displacement_um`` (t, 2),
  ``displacement_px`` (t, 2), ``drift_um`` (t, 3), ``stage_xy_um`` (t, 2) (x, y),
  ``stage_z_um``, ``focus_offset_um``, ``sigma_px``, ``on_packed`` (t, ceil(n/8))
  uint8 (``np.unpackbits(on_packed, axis=1, count=n)`` restores the (t, n) bool
  on-states), and per emitter ``emitter_positions_um`` (n, 2) (y, x) sample frame
  and ``positions0_px`` (n, 2) ROI pixels at zero displacement (frame ``i``:
  ``positions0_px + displacement_px[i]``);
* ``truth.csv``: the per-frame scalars as a table;
* ``ground_truth.tif``: float32 high-resolution structure image (see
  :meth:`livesr.sim.Microscope.ground_truth_image`), upsampling in its description;
* ``config.json``: the effective :class:`livesr.sim.SimConfig`.

Frames are rendered and written chunk by chunk; memory does not grow with the
number of frames except for the (small) truth tables.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from livesr.sim._microscope import FrameTruth, Microscope
from livesr.sim._toml import config_to_dict

__all__ = ["FORMATS", "TruthRecorder", "write_acquisition"]

logger = logging.getLogger(__name__)

FORMATS = ("ome-tiff", "ome-zarr")
_FRAME_NAMES = {"ome-tiff": "frames.ome.tif", "ome-zarr": "frames.ome.zarr"}
_TRUTH_FILES = ("truth.npz", "truth.csv", "ground_truth.tif", "config.json")


class TruthRecorder:
    """Collects :class:`FrameTruth` records (on-states bit-packed)."""

    def __init__(self) -> None:
        self._rows: list[tuple[float, ...]] = []
        self._on: list[np.ndarray] = []

    def append(self, t: FrameTruth) -> None:
        """Record one frame's truth."""
        self._rows.append(
            (
                t.index,
                t.time_s,
                *t.displacement_um,
                *t.displacement_px,
                *t.drift_um,
                *t.stage_xy_um,
                t.stage_z_um,
                t.focus_offset_um,
                t.sigma_px,
                int(t.on.sum()),
            )
        )
        self._on.append(np.packbits(t.on))

    _COLUMNS = (
        "index",
        "time_s",
        "displacement_y_um",
        "displacement_x_um",
        "displacement_y_px",
        "displacement_x_px",
        "drift_y_um",
        "drift_x_um",
        "drift_z_um",
        "stage_x_um",
        "stage_y_um",
        "stage_z_um",
        "focus_offset_um",
        "sigma_px",
        "n_on",
    )

    def save(self, folder: Path, scope: Microscope) -> None:
        """Write ``truth.npz`` and ``truth.csv`` into ``folder``."""
        n_em = scope.n_emitters
        rows = np.asarray(self._rows, dtype=np.float64).reshape(-1, len(self._COLUMNS))
        on = (
            np.stack(self._on)
            if self._on
            else np.zeros((0, (n_em + 7) // 8), dtype=np.uint8)
        )
        np.savez_compressed(
            folder / "truth.npz",
            index=rows[:, 0].astype(np.int64),
            time_s=rows[:, 1],
            displacement_um=rows[:, 2:4],
            displacement_px=rows[:, 4:6],
            drift_um=rows[:, 6:9],
            stage_xy_um=rows[:, 9:11],
            stage_z_um=rows[:, 11],
            focus_offset_um=rows[:, 12],
            sigma_px=rows[:, 13],
            on_packed=on,
            n_emitters=np.int64(n_em),
            emitter_positions_um=scope.emitter_positions_um,
            positions0_px=scope.emitter_positions_um / scope.pixel_size_um
            - np.array(scope.config.camera.roi_or_full[:2], dtype=np.float64),
            pixel_size_um=np.float64(scope.pixel_size_um),
        )
        fmt = ["%d", *["%.9g"] * (len(self._COLUMNS) - 2), "%d"]
        np.savetxt(
            folder / "truth.csv",
            rows,
            delimiter=",",
            header=",".join(self._COLUMNS),
            comments="",
            fmt=fmt,
        )


def _frames(
    scope: Microscope,
    n: int,
    chunk: int,
    rec: TruthRecorder,
    tick: Callable[[int], object],
) -> Iterator[np.ndarray]:
    """Yield (c, h, w) uint16 chunks, recording the truth."""
    done = 0
    while done < n:
        c = min(chunk, n - done)
        stack, truths = scope.acquire(c)
        for t in truths:
            rec.append(t)
        done += c
        tick(c)
        yield stack


def _write_tiff(
    path: Path, scope: Microscope, chunks: Iterator[np.ndarray], n: int
) -> None:
    import tifffile

    h, w = scope.shape
    cam = scope.config.camera
    interval_s = max(cam.interval_ms, cam.exposure_ms) / 1000.0
    ps = scope.pixel_size_um

    def pages() -> Iterator[np.ndarray]:
        for block in chunks:
            yield from block

    meta = {
        "axes": "TYX",
        "PhysicalSizeX": ps,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": ps,
        "PhysicalSizeYUnit": "µm",
        "TimeIncrement": interval_s,
        "TimeIncrementUnit": "s",
    }
    with tifffile.TiffWriter(path, bigtiff=n * h * w * 2 > 2**31, ome=True) as tif:
        tif.write(pages(), shape=(n, h, w), dtype=np.uint16, metadata=meta)


def _write_zarr(
    path: Path, scope: Microscope, chunks: Iterator[np.ndarray], n: int, chunk: int
) -> None:
    import zarr

    h, w = scope.shape
    cam = scope.config.camera
    interval_s = max(cam.interval_ms, cam.exposure_ms) / 1000.0
    ps = scope.pixel_size_um
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "name": "livesr-sim",
                "axes": [
                    {"name": "t", "type": "time", "unit": "second"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [interval_s, ps, ps]}
                        ],
                    }
                ],
            }
        ],
    }
    arr = root.create_array(
        "0",
        shape=(n, h, w),
        chunks=(max(1, min(chunk, n)), h, w),
        dtype="uint16",
        dimension_names=["t", "y", "x"],
        fill_value=0,
    )
    start = 0
    for block in chunks:
        arr[start : start + len(block)] = block
        start += len(block)


def write_acquisition(
    scope: Microscope,
    folder: str | Path,
    n_frames: int,
    *,
    fmt: str = "ome-tiff",
    chunk: int = 64,
    upsample: int = 8,
    overwrite: bool = False,
    progress: Callable[[int], object] | None = None,
) -> Path:
    """Render ``n_frames`` from ``scope`` and write frames + ground truth to ``folder``.

    Parameters
    ----------
    scope : Microscope
        The simulator (rendering continues from its current frame index).
    folder : str or Path
        Output folder (created if missing).
    n_frames : int
        Frames to write, >= 1.
    fmt : {"ome-tiff", "ome-zarr"}
        Frame file format.
    chunk : int
        Frames rendered and written per step.
    upsample : int
        Upsampling of ``ground_truth.tif``.
    overwrite : bool
        Replace existing output files; otherwise an existing one is an error.
    progress : callable, optional
        Called with the number of frames just written (e.g. ``tqdm.update``).

    Returns
    -------
    Path
        Path of the frame file.
    """
    if fmt not in FORMATS:
        raise ValueError(
            f"format {fmt!r} is not supported; expected one of {', '.join(FORMATS)}"
        )
    if n_frames < 1 or chunk < 1:
        raise ValueError(f"n_frames={n_frames} and chunk={chunk} must both be >= 1")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    target = out / _FRAME_NAMES[fmt]
    existing = [p for p in (target, *(out / f for f in _TRUTH_FILES)) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists; choose another --output or pass --overwrite"
        )
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    rec = TruthRecorder()
    tick = progress if progress is not None else (lambda _n: None)
    chunks = _frames(scope, n_frames, chunk, rec, tick)
    if fmt == "ome-tiff":
        _write_tiff(target, scope, chunks, n_frames)
    else:
        _write_zarr(target, scope, chunks, n_frames, chunk)
    rec.save(out, scope)
    _write_ground_truth(out / "ground_truth.tif", scope, upsample)
    (out / "config.json").write_text(
        json.dumps(config_to_dict(scope.config), indent=2), encoding="utf-8"
    )
    return target


def _write_ground_truth(path: Path, scope: Microscope, upsample: int) -> None:
    import tifffile

    gt = scope.ground_truth_image(upsample)
    desc = json.dumps(
        {
            "livesr": "ground truth emitter counts",
            "upsample": upsample,
            "pixel_size_um": scope.pixel_size_um / upsample,
            "mapping": "high-res pixel i covers camera coordinates "
            "[i/upsample - 0.5, (i+1)/upsample - 0.5)",
        }
    )
    tifffile.imwrite(path, gt, description=desc, metadata=None, compression="zlib")
