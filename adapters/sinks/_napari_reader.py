"""napari reader for livesr output folders (npe2 ``readers`` contribution).

A livesr output folder holds ``summary.json`` (see :mod:`livesr.stream._results`).
Opening it (the folder, or its ``summary.json``) gives, in this order:

``raw``
    ``raw.ome.zarr`` (array ``0``, ``t c z y x``; scale from its OME metadata) or
    ``raw.ome.tif`` (``t y x``; pixel size and interval from ``summary.json``).
``SR``
    ``sr.ome.zarr`` (``t c z y x``), scale from its OME metadata (raw pixel / M, µm;
    stride x frame interval, s), translated in y/x by the half-pixel mapping of
    :func:`livesr.adapters.sinks.napari_viewer.sr_transform` (geometry from the
    array's ``livesr.params``) and in t to the frame that completed its first window.
``drift``
    The displacement applied to each SR image (``windows.csv``), a Shapes path around
    the centre of the field of view (µm), when the run had drift correction on.

Zarr arrays are handed to napari lazily (nothing is read until displayed).
No napari or Qt import here.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["get_reader", "read_livesr_folder"]

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
_UNITS5 = ("second", "", "micrometer", "micrometer", "micrometer")


def _folder(path: Any) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_file() and p.name == "summary.json":
        p = p.parent
    return p if p.is_dir() and (p / "summary.json").is_file() else None


def get_reader(path: Any) -> Callable[[Any], list[LayerData]] | None:
    """Reader hook: :func:`read_livesr_folder` for a livesr output folder, or None."""
    return read_livesr_folder if _folder(path) is not None else None


def _ome_scale(group: Any) -> list[float]:
    ms = group.attrs["ome"]["multiscales"][0]
    for t in ms["datasets"][0]["coordinateTransformations"]:
        if t.get("type") == "scale":
            return [float(v) for v in t["scale"]]
    raise ValueError(f"{group.store}: no scale transformation in the OME metadata")


def _first_sr_frame(folder: Path, summary: dict[str, Any]) -> float:
    """Frame (from the first raw frame) that completed the first SR window."""
    try:
        with open(folder / "windows.csv", newline="", encoding="utf-8") as fh:
            row = next(csv.DictReader(fh))
        return float(row["last_frame"])
    except (OSError, StopIteration, KeyError, ValueError):
        window = ((summary.get("params") or {}).get("esrrf") or {}).get("window", 1)
        return float(window) - 1.0


def _drift_trace(folder: Path) -> np.ndarray | None:
    try:
        with open(folder / "windows.csv", newline="", encoding="utf-8") as fh:
            rows = [
                (float(r["dy_px"]), float(r["dx_px"]))
                for r in csv.DictReader(fh)
                if r.get("dy_px") not in (None, "") and r.get("dx_px") not in (None, "")
            ]
    except (OSError, KeyError, ValueError):
        return None
    return np.asarray(rows, dtype=float) if len(rows) >= 2 else None


def _attr_dict(group: Any, key: str) -> dict[str, Any]:
    """A JSON-object attribute of a zarr group as a dict (empty when absent or not one)."""
    value = group.attrs.get(key)
    return dict(value) if isinstance(value, dict) else {}


def _raw_layers(folder: Path, raw_px: Any, interval: float) -> tuple[list[LayerData], Any]:
    """The ``raw`` layer (zarr or TIFF store) and the raw pixel size it gives, um."""
    raw_zarr, raw_tif = folder / "raw.ome.zarr", folder / "raw.ome.tif"
    if raw_zarr.is_dir():
        import zarr

        g = zarr.open_group(str(raw_zarr), mode="r")
        scale = _ome_scale(g)
        kwargs = {
            "name": "raw",
            "scale": scale,
            "units": _UNITS5,
            "axis_labels": ("t", "c", "z", "y", "x"),
            "colormap": "gray",
            "metadata": {"livesr": _attr_dict(g, "livesr"), "path": str(raw_zarr)},
        }
        return [(g["0"], kwargs, "image")], scale[-1]
    if raw_tif.is_file():
        import tifffile

        data = tifffile.imread(raw_tif)
        if data.ndim == 2:
            data = data[None]
        px = float(raw_px or 1.0)
        kwargs = {
            "name": "raw",
            "scale": (interval, px, px),
            "units": ("second", "micrometer", "micrometer"),
            "axis_labels": ("t", "y", "x"),
            "colormap": "gray",
            "metadata": {"path": str(raw_tif)},
        }
        return [(data, kwargs, "image")], raw_px
    return [], raw_px


def _sr_layers(
    folder: Path, summary: dict[str, Any], raw_px: Any, interval: float
) -> list[LayerData]:
    """The ``SR`` layer (placed by the half-pixel mapping) and the ``drift`` trace."""
    import zarr

    from livesr.adapters.sinks._viewer_layers import sr_transform

    sr_zarr = folder / "sr.ome.zarr"
    if not sr_zarr.is_dir():
        return []
    g = zarr.open_group(str(sr_zarr), mode="r")
    arr: Any = g["0"]
    scale = _ome_scale(g)
    live = _attr_dict(g, "livesr")
    params = live.get("params") or {}
    m = int(
        params.get("magnification")
        or summary.get("params", {}).get("esrrf", {}).get("magnification", 1)
    )
    geometry = str(params.get("geometry", "nanopyx"))
    p = float(raw_px) if raw_px else scale[-1] * m
    _, offset = sr_transform(p, m, geometry)
    t0 = _first_sr_frame(folder, summary) * interval
    sr_kwargs = {
        "name": "SR",
        "scale": scale,
        "translate": (t0, 0.0, 0.0, offset, offset),
        "units": _UNITS5,
        "axis_labels": ("t", "c", "z", "y", "x"),
        "colormap": "magma",
        "blending": "additive",
        "metadata": {"livesr": live, "path": str(sr_zarr), "geometry": geometry},
    }
    layers: list[LayerData] = [(arr, sr_kwargs, "image")]
    trace = _drift_trace(folder)
    if trace is not None and summary.get("params", {}).get("drift", {}).get(
        "enabled", True
    ):
        h, w = arr.shape[-2:]
        centre = np.array([(h / m - 1) / 2 * p, (w / m - 1) / 2 * p])
        drift_kwargs = {
            "name": "drift",
            "shape_type": "path",
            "edge_color": "cyan",
            "edge_width": p / 10,
            "units": ("micrometer", "micrometer"),
        }
        layers.append(([trace * p + centre], drift_kwargs, "shapes"))
    return layers


def read_livesr_folder(path: Any) -> list[LayerData]:
    """Layers of a livesr output folder (see the module docstring).

    Parameters
    ----------
    path : path-like (or a one-element list of it)
        The output folder or its ``summary.json``.

    Returns
    -------
    list of (data, kwargs, layer_type)

    Raises
    ------
    ValueError
        ``path`` is not a livesr output folder, or it holds no image.
    """
    folder = _folder(path)
    if folder is None:
        raise ValueError(f"{path}: not a livesr output folder (it has no summary.json)")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    interval = float(summary.get("frame_interval_s") or 1.0)
    layers, raw_px = _raw_layers(folder, summary.get("pixel_size_um"), interval)
    layers += _sr_layers(folder, summary, raw_px, interval)
    if not layers:
        raise ValueError(
            f"{folder}: no raw.ome.zarr, raw.ome.tif or sr.ome.zarr in this livesr "
            "output folder"
        )
    return layers
