"""Offline replay in independent chunks: the pipeline's results, computed piecewise.

A replay of ``N`` frames through the live pipeline (``livesr replay`` without a
scheduler, never skipping) emits the eSRRF image of frames ``e_k - window + 1 .. e_k``
for every ``e_k = window - 1 + k * stride <= N - 1`` (frame numbers relative to the
replayed range).  This module computes the same images in pieces that can run
anywhere (one process, or Dask workers, see :mod:`livesr.stream._dask_replay`):

* :func:`plan_chunks` cuts ``[0, N)`` into chunks of ``chunk_frames`` frames
  ``[a, b)``; a chunk owns the windows whose *last* frame lies in ``[a, b)`` and reads
  frames from ``window - 1`` before its first window's end (the overlap), so every
  window across a chunk boundary is computed whole.
* :func:`drift_pass` runs :class:`livesr.kernels.RollingDrift` over the whole range
  once, exactly as the pipeline does (frame by frame; the shift applied to frame ``i``
  is ``displacement_at(i)`` right after frame ``i`` was pushed, a causal estimate), and
  returns those per-frame shifts and the drift table rows.  The drift reference (the
  first key frame) is thereby shared by all chunks and the chained key-frame estimates
  are the single-process ones; drift is cheap next to eSRRF (one registration per
  block of frames).
* :func:`compute_chunk` starts a fresh :class:`livesr.kernels.SlidingEsrrf` (same
  settings and per-frame map as the pipeline: the engine-dispatched ``esrrf_map``)
  at the chunk's first frame, pushes the frames with their shifts, and returns the
  chunk's images.  The running sums are compensated, so a window computed from a
  fresh start equals the one the continuous stream computes (to float32 rounding of
  the per-frame map implementation the engine picks, <= 2e-7 of the image maximum).

Everything here is picklable and imports nothing heavy at import time.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "ChunkResult",
    "ChunkSpec",
    "DriftPass",
    "compute_chunk",
    "drift_pass",
    "n_windows",
    "plan_chunks",
    "window_end",
]

logger = logging.getLogger(__name__)


def n_windows(n_frames: int, window: int, stride: int) -> int:
    """Images the pipeline emits for ``n_frames`` frames: ``(N - window) // stride + 1``
    (0 when ``N < window``)."""
    if n_frames < window:
        return 0
    return (n_frames - window) // stride + 1


def window_end(k: int, window: int, stride: int) -> int:
    """Last frame (range-relative) of window ``k``: ``window - 1 + k * stride``."""
    return window - 1 + k * stride


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkSpec:
    """One chunk of one recording (frame numbers relative to the replayed range).

    Attributes
    ----------
    index : int
        Chunk number within the recording (0-based, in frame order).
    first_window : int
        Index ``k`` of the first window the chunk computes.
    n_windows : int
        Windows it computes (``k = first_window .. first_window + n_windows - 1``).
    read_start, read_stop : int
        Frames read, ``[read_start, read_stop)``: from ``window - 1`` frames before the
        first window's end to the last window's end.
    """

    index: int
    first_window: int
    n_windows: int
    read_start: int
    read_stop: int


def plan_chunks(
    n_frames: int, window: int, stride: int, chunk_frames: int
) -> list[ChunkSpec]:
    """Cut ``n_frames`` frames into chunks of ``chunk_frames`` (see the module notes).

    Parameters
    ----------
    n_frames : int
        Frames replayed, >= 0.
    window, stride : int
        eSRRF window and stride, >= 1.
    chunk_frames : int
        Frames per chunk ``[a, b)``, >= 1; a chunk owning no window end is left out.

    Returns
    -------
    list of ChunkSpec
        In frame order; their windows are ``0 .. n_windows(...) - 1``, each once.
    """
    for name, v, lo in (
        ("n_frames", n_frames, 0),
        ("window", window, 1),
        ("stride", stride, 1),
        ("chunk_frames", chunk_frames, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"plan_chunks: {name}={v!r}; expected an integer >= {lo}")
    total = n_windows(n_frames, window, stride)
    chunks: list[ChunkSpec] = []
    a = 0
    while a < n_frames:
        b = min(a + chunk_frames, n_frames)
        k0 = max(0, -(-(a - (window - 1)) // stride))
        k1 = min(total, max(0, -(-(b - (window - 1)) // stride)))
        if k1 > k0:
            chunks.append(
                ChunkSpec(
                    index=len(chunks),
                    first_window=k0,
                    n_windows=k1 - k0,
                    read_start=window_end(k0, window, stride) - window + 1,
                    read_stop=window_end(k1 - 1, window, stride) + 1,
                )
            )
        a = b
    return chunks


@dataclass(frozen=True, slots=True)
class DriftPass:
    """The pipeline's drift over a replayed range (see :func:`drift_pass`).

    Attributes
    ----------
    shifts : ndarray, float64, shape (n, 2)
        ``(dy, dx)`` px applied to each frame (the causal estimate after the frame).
    last_sigma : ndarray, float64, shape (n,)
        ``sigma_px`` of the newest drift estimate at each frame (NaN before the first).
    last_rejected : ndarray, bool, shape (n,)
        Whether that estimate was rejected.
    rows : list of tuple
        ``drift.csv`` rows: ``(block, frame, center, dy, dx, sigma_px, rejected, psr)``.
    seconds : float
        Time the pass took, s.
    """

    shifts: np.ndarray
    last_sigma: np.ndarray
    last_rejected: np.ndarray
    rows: list[tuple[Any, ...]]
    seconds: float


def drift_pass(
    path: str,
    start: int,
    stop: int,
    *,
    block: int,
    max_drift_px: float,
    pixel_size_um: float | None = None,
    region_px: int = 0,
) -> DriftPass:
    """The pipeline's rolling drift estimate over frames ``[start, stop)`` of a file.

    Parameters
    ----------
    path : str
        Recording (any format :func:`~livesr.stream._rawread.open_recording`
        reads).
    start, stop : int
        Frame range of the file (stop exclusive).
    block, max_drift_px, region_px : int, float, int
        ``[drift]`` settings (:class:`livesr.stream._config.DriftCorrectionConfig`;
        ``region_px``: the central region measured, 0 = whole frame).
    pixel_size_um : float, optional
        Pixel size override (not used by the estimate; passed on to the reader).
    """
    from livesr.kernels import RollingDrift
    from livesr.stream._rawread import open_recording

    t0 = time.perf_counter()
    n = stop - start
    shifts = np.zeros((n, 2), dtype=np.float64)
    last_sigma = np.full(n, math.nan)
    last_rejected = np.zeros(n, dtype=bool)
    rows: list[tuple[Any, ...]] = []
    from livesr.stream._config import DriftCorrectionConfig

    rd = RollingDrift(block=block, max_drift=max_drift_px)
    region = DriftCorrectionConfig(region_px=region_px).region
    sigma, rejected = math.nan, False
    with open_recording(path, pixel_size_um=pixel_size_um) as rec:
        for i in range(n):
            frame = rec.read(start + i)
            est = rd.push(frame[region(frame.shape)])
            if est is not None:
                # the pipeline's drift.csv row (sequence numbers = range-relative)
                rows.append(
                    (
                        est.block_index,
                        est.frame_index,
                        est.center,
                        est.dy,
                        est.dx,
                        est.sigma_px,
                        est.rejected,
                        est.psr,
                    )
                )
                sigma, rejected = est.sigma_px, bool(est.rejected)
            shifts[i] = rd.displacement_at(rd.n_frames - 1)
            last_sigma[i] = sigma
            last_rejected[i] = rejected
    return DriftPass(shifts, last_sigma, last_rejected, rows, time.perf_counter() - t0)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """Images of one chunk (see :func:`compute_chunk`).

    Attributes
    ----------
    index : int
        The chunk's :attr:`ChunkSpec.index`.
    first_window : int
        Index of its first window.
    images : ndarray, float32, shape (n_windows, H*M, W*M)
        The eSRRF images, in window order.
    quality : ndarray, float64, shape (n_windows,)
        :func:`livesr.stream._pipeline.quality_metric` of each image.
    implementation : str
        Per-frame map implementation the engine ran last on the worker.
    t_read, t_done : float
        Unix times when the chunk started reading and finished, s.
    frames_read : int
        Frames read (the chunk plus its overlap).
    worker : str
        Where it ran (Dask worker address, else ``"local"``).
    """

    index: int
    first_window: int
    images: np.ndarray
    quality: np.ndarray
    implementation: str
    t_read: float
    t_done: float
    frames_read: int
    worker: str


def compute_chunk(
    path: str,
    start: int,
    spec: ChunkSpec,
    esrrf: Any,
    shifts: np.ndarray | None = None,
    *,
    pixel_size_um: float | None = None,
) -> ChunkResult:
    """Compute the windows of one chunk, as the pipeline computes them.

    Parameters
    ----------
    path : str
        Recording.
    start : int
        First frame of the replayed range in the file (chunk frames are relative to it).
    spec : ChunkSpec
        The chunk (:func:`plan_chunks`).
    esrrf : EsrrfConfig
        eSRRF settings (:class:`livesr.stream._config.EsrrfConfig`).
    shifts : ndarray, float64, shape (spec.read_stop - spec.read_start, 2), optional
        Drift ``(dy, dx)`` px of the frames read (:attr:`DriftPass.shifts` sliced);
        None: no drift correction.
    pixel_size_um : float, optional
        Pixel size override passed to the reader.
    """
    from livesr.kernels import SlidingEsrrf
    from livesr.stream._pipeline import MapStage, quality_metric
    from livesr.stream._rawread import open_recording

    n_read = spec.read_stop - spec.read_start
    if shifts is not None and np.shape(shifts) != (n_read, 2):
        raise ValueError(
            f"compute_chunk: shifts of shape {np.shape(shifts)}; expected "
            f"({n_read}, 2) for frames {spec.read_start}..{spec.read_stop - 1}"
        )
    t_read = time.time()
    stage = MapStage()  # the pipeline's map: engine-dispatched esrrf_map, no deadline
    images: list[np.ndarray] = []
    sliding: Any = None
    with open_recording(path, pixel_size_um=pixel_size_um) as rec:
        for j in range(n_read):
            frame = rec.read(start + spec.read_start + j)
            if sliding is None:
                sliding = SlidingEsrrf(
                    esrrf.window,
                    esrrf.stride,
                    magnification=esrrf.magnification,
                    radius=esrrf.radius,
                    sensitivity=esrrf.sensitivity,
                    intensity_weighting=esrrf.intensity_weighting,
                    macro_pixel_correction=esrrf.macro_pixel_correction,
                    temporal=esrrf.temporal,
                    geometry=esrrf.geometry,
                    frame_shape=frame.shape,
                    frame_map=stage,
                )
            shift = (0.0, 0.0) if shifts is None else (shifts[j, 0], shifts[j, 1])
            result = sliding.push(frame, shift=shift)
            if result is not None:
                images.append(result.image)
    if len(images) != spec.n_windows:  # the plan and SlidingEsrrf's schedule disagree
        raise RuntimeError(
            f"chunk {spec.index} of {path}: {len(images)} image(s) computed, expected "
            f"{spec.n_windows}"
        )
    stack = np.stack(images).astype(np.float32, copy=False)
    quality = np.array([quality_metric(im) for im in stack], dtype=np.float64)
    return ChunkResult(
        index=spec.index,
        first_window=spec.first_window,
        images=stack,
        quality=quality,
        implementation=stage.name,
        t_read=t_read,
        t_done=time.time(),
        frames_read=n_read,
        worker=_worker_address(),
    )


def _worker_address() -> str:
    import sys

    dist = sys.modules.get("distributed")  # loaded in a Dask worker; not imported here
    if dist is None:
        return "local"
    try:
        return str(dist.get_worker().address)
    except ValueError:  # not inside a Dask task
        return "local"


def spec_dict(spec: ChunkSpec) -> dict[str, int]:
    """A chunk as a plain dict (for logs and summaries)."""
    return asdict(spec)
