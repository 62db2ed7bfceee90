"""Readers of recorded frame stacks for replay: OME-TIFF, TIFF, OME-Zarr, ``.npy``.

::

    with open_recording("run/raw.ome.zarr") as rec:
        rec.shape, rec.dtype, rec.pixel_size_um, rec.interval_s, rec.timestamps_s
        frame = rec.read(10)                 # one (rows, cols) frame
        rec.read_into(11, buf)               # into a caller's buffer (a ring slot)

Nothing is loaded whole: frames are read on demand from a memory map (``.npy`` via
``np.load(mmap_mode="r")``; contiguous uncompressed TIFF via ``tifffile.memmap``) or
from zarr chunks (OME-Zarr arrays; other TIFFs through ``tifffile``'s ``aszarr``
store, one page per chunk).  A reader keeps at most one block of frames in memory:
one zarr chunk along ``t`` (capped at :data:`MAX_BLOCK_BYTES`; a larger chunk is read
frame by frame, which decodes the chunk again for every frame: slow, but bounded) or
a single frame.  Pages of a memory map that were read are given back every 8 MiB
(``madvise(MADV_DONTNEED)``), so the resident size stays flat through a file larger
than memory.  Only the per-frame timestamp table (8 bytes per frame) is held for the
whole file.

Formats (:data:`SUPPORTED`)
---------------------------
``*.ome.tif``/``*.ome.tiff`` (and any TIFF whose first page holds OME-XML)
    Series 0; ``PhysicalSizeX`` (+ unit) -> pixel size, ``TimeIncrement`` (+ unit)
    -> frame interval, ``Plane/@DeltaT`` of every plane -> per-frame timestamps.
``*.tif``/``*.tiff`` (plain)
    Series 0; ImageJ metadata (``unit`` + ``XResolution``, ``finterval``) when present,
    otherwise no pixel size and no timing.
``*.zarr``/``*.ome.zarr`` (folder)
    OME-NGFF 0.5 (zarr v3, ``ome`` attribute) or 0.4 (``multiscales`` at the top),
    ``bioformats2raw.layout`` (image ``0``), or a bare 3-D zarr array.  Dataset 0 of
    the first multiscale; axis units and ``scale`` give pixel size and interval.  A
    livesr raw store (``raw.ome.zarr``) also gives per-frame timestamps
    (``frames/t_acq``).
``*.npy``
    A (t, rows, cols) array; no metadata.

Dimensions: the last two axes are rows and columns; exactly one other axis may be
longer than 1 (time, or whatever is stacked: ``t``, ``z``, ``q``...), every other axis
must have length 1 (a multi-channel or multi-position file is refused, naming the
axes).  A 2-D image is refused: replay needs a stack of frames.

Pixel size: the ``pixel_size_um`` argument overrides the file; when neither gives one
:data:`DEFAULT_PIXEL_SIZE_UM` is used with a warning (``pixel_size_origin`` says which).

Sample dtypes the wire carries (uint8/16/32, float32/64) are read as they are; other
integer/float types are converted without loss where possible (int8/int16/float16 ->
float32, int32/int64/uint64 -> float64, bool -> uint8) and the conversion is logged.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PIXEL_SIZE_UM",
    "MAX_BLOCK_BYTES",
    "SUPPORTED",
    "CorruptRecordingError",
    "Recording",
    "RecordingError",
    "open_recording",
]

logger = logging.getLogger(__name__)

#: Pixel size used when neither the file nor the caller gives one (with a warning).
DEFAULT_PIXEL_SIZE_UM = 0.1

#: Largest block of frames a reader holds at once (one zarr chunk along t).
MAX_BLOCK_BYTES = 64 * 2**20

#: File name endings understood, and their format names.
SUPPORTED: dict[str, str] = {
    ".ome.tif": "ome-tiff",
    ".ome.tiff": "ome-tiff",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".ome.zarr": "ome-zarr",
    ".zarr": "ome-zarr",
    ".npy": "npy",
}

#: Wire dtypes (livesr.stream._wire.FRAME_DTYPES) and lossless conversions into them.
_WIRE_DTYPES = ("uint8", "uint16", "uint32", "float32", "float64")
_CONVERT = {
    "bool": "uint8",
    "int8": "float32",
    "int16": "float32",
    "float16": "float32",
    "int32": "float64",
    "int64": "float64",
    "uint64": "float64",
}

_SPACE_UNITS_UM = {
    "angstrom": 1e-4,
    "nanometer": 1e-3,
    "nm": 1e-3,
    "micrometer": 1.0,
    "micron": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "\u03bcm": 1.0,
    "millimeter": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "cm": 1e4,
    "meter": 1e6,
    "m": 1e6,
}
_TIME_UNITS_S = {
    "nanosecond": 1e-9,
    "ns": 1e-9,
    "microsecond": 1e-6,
    "us": 1e-6,
    "µs": 1e-6,
    "millisecond": 1e-3,
    "ms": 1e-3,
    "second": 1.0,
    "sec": 1.0,
    "s": 1.0,
    "minute": 60.0,
    "min": 60.0,
    "hour": 3600.0,
    "h": 3600.0,
}


class RecordingError(ValueError):
    """A recording that cannot be replayed as asked (type, dimensions, range...)."""


class CorruptRecordingError(OSError):
    """A recording whose content cannot be read (damaged or truncated file)."""


def supported_text() -> str:
    """The supported file types, for error messages."""
    return (
        "OME-TIFF (.ome.tif, .ome.tiff), TIFF (.tif, .tiff), "
        "OME-Zarr (.ome.zarr, .zarr folder), NumPy (.npy)"
    )


def detect_format(path: str | Path) -> str:
    """Format name of ``path`` from its name (see :data:`SUPPORTED`).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    RecordingError
        The name ends in nothing supported.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"recording {p} does not exist")
    name = p.name.lower()
    for ending in sorted(SUPPORTED, key=len, reverse=True):
        if name.endswith(ending):
            return SUPPORTED[ending]
    if p.is_dir() and (
        (p / "zarr.json").exists()
        or (p / ".zgroup").exists()
        or (p / ".zarray").exists()
    ):
        return "ome-zarr"
    raise RecordingError(
        f"recording {p}: file type {p.suffix or '(no extension)'!r} is not supported; "
        f"supported: {supported_text()}"
    )


