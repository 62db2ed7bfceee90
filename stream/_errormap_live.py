"""Live SQUIRREL error maps of the published SR images (``--error-map``).

With ``[stream] error_map = true`` every published image may carry the SQUIRREL
error map of its window (:func:`livesr.kernels.error_map`, equal to NanoPyx 2.1.5's
``ErrorMap``): the SR image, scaled and blurred back, against the mean of the window's
raw frames *registered the way the map registered them* (each frame sampled at its
drift shift, ``scipy.ndimage.shift(frame, -shift, order=1)``: the map adds the shift
to every sample coordinate).

Schedule
    The processing thread copies each frame it maps into a rolling buffer of the
    last ``window`` frames (one memcpy per frame, only when the option is on).  When
    an image is published and the analysis worker is idle, the window's frames,
    shifts and SR image go to the worker process shared with the live resolution
    (:func:`livesr.stream._resolution.worker`), so the analysis never holds the GIL
    of the pipeline.  A finished map is handed **once** to the next image published
    (header ``error_map``: ``rsp``, ``rse``, ``alpha``, ``beta``, ``sigma_px``,
    ``image_index``) and its map is written beside the SR series
    (``error_maps.npz`` is written at the end: ``index``, ``rsp``, ``maps``).  When the
    worker keeps up every image gets its map; when it does not, the newest does and
    the others carry ``error_map: null`` (counted: ``summary.json`` ``error_map``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from livesr.stream._newest_only import NewestOnly, cpu_timed

__all__ = ["LiveErrorMap", "LiveErrorMapResult", "window_error_map"]

logger = logging.getLogger(__name__)

#: longest one analysis may take in the worker process, s
WORKER_TIMEOUT_S = 120.0
#: error maps kept for ``error_maps.npz`` (the newest; older ones are dropped)
KEEP_MAPS = 256


@dataclass(frozen=True, slots=True)
class LiveErrorMapResult:
    """The error map of one published image (see :func:`window_error_map`)."""

    image_index: int
    rsp: float
    rse: float
    alpha: float
    beta: float
    sigma_px: float
    error_map: np.ndarray

    def to_json(self) -> dict[str, Any]:
        """The header's ``error_map``: strict JSON (null, never NaN)."""

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "method": "squirrel",
            "rsp": num(self.rsp),
            "rse": num(self.rse),
            "alpha": num(self.alpha),
            "beta": num(self.beta),
            "sigma_px": num(self.sigma_px),
            "image_index": self.image_index,
        }


