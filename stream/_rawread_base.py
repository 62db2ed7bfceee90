"""Shared pieces of the raw-frame readers (:mod:`livesr.stream._rawread`): the errors,
the supported formats and their detection, unit tables and metadata helpers, the
memory-map page release, and the recovery of a crashed livesr raw store before reading.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PIXEL_SIZE_UM",
    "MAX_BLOCK_BYTES",
    "SUPPORTED",
    "CorruptRecordingError",
    "RecordingError",
    "detect_format",
    "livesr_acquisition",
    "supported_text",
]

logger = logging.getLogger("livesr.stream._rawread")

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

