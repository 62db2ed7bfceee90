"""OME-Zarr raw store: livesr's own streaming writer of a plain zarr v3 array.

Layout (standard zarr v3 + OME-NGFF 0.5, readable by zarr-python and any zarr v3
reader)::

    raw.ome.zarr/zarr.json              group; attributes "ome" and "livesr"
    raw.ome.zarr/0/zarr.json            array (t, 1, 1, rows, cols), chunk (K, 1, 1,
                                        rows, cols), codec "bytes" (little endian)
    raw.ome.zarr/0/c/<j>/0/0/0/0        chunk j: frames j*K .. j*K+K-1, back to back
    raw.ome.zarr/frames/{seq,t_acq,t_recv}/zarr.json + c/<j>
                                        per-frame metadata, chunk M, same codec

Writing: each frame is appended to the open chunk file with ``os.write`` (then its
``t_acq``, ``t_recv`` and ``seq`` to the open metadata chunk files): when
:meth:`OmeZarrRawStore.append` returns, the frame is in the operating system (it
survives the process being killed; ``fsync`` is not called per frame).  Frames of a
multiple of 4 KiB (256x256 uint16 and up) are written with ``O_DIRECT`` from a
page-aligned staging buffer, straight to the device, where the filesystem allows it
(else buffered): on the 2-core VM buffered writes fall to the page-cache writeback
rate (about 400 MB/s) once a few GB are dirty, direct writes hold about 1.2 GB/s with
little CPU (measured by ``bench/raw_writers.py``).  No
zarr-python, asyncio or compression in the hot path: about one syscall per frame
and per metadata value.  The array's ``zarr.json`` shape is brought up to date each
time a chunk fills, so a reader sees the completed chunks while the run goes on.  At
close the open chunk is padded to its full size (a sparse ``ftruncate``; zarr v3
stores edge chunks whole) and the shapes are cut to the frames written.

Crash consistency: a frame counts only once its ``seq`` (written last) is on disk.
:func:`recover_zarr` (or :func:`livesr.stream._rawstore.recover_raw_store`) of a store
whose writer died counts the complete frames and metadata records in the chunk files,
cuts off anything partial, pads, writes the shapes and marks the store recovered
(``livesr.complete`` false, ``livesr.recovered`` true), and removes the leftover
``.reserve`` file.  A store still being written (its reserve is locked) is refused.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._rawstore_common import (
    RawStoreError,
    Reserve,
    claim_crashed,
    describe_oserror,
    ome_multiscales,
    write_json,
)

logger = logging.getLogger("livesr.stream._rawstore")

#: target size of one frame chunk (frames per chunk K = this // frame bytes, >= 1)
CHUNK_BYTES = 32 * 2**20
#: most frames in one chunk
MAX_CHUNK_FRAMES = 4096
#: O_DIRECT needs buffers, sizes and offsets in multiples of this (bytes)
DIRECT_ALIGN = 4096
#: frames per chunk of the per-frame metadata arrays (8 bytes each)
META_CHUNK = 65536
_META = (("t_acq", "float64"), ("t_recv", "float64"), ("seq", "int64"))


def chunk_frames_for(shape: tuple[int, int], dtype: str) -> int:
    """Frames per chunk K for ``shape`` and ``dtype`` frames (:data:`CHUNK_BYTES`)."""
    fb = int(shape[0]) * int(shape[1]) * np.dtype(dtype).itemsize
    return max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // max(1, fb)))


def _array_json(
    shape: Sequence[int], chunks: Sequence[int], dtype: str, fill: Any
) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [int(s) for s in shape],
        "data_type": np.dtype(dtype).name,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [int(c) for c in chunks]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {},
        "storage_transformers": [],
    }


def _group_json(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}


def _chunk_path(array_dir: Path, j: int, ndim: int) -> Path:
    return array_dir.joinpath("c", str(j), *(["0"] * (ndim - 1)))


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


class _ChunkedColumn:
    """One appendable 1-D or frame array: its directory, chunk length, open chunk."""

    def __init__(
        self,
        directory: Path,
        chunk: int,
        item_bytes: int,
        ndim: int,
        *,
        direct: bool = False,
    ) -> None:
        self.dir = directory
        self.chunk = chunk
        self.item_bytes = item_bytes
        self.ndim = ndim
        self.fd: int | None = None
        #: chunk files opened with O_DIRECT (set False when the filesystem refuses)
        self.direct = direct

    def start_chunk(self, j: int) -> None:
        self.close_fd()
        p = _chunk_path(self.dir, j, self.ndim)
        p.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        if self.direct:
            try:
                self.fd = os.open(p, flags | os.O_DIRECT, 0o644)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                logger.info("%s: O_DIRECT refused; buffered writes", self.dir)
                self.direct = False
        self.fd = os.open(p, flags, 0o644)

    def close_fd(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def cut(self, n: int) -> None:
        """Cut the open chunk to its first ``n % chunk`` items (after a failure)."""
        if self.fd is not None:
            os.ftruncate(self.fd, (n % self.chunk) * self.item_bytes)
            os.lseek(self.fd, 0, os.SEEK_END)


class OmeZarrRawStore:
    """Raw frames as OME-Zarr v0.5 (see the module docstring).

    Parameters
    ----------
    path : path-like
        The ``.ome.zarr`` folder to create (must not exist).
    chunk_frames : int, optional
        Frames per chunk K (default :func:`chunk_frames_for`: about 32 MiB).
    """

    def __init__(
        self, path: str | Path, *, chunk_frames: int = 0, direct: bool | None = None
    ) -> None:
        self.path = Path(path)
        self.frames_written = 0
        #: frames skipped because their seq was already persisted (never written twice)
        self.duplicates = 0
        self._chunk_frames = int(chunk_frames)
        self._direct_arg = direct
        self._stage: Any = None  # page-aligned staging buffer for O_DIRECT
        self._frames: _ChunkedColumn | None = None
        self._meta: dict[str, _ChunkedColumn] = {}
        self._shape: tuple[int, int] = (0, 0)
        self._dtype = np.dtype("uint16")
        self._frame_bytes = 0
        self._live: dict[str, Any] = {}
        self._ome: dict[str, Any] = {}
        self._last_seq: int | None = None
        self._failed: str | None = None
        self._closed = False
        self._reserve: Reserve | None = None

    @property
    def chunk_frames(self) -> int:
        """Frames per chunk K (0 before :meth:`open`)."""
        return self._frames.chunk if self._frames is not None else 0

    def open(
        self,
        shape: tuple[int, int],
        dtype: str,
        *,
        pixel_size_um: float,
        interval_s: float,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the store for frames of ``shape`` (rows, cols) and ``dtype``."""
        if self.path.exists():
            raise FileExistsError(
                f"raw store {self.path} already exists; choose an empty --output folder"
            )
        h, w = int(shape[0]), int(shape[1])
        dt = np.dtype(dtype)
        self._shape, self._dtype = (h, w), dt
        self._frame_bytes = h * w * dt.itemsize
        k = self._chunk_frames or chunk_frames_for((h, w), dt.name)
        self._reserve = Reserve(self.path)
        self.path.mkdir(parents=True)
        self._ome = ome_multiscales(
            "raw", pixel_size_um=pixel_size_um, interval_s=interval_s
        )
        self._live = {
            "kind": "raw",
            "complete": False,
            "frames": 0,
            "pixel_size_um": float(pixel_size_um),
            "interval_s": float(interval_s),
            "meta": dict(meta or {}),
            "writer": "livesr-append",
        }
        self._write_group_attrs()
        (self.path / "0").mkdir()
        direct = self._direct_arg
        if direct is None:
            direct = self._frame_bytes % DIRECT_ALIGN == 0 and hasattr(os, "O_DIRECT")
        elif direct and self._frame_bytes % DIRECT_ALIGN:
            raise ValueError(
                f"direct=True needs frames of a multiple of {DIRECT_ALIGN} bytes; "
                f"{h}x{w} {dt.name} is {self._frame_bytes}"
            )
        self._frames = _ChunkedColumn(
            self.path / "0", k, self._frame_bytes, 5, direct=bool(direct)
        )
        if direct:
            import mmap

            self._stage = mmap.mmap(-1, self._frame_bytes)  # page-aligned
            self._stage_view = np.frombuffer(self._stage, dtype=np.uint8)
        self._write_frame_shape(0)
        (self.path / "frames").mkdir()
        write_json(self.path / "frames" / "zarr.json", _group_json({}))
        for name, mdt in _META:
            d = self.path / "frames" / name
            d.mkdir()
            self._meta[name] = _ChunkedColumn(d, META_CHUNK, 8, 1)
            write_json(
                d / "zarr.json",
                _array_json((0,), (META_CHUNK,), mdt, 0.0 if mdt[0] == "f" else 0),
            )

    # -- JSON documents
    def _write_group_attrs(self) -> None:
        write_json(
            self.path / "zarr.json",
            _group_json({"ome": self._ome, "livesr": self._live}),
        )

    def _write_frame_shape(self, n: int) -> None:
        h, w = self._shape
        fill = 0.0 if self._dtype.kind == "f" else 0
        write_json(
            self.path / "0" / "zarr.json",
            _array_json(
                (n, 1, 1, h, w), (self.chunk_frames, 1, 1, h, w), self._dtype.name, fill
            ),
        )

    # -- the single place a frame hits the disk (tests inject failures here)
    def _write_frame(self, index: int, frame: np.ndarray) -> None:
        fr = self._frames
        assert fr is not None and fr.fd is not None
        if fr.direct:  # O_DIRECT: from an aligned buffer, to the device on return
            self._stage_view[:] = frame.reshape(-1).view(np.uint8)
            _write_all(fr.fd, self._stage)
        else:
            _write_all(fr.fd, frame)

    @property
    def direct(self) -> bool:
        """Whether frames are written with ``O_DIRECT`` (see the module docstring)."""
        return self._frames is not None and self._frames.direct

    def append(
        self, seq: int, frame: np.ndarray, *, t_acq: float, t_recv: float
    ) -> bool:
        """Append one frame; in the OS on return; :class:`RawStoreError` on failure.

        A ``seq`` at or below the last one persisted is a frame already on disk (a
        retry): it is skipped, never written twice (counted in :attr:`duplicates`).
        Returns True when the frame was written, False when it was such a retry.
        """
        if self._frames is None or self._closed:
            raise RawStoreError(errno.EBADF, f"raw store {self.path} is not open")
        if self._failed is not None:
            raise RawStoreError(
                errno.EIO, f"raw store {self.path} failed earlier: {self._failed}"
            )
        seq = int(seq)
        if self._last_seq is not None and seq <= self._last_seq:
            self.duplicates += 1
            logger.warning(
                "raw store %s: seq %d is already persisted (last %d); not written "
                "again",
                self.path,
                seq,
                self._last_seq,
            )
            return False
        f = np.asarray(frame)
        if f.shape != self._shape:
            raise ValueError(
                f"raw store {self.path}: frame seq {seq} is {f.shape}; expected "
                f"{self._shape}"
            )
        if f.dtype != self._dtype or not f.flags.c_contiguous:
            f = np.ascontiguousarray(f, dtype=self._dtype)
        if f.dtype.byteorder == ">":
            f = f.astype(f.dtype.newbyteorder("<"))
        i = self.frames_written
        fr = self._frames
        try:
            if i % fr.chunk == 0:
                if i:
                    self._write_frame_shape(i)  # the completed chunks are readable
                fr.start_chunk(i // fr.chunk)
            if i % META_CHUNK == 0:
                for col in self._meta.values():
                    col.start_chunk(i // META_CHUNK)
            self._write_frame(i, f)
            m = self._meta
            assert m["t_acq"].fd is not None and m["t_recv"].fd is not None
            os.write(m["t_acq"].fd, np.float64(t_acq).tobytes())
            os.write(m["t_recv"].fd, np.float64(t_recv).tobytes())
            assert m["seq"].fd is not None
            os.write(m["seq"].fd, np.int64(seq).tobytes())  # the frame counts now
        except OSError as exc:
            self._fail(exc, i)
            raise RawStoreError(
                exc.errno or errno.EIO,
                f"cannot write raw frame seq {seq} to {self.path}: {self._failed}; "
                f"the {i} frame(s) before it are complete and readable",
            ) from exc
        self._last_seq = seq
        self.frames_written = i + 1
        return True

    def _fail(self, exc: OSError, n: int) -> None:
        self._failed = describe_oserror(exc)
        if self._reserve is not None:
            self._reserve.free()  # room for the final metadata
        for col in (self._frames, *self._meta.values()):
            if col is None:
                continue
            try:
                col.cut(n)  # nothing partial of the failed frame stays
            except OSError as cut_exc:
                logger.error(
                    "raw store %s: could not cut a torn write: %s", self.path, cut_exc
                )

    def close(
        self, *, gaps: Sequence[Sequence[Any]] = (), error: str | None = None
    ) -> None:
        """Pad the open chunks, cut the shapes to the frames written, final metadata.

        After a write error this is best effort (each step guarded), and
        ``livesr.complete`` stays false with the error recorded.
        """
        if self._closed or self._frames is None:
            self._closed = True
            return
        self._closed = True
        n = self.frames_written
        err = error or self._failed
        if err is not None and self._reserve is not None:
            self._reserve.free()
        steps = (
            ("note the frame count", lambda: self._note_closing(n)),
            (
                "finish the chunks",
                lambda: _finish(self.path, n, self._shape, self._dtype),
            ),
            ("write the final attributes", lambda: self._final_attrs(n, gaps, err)),
        )
        for col in (self._frames, *self._meta.values()):
            col.close_fd()
        if self._stage is not None:
            del self._stage_view
            self._stage.close()
            self._stage = None
        for what, step in steps:
            try:
                step()
            except OSError as exc:
                logger.error(
                    "raw store %s: could not %s: %s",
                    self.path,
                    what,
                    describe_oserror(exc),
                )
        if self._reserve is not None:
            self._reserve.free()
        logger.info(
            "raw store %s closed: %d frames%s",
            self.path,
            n,
            f" (error: {err})" if err else "",
        )

    def _note_closing(self, n: int) -> None:
        # a crash during close recovers exactly n (the chunks may be padded already)
        self._live.update(frames=n, closing=n)
        self._write_group_attrs()

    def _final_attrs(
        self, n: int, gaps: Sequence[Sequence[Any]], err: str | None
    ) -> None:
        self._live.pop("closing", None)
        self._live.update(
            complete=err is None,
            closed=True,
            frames=n,
            gaps=[list(g) for g in gaps],
            error=err,
            duplicates_skipped=self.duplicates,
        )
        write_json(
            self.path / "zarr.json",
            _group_json({"ome": self._ome, "livesr": self._live}),
            durable=True,
        )


# ---------------------------------------------------------------------- finishing
def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if not isinstance(obj, dict):
        raise RawStoreError(errno.EINVAL, f"{path} is not a JSON object")
    return obj


def _count_items(array_dir: Path, chunk: int, item_bytes: int, ndim: int) -> int:
    """Complete items in the chunk files ``c/0``, ``c/1``... (stops at a short one)."""
    n, j = 0, 0
    while True:
        p = _chunk_path(array_dir, j, ndim)
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            return n
        items = min(chunk, size // item_bytes)
        n += items
        if items < chunk:
            return n
        j += 1


def _finish_column(
    array_dir: Path, n: int, chunk: int, item_bytes: int, ndim: int
) -> None:
    """Keep items ``[0, n)``: cut the last chunk there, pad it whole, drop the rest."""
    last = (n - 1) // chunk if n else -1
    j = last + 1
    while (p := _chunk_path(array_dir, j, ndim)).exists():
        p.unlink()
        j += 1
    if last >= 0:
        p = _chunk_path(array_dir, last, ndim)
        keep = (n - last * chunk) * item_bytes
        with open(p, "r+b") as fh:
            fh.truncate(keep)  # anything after item n is gone (a torn write too)
            fh.truncate(chunk * item_bytes)  # whole edge chunk (sparse zeros)
    meta = _read_json(array_dir / "zarr.json")
    meta["shape"] = [n, *meta["shape"][1:]]
    write_json(array_dir / "zarr.json", meta)


def _finish(path: Path, n: int, shape: tuple[int, int], dtype: np.dtype) -> None:
    arr = _read_json(path / "0" / "zarr.json")
    k = int(arr["chunk_grid"]["configuration"]["chunk_shape"][0])
    fb = int(shape[0]) * int(shape[1]) * np.dtype(dtype).itemsize
    _finish_column(path / "0", n, k, fb, len(arr["shape"]))
    for name, _ in _META:
        _finish_column(path / "frames" / name, n, META_CHUNK, 8, 1)


def recover_zarr(path: str | Path) -> dict[str, Any]:
    """Make a crashed OME-Zarr raw store exact and readable (see the module docstring).

    Returns
    -------
    dict
        ``{"path", "format", "frames", "recovered"}``; ``recovered`` is false when the
        store was closed cleanly (or recovered) before and nothing was changed.

    Raises
    ------
    RawStoreBusyError
        The store is still being written by a live process.
    RawStoreError
        ``path`` is not a livesr raw store written by this writer.
    """
    p = Path(path)
    try:
        group = _read_json(p / "zarr.json")
    except (OSError, ValueError) as exc:
        raise RawStoreError(
            errno.EINVAL, f"{p} is not a readable zarr store: {exc}"
        ) from exc
    attrs = group.get("attributes") or {}
    live = attrs.get("livesr")
    if not isinstance(live, dict) or live.get("kind") != "raw":
        raise RawStoreError(errno.EINVAL, f"{p} is not a livesr raw store")
    claim_crashed(p)  # raises while a writer holds it; removes a leftover reserve
    if "closing" not in live and (
        live.get("complete") or live.get("closed") or live.get("recovered")
    ):
        return {
            "path": str(p),
            "format": "ome-zarr",
            "frames": int(live.get("frames", 0)),
            "recovered": False,
        }
    if live.get("writer") != "livesr-append":
        raise RawStoreError(
            errno.EINVAL,
            f"{p} was written by an older livesr (one chunk per frame) and not closed "
            "cleanly; it cannot be recovered automatically",
        )
    arr = _read_json(p / "0" / "zarr.json")
    shape5 = arr["shape"]
    dt = np.dtype(arr["data_type"])
    k = int(arr["chunk_grid"]["configuration"]["chunk_shape"][0])
    fb = int(shape5[-2]) * int(shape5[-1]) * dt.itemsize
    if "closing" in live:
        n = int(live["closing"])
    else:
        counts = [_count_items(p / "0", k, fb, len(shape5))]
        counts += [
            _count_items(p / "frames" / name, META_CHUNK, 8, 1) for name, _ in _META
        ]
        n = min(counts)
    _finish(p, n, (int(shape5[-2]), int(shape5[-1])), dt)
    before = live.get("error")
    live.pop("closing", None)
    live.update(
        complete=False,
        frames=n,
        recovered=True,
        error=before
        or f"not closed cleanly (the writing process died); {n} frame(s) recovered",
    )
    group["attributes"] = {**attrs, "livesr": live}
    write_json(p / "zarr.json", group, durable=True)
    logger.warning("raw store %s was not closed cleanly: recovered %d frame(s)", p, n)
    return {"path": str(p), "format": "ome-zarr", "frames": n, "recovered": True}
