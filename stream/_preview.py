"""``preview.png``: the last SR image beside the mean of its raw frames.

Written into a run's output folder when the run ends (``livesr run`` names it in its
final line): left, the mean of the raw frames of the last stored SR image's window,
enlarged by the magnification (nearest neighbour, so raw pixels stay visible); right,
that SR image.  Each half is scaled from its own 0.1th to 99.9th percentile to 8-bit
grey.  The PNG is written with :mod:`zlib` alone (no plotting library).
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["png_bytes", "write_preview"]

logger = logging.getLogger(__name__)

#: grey columns between the two halves, px
GAP_PX = 4


def _to_u8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(finite, [0.1, 99.9])
    if hi <= lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def png_bytes(grey: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of ``grey`` (H, W) uint8."""
    g = np.ascontiguousarray(grey, dtype=np.uint8)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"png_bytes needs a non-empty 2-D image, got shape {g.shape}")
    h, w = g.shape
    rows = np.zeros((h, w + 1), np.uint8)  # filter byte 0 (none) before every row
    rows[:, 1:] = g

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _raw_frames(output: Path, first: int, last: int) -> np.ndarray | None:
    """Frames ``first..last`` (seq) of the run's raw store, or None if unreadable."""
    zpath = output / "raw.ome.zarr"
    if zpath.is_dir():
        import zarr

        root: Any = zarr.open_group(str(zpath), mode="r")
        seqs = np.asarray(root["frames/seq"])
        pos = np.flatnonzero((seqs >= first) & (seqs <= last))
        if pos.size == 0:
            return None
        data = root["0"]
        frames = np.stack([np.asarray(data[int(i)]) for i in pos])
        return frames.reshape(frames.shape[0], *frames.shape[-2:])
    tpath = output / "raw.ome.tif"
    if tpath.is_file():
        import tifffile

        with tifffile.TiffFile(tpath) as tf:
            n = len(tf.pages)
            if n == 0:
                return None
            lo, hi = max(0, min(first, n - 1)), max(0, min(last, n - 1))
            return np.stack([tf.pages[i].asarray() for i in range(lo, hi + 1)])
    return None


def write_preview(output: str | Path) -> Path | None:
    """Write ``preview.png`` into a finished run's ``output``; None if there is no
    stored SR image (nothing to show) or the files cannot be read."""
    out = Path(output)
    spath = out / "sr.ome.zarr"
    if not spath.is_dir():
        return None
    try:
        import zarr

        sr_root: Any = zarr.open_group(str(spath), mode="r")
        info: Any = dict(sr_root.attrs).get("livesr", {}).get("image_frames") or []
        data = sr_root["0"]
        n = min(len(info), int(data.shape[0]))
        if n == 0:
            return None
        sr = np.asarray(data[n - 1]).reshape(data.shape[-2:])
        frames = _raw_frames(out, int(info[n - 1]["first_frame"]), int(info[n - 1]["last_frame"]))
        if frames is None:
            return None
        raw = frames.astype(np.float64).mean(axis=0)
        m = max(1, sr.shape[0] // raw.shape[0])
        big = np.repeat(np.repeat(_to_u8(raw), m, 0), m, 1)[: sr.shape[0], : sr.shape[1]]
        h = max(big.shape[0], sr.shape[0])
        canvas = np.full((h, big.shape[1] + GAP_PX + sr.shape[1]), 128, np.uint8)
        canvas[: big.shape[0], : big.shape[1]] = big
        canvas[: sr.shape[0], big.shape[1] + GAP_PX :] = _to_u8(sr)
        path = out / "preview.png"
        path.write_bytes(png_bytes(canvas))
        return path
    except Exception as exc:  # a preview never fails a run
        logger.warning("could not write preview.png into %s: %s", out, exc)
        return None
