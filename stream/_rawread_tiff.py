"""TIFF and OME-TIFF reader of :func:`livesr.stream._rawread.open_recording` (the
writer of the same format: :mod:`livesr.stream._rawstore_tiff`).

Series 0; OME-XML (``PhysicalSizeX``, ``TimeIncrement``, ``Plane/@DeltaT``) or ImageJ
metadata give pixel size and timing; contiguous uncompressed data are memory-mapped,
anything else is read page by page through ``tifffile``'s zarr store.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._rawread import Recording
from livesr.stream._rawread_base import (
    _SPACE_UNITS_UM,
    _TIME_UNITS_S,
    CorruptRecordingError,
    RecordingError,
    _finite_positive,
    _interval_from,
    _recover_if_crashed,
    _relative_times,
    _time_axis,
    _unit_factor,
    livesr_acquisition,
)

__all__ = ["open_tiff"]

logger = logging.getLogger("livesr.stream._rawread")


# ---------------------------------------------------------------------- TIFF
def _xml_local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_pixels(
    path: Path, xml: str
) -> tuple[float | None, float | None, np.ndarray | None, int]:
    """Pixel size (um), interval (s), DeltaT per t, SizeT of the first OME Pixels."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        logger.warning(
            "recording %s: OME-XML does not parse (%s); no metadata used", path, exc
        )
        return None, None, None, 0
    pixels = next((el for el in root.iter() if _xml_local(el.tag) == "Pixels"), None)
    if pixels is None:
        return None, None, None, 0
    a = pixels.attrib
    px = None
    sx = _finite_positive(a.get("PhysicalSizeX"))
    if sx is not None:
        f = _unit_factor(a.get("PhysicalSizeXUnit"), _SPACE_UNITS_UM, 1.0)
        if f is None:
            logger.warning(
                "recording %s: PhysicalSizeXUnit %r unknown; pixel size ignored",
                path,
                a.get("PhysicalSizeXUnit"),
            )
        else:
            px = sx * f
            sy = _finite_positive(a.get("PhysicalSizeY"))
            fy = _unit_factor(a.get("PhysicalSizeYUnit"), _SPACE_UNITS_UM, 1.0)
            if (
                sy is not None
                and fy is not None
                and not math.isclose(sy * fy, px, rel_tol=1e-6)
            ):
                logger.warning(
                    "recording %s: pixels are not square (x %.4g um, y %.4g um); using "
                    "x",
                    path,
                    px,
                    sy * fy,
                )
    interval = None
    ti = _finite_positive(a.get("TimeIncrement"))
    if ti is not None:
        f = _unit_factor(a.get("TimeIncrementUnit"), _TIME_UNITS_S, 1.0)
        interval = ti * f if f is not None else None
    size_t = int(a.get("SizeT", "0") or 0)
    delta: dict[int, float] = {}
    for plane in pixels:
        if _xml_local(plane.tag) != "Plane":
            continue
        p = plane.attrib
        if (
            int(p.get("TheC", "0") or 0)
            or int(p.get("TheZ", "0") or 0)
            or "DeltaT" not in p
        ):
            continue
        try:
            dt = float(p["DeltaT"])
            tt = int(p.get("TheT", "0") or 0)
        except ValueError:
            continue
        f = _unit_factor(p.get("DeltaTUnit"), _TIME_UNITS_S, 1.0)
        if f is not None:
            delta.setdefault(tt, dt * f)
    ts = None
    if size_t > 1 and len(delta) == size_t:
        ts = (
            np.array([delta[k] for k in range(size_t)], dtype=np.float64)
            if set(delta) == set(range(size_t))
            else None
        )
    return px, interval, ts, size_t


def _imagej_meta(path: Path, tif: Any) -> tuple[float | None, float | None]:
    ij = tif.imagej_metadata or {}
    px = None
    unit = ij.get("unit")
    f = _unit_factor(unit, _SPACE_UNITS_UM, 1.0) if unit else None
    if f is not None:
        tag = tif.pages[0].tags.get("XResolution")
        if tag is not None:
            num, den = tag.value
            if num > 0 and den > 0:
                px = (den / num) * f
    interval = _finite_positive(ij.get("finterval"))
    if interval is not None:
        tf = _unit_factor(ij.get("tunit"), _TIME_UNITS_S, 1.0)
        interval = interval * tf if tf is not None else None
    return px, interval


