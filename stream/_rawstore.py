"""Raw-frame writers: every received frame is persisted here before anything else.

Formats, one interface (:class:`RawStore`)::

    store = open_raw_store("ome-zarr", out_dir)       # or "ome-tiff"
    store.open(shape, dtype, pixel_size_um=0.1, interval_s=0.01, meta={...})
    store.append(seq, frame, t_acq=..., t_recv=...)   # in the OS when it returns
    store.close(gaps=[[first, last, reason], ...])    # final metadata, "complete"
    recover_raw_store("run/raw.ome.zarr")             # after a crash (kill -9)

OME-Zarr (``raw.ome.zarr``, zarr v3, OME-NGFF 0.5; :mod:`._rawstore_zarr`)
    Array ``0`` with axes ``t c z y x`` (``scale`` = interval s, 1, 1, pixel um,
    pixel um), chunks of K frames (about 32 MiB), uncompressed; each frame is appended
    to the open chunk file with one ``os.write``.  Per-frame metadata: arrays
    ``frames/seq``, ``frames/t_acq``, ``frames/t_recv`` (appended per frame too).
    Attributes under ``livesr``: ``complete`` (false until a clean close),
    ``frames``, ``gaps``, ``error``, ``recovered`` (after a crash recovery).
OME-TIFF (``raw.ome.tif``, BigTIFF via tifffile; :mod:`._rawstore_tiff`)
    One page per frame appended as it arrives, each with a JSON description
    ``{"seq", "t_acq", "t_recv"}``; the OME-XML is written into the first page at
    close, for exactly the frames written.  A file without OME-XML was not closed
    cleanly.
Reference (:class:`ReferenceRawStore`, ``livesr replay`` without ``--copy-raw``)
    Writes no pixels: the frames already lie in the recording being replayed.  It
    checks that frame ``seq`` is frame ``start + seq`` of the file and records the
    file, the range and the per-frame times in ``raw.json``.

A frame is never persisted twice: an ``append`` whose ``seq`` is at or below the last
one persisted (a retry) is skipped and counted (``duplicates``).

Errors: an ``OSError`` while writing (``ENOSPC`` disk full, ``EIO``...) raises
:class:`RawStoreError` at once (within the frame that failed); the store then cuts
itself back to the frames already written (all readable and complete) and records
the error, so nothing truncated passes as complete.  The caller stops acquisition
and records the gap.

Disk full: each store keeps :data:`RESERVE_BYTES` of real space next to it
(``<name>.reserve``, written and locked at ``open``, removed at ``close``); a failed
write frees it first, so the final metadata still fits on a full disk.

Crash (``kill -9``, power kept): :func:`recover_raw_store` restores the exact count of
frames whose ``append`` completed, their per-frame metadata, a readable store
(nothing unwritten appears as a frame), and removes the leftover ``.reserve``.
:func:`livesr.stream._rawread.open_recording` does this by itself for a
crashed livesr raw store.  A store whose writer is still alive is refused
(:class:`RawStoreBusyError`).
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._rawstore_common import (
    RESERVE_BYTES,
    RawStore,
    RawStoreBusyError,
    RawStoreError,
    json_safe,
    logger,
    ome_multiscales,
    write_json,
)
from livesr.stream._rawstore_tiff import OmeTiffRawStore, recover_tiff
from livesr.stream._rawstore_zarr import OmeZarrRawStore, recover_zarr

__all__ = [
    "RAW_FORMATS",
    "RESERVE_BYTES",
    "OmeTiffRawStore",
    "OmeZarrRawStore",
    "RawStore",
    "RawStoreBusyError",
    "RawStoreError",
    "ReferenceRawStore",
    "json_safe",
    "needs_recovery",
    "ome_multiscales",
    "open_raw_store",
    "recover_raw_store",
]

RAW_FORMATS = ("ome-zarr", "ome-tiff")


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


def _zarr_live(path: Path) -> dict[str, Any] | None:
    try:
        with open(path / "zarr.json", encoding="utf-8") as fh:
            group = json.load(fh)
    except (OSError, ValueError):
        return None
    live = (
        (group.get("attributes") or {}).get("livesr")
        if isinstance(group, dict)
        else None
    )
    return live if isinstance(live, dict) and live.get("kind") == "raw" else None


def needs_recovery(path: str | Path) -> bool:
    """Whether ``path`` is a livesr raw store that was not closed (a crash, or a run
    still going: :func:`recover_raw_store` tells them apart)."""
    p = Path(path)
    if p.is_dir():
        live = _zarr_live(p)
        if live is None:
            return False
        return "closing" in live or not (
            live.get("complete") or live.get("closed") or live.get("recovered")
        )
    if p.is_file() and p.name.lower().endswith((".ome.tif", ".ome.tiff")):
        if p.with_name(p.name + ".reserve").exists():
            return True
        try:
            import tifffile

            with tifffile.TiffFile(p, is_ome=False) as tf:
                tf.pages.useframes = False
                desc = getattr(tf.pages[0], "description", "") if len(tf.pages) else ""
        except Exception:  # a torn file: tifffile may fail in many ways
            return True
        if "<OME" in desc:
            return False
        try:
            first = json.loads(desc)
        except ValueError:
            return False
        return isinstance(first, dict) and "livesr" in first
    return False


def recover_raw_store(path: str | Path) -> dict[str, Any]:
    """Restore a crashed livesr raw store (``raw.ome.zarr`` or ``raw.ome.tif``).

    Afterwards the store holds exactly the frames whose ``append`` completed, with
    their per-frame metadata, readable by zarr-python / tifffile and by
    :func:`~livesr.stream._rawread.open_recording`; it stays marked as not
    closed cleanly (zarr: ``livesr.complete`` false, ``livesr.recovered`` true; TIFF:
    ``raw.ome.error.txt``).  The leftover ``.reserve`` file is removed.  A store that
    was closed cleanly is left as it is.

    Parameters
    ----------
    path : path-like
        The store, or a run folder holding ``raw.ome.zarr`` or ``raw.ome.tif``.

    Returns
    -------
    dict
        ``{"path", "format", "frames", "recovered"}``.

    Raises
    ------
    RawStoreBusyError
        A live process is still writing the store.
    RawStoreError
        Not a livesr raw store, or damaged beyond recovery.
    """
    p = Path(path)
    if p.is_dir() and not (p / "zarr.json").exists():
        for name in ("raw.ome.zarr", "raw.ome.tif"):
            if (p / name).exists():
                p = p / name
                break
    if p.is_dir():
        return recover_zarr(p)
    if p.is_file() and p.name.lower().endswith((".ome.tif", ".ome.tiff")):
        return recover_tiff(p)
    raise RawStoreError(
        errno.EINVAL,
        f"{p} is not a livesr raw store (expected raw.ome.zarr, raw.ome.tif or a run "
        "folder holding one)",
    )


class ReferenceRawStore:
    """A raw store that writes no pixels: frames ``start + seq`` of a recording.

    For ``livesr replay``: the frames it replays are already persisted in the file it
    reads, so copying them again only costs disk and time.  ``append`` checks that the
    stream's ``seq`` is the next frame of the range and records its times; ``close``
    writes ``raw.json`` into ``output``: the source file, its format, the range
    ``[start, start + frames)``, the per-frame ``seq``/``t_acq``/``t_recv``, gaps and
    error.  :attr:`path` is the recording (what the summary's ``files.raw`` names);
    :attr:`reference` is the JSON-friendly description.

    Parameters
    ----------
    source : path-like
        The recording being replayed.
    output : path-like
        The run's output folder (``raw.json`` goes there).
    start : int
        Index in the file of the frame sent as seq 0.
    stop : int
        End of the range (exclusive).
    fmt : str
        The recording's format name (``"ome-zarr"``, ``"ome-tiff"``...).
    """

    def __init__(
        self, source: str | Path, output: str | Path, *, start: int, stop: int, fmt: str
    ) -> None:
        self.path = Path(source)
        self.output = Path(output)
        self.start, self.stop, self.format = int(start), int(stop), str(fmt)
        self.frames_written = 0
        self.duplicates = 0
        self._seq: list[int] = []
        self._t: list[tuple[float, float]] = []
        self._shape: tuple[int, int] | None = None
        self._dtype = ""
        self._closed = False

    @property
    def reference(self) -> dict[str, Any]:
        """``{"source", "format", "range": [a, b], "frames"}`` of the frames seen."""
        return {
            "source": str(self.path),
            "format": self.format,
            "range": [self.start, self.start + self.frames_written],
            "frames": self.frames_written,
        }

    def __str__(self) -> str:
        a, b = self.reference["range"]
        return f"{self.path}[{a}:{b}]"

    def open(
        self,
        shape: tuple[int, int],
        dtype: str,
        *,
        pixel_size_um: float,
        interval_s: float,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Remember the frame shape and acquisition parameters (nothing is written)."""
        self._shape = (int(shape[0]), int(shape[1]))
        self._dtype = str(dtype)
        self._acq = {
            "pixel_size_um": float(pixel_size_um),
            "interval_s": float(interval_s),
            "meta": dict(meta or {}),
        }

    def append(
        self, seq: int, frame: np.ndarray, *, t_acq: float, t_recv: float
    ) -> bool:
        """Record frame ``seq`` (file frame ``start + seq``); nothing is copied.

        Raises
        ------
        RawStoreError
            ``seq`` is not the next frame of the range (a frame the file does not
            hold at that place cannot be referenced).
        """
        if self._shape is None or self._closed:
            raise RawStoreError(errno.EBADF, f"reference raw store {self} is not open")
        seq = int(seq)
        if seq < self.frames_written:
            self.duplicates += 1
            return False
        if seq != self.frames_written or self.start + seq >= self.stop:
            raise RawStoreError(
                errno.EINVAL,
                f"replay reference: frame seq {seq} arrived where seq "
                f"{self.frames_written} (file frame {self.start + self.frames_written} "
                f"of {self.path}, range {self.start}:{self.stop}) was expected; "
                "replay with --copy-raw to store the frames as received",
            )
        self._seq.append(seq)
        self._t.append((float(t_acq), float(t_recv)))
        self.frames_written = seq + 1
        return True

    def close(
        self, *, gaps: Sequence[Sequence[Any]] = (), error: str | None = None
    ) -> None:
        """Write ``raw.json`` (the reference, per-frame times, gaps, error)."""
        if self._closed:
            return
        self._closed = True
        t = np.asarray(self._t, dtype=np.float64).reshape(-1, 2)
        doc = {
            "kind": "raw-reference",
            **self.reference,
            "shape": list(self._shape or ()),
            "dtype": self._dtype,
            **getattr(self, "_acq", {}),
            "complete": error is None,
            "gaps": [list(g) for g in gaps],
            "error": error,
            "duplicates_skipped": self.duplicates,
            "frames_seq": self._seq,
            "frames_t_acq": t[:, 0].tolist(),
            "frames_t_recv": t[:, 1].tolist(),
        }
        try:
            self.output.mkdir(parents=True, exist_ok=True)
            write_json(self.output / "raw.json", json_safe(doc))
        except OSError as exc:
            logger.error("could not write %s: %s", self.output / "raw.json", exc)