def registered_mean(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Mean of ``frames`` (n, H, W) each sampled at its shift (n, 2) (dy, dx) px.

    The eSRRF map samples frame ``k`` at ``p + shifts[k]``; the same registration
    here is ``scipy.ndimage.shift(frame, -shift)`` (linear, edges repeated).
    """
    from scipy.ndimage import shift as nd_shift

    acc = np.zeros(frames.shape[1:], dtype=np.float64)
    for frame, (dy, dx) in zip(frames, np.asarray(shifts, dtype=np.float64), strict=True):
        f = np.asarray(frame, dtype=np.float32)
        if dy == 0.0 and dx == 0.0:
            acc += f
        else:
            acc += nd_shift(f, (-dy, -dx), order=1, mode="nearest")
    return (acc / max(1, frames.shape[0])).astype(np.float32)


def window_error_map(
    index: int, frames: np.ndarray, shifts: np.ndarray, sr_image: np.ndarray
) -> LiveErrorMapResult:
    """SQUIRREL error map of one window's SR image (runs in the worker process).

    Parameters
    ----------
    index : int
        The published image's index (recorded).
    frames : (n, H, W) array
        The window's raw frames.
    shifts : (n, 2) float
        The drift shift the map applied to each frame, input px.
    sr_image : (H*M, W*M) float32
        The published SR image.
    """
    from livesr.kernels import error_map

    raw_mean = registered_mean(frames, shifts)
    res = error_map(raw_mean, sr_image)
    return LiveErrorMapResult(
        image_index=int(index),
        rsp=float(res.rsp),
        rse=float(res.rse),
        alpha=float(res.alpha),
        beta=float(res.beta),
        sigma_px=float(res.sigma),
        error_map=np.asarray(res.error_map, dtype=np.float32),
    )


class LiveErrorMap(NewestOnly):
    """Rolling raw-frame buffer and background error-map analysis (module docstring).

    Parameters
    ----------
    enabled : bool
        False: every method is a no-op (the default of a run).
    background : bool
        False: :meth:`offer` analyses at once on the caller's thread (tests).
    """

    def __init__(self, *, enabled: bool = False, background: bool = True) -> None:
        super().__init__("livesr-error-map")
        self.enabled = bool(enabled)
        self._background = background
        self._buf: np.ndarray | None = None
        self._seq: np.ndarray | None = None
        self._shift: np.ndarray | None = None
        self.kept: list[LiveErrorMapResult] = []
        self.latest: LiveErrorMapResult | None = None
        self.offered = 0
        self.analysed = 0
        self.not_analysed = 0
        self.failures = 0

    # ------------------------------------------------------------------ frames
    def push(self, seqs: np.ndarray, frames: np.ndarray, shifts: np.ndarray, window: int) -> None:
        """Keep the newest frames (at least ``window`` of them) and their shifts."""
        if not self.enabled:
            return
        n = int(frames.shape[0])
        cap = 2 * int(window) + n
        buf = self._buf
        if buf is None or buf.shape[0] < cap or buf.shape[1:] != frames.shape[1:]:
            self._buf = np.zeros((cap, *frames.shape[1:]), dtype=frames.dtype)
            self._seq = np.full(cap, -1, dtype=np.int64)
            self._shift = np.zeros((cap, 2))
        assert self._buf is not None and self._seq is not None and self._shift is not None
        slots = np.asarray(seqs, dtype=np.int64) % self._buf.shape[0]
        self._buf[slots] = frames
        self._seq[slots] = seqs
        self._shift[slots] = shifts

    def _window(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray] | None:
        if self._buf is None or self._seq is None or self._shift is None:
            return None
        want = np.arange(first, last + 1, dtype=np.int64)
        slots = want % self._buf.shape[0]
        if want.size > self._buf.shape[0] or not np.array_equal(self._seq[slots], want):
            return None
        return self._buf[slots].copy(), self._shift[slots].copy()

    # ------------------------------------------------------------------ analysis
    def offer(self, index: int, first: int, last: int, image: np.ndarray) -> bool:
        """Hand image ``index`` (frames ``first..last``) over if the worker is idle."""
        if not self.enabled or self._closed:
            return False
        self.offered += 1
        with self._lock:
            idle = self._idle() and self._rested()
        got = self._window(first, last) if idle else None
        if got is None:
            self.not_analysed += 1
            return False
        frames, shifts = got
        img = np.array(image, dtype=np.float32)
        if not self._background:
            self._timed_analyse(index, frames, shifts, img)
            return True
        with self._lock:
            self._hand_over((int(index), frames, shifts, img))
        return True

    def _analyse(self, index: int, frames: np.ndarray, shifts: np.ndarray, img: np.ndarray) -> None:
        try:
            if self._background:
                from livesr.stream._resolution import worker

                res, self._cpu_s = worker().submit(
                    cpu_timed, window_error_map, index, frames, shifts, img
                ).result(timeout=WORKER_TIMEOUT_S)
            else:
                res = window_error_map(index, frames, shifts, img)
        except Exception as exc:  # never stops processing
            self.failures += 1
            logger.warning("error map of image %d failed: %s", index, exc)
            return
        with self._lock:
            self._set_ready(res)
            self.latest = res
            self.analysed += 1
            self.kept.append(res)
            if len(self.kept) > KEEP_MAPS:
                del self.kept[0]

    def take(self) -> LiveErrorMapResult | None:
        """The map finished since the last call (each one is given once)."""
        return cast(LiveErrorMapResult | None, super().take())

    def close(self, timeout_s: float = 60.0, *, drop_pending: bool = False) -> None:
        """Finish the analyses under way and waiting (up to ``timeout_s``)."""
        super().close(timeout_s, drop_pending=drop_pending)

    def write(self, output: Path) -> Path | None:
        """``error_maps.npz`` in ``output`` (index, rsp, rse, maps); None if none."""
        if not self.kept:
            return None
        path = Path(output) / "error_maps.npz"
        np.savez_compressed(
            path,
            index=np.array([r.image_index for r in self.kept], dtype=np.int64),
            rsp=np.array([r.rsp for r in self.kept]),
            rse=np.array([r.rse for r in self.kept]),
            maps=np.stack([r.error_map for r in self.kept]),
        )
        return path

    def report(self) -> dict[str, Any] | None:
        """``summary.json`` ``error_map`` (None when off)."""
        if not self.enabled:
            return None
        last = self.latest
        return {
            "method": "squirrel",
            "images_offered": self.offered,
            "analysed": self.analysed,
            "published": self.published,
            "not_analysed": self.not_analysed,
            "failures": self.failures,
            "file": "error_maps.npz" if self.kept else None,
            "latest": None if last is None else last.to_json(),
        }
