"""Result files of a run, written into the output folder.

``sr.ome.zarr``
    The super-resolved time series, OME-Zarr v0.5 (zarr v3), array ``0`` with axes
    ``t c z y x``; ``scale`` = (stride x frame interval s, 1, 1, raw pixel size /
    magnification um, the same).  One chunk per image.  Attributes under ``livesr``:
    eSRRF parameters, ``param_changes`` (``[{frame_index, changes}]``), ``complete``.
``windows.csv``
    One row per image: index, first/last frame (seq), newest frame's timestamps,
    end-to-end latency, drift applied to the newest frame, quality metric.
``drift.csv``
    One row per rolling drift estimate (block): block, last frame seq, centre (seq),
    dy/dx px, sigma px, rejected, PSR.
``summary.json``
    Counters, latency, parameters, gaps, implementations, files.
``config.toml``
    The effective configuration (:func:`livesr.stream._config.to_toml`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._rawstore import ome_multiscales

__all__ = [
    "DriftTable",
    "SrSeriesWriter",
    "WindowTable",
    "write_config",
    "write_summary",
]

logger = logging.getLogger(__name__)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None; numpy scalars -> Python; recursively."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class SrSeriesWriter:
    """Append SR images to ``sr.ome.zarr`` (see the module docstring).

    Parameters
    ----------
    path : path-like
        The ``.ome.zarr`` folder to create.
    shape : (int, int)
        SR image shape ``(H*M, W*M)``.
    pixel_size_um : float
        SR pixel size (raw pixel size / magnification).
    interval_s : float
        Time between two images (stride x frame interval).
    params : mapping
        eSRRF parameters to record.
    background : bool
        Write on a thread of its own (default False): :meth:`append` hands the
        image over and returns at once, so the processing thread never waits for
        compression and the disk (a 1280x1280 float32 image costs tens of ms). At
        most ``queue_images`` images wait; beyond that :meth:`append` blocks (SR
        results are never dropped). A write error is raised by the next
        :meth:`append` or by :meth:`close`.
    queue_images : int
        Images that may wait for the writer thread, >= 1.
    """

    def __init__(
        self,
        path: str | Path,
        shape: tuple[int, int],
        *,
        pixel_size_um: float,
        interval_s: float,
        params: Mapping[str, Any],
        background: bool = False,
        queue_images: int = 4,
    ) -> None:
        import zarr

        if queue_images < 1:
            raise ValueError(f"queue_images must be >= 1, got {queue_images!r}")
        self.path = Path(path)
        self.count = 0
        self._queue: queue.Queue[tuple[int, np.ndarray] | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._written = 0
        g = zarr.open_group(str(self.path), mode="w-", zarr_format=3)
        g.attrs.update(
            {
                "ome": ome_multiscales(
                    "sr", pixel_size_um=pixel_size_um, interval_s=interval_s
                ),
                "livesr": {
                    "kind": "esrrf",
                    "complete": False,
                    "images": 0,
                    "pixel_size_um": float(pixel_size_um),
                    "params": _json_safe(dict(params)),
                    "param_changes": [],
                },
            }
        )
        self._cap = 16
        h, w = int(shape[0]), int(shape[1])
        self._arr = g.create_array(
            "0",
            shape=(self._cap, 1, 1, h, w),
            chunks=(1, 1, 1, h, w),
            dtype="float32",
            fill_value=0.0,
        )
        self._group = g
        if background:
            self._queue = queue.Queue(maxsize=int(queue_images))
            self._thread = threading.Thread(
                target=self._write_loop, name="livesr-sr-writer", daemon=True
            )
            self._thread.start()

    def append(self, image: np.ndarray) -> int:
        """Write (or, in background mode, queue) one image; returns its index."""
        if self._error is not None:
            raise OSError(f"writing {self.path} failed: {self._error}") from self._error
        i = self.count
        self.count = i + 1
        if self._queue is not None:
            self._queue.put((i, image))
        else:
            self._write(i, image)
        return i

    def _write(self, i: int, image: np.ndarray) -> None:
        if i >= self._cap:
            self._cap += min(self._cap, 1024)
            self._arr.resize((self._cap, *self._arr.shape[1:]))
        self._arr[i, 0, 0] = image
        self._written = i + 1

    def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # reported by append/close
                    self._error = exc
                    logger.error("SR writer: %s", exc)

    def _drain(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def close(
        self, *, param_changes: Sequence[Mapping[str, Any]], error: str | None = None
    ) -> None:
        """Finish pending writes, cut to the images written, record the changes."""
        self._drain()
        if self._error is not None:
            error = error or f"writing SR images failed: {self._error}"
            self.count = self._written
        self._arr.resize((self.count, *self._arr.shape[1:]))
        live = dict(self._group.attrs["livesr"])
        live.update(
            complete=error is None,
            images=self.count,
            param_changes=_json_safe(list(param_changes)),
            error=error,
        )
        self._group.attrs["livesr"] = live


class _Csv:
    columns: tuple[str, ...] = ()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._w = csv.writer(self._fh)
        self._w.writerow(self.columns)
        self.rows = 0

    def _row(self, values: Sequence[Any]) -> None:
        self._w.writerow(
            [
                "" if (isinstance(v, float) and not math.isfinite(v)) else v
                for v in values
            ]
        )
        self.rows += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class WindowTable(_Csv):
    """``windows.csv``: one row per published image."""

    columns = (
        "index",
        "first_frame",
        "last_frame",
        "t_acquired",
        "t_received",
        "t_processed",
        "t_published",
        "latency_ms",
        "dy_px",
        "dx_px",
        "sigma_px",
        "quality",
        "saved",
    )

    def add(
        self,
        index: int,
        first: int,
        last: int,
        stamps: Mapping[str, float],
        shift: tuple[float, float],
        sigma: float,
        quality: float,
        saved: bool = True,
    ) -> None:
        lat = (stamps["published"] - stamps["acquired"]) * 1e3
        self._row(
            (
                index,
                first,
                last,
                f"{stamps['acquired']:.6f}",
                f"{stamps['received']:.6f}",
                f"{stamps['processed']:.6f}",
                f"{stamps['published']:.6f}",
                f"{lat:.3f}",
                f"{shift[0]:.5f}",
                f"{shift[1]:.5f}",
                f"{sigma:.5f}",
                f"{quality:.6g}",
                int(bool(saved)),
            )
        )


class DriftTable(_Csv):
    """``drift.csv``: one row per rolling drift estimate."""

    columns = (
        "block",
        "frame",
        "center",
        "dy_px",
        "dx_px",
        "sigma_px",
        "rejected",
        "psr",
    )

    def add(
        self,
        block: int,
        frame: int,
        center: float,
        dy: float,
        dx: float,
        sigma: float,
        rejected: bool,
        psr: float,
    ) -> None:
        self._row(
            (
                block,
                frame,
                f"{center:.2f}",
                f"{dy:.5f}",
                f"{dx:.5f}",
                f"{sigma:.5f}",
                int(bool(rejected)),
                f"{psr:.4g}",
            )
        )


def write_summary(path: str | Path, summary: Mapping[str, Any]) -> None:
    """Write ``summary.json`` (NaN written as null)."""
    Path(path).write_text(
        json.dumps(_json_safe(summary), indent=2, sort_keys=False) + "\n",
        encoding="utf-8",
    )


def write_config(path: str | Path, config: Any) -> None:
    """Write the effective configuration as TOML."""
    from livesr.stream._config import to_toml

    Path(path).write_text(to_toml(config), encoding="utf-8")
