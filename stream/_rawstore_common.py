"""What every raw store shares: the interface, errors, the space reserve, JSON and OME.

See :mod:`livesr.stream._rawstore` for the formats and their guarantees.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger("livesr.stream._rawstore")

#: space kept free next to a raw store for its final metadata after a disk-full error
RESERVE_BYTES = 256 * 1024


class RawStoreError(OSError):
    """Writing a raw frame failed; the frames before it are complete and readable."""


class RawStoreBusyError(RawStoreError):
    """A raw store is still being written by a live process (its reserve is locked)."""


class RawStore(Protocol):
    """What the pipeline needs from a raw-frame writer.

    ``append`` returns True when it wrote the frame, False when ``seq`` was already
    persisted (a retry: nothing is written twice).
    """

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
    ) -> bool: ...

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


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``"NaN"``, ``"Infinity"`` or
    ``"-Infinity"`` (the zarr v3 spelling), numpy scalars/arrays as Python values, and
    anything else JSON cannot hold as its ``str``; the result dumps as strict JSON."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if math.isfinite(f):
            return f
        return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    return str(obj)


def write_json(path: Path, obj: Any, *, durable: bool = False) -> None:
    """Replace ``path`` atomically with ``obj`` as strict JSON (:func:`json_safe`).

    A reader (or a crash) sees the old or the new file, never a torn one.
    """
    data = json.dumps(json_safe(obj), indent=2, allow_nan=False).encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Reserve:
    """``RESERVE_BYTES`` of real (not sparse) disk space in ``<store>.reserve``.

    The writer holds an exclusive ``flock`` on it while the store is open, so a
    recovery can tell a crashed store (lock free) from one still being written.
    """

    def __init__(self, store_path: Path) -> None:
        self.path = reserve_path(store_path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(self._fd, b"\0" * RESERVE_BYTES)
            os.fsync(self._fd)
        except OSError:
            self.free()
            raise

    def free(self) -> None:
        """Give the space back and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:  # pragma: no cover - best effort
            logger.error("could not remove the space reserve %s: %s", self.path, exc)
        if fd is not None:
            os.close(fd)


def reserve_path(store_path: Path) -> Path:
    """The space-reserve file of the store at ``store_path``."""
    return store_path.with_name(store_path.name + ".reserve")


def claim_crashed(store_path: Path) -> None:
    """Remove a leftover reserve of a store whose writer is gone.

    Raises
    ------
    RawStoreBusyError
        A live process holds the reserve's lock (the store is being written).
    """
    rp = reserve_path(store_path)
    try:
        fd = os.open(rp, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RawStoreBusyError(
                errno.EBUSY,
                f"raw store {store_path} is being written by a running process "
                f"(it holds {rp.name}); wait until that run ends",
            ) from None
        rp.unlink(missing_ok=True)
    finally:
        os.close(fd)


def describe_oserror(exc: OSError) -> str:
    """One line for an ``OSError`` with its errno name and a hint for a full disk."""
    code = errno.errorcode.get(exc.errno or 0, "")
    hint = (
        " (disk full: free space or choose another --output)"
        if exc.errno == errno.ENOSPC
        else ""
    )
    return f"{exc.strerror or exc}{f' [{code}]' if code else ''}{hint}"
