"""Result files of a run, written into the output folder.

``sr.ome.zarr``
    The super-resolved time series, OME-Zarr v0.5 (zarr v3), array ``0`` with axes
    ``t c z y x``; ``scale`` = (stride x frame interval s, 1, 1, raw pixel size /
    magnification um, the same).  One chunk per image.  Attributes under ``livesr``:
    eSRRF parameters, ``param_changes`` (``[{frame_index, changes}]``), ``complete``,
    ``image_frames`` (per stored image, in store order: ``{window, first_frame,
    last_frame, t_first, t_last}``: the published window's index, its first and
    last frame (seq) and their acquisition times, s since the epoch, null where
    unknown) and ``time_axis``.  The OME ``scale`` on t is seconds per image only
    when the images are regular (every stored image ends the same number of
    frames after the previous one: no skips, no stride change; a constant
    decimation is regular); otherwise t is the image index (no unit, scale 1)
    and ``time_axis.regular`` is false with the reason: read the times from
    ``image_frames``.
``windows.csv``
    One row per image: index, first/last frame (seq), newest frame's timestamps,
    end-to-end latency, drift applied to the newest frame, quality metric, live
    resolution and (``--error-map``) the SQUIRREL RSP/RSE of the image named in
    ``error_map_image``.
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
from typing import Any, cast

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


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


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
    frame_interval_s : float, optional
        Camera frame interval, s: the t scale of regular images is their step in
        frames times this (None: ``interval_s`` is kept when the images are
        regular).
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
        frame_interval_s: float | None = None,
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
        self._frame_interval_s = frame_interval_s
        self._pixel_size_um = float(pixel_size_um)
        self._interval_s = float(interval_s)
        self._image_frames: list[dict[str, Any]] = []
        if background:
            self._queue = queue.Queue(maxsize=int(queue_images))
            self._thread = threading.Thread(
                target=self._write_loop, name="livesr-sr-writer", daemon=True
            )
            self._thread.start()

    def append(
        self,
        image: np.ndarray,
        *,
        window: int | None = None,
        first_frame: int | None = None,
        last_frame: int | None = None,
        t_first: float | None = None,
        t_last: float | None = None,
    ) -> int:
        """Write (or, in background mode, queue) one image; returns its index.

        ``window`` (published index), ``first_frame`` / ``last_frame`` (seq) and
        ``t_first`` / ``t_last`` (acquisition times of those frames, s) go to the
        ``image_frames`` attribute at :meth:`close` (None: unknown).
        """
        if self._error is not None:
            raise OSError(f"writing {self.path} failed: {self._error}") from self._error
        i = self.count
        self.count = i + 1
        self._image_frames.append(
            {
                "window": None if window is None else int(window),
                "first_frame": None if first_frame is None else int(first_frame),
                "last_frame": None if last_frame is None else int(last_frame),
                "t_first": _finite_or_none(t_first),
                "t_last": _finite_or_none(t_last),
            }
        )
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
        frames = self._image_frames[: self.count]
        axis = self._time_axis(frames)
        live = dict(cast(dict[str, Any], self._group.attrs["livesr"]))
        live.update(
            complete=error is None,
            images=self.count,
            param_changes=_json_safe(list(param_changes)),
            error=error,
            image_frames=frames,
            time_axis=axis,
        )
        ome = ome_multiscales(
            "sr",
            pixel_size_um=self._pixel_size_um,
            interval_s=axis["step_s"] if axis["regular"] else 1.0,
        )
        if not axis["regular"]:  # t is the image index: no time unit, no fake step
            ome["multiscales"][0]["axes"][0] = {"name": "t", "type": "time"}
        self._group.attrs.update({"ome": ome, "livesr": live})

    def _time_axis(self, frames: list[dict[str, Any]]) -> dict[str, Any]:
        """Whether the stored images are regular in time, and their step."""
        ends = [f["last_frame"] for f in frames]
        if any(e is None for e in ends):
            return {
                "regular": True,
                "step_frames": None,
                "step_s": self._interval_s,
                "reason": "frames of the images not recorded: nominal step",
            }
        steps = sorted({b - a for a, b in zip(ends[:-1], ends[1:], strict=True)})
        if len(steps) > 1 or (steps and steps[0] <= 0):
            return {
                "regular": False,
                "step_frames": None,
                "step_s": None,
                "reason": (
                    f"images end {steps[0]} to {steps[-1]} frames apart (skipped "
                    "windows or a stride change): t is the image index, times in "
                    "image_frames"
                ),
            }
        if not steps:  # 0 or 1 image: the nominal step
            return {
                "regular": True,
                "step_frames": None,
                "step_s": self._interval_s,
                "reason": "fewer than 2 images: nominal step",
            }
        fi = self._frame_interval_s
        step_s = steps[0] * fi if fi is not None and fi > 0 else self._interval_s
        return {
            "regular": True,
            "step_frames": steps[0],
            "step_s": step_s,
            "reason": None,
        }


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
        "resolution_nm",
        "resolution_px",
        "resolution_method",
        "resolved",
        "resolution_image",
        "rsp",
        "rse",
        "error_map_image",
        "frc_nm",
        "frc_px",
        "frc_resolved",
        "frc_image",
        "resolution_reason",
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
        *,
        resolution: Mapping[str, Any] | None = None,
        error_map: Mapping[str, Any] | None = None,
        frc: Mapping[str, Any] | None = None,
    ) -> None:
        """One row; ``resolution``, ``error_map`` and ``frc`` (even/odd FRC) are the
        header's (None: empty cells)."""
        lat = (stamps["published"] - stamps["acquired"]) * 1e3
        r = resolution or {}
        e = error_map or {}
        f = frc or {}
        nm, px = r.get("value_nm"), r.get("value_px")
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
                "" if nm is None else f"{nm:.3f}",
                "" if px is None else f"{px:.5f}",
                r.get("method", ""),
                "" if not r else int(bool(r.get("resolved"))),
                "" if r.get("image_index") is None else int(r["image_index"]),
                "" if e.get("rsp") is None else f"{e['rsp']:.6f}",
                "" if e.get("rse") is None else f"{e['rse']:.6g}",
                "" if e.get("image_index") is None else int(e["image_index"]),
                "" if f.get("value_nm") is None else f"{f['value_nm']:.3f}",
                "" if f.get("value_px") is None else f"{f['value_px']:.5f}",
                "" if not f else int(bool(f.get("resolved"))),
                "" if f.get("image_index") is None else int(f["image_index"]),
                # why a decorrelation value is not resolved (stream/_resolution.py)
                r.get("reason") or "",
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
