"""Readers of recorded frame stacks for replay (the raw-store writers of the same
formats are :mod:`livesr.stream._rawstore_zarr` / :mod:`~livesr.stream._rawstore_tiff`): OME-TIFF, TIFF, OME-Zarr, ``.npy``.

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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from livesr.stream._rawread_base import (
    _CONVERT,
    _WIRE_DTYPES,
    DEFAULT_PIXEL_SIZE_UM,
    MAX_BLOCK_BYTES,
    SUPPORTED,
    CorruptRecordingError,
    RecordingError,
    _MappedPages,
    _time_axis,
    detect_format,
    supported_text,
)

__all__ = [
    "DEFAULT_PIXEL_SIZE_UM",
    "MAX_BLOCK_BYTES",
    "SUPPORTED",
    "CorruptRecordingError",
    "Recording",
    "RecordingError",
    "detect_format",
    "open_recording",
    "parse_range",
    "resolve_range",
    "run_folder_recording",
    "supported_text",
]

logger = logging.getLogger(__name__)


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




def _open(fmt: str, path: Path) -> Recording:
    """The reader of ``fmt`` (the TIFF and zarr readers are imported when needed)."""
    if fmt == "npy":
        return _open_npy(path)
    if fmt in ("tiff", "ome-tiff"):
        from livesr.stream._rawread_tiff import open_tiff

        return open_tiff(path)
    from livesr.stream._rawread_zarr import open_zarr

    return open_zarr(path)


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
    rec = _open(fmt, p)
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