class Recording:
    """A recorded (t, rows, cols) frame stack read on demand (see the module docstring).

    Attributes
    ----------
    path : Path
        The file or folder.
    format : str
        ``"ome-tiff"``, ``"tiff"``, ``"ome-zarr"`` or ``"npy"``.
    shape : tuple of int
        ``(frames, rows, cols)``.
    dtype : numpy.dtype
        Dtype of the frames as read (a wire dtype; see :attr:`source_dtype`).
    source_dtype : numpy.dtype
        Dtype stored in the file.
    axes : str
        Axes of the stored array (e.g. ``"TYX"``, ``"tczyx"``).
    pixel_size_um : float
        Pixel size in the sample plane, um.
    pixel_size_origin : str
        ``"metadata"``, ``"override"`` (caller's value) or ``"default"``.
    interval_s : float or None
        Frame interval, s (None when the file gives no timing).
    timestamps_s : ndarray or None
        Per-frame times relative to frame 0, s (None when absent).
    block_frames : int
        Frames read together (one chunk along t; 1 for memory maps).
    acquisition : dict
        For a raw store written by livesr (or its run folder): ``stream`` (the live
        stream's name), ``run_folder`` and ``config`` (the run's ``config.toml``, or
        None) when known; empty for any other file.
    """

    def __init__(
        self,
        path: Path,
        fmt: str,
        source: Any,
        axes: str,
        t_axis: int,
        *,
        pixel_size_um: float | None,
        interval_s: float | None,
        timestamps_s: np.ndarray | None,
        block_frames: int = 1,
        closers: Sequence[Any] = (),
        acquisition: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = path
        #: a livesr run's own acquisition record (see :func:`livesr_acquisition`)
        self.acquisition: dict[str, Any] = dict(acquisition or {})
        self.format = fmt
        self.axes = axes
        self._source = source
        self._closers = list(closers)
        full = tuple(int(s) for s in source.shape)
        self._index_t = t_axis
        self.shape: tuple[int, int, int] = (full[t_axis], full[-2], full[-1])
        self.source_dtype = np.dtype(source.dtype)
        self.dtype = np.dtype(
            _CONVERT.get(self.source_dtype.name, self.source_dtype.name)
        )
        if self.dtype.name not in _WIRE_DTYPES:
            raise RecordingError(
                f"recording {path}: sample type {self.source_dtype} is not supported; "
                "expected an "
                "integer, float or bool type (streamed as one of "
                f"{', '.join(_WIRE_DTYPES)})"
            )
        if self.dtype != self.source_dtype:
            logger.info(
                "recording %s: %s samples are streamed as %s",
                path,
                self.source_dtype,
                self.dtype,
            )
        self.pixel_size_um = (
            float(pixel_size_um) if pixel_size_um is not None else DEFAULT_PIXEL_SIZE_UM
        )
        self.pixel_size_origin = "metadata" if pixel_size_um is not None else "default"
        self.interval_s = interval_s
        self.timestamps_s = timestamps_s
        frame_bytes = self.shape[1] * self.shape[2] * self.source_dtype.itemsize
        self.block_frames = max(
            1, min(int(block_frames), MAX_BLOCK_BYTES // max(1, frame_bytes))
        )
        self._block_lo = -1
        self._block: np.ndarray | None = None
        self._closed = False
        #: frames fetched from the file so far (a block counts all its frames)
        self.frames_fetched = 0
        self._mm = _MappedPages.of(source, t_axis, frame_bytes)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def frame_nbytes(self) -> int:
        """Bytes of one frame as read."""
        return int(self.shape[1] * self.shape[2] * self.dtype.itemsize)

    def _key(self, t: slice) -> tuple[Any, ...]:
        ndim = len(self._source.shape)
        return tuple(
            t if ax == self._index_t else (slice(None) if ax >= ndim - 2 else 0)
            for ax in range(ndim)
        )

    def _fetch(self, lo: int, hi: int) -> np.ndarray:
        """Frames ``[lo, hi)`` from the file as a (k, rows, cols) array."""
        try:
            block = np.asarray(self._source[self._key(slice(lo, hi))])
        except (OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:
            raise CorruptRecordingError(
                f"recording {self.path}: cannot read frames {lo}..{hi - 1}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.frames_fetched += hi - lo
        return block.reshape(hi - lo, self.shape[1], self.shape[2])

    def _check_index(self, i: int) -> int:
        n = self.shape[0]
        if (
            isinstance(i, bool)
            or not isinstance(i, (int, np.integer))
            or not 0 <= i < n
        ):
            raise IndexError(
                f"frame {i!r} is out of range for {self.path}: valid 0..{n - 1}"
            )
        if self._closed:
            raise ValueError(f"recording {self.path} is closed")
        return int(i)

    def _frame_view(self, i: int) -> np.ndarray:
        i = self._check_index(i)
        if self.block_frames <= 1:
            if self._mm is not None:
                self._mm.release_before(i)
            return self._fetch(i, i + 1)[0]
        if self._block is None or not self._block_lo <= i < self._block_lo + len(
            self._block
        ):
            self._block = None  # release before reading the next block
            lo = (i // self.block_frames) * self.block_frames
            self._block = self._fetch(lo, min(lo + self.block_frames, self.shape[0]))
            self._block_lo = lo
        return self._block[i - self._block_lo]

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` as a new C-contiguous (rows, cols) array of :attr:`dtype`."""
        return np.array(self._frame_view(i), dtype=self.dtype, order="C", copy=True)

    def read_into(self, i: int, out: np.ndarray) -> np.ndarray:
        """Copy frame ``i`` into ``out`` (rows x cols, :attr:`dtype`); returns it."""
        if out.shape != self.shape[1:] or out.dtype != self.dtype:
            raise ValueError(
                f"read_into: out is {out.shape} {out.dtype}; expected {self.shape[1:]} "
                f"{self.dtype}"
            )
        np.copyto(out, self._frame_view(i), casting="unsafe")
        return out

    def iter_frames(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[np.ndarray]:
        """Frames ``start..stop-1`` one by one (each a new array)."""
        stop = self.shape[0] if stop is None else stop
        for i in range(start, stop):
            yield self.read(i)

    # ------------------------------------------------------------------ timing
    def frame_time(self, i: int) -> float | None:
        """Recorded time of frame ``i`` relative to frame 0, s (None without timing)."""
        if self.timestamps_s is not None:
            return float(self.timestamps_s[i])
        if self.interval_s is not None:
            return i * self.interval_s
        return None

    @property
    def has_timing(self) -> bool:
        """Whether the file gives a frame interval or per-frame timestamps."""
        return self.timestamps_s is not None or self.interval_s is not None

    def override_pixel_size(self, pixel_size_um: float) -> None:
        """Use ``pixel_size_um`` instead of the file's value."""
        if not (
            isinstance(pixel_size_um, (int, float))
            and math.isfinite(pixel_size_um)
            and pixel_size_um > 0
        ):
            raise RecordingError(
                f"pixel size {pixel_size_um!r} is not valid; expected a number > 0 (um)"
            )
        self.pixel_size_um = float(pixel_size_um)
        self.pixel_size_origin = "override"

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (format, shape, dtype, pixel size, timing)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "axes": self.axes,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "source_dtype": self.source_dtype.name,
            "pixel_size_um": self.pixel_size_um,
            "pixel_size_origin": self.pixel_size_origin,
            "interval_s": self.interval_s,
            "timestamps": self.timestamps_s is not None,
            "acquisition": self.acquisition or None,
        }

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release the file (memory map, TIFF handle)."""
        if self._closed:
            return
        self._closed = True
        self._block = None
        self._source = None
        self._mm = None
        for c in self._closers:
            try:
                c.close()
            except Exception as exc:  # closing must not mask the real outcome
                logger.debug("recording %s: close: %s", self.path, exc)

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self,
        tp: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Recording({str(self.path)!r}, format={self.format!r}, "
            f"shape={self.shape}, dtype={self.dtype.name}, "
            f"pixel_size_um={self.pixel_size_um:g} ({self.pixel_size_origin}), "
            f"interval_s={self.interval_s})"
        )


class _MappedPages:
    """Drops the pages of already-read frames of a memory map from the process (RSS).

    Reading a memory-mapped file frame by frame maps every page read into the process;
    the kernel may reclaim them, but the resident size grows to the file size.  Every
    :data:`RELEASE_BYTES` of progress the pages before the current frame are given
    back with ``madvise(MADV_DONTNEED)`` (read-only mapping: a later read of those
    frames maps them again from the page cache).  Only for C-ordered maps whose
    leading axis is the frame axis; a no-op where ``madvise`` is unavailable.
    """

    RELEASE_BYTES = 8 * 2**20

    def __init__(self, mm: Any, base: int, frame_bytes: int) -> None:
        self._mm = mm
        self._base = base
        self._frame_bytes = frame_bytes
        self._released = 0

    @classmethod
    def of(cls, source: Any, t_axis: int, frame_bytes: int) -> _MappedPages | None:
        import mmap

        mm = getattr(source, "_mmap", None)
        if (
            not isinstance(source, np.memmap)
            or mm is None
            or t_axis != 0
            or not source.flags.c_contiguous
        ):
            return None
        if not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return None
        try:
            base = source.ctypes.data - _mmap_address(mm)
        except (TypeError, ValueError, BufferError):
            return None
        return cls(mm, base, frame_bytes) if base >= 0 else None

    def release_before(self, i: int) -> None:
        import mmap

        end = self._base + i * self._frame_bytes
        end -= end % mmap.PAGESIZE
        if end - self._released < self.RELEASE_BYTES:
            return
        try:
            self._mm.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
        except (OSError, ValueError) as exc:
            logger.debug("madvise failed (%s); pages of read frames stay mapped", exc)
            self._mm = None
            self._released = 1 << 62
            return
        self._released = end


def _mmap_address(mm: Any) -> int:
    """Start address of an ``mmap.mmap`` (through a zero-copy buffer view)."""
    view = np.frombuffer(mm, dtype=np.uint8, count=1)
    try:
        return int(view.ctypes.data)
    finally:
        del view


# ---------------------------------------------------------------------- helpers
def _time_axis(path: Path, axes: str, shape: Sequence[int]) -> int:
    """Index of the one stacked axis (see the module docstring); checks the others."""
    if len(shape) < 3:
        raise RecordingError(
            f"recording {path}: data are {len(shape)}-D {tuple(shape)} (axes "
            f"{axes or '?'}); "
            "replay needs a stack of frames (t, rows, cols)"
        )
    others = list(range(len(shape) - 2))
    long = [ax for ax in others if shape[ax] > 1]
    if len(long) > 1:
        desc = ", ".join(
            f"{axes[ax] if ax < len(axes) else ax}={shape[ax]}" for ax in long
        )
        raise RecordingError(
            f"recording {path}: more than one non-spatial axis is longer than 1 "
            f"({desc}; axes "
            f"{axes}, shape {tuple(shape)}); expected one stacked axis (t) with every "
            "other axis "
            "of length 1 (select one channel/position/plane first)"
        )
    if long:
        return long[0]
    low = axes.lower()
    return low.index("t") if "t" in low[:-2] else 0


def _finite_positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _unit_factor(unit: Any, table: Mapping[str, float], default: float) -> float | None:
    if unit is None or unit == "":
        return default
    return table.get(
        str(unit).strip().lower().replace("\u00b5", "µ"), table.get(str(unit).strip())
    )


def _relative_times(path: Path, t: np.ndarray, n: int) -> np.ndarray | None:
    """Timestamps relative to frame 0; None if unusable (wrong length, not finite)."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if len(t) != n or n == 0 or not np.all(np.isfinite(t)):
        if len(t):
            logger.warning(
                "recording %s: %d per-frame timestamps for %d frames; ignored",
                path,
                len(t),
                n,
            )
        return None
    rel = t - t[0]
    if np.any(np.diff(rel) < 0):
        logger.warning(
            "recording %s: per-frame timestamps go backwards; replaying them as "
            "monotonic",
            path,
        )
        rel = np.maximum.accumulate(rel)
    return rel


def _interval_from(ts: np.ndarray | None) -> float | None:
    if ts is None or len(ts) < 2:
        return None
    return _finite_positive(float(np.median(np.diff(ts))))


# ---------------------------------------------------------------------- npy
def _open_npy(path: Path) -> Recording:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptRecordingError(
            f"recording {path}: not a readable .npy file: {exc}"
        ) from exc
    if not isinstance(
        arr, np.ndarray
    ):  # pragma: no cover - np.load of .npy is an array
        raise CorruptRecordingError(f"recording {path}: not a .npy array")
    axes = "TYX" if arr.ndim == 3 else ""
    t_axis = _time_axis(path, axes, arr.shape)
    return Recording(
        path,
        "npy",
        arr,
        axes,
        t_axis,
        pixel_size_um=None,
        interval_s=None,
        timestamps_s=None,
    )


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


def _open_tiff(path: Path) -> Recording:
    import tifffile
    import zarr

    named_ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    if named_ome:
        _recover_if_crashed(path)
    try:
        tif = tifffile.TiffFile(path)
        n_pages = len(tif.pages)
    except (tifffile.TiffFileError, OSError, ValueError, struct_error()) as exc:
        raise CorruptRecordingError(
            f"recording {path}: not a readable TIFF file: {exc}"
        ) from exc
    try:
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
            raise CorruptRecordingError(
                f"recording {path}: TIFF series 0 has no sample type"
            )
        if axes.endswith("S") or (len(axes) >= 3 and axes[-3:] in ("YXS", "SYX")):
            raise RecordingError(
                f"recording {path}: TIFF series 0 has samples per pixel (axes {axes}, "
                f"shape {shape}, RGB?); "
                "expected grey-level frames"
            )
        if not axes.endswith("YX"):
            raise RecordingError(
                f"recording {path}: TIFF series 0 axes {axes} do not end in YX"
            )
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
        try:
            source: Any = tifffile.memmap(path, series=0, mode="r")
            source = source.reshape(shape)
            closers: list[Any] = [
                tif
            ]  # the memory map closes when the last view is dropped
            block = 1
        except (ValueError, OSError):
            source = zarr.open(series.aszarr(), mode="r")
            closers = [tif]
            chunks = getattr(source, "chunks", None) or (1,)
            block = int(chunks[t_axis]) if len(chunks) == len(shape) else 1
        if tuple(source.shape) != shape:
            raise CorruptRecordingError(
                f"recording {path}: TIFF series 0 reads as {tuple(source.shape)}, "
                f"expected {shape}"
            )
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
        closers=closers,
        acquisition=livesr_acquisition(path, None) if fmt == "ome-tiff" else None,
    )


def struct_error() -> type[Exception]:
    import struct

    return struct.error


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
                    got = fh.readinto(memoryview(dst).cast("B"))
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


def _recover_if_crashed(path: Path) -> None:
    """Recover a livesr raw store whose writer died (before reading it)."""
    from livesr.stream._rawstore import (
        RawStoreBusyError,
        RawStoreError,
        needs_recovery,
        recover_raw_store,
    )

    if not needs_recovery(path):
        return
    try:
        info = recover_raw_store(path)
    except RawStoreBusyError as exc:
        logger.warning("%s; replaying the frames on disk so far", exc)
        return
    except RawStoreError as exc:
        logger.warning("recording %s: %s", path, exc)
        return
    if info["recovered"]:
        logger.warning(
            "recording %s was not closed cleanly: recovered the %d frame(s) written "
            "(the store is now exact and marked recovered)",
            path,
            info["frames"],
        )


def _open_zarr(path: Path) -> Recording:
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
    scale = _ngff_scale(ms, ds, arr.ndim)
    px = interval = None
    if scale is not None:
        unit = (
            ax_meta[-1].get("unit")
            if ax_meta and isinstance(ax_meta[-1], dict)
            else None
        )
        f = _unit_factor(unit, _SPACE_UNITS_UM, 1.0)
        if f is not None and _finite_positive(scale[-1]):
            px = float(scale[-1]) * f
        t_meta = (
            ax_meta[t_axis] if ax_meta and isinstance(ax_meta[t_axis], dict) else {}
        )
        if t_meta.get("type") == "time" or names[t_axis].lower() == "t":
            tf = _unit_factor(t_meta.get("unit"), _TIME_UNITS_S, 1.0)
            if tf is not None and _finite_positive(scale[t_axis]):
                interval = float(scale[t_axis]) * tf
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


def livesr_acquisition(path: Path, live: Any) -> dict[str, Any]:
    """The acquisition record of a livesr raw store at ``path`` (empty otherwise).

    A livesr raw store is a ``raw.ome.zarr`` with a ``livesr`` attribute of kind
    ``raw`` (``live``), or a ``raw.ome.tif`` in a folder with a livesr
    ``summary.json``.  Keys: ``stream`` (the live stream's name, or None),
    ``run_folder`` (the folder holding it, when that is a livesr run) and ``config``
    (that run's ``config.toml``, or None).
    """
    folder = path.parent
    summary: dict[str, Any] = {}
    if (folder / "summary.json").is_file():
        try:
            import json

            loaded = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
            summary = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            summary = {}
    is_raw = isinstance(live, dict) and live.get("kind") == "raw"
    if not is_raw and not (path.name.lower().startswith("raw.") and summary):
        return {}
    meta = live.get("meta") if is_raw else None
    stream = (meta or {}).get("stream") if isinstance(meta, dict) else None
    stream = stream or summary.get("stream")
    is_run = bool(summary) or (folder / "config.toml").is_file()
    cfg = folder / "config.toml"
    return {
        "stream": str(stream) if stream else None,
        "run_folder": str(folder) if is_run else None,
        "config": str(cfg) if is_run and cfg.is_file() else None,
    }


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


# ---------------------------------------------------------------------- entry point
_OPENERS = {
    "npy": _open_npy,
    "tiff": _open_tiff,
    "ome-tiff": _open_tiff,
    "ome-zarr": _open_zarr,
}
_RANGE_RE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


def run_folder_recording(path: Path) -> Path:
    """``path``, or the raw store in it when ``path`` is a livesr run folder.

    Raises
    ------
    RecordingError
        A run folder of a replay that referenced its source (``raw.json``): the
        message names the file and range to replay instead.
    """
    if (
        not path.is_dir()
        or (path / "zarr.json").exists()
        or (path / ".zgroup").exists()
    ):
        return path
    for name in ("raw.ome.zarr", "raw.ome.tif"):
        if (path / name).exists():
            return path / name
    ref = path / "raw.json"
    if ref.is_file():
        import json

        try:
            doc = json.loads(ref.read_text(encoding="utf-8"))
            a, b = doc["range"]
            src = doc["source"]
        except (OSError, ValueError, KeyError, TypeError):
            return path
        raise RecordingError(
            f"run folder {path} holds no raw frames: its replay read frames "
            f"{a}..{b - 1} "
            f"of {src} (raw.json); replay that file with --range {a}:{b}"
        )
    return path


def open_recording(
    path: str | Path, *, pixel_size_um: float | None = None
) -> Recording:
    """Open a recorded frame stack for replay (see the module docstring).

    Parameters
    ----------
    path : path-like
        ``.ome.tif``/``.ome.tiff``/``.tif``/``.tiff`` file, ``.zarr``/``.ome.zarr``
        folder, or ``.npy`` file.
    pixel_size_um : float, optional
        Overrides the file's pixel size.

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    RecordingError
        Unsupported type, unsupported dimensions (2-D, several channels...) or dtype.
    CorruptRecordingError
        The file cannot be read (damaged, truncated, not what its name says).
    """
    p = run_folder_recording(Path(path))
    fmt = detect_format(p)
    if fmt == "npy" and p.is_dir():
        raise RecordingError(
            f"recording {p} is a folder; a .npy recording must be a file"
        )
    if fmt in ("tiff", "ome-tiff") and p.is_dir():
        raise RecordingError(
            f"recording {p} is a folder; a TIFF recording must be a file"
        )
    if fmt == "ome-zarr" and not p.is_dir():
        raise RecordingError(
            f"recording {p} is a file; an OME-Zarr recording is a folder (zipped "
            "stores are not supported)"
        )
    rec = _OPENERS[fmt](p)
    if pixel_size_um is not None:
        rec.override_pixel_size(pixel_size_um)
    elif rec.pixel_size_origin == "default":
        logger.warning(
            "recording %s gives no pixel size; using %g um (pass --pixel-size to set "
            "it)",
            p,
            DEFAULT_PIXEL_SIZE_UM,
        )
    logger.info("opened %r", rec)
    return rec


def parse_range(text: str) -> tuple[int, int | None]:
    """``"START:STOP"`` (either may be empty, STOP exclusive) -> ``(start, stop)``."""
    m = _RANGE_RE.match(text or "")
    if not m:
        raise RecordingError(
            f"frame range {text!r} is not valid; expected START:STOP with integers >= "
            "0 "
            "(STOP exclusive, either may be empty, e.g. 100:600, 100:, :500)"
        )
    start = int(m.group(1)) if m.group(1) else 0
    stop = int(m.group(2)) if m.group(2) else None
    if stop is not None and stop <= start:
        raise RecordingError(f"frame range {text!r} is empty; expected START < STOP")
    return start, stop


def resolve_range(
    start: int, stop: int | None, n: int, *, what: str = "the recording"
) -> tuple[int, int]:
    """Check ``start:stop`` against ``n`` frames; returns ``(start, stop)``."""
    stop_v = n if stop is None else stop
    if not 0 <= start < stop_v <= n:
        raise RecordingError(
            f"frame range {start}:{'' if stop is None else stop} is out of bounds for "
            f"{what} "
            f"({n} frames); valid: 0 <= START < STOP <= {n}"
        )
    return start, stop_v