def _check_series(
    path: Path, tif: Any, named_ome: bool, n_pages: int
) -> tuple[Any, str, tuple[int, ...]]:
    """Series 0 of ``tif``, its axes and shape; refuses damaged files and RGB."""
    if not tif.series:
        raise CorruptRecordingError(
            f"recording {path}: not a readable TIFF file: no image found (damaged "
            "or truncated?)"
        )
    series = tif.series[0]
    if len(tif.series) > 1:
        logger.warning(
            "recording %s holds %d image series; replaying series 0 (%s %s)",
            path,
            len(tif.series),
            series.axes,
            tuple(series.shape),
        )
    axes, shape = str(series.axes), tuple(int(s) for s in series.shape)
    page_bytes = int(np.prod(shape[-2:])) * np.dtype(series.dtype or "u1").itemsize
    size = path.stat().st_size
    if named_ome and not tif.is_ome and n_pages <= 1 and size > 2 * page_bytes:
        raise CorruptRecordingError(
            f"recording {path}: damaged or truncated OME-TIFF: its OME metadata "
            f"cannot be read and only {n_pages} page of {shape[-2]}x{shape[-1]} "
            f"is readable in a {size}-byte file"
        )
    if len(shape) == 2 and size > 3 * page_bytes:
        raise CorruptRecordingError(
            f"recording {path}: damaged or truncated TIFF: only one readable "
            f"{shape[0]}x{shape[1]} page in a {size}-byte file"
        )
    if series.dtype is None:
        raise CorruptRecordingError(f"recording {path}: TIFF series 0 has no sample type")
    if axes.endswith("S") or (len(axes) >= 3 and axes[-3:] in ("YXS", "SYX")):
        raise RecordingError(
            f"recording {path}: TIFF series 0 has samples per pixel (axes {axes}, "
            f"shape {shape}, RGB?); "
            "expected grey-level frames"
        )
    if not axes.endswith("YX"):
        raise RecordingError(f"recording {path}: TIFF series 0 axes {axes} do not end in YX")
    return series, axes, shape


def _frame_source(
    path: Path, series: Any, shape: tuple[int, ...], t_axis: int
) -> tuple[Any, int]:
    """A memory map of series 0 (contiguous uncompressed data), else its zarr store
    read page by page; and the frames read together."""
    import tifffile
    import zarr

    try:
        source: Any = tifffile.memmap(path, series=0, mode="r")
        source = source.reshape(shape)
        block = 1  # the memory map closes when the last view is dropped
    except (ValueError, OSError):
        source = zarr.open(series.aszarr(), mode="r")
        chunks = getattr(source, "chunks", None) or (1,)
        block = int(chunks[t_axis]) if len(chunks) == len(shape) else 1
    if tuple(source.shape) != shape:
        raise CorruptRecordingError(
            f"recording {path}: TIFF series 0 reads as {tuple(source.shape)}, "
            f"expected {shape}"
        )
    return source, block


def open_tiff(path: Path) -> Recording:
    """Open a TIFF or OME-TIFF file (see the module docstring)."""
    import tifffile

    named_ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    if named_ome:
        _recover_if_crashed(path)
    try:
        tif = tifffile.TiffFile(path)
        n_pages = len(tif.pages)  # reading the page index fails on a damaged file
    except (tifffile.TiffFileError, OSError, ValueError, struct_error()) as exc:
        raise CorruptRecordingError(
            f"recording {path}: not a readable TIFF file: {exc}"
        ) from exc
    try:
        series, axes, shape = _check_series(path, tif, named_ome, n_pages)
        t_axis = _time_axis(path, axes, shape)
        px = interval = ts = None
        fmt = "tiff"
        if tif.is_ome and tif.ome_metadata:
            fmt = "ome-tiff"
            px, interval, ts_t, size_t = _ome_pixels(path, tif.ome_metadata)
            if ts_t is not None and size_t == shape[t_axis] and axes[t_axis] in "TQI":
                ts = _relative_times(path, ts_t, shape[t_axis])
        elif tif.is_imagej:
            px, interval = _imagej_meta(path, tif)
        source, block = _frame_source(path, series, shape, t_axis)
    except BaseException:
        tif.close()
        raise
    interval = interval if interval is not None else _interval_from(ts)
    return Recording(
        path,
        fmt,
        source,
        axes,
        t_axis,
        pixel_size_um=px,
        interval_s=interval,
        timestamps_s=ts,
        block_frames=block,
        closers=[tif],
        acquisition=livesr_acquisition(path, None) if fmt == "ome-tiff" else None,
    )


def struct_error() -> type[Exception]:
    import struct

    return struct.error


