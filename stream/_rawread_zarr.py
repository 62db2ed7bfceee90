"""OME-Zarr reader of :func:`livesr.stream._rawread.open_recording` (the writer of the
same format: :mod:`livesr.stream._rawstore_zarr`).

OME-NGFF 0.5 / 0.4, ``bioformats2raw.layout`` or a bare 3-D array; dataset 0 of the
first multiscale; a livesr raw store also gives per-frame timestamps.  Uncompressed
zarr v3 chunks holding whole frames are read straight from their files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
    _recover_if_crashed,
    _relative_times,
    _time_axis,
    _unit_factor,
    livesr_acquisition,
)

__all__ = ["open_zarr"]

logger = logging.getLogger("livesr.stream._rawread")


# ---------------------------------------------------------------------- zarr
class _ChunkFiles:
    """Frames of an uncompressed zarr v3 array read straight from its chunk files.

    For arrays whose only codec is ``bytes`` (no compression, no transpose) with the
    default ``/`` chunk keys on a local folder, and whose chunks hold whole frames
    (every axis but ``t`` is one chunk): a block of frames is one ``readinto`` per
    chunk file into a new array, no zarr-python (no asyncio round trip per read).
    ``source[key]`` accepts the keys :class:`Recording` builds (a slice along ``t``,
    0 on the other length-1 axes, full slices on rows and columns).
    """

    def __init__(self, array_dir: Path, arr: Any, t_axis: int) -> None:
        self.dir = array_dir
        self.shape = tuple(int(s) for s in arr.shape)
        self.chunks = tuple(int(c) for c in arr.chunks)
        self.dtype = np.dtype(arr.dtype).newbyteorder("<")
        self.ndim = len(self.shape)
        self.t_axis = t_axis
        self.fill = arr.metadata.fill_value
        self.frame_bytes = self.shape[-2] * self.shape[-1] * self.dtype.itemsize

    @classmethod
    def of(cls, arr: Any, t_axis: int) -> _ChunkFiles | None:
        try:
            from zarr.codecs import BytesCodec
            from zarr.storage import LocalStore

            md = arr.metadata
            if md.zarr_format != 3 or not isinstance(arr.store, LocalStore):
                return None
            if len(md.codecs) != 1 or not isinstance(md.codecs[0], BytesCodec):
                return None
            if (
                getattr(md.chunk_key_encoding, "name", "") != "default"
                or getattr(md.chunk_key_encoding, "separator", "") != "/"
            ):
                return None
            if md.storage_transformers:
                return None
            chunks, shape = arr.chunks, arr.shape
            if any(chunks[ax] < shape[ax] for ax in range(len(shape)) if ax != t_axis):
                return None
            root = Path(str(arr.store.root))
            return cls(root / arr.path if arr.path else root, arr, t_axis)
        except Exception as exc:  # any doubt: read through zarr
            logger.debug("zarr chunk files not read directly: %s", exc)
            return None

    def _chunk_file(self, j: int) -> Path:
        idx = ["0"] * self.ndim
        idx[self.t_axis] = str(j)
        return self.dir.joinpath("c", *idx)

    def __getitem__(self, key: tuple[Any, ...]) -> np.ndarray:
        t = key[self.t_axis]
        lo, hi, _ = t.indices(self.shape[self.t_axis])
        out = np.empty((max(0, hi - lo), self.shape[-2], self.shape[-1]), self.dtype)
        k = self.chunks[self.t_axis]
        i = lo
        while i < hi:
            j = i // k
            a, b = i - j * k, min(hi, (j + 1) * k) - j * k
            dst = out[i - lo : i - lo + (b - a)]
            path = self._chunk_file(j)
            try:
                with open(path, "rb", buffering=0) as fh:
                    fh.seek(a * self.frame_bytes)
                    got = fh.readinto(dst.data.cast("B"))
            except FileNotFoundError:  # never written: the fill value (zarr's rule)
                dst[...] = self.fill
                got = dst.nbytes
            if got < dst.nbytes:  # a chunk is stored whole: a short one is damaged
                raise ValueError(
                    f"chunk file {path} ends {dst.nbytes - got} byte(s) short "
                    f"(expected {k * self.frame_bytes} bytes)"
                )
            i += b - a
        return out



def open_zarr(path: Path) -> Recording:
    """Open an OME-Zarr image or a bare 3-D zarr array (see the module docstring)."""
    import zarr

    _recover_if_crashed(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises many types for a damaged store
        raise CorruptRecordingError(
            f"recording {path}: not a readable zarr store: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(node, zarr.Array):
        axes = "tyx" if node.ndim == 3 else ""
        t_axis = _time_axis(path, axes, node.shape)
        return Recording(
            path,
            "ome-zarr",
            _ChunkFiles.of(node, t_axis) or node,
            axes,
            t_axis,
            pixel_size_um=None,
            interval_s=None,
            timestamps_s=None,
            block_frames=int(node.chunks[t_axis]),
        )
    group, attrs, ms, ds, arr = _ome_image(path, node)
    ax_meta: list[Any] = ms.get("axes") or []
    names = [(a.get("name", "?") if isinstance(a, dict) else str(a)) for a in ax_meta]
    if names and len(names) != arr.ndim:
        raise CorruptRecordingError(
            f"recording {path}: {len(names)} axes in the metadata ({names}) for a "
            f"{arr.ndim}-D array"
        )
    if not names:
        names = ["t", "y", "x"] if arr.ndim == 3 else [f"d{i}" for i in range(arr.ndim)]
    axes = "".join(n[0] if len(n) else "?" for n in names)
    if [n.lower() for n in names[-2:]] != ["y", "x"]:
        raise RecordingError(f"recording {path}: axes {names} do not end in y, x")
    t_axis = _time_axis(path, axes, arr.shape)
    px, interval = _calibration(ms, ds, arr.ndim, ax_meta, names, t_axis)
    ts = _livesr_timestamps(path, group, arr.shape[t_axis])
    _check_livesr_raw(path, attrs.get("livesr"))
    source: Any = _ChunkFiles.of(arr, t_axis) or arr
    return Recording(
        path,
        "ome-zarr",
        source,
        axes,
        t_axis,
        pixel_size_um=px,
        interval_s=interval,
        timestamps_s=ts,
        block_frames=int(arr.chunks[t_axis]),
        acquisition=livesr_acquisition(path, attrs.get("livesr")),
    )


def _ome_image(
    path: Path, node: Any
) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any], Any]:
    """The image of an OME-Zarr group: ``(group, attrs, multiscale 0, dataset 0,
    array)`` (through a ``bioformats2raw.layout`` to its image ``0``)."""
    import zarr

    group: Any = node
    attrs: dict[str, Any] = dict(group.attrs)
    ome: Any = attrs.get("ome", attrs)
    if "bioformats2raw.layout" in ome and "multiscales" not in ome:
        try:
            group = group["0"]
        except KeyError:
            raise RecordingError(
                f"recording {path}: bioformats2raw layout without image '0'"
            ) from None
        attrs = dict(group.attrs)
        ome = attrs.get("ome", attrs)
    ms_list: Any = ome.get("multiscales")
    if not ms_list:
        arrays = sorted(name for name, _ in group.arrays())
        raise RecordingError(
            f"recording {path}: zarr group without OME-NGFF 'multiscales' metadata "
            "(arrays: "
            f"{', '.join(arrays) or 'none'}); expected an OME-Zarr image or a bare 3-D "
            "zarr array"
        )
    ms: dict[str, Any] = ms_list[0]
    datasets = ms.get("datasets") or []
    if not datasets or "path" not in datasets[0]:
        raise CorruptRecordingError(
            f"recording {path}: multiscales[0] lists no datasets"
        )
    ds: dict[str, Any] = datasets[0]
    try:
        arr = group[ds["path"]]
    except KeyError:
        raise CorruptRecordingError(
            f"recording {path}: dataset {ds['path']!r} is missing"
        ) from None
    if not isinstance(arr, zarr.Array):
        raise CorruptRecordingError(
            f"recording {path}: dataset {ds['path']!r} is not an array"
        )
    return group, attrs, ms, ds, arr


def _calibration(
    ms: Mapping[str, Any],
    ds: Mapping[str, Any],
    ndim: int,
    ax_meta: list[Any],
    names: list[str],
    t_axis: int,
) -> tuple[float | None, float | None]:
    """Pixel size (um) and frame interval (s) from the NGFF scale and axis units."""
    scale = _ngff_scale(ms, ds, ndim)
    px = interval = None
    if scale is None:
        return px, interval
    unit = ax_meta[-1].get("unit") if ax_meta and isinstance(ax_meta[-1], dict) else None
    f = _unit_factor(unit, _SPACE_UNITS_UM, 1.0)
    if f is not None and _finite_positive(scale[-1]):
        px = float(scale[-1]) * f
    t_meta = ax_meta[t_axis] if ax_meta and isinstance(ax_meta[t_axis], dict) else {}
    if t_meta.get("type") == "time" or names[t_axis].lower() == "t":
        tf = _unit_factor(t_meta.get("unit"), _TIME_UNITS_S, 1.0)
        if tf is not None and _finite_positive(scale[t_axis]):
            interval = float(scale[t_axis]) * tf
    return px, interval


def _ngff_scale(
    ms: Mapping[str, Any], ds: Mapping[str, Any], ndim: int
) -> list[float] | None:
    """Dataset ``scale`` times the multiscale-level ``scale`` (if any)."""
    out: list[float] | None = None
    for ct_list in (
        ds.get("coordinateTransformations") or [],
        ms.get("coordinateTransformations") or [],
    ):
        for ct in ct_list:
            if (
                isinstance(ct, dict)
                and ct.get("type") == "scale"
                and isinstance(ct.get("scale"), list)
            ):
                s = ct["scale"]
                if len(s) != ndim:
                    continue
                out = (
                    [float(v) for v in s]
                    if out is None
                    else [a * float(b) for a, b in zip(out, s, strict=True)]
                )
    return out


def _check_livesr_raw(path: Path, live: Any) -> None:
    """Warn about a livesr raw store that was not closed cleanly or has gaps."""
    if not isinstance(live, dict) or live.get("kind") != "raw":
        return
    if not live.get("complete", True):
        logger.warning(
            "recording %s was not closed cleanly (%s); replaying the frames it holds",
            path,
            live.get("error") or "incomplete",
        )
    gaps = live.get("gaps") or []
    lost = sum(
        int(g[1]) - int(g[0]) + 1 for g in gaps if isinstance(g, list) and len(g) >= 2
    )
    if lost:
        logger.warning(
            "recording %s misses %d frame(s) in %d gap(s); frames are replayed back "
            "to back, so windows across a gap differ from the live run",
            path,
            lost,
            len(gaps),
        )



def _livesr_timestamps(path: Path, group: Any, n: int) -> np.ndarray | None:
    """Per-frame times of a livesr raw store (``frames/t_acq``); None elsewhere."""
    try:
        t = group["frames/t_acq"]
    except KeyError:
        return None
    try:
        return _relative_times(path, np.asarray(t[:]), n)
    except Exception as exc:  # the table is optional: never fail the replay over it
        logger.warning(
            "recording %s: frames/t_acq unreadable (%s); timestamps ignored", path, exc
        )
        return None

