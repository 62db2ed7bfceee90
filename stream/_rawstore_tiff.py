"""Raw-frame writers: every received frame is persisted here before anything else.

Two formats, one interface (:class:`RawStore`)::

    store = open_raw_store("ome-zarr", out_dir)       # or "ome-tiff"
    store.open(shape, dtype, pixel_size_um=0.1, interval_s=0.01, meta={...})
    store.append(seq, frame, t_acq=..., t_recv=...)   # durable when it returns
    store.close(gaps=[[first, last, reason], ...])    # final metadata, "complete"

OME-Zarr (``raw.ome.zarr``, zarr v3, OME-NGFF 0.5)
    Array ``0`` with axes ``t c z y x`` (``scale`` = interval s, 1, 1, pixel um,
    pixel um), one chunk per frame (a frame is on disk when ``append`` returns),
    resized as frames arrive (capacity grows in steps, cut to the frame count at
    close).  Per-frame metadata: arrays ``frames/seq``, ``frames/t_acq``,
    ``frames/t_recv`` (written every 1024 frames and at close).  Attributes under
    ``livesr``: ``complete`` (false until a clean close), ``frames``, ``gaps``,
    ``error``.
OME-TIFF (``raw.ome.tif``, BigTIFF via tifffile)
    One page per frame appended as it arrives, each with a JSON description
    ``{"seq", "t_acq", "t_recv"}``; the OME-XML (``TYX``, ``PhysicalSizeX/Y`` um,
    ``TimeIncrement`` s, per-plane ``DeltaT``) is written into the first page at close,
    for exactly the frames written.  A file without OME-XML was not closed cleanly.

Errors: an ``OSError`` while writing (``ENOSPC`` disk full, ``EIO``...) raises
:class:`RawStoreError` at once (within the frame that failed); the store then cuts
itself back to the frames already written (all readable and complete) and records
the error, so nothing truncated passes as complete.  The caller stops acquisition
and records the gap.

Disk full: each store keeps :data:`RESERVE_BYTES` of real space next to it
(``<name>.reserve``, written at ``open``, removed at ``close``); a failed write frees
it first, so the final metadata (cut array, ``complete: false``, the error) still
fits on a full disk.  OME-TIFF: the torn page is cut off (the file is truncated to the
last complete page and that page's next-IFD pointer reset), and no OME-XML is written
after a failure (a file without OME-XML was not closed cleanly); the error goes to
``raw.ome.error.txt``.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "RAW_FORMATS",
    "OmeTiffRawStore",
    "OmeZarrRawStore",
    "RawStore",
    "RawStoreError",
    "ome_multiscales",
    "open_raw_store",
]

logger = logging.getLogger(__name__)

RAW_FORMATS = ("ome-zarr", "ome-tiff")
_META_CHUNK = 1024
#: space kept free next to a raw store for its final metadata after a disk-full error
RESERVE_BYTES = 256 * 1024


class RawStoreError(OSError):
    """Writing a raw frame failed; the frames before it are complete and readable."""


class RawStore(Protocol):
    """What the pipeline needs from a raw-frame writer."""

    path: Path
    frames_written: int

    def open(
        self,
        shape: tuple[int, int],
        dtype: str,
        *,
        pixel_size_um: float,
        interval_s: float,
        meta: Mapping[str, Any] | None = None,
    ) -> None: ...

    def append(
        self, seq: int, frame: np.ndarray, *, t_acq: float, t_recv: float
    ) -> None: ...

    def close(
        self, *, gaps: Sequence[Sequence[Any]] = (), error: str | None = None
    ) -> None: ...


def ome_multiscales(
    name: str, *, pixel_size_um: float, interval_s: float, path: str = "0"
) -> dict[str, Any]:
    """OME-NGFF 0.5 ``ome`` attribute for a ``t c z y x`` image at one resolution."""
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "t", "type": "time", "unit": "second"},
                    {"name": "c", "type": "channel"},
                    {"name": "z", "type": "space", "unit": "micrometer"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": path,
                        "coordinateTransformations": [
                            {
                                "type": "scale",
                                "scale": [
                                    float(interval_s),
                                    1.0,
                                    1.0,
                                    float(pixel_size_um),
                                    float(pixel_size_um),
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }


class _NoFilenoFile(io.BufferedRandom):
    """A file tifffile must write through Python (``write``), not ``numpy.tofile``:
    ``tofile`` writes through a C ``FILE*`` whose failed flush on a full disk is
    lost, so a torn page would pass as complete (found on a real full tmpfs)."""

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


class _Reserve:
    """``RESERVE_BYTES`` of real (not sparse) disk space in a file, freed on demand."""

    def __init__(self, store_path: Path) -> None:
        self.path = store_path.with_name(store_path.name + ".reserve")
        with open(self.path, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())

    def free(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:  # pragma: no cover - best effort
            logger.error("could not remove the space reserve %s: %s", self.path, exc)


def _describe(exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, "")
    hint = (
        " (disk full: free space or choose another --output)"
        if exc.errno == errno.ENOSPC
        else ""
    )
    return f"{exc.strerror or exc}{f' [{code}]' if code else ''}{hint}"


class OmeZarrRawStore:
    """Raw frames as OME-Zarr v0.5 (see the module docstring).

    Parameters
    ----------
    path : path-like
        The ``.ome.zarr`` folder to create (must not exist).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.frames_written = 0
        self._arr: Any = None
        self._group: Any = None
        self._cap = 0
        self._seq = np.zeros(_META_CHUNK, dtype=np.int64)
        self._t = np.zeros((_META_CHUNK, 2), dtype=np.float64)
        self._meta_arrays: dict[str, Any] = {}
        self._meta_flushed = 0
        self._failed: str | None = None
        self._closed = False
        self._reserve: _Reserve | None = None

    def open(
        self,
        shape: tuple[int, int],
        dtype: str,
        *,
        pixel_size_um: float,
        interval_s: float,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        import zarr

        if self.path.exists():
            raise FileExistsError(
                f"raw store {self.path} already exists; choose an empty --output folder"
            )
        h, w = int(shape[0]), int(shape[1])
        self._reserve = _Reserve(self.path)
        g = zarr.open_group(str(self.path), mode="w-", zarr_format=3)
        g.attrs.update(
            {
                "ome": ome_multiscales(
                    "raw", pixel_size_um=pixel_size_um, interval_s=interval_s
                ),
                "livesr": {
                    "kind": "raw",
                    "complete": False,
                    "frames": 0,
                    "pixel_size_um": float(pixel_size_um),
                    "interval_s": float(interval_s),
                    "meta": dict(meta or {}),
                },
            }
        )
        self._cap = 64
        self._arr = g.create_array(
            "0",
            shape=(self._cap, 1, 1, h, w),
            chunks=(1, 1, 1, h, w),
            dtype=dtype,
            fill_value=0,
        )
        frames = g.create_group("frames")
        for name, dt in (("seq", "int64"), ("t_acq", "float64"), ("t_recv", "float64")):
            self._meta_arrays[name] = frames.create_array(
                name, shape=(0,), chunks=(_META_CHUNK,), dtype=dt, fill_value=0
            )
        self._group = g

    # -- the single place a frame hits the disk (tests inject failures here)
    def _write_frame(self, index: int, frame: np.ndarray) -> None:
        self._arr[index, 0, 0] = frame

    def append(
        self, seq: int, frame: np.ndarray, *, t_acq: float, t_recv: float
    ) -> None:
        """Write one frame; durable on return; :class:`RawStoreError` on failure."""
        if self._arr is None or self._closed:
            raise RawStoreError(errno.EBADF, f"raw store {self.path} is not open")
        if self._failed is not None:
            raise RawStoreError(
                errno.EIO, f"raw store {self.path} failed earlier: {self._failed}"
            )
        i = self.frames_written
        try:
            if i >= self._cap:
                self._cap = self._cap + min(self._cap, 4096)
                self._arr.resize((self._cap, *self._arr.shape[1:]))
            self._write_frame(i, frame)
            k = i % _META_CHUNK
            self._seq[k] = seq
            self._t[k] = (t_acq, t_recv)
            if k == _META_CHUNK - 1:
                self._flush_meta(i + 1)
        except OSError as exc:
            self._failed = _describe(exc)
            if self._reserve is not None:
                self._reserve.free()  # room for the final metadata
            raise RawStoreError(
                exc.errno or errno.EIO,
                f"cannot write raw frame seq {seq} to {self.path}: {self._failed}; "
                f"the {i} frame(s) before it are complete and readable",
            ) from exc
        self.frames_written = i + 1

    def _flush_meta(self, n: int) -> None:
        """Write per-frame metadata of frames ``[meta_flushed, n)`` (one block)."""
        lo = self._meta_flushed
        if n <= lo:
            return
        k0 = lo % _META_CHUNK
        cols = {"seq": self._seq, "t_acq": self._t[:, 0], "t_recv": self._t[:, 1]}
        for name, arr in self._meta_arrays.items():
            if arr.shape[0] < n:
                arr.resize((n,))
            arr[lo:n] = cols[name][k0 : k0 + (n - lo)]
        self._meta_flushed = n

    def close(
        self, *, gaps: Sequence[Sequence[Any]] = (), error: str | None = None
    ) -> None:
        """Cut the array to the frames written and write the final metadata.

        After a write error this is best effort (each step guarded), and
        ``livesr.complete`` stays false with the error recorded.
        """
        if self._closed or self._arr is None:
            self._closed = True
            return
        self._closed = True
        n = self.frames_written
        err = error or self._failed
        if err is not None and self._reserve is not None:
            self._reserve.free()
        steps = (
            (
                "cut the frame array",
                lambda: self._arr.resize((n, *self._arr.shape[1:])),
            ),
            ("write per-frame metadata", lambda: self._flush_meta(n)),
            ("write the final attributes", lambda: self._final_attrs(n, gaps, err)),
        )
        for what, step in steps:
            try:
                step()
            except OSError as exc:
                logger.error(
                    "raw store %s: could not %s: %s", self.path, what, _describe(exc)
                )
        if self._reserve is not None:
            self._reserve.free()
        logger.info(
            "raw store %s closed: %d frames%s",
            self.path,
            n,
            f" (error: {err})" if err else "",
        )

    def _final_attrs(
        self, n: int, gaps: Sequence[Sequence[Any]], err: str | None
    ) -> None:
        live = dict(self._group.attrs["livesr"])
        live.update(
            complete=err is None, frames=n, gaps=[list(g) for g in gaps], error=err
        )
        self._group.attrs["livesr"] = live


class OmeTiffRawStore:
    """Raw frames as an OME-TIFF (see the module docstring).

    Parameters
    ----------
    path : path-like
        The ``.ome.tif`` file to create (must not exist).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.frames_written = 0
        self._tw: Any = None
        self._good_size = 0
        self._dtype = "uint16"
        self._shape = (0, 0)
        self._px = 1.0
        self._interval = 1.0
        self._t_acq: list[float] = []
        self._failed: str | None = None
        self._closed = False
        self._reserve: _Reserve | None = None
        self._next_ifd_at = -1  # where the last complete page's next-IFD offset is
        self._file: io.BufferedRandom | None = None

    def open(
        self,
        shape: tuple[int, int],
        dtype: str,
        *,
        pixel_size_um: float,
        interval_s: float,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        import tifffile

        if self.path.exists():
            raise FileExistsError(
                f"raw store {self.path} already exists; choose an empty --output folder"
            )
        self._shape = (int(shape[0]), int(shape[1]))
        self._dtype = str(dtype)
        self._px = float(pixel_size_um)
        self._interval = float(interval_s)
        self._reserve = _Reserve(self.path)
        self._file = _NoFilenoFile(io.FileIO(self.path, "x+"))
        self._tw = tifffile.TiffWriter(self._file, bigtiff=True)
        self._good_size = self._tw.filehandle.tell()

    def _write_frame(self, frame: np.ndarray, description: str) -> None:
        self._tw.write(
            frame, photometric="minisblack", description=description, metadata=None
        )
        self._tw.filehandle.flush()

    def append(
        self, seq: int, frame: np.ndarray, *, t_acq: float, t_recv: float
    ) -> None:
        """Append one page; raises :class:`RawStoreError` on failure."""
        if self._failed is not None:
            raise RawStoreError(
                errno.EIO, f"raw store {self.path} failed earlier: {self._failed}"
            )
        if self._tw is None or self._closed:
            raise RawStoreError(errno.EBADF, f"raw store {self.path} is not open")
        i = self.frames_written
        desc = json.dumps(
            {"seq": int(seq), "t_acq": float(t_acq), "t_recv": float(t_recv)}
        )
        try:
            self._write_frame(np.ascontiguousarray(frame), desc)
        except OSError as exc:
            self._failed = _describe(exc)
            self._cut_torn_page()
            raise RawStoreError(
                exc.errno or errno.EIO,
                f"cannot write raw frame seq {seq} to {self.path}: {self._failed}; "
                f"the {i} frame(s) before it are complete and readable",
            ) from exc
        self._t_acq.append(float(t_acq))
        self.frames_written = i + 1
        self._good_size = self._tw.filehandle.tell()
        # tifffile's own bookkeeping: the next page will patch this offset
        self._next_ifd_at = int(getattr(self._tw, "_ifdoffset", -1))

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def _cut_torn_page(self) -> None:
        """After a failed write: free the reserve, drop the writer, truncate the file
        to the last complete page and end the IFD chain there (best effort)."""
        if self._reserve is not None:
            self._reserve.free()
        tw, self._tw = self._tw, None
        for close in (tw.close, self._close_file):
            try:
                close()
            except (OSError, ValueError):
                pass
        try:
            with open(self.path, "r+b") as fh:
                fh.truncate(self._good_size)
                if 0 < self._next_ifd_at <= self._good_size - 8:
                    fh.seek(self._next_ifd_at)
                    fh.write(b"\0" * 8)  # BigTIFF: 8-byte next-IFD offset
        except OSError as exc:
            logger.error(
                "raw store %s: could not cut the torn page off: %s",
                self.path,
                _describe(exc),
            )

    def close(
        self, *, gaps: Sequence[Sequence[Any]] = (), error: str | None = None
    ) -> None:
        """Close the file and write the OME-XML for the frames written (best effort).

        After an error no OME-XML is written (the file stays marked as not closed
        cleanly) and the error goes to ``raw.ome.error.txt``.
        """
        if self._closed or (self._tw is None and self._failed is None):
            self._closed = True
            return
        self._closed = True
        import tifffile

        n = self.frames_written
        err = error or self._failed
        if self._tw is not None:
            try:
                self._tw.close()
                self._close_file()
            except (OSError, ValueError) as exc:
                logger.error("raw store %s: closing failed: %s", self.path, exc)
                err = err or f"closing failed: {exc}"
        if self._reserve is not None:
            self._reserve.free()
        if err:
            try:
                self.path.with_suffix(".error.txt").write_text(
                    f"incomplete: {n} frame(s) written; {err}\n", encoding="utf-8"
                )
            except OSError as exc:
                logger.error(
                    "raw store %s: could not write the error note: %s", self.path, exc
                )
            logger.info("raw store %s closed: %d frames (error: %s)", self.path, n, err)
            return
        if n == 0:
            return
        t0 = self._t_acq[0] if self._t_acq else 0.0
        delta = [max(0.0, t - t0) for t in self._t_acq] or [0.0]
        ox = tifffile.OmeXml()
        ox.addimage(
            np.dtype(self._dtype),
            (n, *self._shape),
            (n, 1, 1, *self._shape, 1),
            axes="TYX",
            Name="raw",
            PhysicalSizeX=self._px,
            PhysicalSizeY=self._px,
            PhysicalSizeXUnit="µm",
            PhysicalSizeYUnit="µm",
            TimeIncrement=self._interval,
            TimeIncrementUnit="s",
            Plane={"DeltaT": delta, "DeltaTUnit": ["s"] * len(delta)},
        )
        try:
            tifffile.tiffcomment(
                self.path, ox.tostring(declaration=True).encode("utf-8")
            )
        except (OSError, ValueError) as exc:
            logger.error(
                "raw store %s: could not write the OME-XML: %s", self.path, exc
            )
        logger.info("raw store %s closed: %d frames", self.path, n)


def open_raw_store(
    fmt: str, directory: str | Path
) -> OmeZarrRawStore | OmeTiffRawStore:
    """A raw store of format ``fmt`` (:data:`RAW_FORMATS`) in ``directory``."""
    d = Path(directory)
    if fmt == "ome-zarr":
        return OmeZarrRawStore(d / "raw.ome.zarr")
    if fmt == "ome-tiff":
        return OmeTiffRawStore(d / "raw.ome.tif")
    raise ValueError(
        f"raw format {fmt!r} is not valid; expected one of {', '.join(RAW_FORMATS)}"
    )
