"""eSRRF parameter sweep scored by QnR, numerically equal to NanoPyx 2.1.5.

For every (sensitivity, radius) pair the stack is reconstructed with eSRRF (no
macro-pixel correction, as NanoPyx's sweep) and scored on

- fidelity: RSP of the SQUIRREL error map of the reconstruction against the mean
  raw frame (:func:`livesr.kernels.squirrel.error_map`);
- resolution: the FIRE number of the reconstructions of the odd and of the even
  frames (:func:`livesr.kernels.frc.fire_number`), or with ``use_decorr`` the
  decorrelation resolution of the whole reconstruction
  (:func:`livesr.kernels.decorr.decorrelation_analysis`), in SR pixels;

then ``QnR = 2 RSP nR / (RSP + nR)`` with ``nR`` the resolution map put through
NanoPyx's logistic normalisation (0.075 at the map's minimum, 0.925 at its
maximum). ``best`` is the pair of the largest QnR (first in row-major order).

Speed and memory: frames are read one at a time; the magnification and the
gradients of a frame (which depend on the magnification only) are computed once
and shared by every pair, only the radial-gradient convergence (``rgc`` engine
kernel) runs per pair; each pair keeps running sums (two or three per parity),
so memory is ``O(pairs * H*M * W*M)`` whatever the stack length (NanoPyx holds
every per-frame map of a pair: its issue 153).

On a GPU (the engine's ``rgc`` implementation is CuPy) the sweep is device
resident (:mod:`livesr.kernels._sweep_device`): frames are uploaded once per
block, the shared stages, every pair's RGC map and every running sum stay on the
device, and only the reconstructions that scoring needs come back.  Scoring (error
map, FIRE, decorrelation) runs on the host in both paths, unchanged.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livesr.kernels._params import EsrrfParams, stack_shape, validate_temporal_in

__all__ = ["SweepResult", "esrrf_sweep", "logistic_normalise", "qnr_score"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """Result of :func:`esrrf_sweep`. Arrays are indexed ``[sensitivity, radius]``.

    Attributes
    ----------
    qnr : (S, R) float32
        Quality-and-resolution score, in [0, 1], higher is better.
    rsp : (S, R) float64
        Resolution-scaled Pearson coefficient of each reconstruction.
    resolution : (S, R) float64
        FIRE number (or decorrelation resolution), SR pixels; 0 where the FRC
        never crosses 1/7 (as NanoPyx).
    best : (sensitivity, radius)
        The pair of the largest QnR.
    sensitivities, radii : tuples of float
    magnification : int
    temporal : str
    use_decorr : bool
    n_frames : int
        Frames processed.
    raw_mean : (H, W) float32
        Mean raw frame over the stack.
    images : (S, R, H*M, W*M) float32
        Each pair's reconstruction from the whole stack (no macro-pixel correction).
    seconds : float
        Wall time of the sweep.
    scoring_seconds : float
        Part of ``seconds`` spent scoring (error maps and resolution, host).
    device_resident : bool
        Whether the reconstructions were kept on the GPU (see the module docs).
    """

    qnr: np.ndarray
    rsp: np.ndarray
    resolution: np.ndarray
    best: tuple[float, float]
    sensitivities: tuple[float, ...]
    radii: tuple[float, ...]
    magnification: int
    temporal: str
    use_decorr: bool
    n_frames: int
    raw_mean: np.ndarray = field(repr=False)
    images: np.ndarray = field(repr=False)
    seconds: float = 0.0
    scoring_seconds: float = 0.0
    device_resident: bool = False

    @property
    def best_index(self) -> tuple[int, int]:
        """(sensitivity index, radius index) of :attr:`best`."""
        i, j = np.unravel_index(int(np.argmax(self.qnr)), self.qnr.shape)
        return int(i), int(j)

    @property
    def best_qnr(self) -> float:
        """QnR of :attr:`best`."""
        return float(self.qnr[self.best_index])


def logistic_normalise(values: np.ndarray) -> np.ndarray:
    """NanoPyx's ``logistic_image_conversion`` of a resolution map.

    A logistic through 0.075 at the finite minimum and 0.925 at the finite
    maximum (0.5 everywhere when they are equal, 0 where not finite).

    Parameters
    ----------
    values : (S, R) array-like

    Returns
    -------
    (S, R) float64
    """
    im = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(im)
    if not finite.any():
        return np.zeros_like(im, dtype=np.float32)
    lo, hi = np.min(im[finite]), np.max(im[finite])
    if lo == hi:
        return np.where(finite, 0.5, 0).astype(np.float32)
    m1, m2 = 0.075, 0.925
    a1 = np.log((1 - m1) / m1)
    a2 = np.log((1 - m2) / m2)
    x0 = (a2 * hi - a1 * lo) / (a2 - a1)
    k = 1 / (x0 - hi) * a1
    with np.errstate(over="ignore"):
        out = np.asarray([1 / (np.exp(-k * (row - x0)) + 1) for row in im])
    return np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)


def qnr_score(rsp: np.ndarray, resolution: np.ndarray) -> np.ndarray:
    """QnR as NanoPyx's ``calculate_qnr_score``: harmonic mean of RSP and the
    logistic-normalised resolution, (S, R) float32 (0 where undefined)."""
    rsp = np.asarray(rsp)
    n_res = logistic_normalise(resolution)
    den = rsp + n_res
    with np.errstate(invalid="ignore"):
        q = np.divide(
            2 * rsp * n_res,
            den,
            out=np.zeros_like(den, dtype=np.float32),
            where=den != 0,
        )
    return np.nan_to_num(q, nan=0.0, posinf=0.0, neginf=0.0)


def _validate_values(
    name: str, values: Sequence[float], low: float, strict: bool
) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of numbers, got {values!r}"
        ) from None
    if not out:
        raise ValueError(f"{name} must not be empty")
    for v in out:
        if not math.isfinite(v) or (v <= low if strict else v < low):
            raise ValueError(
                f"{name} value {v!r} is out of range; expected "
                f"{'>' if strict else '>='} {low}"
            )
    return out


class _FrameMaps:
    """The per-frame work shared by every pair: magnified frame and gradients."""

    def __init__(self, magnification: int, impl: str | None) -> None:
        self.m = magnification
        self.impl = impl
        self._coords: dict[tuple[int, int], tuple[Any, ...]] = {}

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from livesr.kernels.catmull_rom import (
            gradient_coordinates,
            magnification_coordinates,
        )
        from livesr.kernels.catmull_rom import kernel as catmull_rom
        from livesr.kernels.esrrf_stack import _run
        from livesr.kernels.roberts_cross import kernel as roberts

        h, w = img.shape
        coords = self._coords.get((h, w))
        if coords is None:
            m = self.m
            coords = self._coords[(h, w)] = (
                magnification_coordinates(h, m, 0.0, "nanopyx"),
                magnification_coordinates(w, m, 0.0, "nanopyx"),
                gradient_coordinates(h, m, 0.0, "nanopyx"),
                gradient_coordinates(w, m, 0.0, "nanopyx"),
            )
        rows_i, cols_i, rows_g, cols_g = coords
        intensity = _run(catmull_rom, self.impl, (img, rows_i, cols_i), {})
        gx, gy = _run(roberts, self.impl, (img,), {})
        gx2 = _run(catmull_rom, self.impl, (gx, rows_g, cols_g), {})
        gy2 = _run(catmull_rom, self.impl, (gy, rows_g, cols_g), {})
        return gx2, gy2, intensity


class _Deadline(Exception):
    """Raised inside the sweep when its time budget ran out."""


def esrrf_sweep(
    stack: Any,
    *,
    magnification: int = 2,
    sensitivities: Sequence[float] = (1, 2),
    radii: Sequence[float] = (1.0, 1.5),
    temporal: str = "avg",
    use_decorr: bool = False,
    frames_per_batch: int | None = None,
    impl: str | None = None,
    progress: Callable[[int], None] | None = None,
    deadline: float | None = None,
    resident: bool = True,
) -> SweepResult:
    # Long because of its docstring (NanoPyx's options and where the results may
    # differ from it); the body is 70 lines, the steps in the helpers below.
    """Sweep eSRRF radius x sensitivity and score each pair by QnR (as NanoPyx).

    ``qnr`` equals NanoPyx 2.1.5's ``run_esrrf_parameter_sweep(stack, magnification,
    sensitivities, radii, temporal, use_decorr, return_qnr=True, n_frames=
    frames_per_batch)``, ``rsp`` and ``resolution`` its ``ErrorMap`` RSP and FIRE
    (or decorrelation) maps, to float32 rounding (tested to 1e-3).

    Parameters
    ----------
    stack : (t, H, W) array-like
        Raw frames (any real dtype, finite), t >= 2; read frame by frame
        (``stack[i]``), so a memmap or zarr array is never loaded whole.
    magnification : int >= 1
    sensitivities : sequence of float >= 0
    radii : sequence of float > 0
        Ring radii, raw pixels.
    temporal : {"avg", "var"}
        eSRRF temporal statistic.
    use_decorr : bool
        Resolution by decorrelation analysis of each reconstruction instead of
        FRC of the odd / even reconstructions (needs SR images > 40 px a side).
        Where every high-pass curve of a reconstruction lacks a peak, NanoPyx
        reads uninitialised memory (``np.empty`` in ``_get_best_score``); here
        that case gives resolution inf (QnR 0), so such a cell may differ.
    frames_per_batch : int >= 1, optional
        As NanoPyx's ``n_frames``: RSP and resolution per batch of this many
        frames (odd / even within a batch; FRC skipped for one-frame batches),
        averaged over batches (NaN-ignoring). None: one batch. A batch whose
        FRC is undefined, or whose reconstruction is constant (e.g. VAR of one
        frame; NanoPyx raises there), counts as NaN for that part.
    impl : str, optional
        Implementation of the engine kernels (see :func:`livesr.kernels.esrrf`).
        When it is (or, for None, the engine's kept choice of ``rgc`` is) the CuPy
        one, the sweep runs device resident (module docs).
    progress : callable, optional
        Called with the number of frames just processed (1 per frame).
    deadline : float, optional
        ``time.monotonic()`` value after which the sweep stops with
        ``TimeoutError`` (checked between frames).
    resident : bool
        False: with CuPy too, every engine call takes and returns host arrays
        (the per-call path; for comparisons).

    Returns
    -------
    SweepResult
    """
    start_time = time.perf_counter()
    sens = _validate_values("sensitivities", sensitivities, 0.0, strict=False)
    rads = _validate_values("radii", radii, 0.0, strict=True)
    mode = validate_temporal_in(temporal, ("avg", "var"), " for the sweep")
    params = [
        [
            EsrrfParams(magnification=magnification, radius=r, sensitivity=s)
            for r in rads
        ]
        for s in sens
    ]
    m = params[0][0].magnification
    t, h, w = _stack_shape(stack, m, use_decorr)
    batch = _batch_size(frames_per_batch, t)
    maps = _FrameMaps(m, impl)
    accs = _accumulators(
        stack, (t, h, w), mode, params, batch < t, maps, impl, resident, use_decorr
    )
    raw_sum = np.zeros((h, w), np.float64)
    rsp_vals: list[np.ndarray] = []
    res_vals: list[np.ndarray] = []
    scoring = 0.0
    for b0 in range(0, t, batch):
        b1 = min(b0 + batch, t)
        raw_batch = np.zeros((h, w), np.float64)
        accs.new_batch()
        for c0 in range(b0, b1, accs.block):
            c1 = min(c0 + accs.block, b1)
            frames = _read_frames(stack, (c0, c1), (h, w), deadline, t)
            for img in frames:
                raw_batch += img
            accs.add_frames((c0 - b0) % 2, frames)
            if progress is not None:
                for _ in range(c1 - c0):
                    progress(1)
        raw_sum += raw_batch
        accs.fetch(halves=not use_decorr and b1 - b0 >= 2)
        t_score = time.perf_counter()
        rsp_b, res_b = _score_batch(
            accs, (raw_batch / (b1 - b0)).astype(np.float32), m, use_decorr, (b0, b1)
        )
        scoring += time.perf_counter() - t_score
        rsp_vals.append(rsp_b)
        res_vals.append(res_b)
        logger.debug("esrrf_sweep: batch %d-%d scored", b0, b1)
    rsp, res = _over_batches(rsp_vals, res_vals)
    qnr = qnr_score(rsp, res)
    best_s, best_r = np.unravel_index(int(np.argmax(qnr)), qnr.shape)
    images = accs.whole_images()
    result = SweepResult(
        qnr=qnr,
        rsp=rsp,
        resolution=res,
        best=(sens[best_s], rads[best_r]),
        sensitivities=sens,
        radii=rads,
        magnification=m,
        temporal=mode,
        use_decorr=bool(use_decorr),
        n_frames=t,
        raw_mean=(raw_sum / t).astype(np.float32),
        images=images,
        seconds=time.perf_counter() - start_time,
        scoring_seconds=scoring,
        device_resident=accs.resident,
    )
    logger.info(
        "esrrf_sweep: %d pairs x %d frames in %.2f s, best sensitivity %g radius %g "
        "(QnR %.4f)",
        len(sens) * len(rads),
        t,
        result.seconds,
        *result.best,
        result.best_qnr,
    )
    return result


def _stack_shape(stack: Any, m: int, use_decorr: bool) -> tuple[int, int, int]:
    """(t, H, W) of a sweepable stack: 3-D, two frames or more, and SR images
    large enough for the decorrelation analysis when it is used."""
    t, h, w = stack_shape(stack)
    if getattr(stack, "ndim", 3) != 3:
        raise ValueError(
            f"stack must be (t, H, W), got shape {getattr(stack, 'shape', None)}"
        )
    if t < 2:
        raise ValueError(f"the sweep needs at least 2 frames (odd and even), got {t}")
    if use_decorr and min(h, w) * m <= 40:
        raise ValueError(
            f"use_decorr needs SR images > 40 px a side; {h}x{w} at M={m} is too small"
        )
    return t, h, w


def _batch_size(frames_per_batch: Any, t: int) -> int:
    """Frames per scored batch (``t`` for None), validated."""
    if frames_per_batch is None:
        return t
    if (
        isinstance(frames_per_batch, bool)
        or int(frames_per_batch) != frames_per_batch
        or frames_per_batch < 1
    ):
        raise ValueError(
            "frames_per_batch must be a positive integer or None, got "
            f"{frames_per_batch!r}"
        )
    return int(frames_per_batch)


def _read_frame(stack: Any, i: int, shape: tuple[int, int]) -> np.ndarray:
    """Frame ``i`` of ``stack`` as float32, checked for shape and finiteness."""
    try:
        frame = np.asarray(stack[i])
        if frame.shape != shape:
            raise ValueError(f"frame shape {frame.shape}, expected {shape}")
        img = frame.astype(np.float32)
        if not np.isfinite(img).all():
            raise ValueError("frame contains NaN or inf")
    except ValueError as err:
        raise ValueError(f"stack frame {i}: {err}") from None
    return img


def _read_frames(
    stack: Any,
    frames: tuple[int, int],
    shape: tuple[int, int],
    deadline: float | None,
    t: int,
) -> np.ndarray:
    """Frames ``first .. stop-1`` of ``stack`` as (n, H, W) float32 (checked one
    by one); ``TimeoutError`` once ``deadline`` has passed, checked per frame."""
    first, stop = frames
    out = np.empty((stop - first, *shape), np.float32)
    for i in range(first, stop):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"esrrf_sweep: time budget ran out at frame {i}/{t}")
        out[i - first] = _read_frame(stack, i, shape)
    return out


def _accumulators(
    stack: Any,
    dims: tuple[int, int, int],
    mode: str,
    params: list[list[EsrrfParams]],
    batched: bool,
    maps: _FrameMaps,
    impl: str | None,
    resident: bool,
    use_decorr: bool,
) -> Any:
    """The running sums of every pair: on the GPU (device resident) when the
    engine's ``rgc`` implementation is CuPy and ``resident``, else on the host."""
    t, h, w = dims
    m = params[0][0].magnification
    grid = (len(params), len(params[0]))
    if resident:
        from livesr.kernels import _sweep_device

        flat = [p for row in params for p in row]
        stages = _sweep_device.resident_stages(
            impl, (h, w), flat, lambda: maps(_read_frame(stack, 0, (h, w)))
        )
        sr = (h * m, w * m)
        need = _sweep_device.device_bytes(
            mode, len(flat), sr, batched, not use_decorr
        )
        if stages is not None and _sweep_device.fits(stages.xp, need):
            return _sweep_device.ResidentAccumulators(
                stages, mode, sr, grid, batched, not use_decorr
            )
    return _Accumulators(mode, (h * m, w * m), *grid, batched, maps, params, impl)


class _Accumulators:
    """Temporal accumulators per (sensitivity, radius) on the host: over all frames
    (``whole``), over the even / odd frames of the current batch (``parity``) and
    over the whole batch (``batch_all``, the same as ``whole`` with one batch).
    Maps come from the engine, frame by frame (``maps``: the shared stages)."""

    block = 1
    resident = False

    def __init__(
        self,
        mode: str,
        shape: tuple[int, int],
        ns: int,
        nr: int,
        batched: bool,
        maps: _FrameMaps,
        params: list[list[EsrrfParams]],
        impl: str | None,
    ) -> None:
        from livesr.kernels.temporal import TemporalAccumulator

        def grid() -> list[list[Any]]:
            return [
                [TemporalAccumulator(mode, shape) for _ in range(nr)] for _ in range(ns)
            ]

        self.ns, self.nr = ns, nr
        self.maps, self.params, self.impl = maps, params, impl
        self.whole = grid()
        self.parity = (grid(), grid())  # [0] even frames of a batch, [1] odd
        self.batch_all = grid() if batched else self.whole

    def new_batch(self) -> None:
        own = () if self.batch_all is self.whole else (self.batch_all,)
        for group in (*self.parity, *own):
            for row in group:
                for acc in row:
                    acc.reset()

    def add_frames(self, first_parity: int, frames: np.ndarray) -> None:
        """Add the RGC map of every pair of each of ``frames`` (n, H, W) float32
        (frame ``k`` of parity ``(first_parity + k) % 2`` in its batch), from the
        frame's shared stages (upsampled gradients and magnified intensity)."""
        from livesr.kernels.esrrf_stack import _run
        from livesr.kernels.rgc import kernel as rgc

        for k, img in enumerate(frames):
            gx2, gy2, intensity = self.maps(img)
            parity = (first_parity + k) % 2
            for si in range(self.ns):
                for ri in range(self.nr):
                    prm = self.params[si][ri]
                    fmap = _run(rgc, self.impl, (gx2, gy2, intensity, prm), {})
                    self.parity[parity][si][ri].add(fmap)
                    self.whole[si][ri].add(fmap)
                    if self.batch_all is not self.whole:
                        self.batch_all[si][ri].add(fmap)

    def fetch(self, halves: bool) -> None:
        """Nothing to fetch: the images are on the host."""

    def batch_image(self, si: int, ri: int) -> np.ndarray:
        """The pair's reconstruction of the current batch, (Y, X) float32."""
        return self.batch_all[si][ri].result()

    def half_image(self, parity: int, si: int, ri: int) -> np.ndarray:
        """The pair's reconstruction of the even (0) / odd (1) frames of the batch."""
        return self.parity[parity][si][ri].result()

    def whole_images(self) -> np.ndarray:
        """Every pair's reconstruction of the whole stack, (S, R, Y, X) float32."""
        return np.stack([np.stack([acc.result() for acc in row]) for row in self.whole])


def _score_batch(
    accs: Any,
    raw_mean: np.ndarray,
    m: int,
    use_decorr: bool,
    frames: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(RSP, resolution) per pair of the batch ``frames`` = (first, stop), from
    the accumulators' host images (``batch_image``, ``half_image``)."""
    from livesr.kernels.decorr import decorrelation_analysis
    from livesr.kernels.frc import fire_number
    from livesr.kernels.squirrel import error_map

    b0, b1 = frames
    rsp_b = np.zeros((accs.ns, accs.nr))
    res_b = np.full((accs.ns, accs.nr), np.nan)
    for si in range(accs.ns):
        for ri in range(accs.nr):
            recon = accs.batch_image(si, ri)
            if np.ptp(recon) > 0:
                rsp_b[si, ri] = error_map(raw_mean, recon, magnification=m).rsp
            else:  # VAR of a one-frame batch: no fit possible (NanoPyx raises)
                rsp_b[si, ri] = np.nan
            if use_decorr:
                res_b[si, ri] = decorrelation_analysis(recon).resolution
            elif b1 - b0 >= 2:
                odd = accs.half_image(1, si, ri)
                even = accs.half_image(0, si, ri)
                try:
                    res_b[si, ri] = fire_number(odd, even)
                except ValueError as err:  # e.g. VAR of a one-frame half: NaN
                    logger.debug("esrrf_sweep: batch %d-%d: %s", b0, b1, err)
    return rsp_b, res_b


def _over_batches(
    rsp_vals: list[np.ndarray], res_vals: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """RSP and resolution averaged over batches, NaN-ignoring (resolution 0 where
    no batch has one)."""
    if len(rsp_vals) == 1:
        return rsp_vals[0], np.where(np.isnan(res_vals[0]), 0.0, res_vals[0])
    # all-NaN cells are handled: no "Mean of empty slice" warning
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rsp = np.nanmean(np.stack(rsp_vals), axis=0)
        stacked = np.stack(res_vals)
        res = np.where(np.isnan(stacked).all(axis=0), 0.0, np.nanmean(stacked, axis=0))
    return rsp, res
