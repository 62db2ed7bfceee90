"""OME-TIFF raw store (``raw.ome.tif``, BigTIFF via tifffile) and its crash recovery.

One page per frame appended as it arrives, each with a JSON description
``{"seq", "t_acq", "t_recv"}``; the OME-XML (``TYX``, ``PhysicalSizeX/Y`` um,
``TimeIncrement`` s, per-plane ``DeltaT``) is written into the first page at close,
for exactly the frames written.  A file without OME-XML was not closed cleanly.

Disk full: the torn page is cut off (the file is truncated to the last complete page
and that page's next-IFD pointer reset), and no OME-XML is written after a failure;
the error goes to ``raw.ome.error.txt``.

Crash: :func:`recover_tiff` walks the IFD chain of a file without OME-XML, keeps the
pages whose IFD, tags and image data lie wholly in the file (and carry a livesr
description), cuts the file after the last of them, and writes the OME-XML for
exactly those frames (``DeltaT`` from their ``t_acq``); the leftover ``.reserve`` is
removed.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._rawstore_common import (
    RawStoreError,
    Reserve,
    claim_crashed,
    describe_oserror,
    json_safe,
)

logger = logging.getLogger("livesr.stream._rawstore")

_describe = describe_oserror
_Reserve = Reserve


class _NoFilenoFile(io.BufferedRandom):
    """A file tifffile must write through Python (``write``), not ``numpy.tofile``:
    ``tofile`` writes through a C ``FILE*`` whose failed flush on a full disk is
    lost, so a torn page would pass as complete (found on a real full tmpfs)."""

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


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
        self._last_seq: int | None = None
        #: frames skipped because their seq was already persisted (never written twice)
        self.duplicates = 0

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
    ) -> bool:
        """Append one page; raises :class:`RawStoreError` on failure."""
        if self._failed is not None:
            raise RawStoreError(
                errno.EIO, f"raw store {self.path} failed earlier: {self._failed}"
            )
        if self._tw is None or self._closed:
            raise RawStoreError(errno.EBADF, f"raw store {self.path} is not open")
        i = self.frames_written
        if self._last_seq is not None and int(seq) <= self._last_seq:
            self.duplicates += 1
            logger.warning(
                "raw store %s: seq %d is already persisted (last %d); not written "
                "again",
                self.path,
                seq,
                self._last_seq,
            )
            return False
        page: dict[str, Any] = {
            "seq": int(seq),
            "t_acq": float(t_acq),
            "t_recv": float(t_recv),
        }
        if i == 0:  # what a crash recovery needs to write the OME-XML
            page["livesr"] = {
                "pixel_size_um": self._px,
                "interval_s": self._interval,
                "frame_shape": list(self._shape),
                "dtype": self._dtype,
            }
        desc = json.dumps(json_safe(page), allow_nan=False)
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
        self._last_seq = int(seq)
        self.frames_written = i + 1
        self._good_size = self._tw.filehandle.tell()
        # tifffile's own bookkeeping: the next page will patch this offset
        self._next_ifd_at = int(getattr(self._tw, "_ifdoffset", -1))
        return True

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
        try:
            write_ome_xml(
                self.path,
                self._t_acq,
                self._shape,
                self._dtype,
                self._px,
                self._interval,
            )
        except (OSError, ValueError) as exc:
            logger.error(
                "raw store %s: could not write the OME-XML: %s", self.path, exc
            )
        logger.info("raw store %s closed: %d frames", self.path, n)


def write_ome_xml(
    path: Path,
    t_acq: Sequence[float],
    shape: tuple[int, int],
    dtype: str,
    pixel_size_um: float,
    interval_s: float,
) -> None:
    """Write the OME-XML for ``len(t_acq)`` TYX frames into page 0 of ``path``."""
    import tifffile

    n = len(t_acq)
    t0 = float(t_acq[0]) if n else 0.0
    delta = [max(0.0, float(t) - t0) if np.isfinite(t) else 0.0 for t in t_acq] or [0.0]
    ox = tifffile.OmeXml()
    ox.addimage(
        np.dtype(dtype),
        (n, *shape),
        (n, 1, 1, *shape, 1),
        axes="TYX",
        Name="raw",
        PhysicalSizeX=pixel_size_um,
        PhysicalSizeY=pixel_size_um,
        PhysicalSizeXUnit="µm",
        PhysicalSizeYUnit="µm",
        TimeIncrement=interval_s,
        TimeIncrementUnit="s",
        Plane={"DeltaT": delta, "DeltaTUnit": ["s"] * len(delta)},
    )
    tifffile.tiffcomment(path, ox.tostring(declaration=True).encode("utf-8"))


# ---------------------------------------------------------------------- recovery
_TYPE_BYTES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
_INT_FMT = {1: "B", 3: "H", 4: "I", 16: "Q", 13: "I", 18: "Q"}


class _Page:
    def __init__(
        self, offset: int, next_at: int, end: int, desc: dict[str, Any]
    ) -> None:
        self.offset, self.next_at, self.end, self.desc = offset, next_at, end, desc


def _walk_bigtiff(buf: bytes) -> tuple[list[_Page], bool]:
    """Complete pages of a (possibly torn) BigTIFF: every byte of each page's IFD, tag
    values and image strips lies in the file.  Returns (pages, has_ome_xml)."""
    size = len(buf)
    if size < 16 or buf[:2] not in (b"II", b"MM"):
        raise RawStoreError(errno.EINVAL, "not a TIFF file (no byte-order mark)")
    bo = "<" if buf[:2] == b"II" else ">"
    if struct.unpack_from(bo + "H", buf, 2)[0] != 43:
        raise RawStoreError(errno.EINVAL, "not a BigTIFF file (livesr writes BigTIFF)")
    off = struct.unpack_from(bo + "Q", buf, 8)[0]
    pages: list[_Page] = []
    has_ome = False
    while off and off + 8 <= size:
        (count,) = struct.unpack_from(bo + "Q", buf, off)
        next_at = off + 8 + 20 * count
        if count > 4096 or next_at + 8 > size:
            break
        end = next_at + 8
        strips: dict[int, list[int]] = {}
        desc_raw = b""
        ok = True
        for e in range(count):
            tag, typ, cnt = struct.unpack_from(bo + "HHQ", buf, off + 8 + 20 * e)
            nbytes = _TYPE_BYTES.get(typ, 1) * cnt
            at = off + 8 + 20 * e + 12
            if nbytes > 8:
                at = struct.unpack_from(bo + "Q", buf, at)[0]
                if at + nbytes > size:
                    ok = False
                    break
                end = max(end, at + nbytes)
            if tag in (273, 279) and typ in _INT_FMT:
                strips[tag] = list(
                    struct.unpack_from(f"{bo}{cnt}{_INT_FMT[typ]}", buf, at)
                )
            elif tag == 270:
                desc_raw = bytes(buf[at : at + nbytes]).rstrip(b"\0")
        if not ok or 273 not in strips or 279 not in strips:
            break
        if any(o + c > size for o, c in zip(strips[273], strips[279], strict=False)):
            break
        end = max(
            [end, *(o + c for o, c in zip(strips[273], strips[279], strict=False))]
        )
        text = desc_raw.decode("utf-8", "replace")
        if not pages and "<OME" in text:
            has_ome = True
            desc: dict[str, Any] = {}
        else:
            try:
                desc = json.loads(text)
            except ValueError:
                break
            if not isinstance(desc, dict) or "seq" not in desc:
                break
        pages.append(_Page(off, next_at, end, desc))
        (nxt,) = struct.unpack_from(bo + "Q", buf, next_at)
        if nxt <= off:
            break
        off = nxt
    return pages, has_ome


def recover_tiff(path: str | Path) -> dict[str, Any]:
    """Make a crashed OME-TIFF raw store exact and readable (see the module docstring).

    Returns
    -------
    dict
        ``{"path", "format", "frames", "recovered"}``; ``recovered`` false: the file
        already had its OME-XML (closed cleanly) and nothing was changed.

    Raises
    ------
    RawStoreBusyError
        The file is still being written by a live process.
    RawStoreError
        Not a livesr raw OME-TIFF (no livesr page descriptions).
    """
    p = Path(path)
    claim_crashed(p)
    buf = p.read_bytes()
    try:
        pages, has_ome = _walk_bigtiff(buf)
    except struct.error as exc:
        raise RawStoreError(errno.EINVAL, f"{p}: damaged TIFF header: {exc}") from exc
    if has_ome:
        return {
            "path": str(p),
            "format": "ome-tiff",
            "frames": len(pages),
            "recovered": False,
        }
    info = pages[0].desc.get("livesr") if pages else None
    if pages and not isinstance(info, dict):
        raise RawStoreError(
            errno.EINVAL,
            f"{p} has no livesr page description; it cannot be recovered automatically",
        )
    n = len(pages)
    bo = "<" if buf[:2] == b"II" else ">"
    with open(p, "r+b") as fh:
        if n:
            fh.truncate(pages[-1].end)
            fh.seek(pages[-1].next_at)
            fh.write(b"\0" * 8)  # the chain ends at the last complete page
        else:
            fh.truncate(16)
            fh.seek(8)
            fh.write(struct.pack(bo + "Q", 0))
    if n:
        assert isinstance(info, dict)
        write_ome_xml(
            p,
            [float(pg.desc.get("t_acq", 0.0)) for pg in pages],
            (int(info["frame_shape"][0]), int(info["frame_shape"][1])),
            str(info["dtype"]),
            float(info["pixel_size_um"]),
            float(info["interval_s"]),
        )
    note = p.with_suffix(".error.txt")
    try:
        prior = note.read_text(encoding="utf-8").strip() if note.exists() else ""
        note.write_text(
            (prior + "\n" if prior else "")
            + "not closed cleanly (the writing process died); "
            + f"{n} frame(s) recovered\n",
            encoding="utf-8",
        )
    except OSError as exc:
        logger.error("raw store %s: could not write the error note: %s", p, exc)
    logger.warning("raw store %s was not closed cleanly: recovered %d frame(s)", p, n)
    return {"path": str(p), "format": "ome-tiff", "frames": n, "recovered": True}
