"""Batch drift estimation, compatible with NanoPyx 2.1.5's drift estimator.

Same options as NanoPyx (reference first / previous, time averaging, maximum
drift, sub-pixel peak); the numerics differ where NanoPyx is inexact:

* the whole frame is used (NanoPyx crops to the centred even square);
* normalised cross-correlation with a proper sub-pixel refinement: integer peak
  on the apodised frames, then both frames cropped to their overlap and the lag
  refined by DFT upsampling (NanoPyx: a one-pixel-off Pearson rescale of the map
  and Nelder-Mead on its Catmull-Rom interpolation);
* ``max_drift`` is a symmetric search window ``[-max_drift, +max_drift]`` (NanoPyx:
  the asymmetric ``[-(D-1), +D]``);
* with ``time_averaging > 1`` each block is placed at its true centre frame and
  the curve is referenced to frame 0 (NanoPyx places blocks on
  ``linspace(1, N, B)`` and sets 0 at frame 0 for block 0, which stretches the
  time axis and is off by up to ``v * (TA - 1)`` px for a drift ``v`` px/frame).

Mapping to NanoPyx's table (float32 (N, 3) = [magnitude, x, y] of the
*correction*): ``table[:, 1] = -dx``, ``table[:, 2] = -dy``,
``table[:, 0] = hypot(dy, dx)``; see :func:`to_nanopyx_table` and
:func:`from_nanopyx_table`.
"""

from __future__ import annotations

import logging
import math
from numbers import Integral, Real
from typing import Literal

import numpy as np

from livesr.kernels.drift._register import coarse_spectrum, register_two_pass

__all__ = ["estimate_drift", "from_nanopyx_table", "to_nanopyx_table"]

logger = logging.getLogger(__name__)

_MIN_SIDE = 8


def _validate(
    stack: np.ndarray, reference: str, time_averaging: int, max_drift: float
) -> np.ndarray:
    a = np.asarray(stack)
    if a.ndim != 3:
        raise ValueError(
            "stack must be 3-D (frames, rows, cols); "
            f"got {a.ndim}-D with shape {a.shape}"
        )
    n, h, w = a.shape
    if n < 2:
        raise ValueError(f"stack must hold >= 2 frames to estimate drift; got {n}")
    if h < _MIN_SIDE or w < _MIN_SIDE:
        raise ValueError(
            f"frames must be at least {_MIN_SIDE}x{_MIN_SIDE} px; got {h}x{w}"
        )
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(
            f"stack must have a real integer or float dtype; got {a.dtype}"
        )
    if reference not in ("first", "previous"):
        raise ValueError(
            f"reference={reference!r} is not valid; expected 'first' or 'previous'"
        )
    if (
        not isinstance(time_averaging, Integral)
        or isinstance(time_averaging, bool)
        or not 1 <= time_averaging <= n // 2
    ):
        raise ValueError(
            f"time_averaging={time_averaging!r} is out of range; expected an integer "
            f"in [1, {n // 2}] (at least 2 blocks from {n} frames)"
        )
    if (
        not isinstance(max_drift, Real)
        or isinstance(max_drift, bool)
        or not math.isfinite(max_drift)
        or max_drift < 0
    ):
        raise ValueError(
            f"max_drift={max_drift!r} is out of range; expected a finite number >= 0 "
            "(px; 0 searches the whole frame)"
        )
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise ValueError(
            f"stack holds {bad} non-finite values (NaN or inf); replace them "
            "(e.g. with the frame median) before estimating drift"
        )
    return a


def _interpolate(centres: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """(B, 2) block values at (B,) centre frames -> (n, 2) per-frame values."""
    frames = np.arange(n, dtype=np.float64)
    if len(centres) >= 4:
        from scipy.interpolate import CubicSpline

        spline = CubicSpline(
            centres, values, axis=0, bc_type="natural", extrapolate=False
        )
        out = spline(frames)
        # linear extrapolation beyond the first / last centre (at most TA/2 frames)
        lo = frames < centres[0]
        hi = frames > centres[-1]
        d = spline(centres[[0, -1]], 1)
        out[lo] = values[0] + (frames[lo, None] - centres[0]) * d[0]
        out[hi] = values[-1] + (frames[hi, None] - centres[-1]) * d[1]
        return np.asarray(out, dtype=np.float64)
    out = np.empty((n, 2))
    for k in range(2):
        out[:, k] = np.interp(frames, centres, values[:, k])
        slope_lo = (values[1, k] - values[0, k]) / (centres[1] - centres[0])
        slope_hi = (values[-1, k] - values[-2, k]) / (centres[-1] - centres[-2])
        lo = frames < centres[0]
        hi = frames > centres[-1]
        out[lo, k] = values[0, k] + (frames[lo] - centres[0]) * slope_lo
        out[hi, k] = values[-1, k] + (frames[hi] - centres[-1]) * slope_hi
    return out


def estimate_drift(
    stack: np.ndarray,
    *,
    reference: Literal["first", "previous"] = "first",
    time_averaging: int = 1,
    max_drift: float = 10,
    upsample: int = 10,
) -> np.ndarray:
    """Sample displacement in each frame relative to frame 0.

    Parameters
    ----------
    stack : numpy.ndarray
        (t, h, w) real-valued frames (any integer or float dtype), t >= 2,
        h, w >= 8; finite.
    reference : {"first", "previous"}
        Register every block against the first block ("first", NanoPyx
        ``ref_option=0``) or against the previous block and accumulate
        ("previous", NanoPyx ``ref_option=1``; chained, so errors add up as a
        random walk).
    time_averaging : int
        Frames averaged per block, in [1, t // 2]. Blocks are consecutive; a
        trailing partial block (t not a multiple) is used too. Each block value
        sits at the block's centre frame; per-frame values are a natural cubic
        spline through the centres (linear with fewer than 4 blocks), extended
        linearly beyond the first and last centre.
    max_drift : float
        Largest lag searched, px, in each axis: ``|lag| <= max_drift`` relative to
        the reference block ("first") or between consecutive blocks
        ("previous"). 0 searches the whole frame.
    upsample : int
        DFT upsampling factor of the sub-pixel refinement (grid 1 / upsample px,
        then a parabola), >= 1.

    Returns
    -------
    numpy.ndarray
        (t, 2) float64 displacement (dy, dx) of the sample in px, positive
        towards larger row / column index; row 0 is (0, 0). NanoPyx's table is
        the correction: ``[hypot(dy, dx), -dx, -dy]`` (see
        :func:`to_nanopyx_table`).

    Raises
    ------
    ValueError
        For a stack that is not 3-D, has < 2 frames, frames < 8 px, non-finite
        values, or a parameter out of range (the message names it).
    """
    a = _validate(stack, reference, time_averaging, max_drift)
    if not isinstance(upsample, Integral) or isinstance(upsample, bool) or upsample < 1:
        raise ValueError(
            f"upsample={upsample!r} is out of range; expected an integer >= 1"
        )
    n = a.shape[0]
    ta = int(time_averaging)
    starts = np.arange(0, n, ta)
    centres = np.array([(s + min(s + ta, n) - 1) / 2.0 for s in starts])

    values = _block_values(a, starts, ta, reference, float(max_drift), int(upsample))
    logger.debug(
        "estimate_drift: %d blocks of %d frames, reference=%s",
        len(starts),
        ta,
        reference,
    )
    if ta == 1:
        return values
    per_frame = _interpolate(centres, values, n)
    return per_frame - per_frame[0]


def _block_values(
    a: np.ndarray,
    starts: np.ndarray,
    ta: int,
    reference: str,
    max_drift: float,
    upsample: int,
) -> np.ndarray:
    """(n_blocks, 2) displacement of each block of ``ta`` frames (starting at
    ``starts``) against the first block, or chained through the previous ones."""

    def block(s: int) -> np.ndarray:
        return np.asarray(a[s : s + ta], dtype=np.float64).mean(axis=0)

    values = np.zeros((len(starts), 2))
    ref = block(0)
    f_ref = coarse_spectrum(ref)
    cache: dict[tuple[int, int], np.ndarray] = {}
    for b in range(1, len(starts)):
        img = block(int(starts[b]))
        f_img = coarse_spectrum(img)
        r = register_two_pass(
            ref,
            img,
            upsample=upsample,
            max_shift=max_drift,
            f_ref=f_ref,
            f_img=f_img,
            ref_cache=cache,
        )
        values[b] = (r.dy, r.dx)
        if reference == "previous":
            values[b] += values[b - 1]
            ref, f_ref = img, f_img
            cache = {}
    return values


def to_nanopyx_table(drift: np.ndarray) -> np.ndarray:
    """Displacement (t, 2) (dy, dx) -> NanoPyx drift table (t, 3) float32.

    NanoPyx stores the correction ``[magnitude, x, y] = [hypot, -dx, -dy]``.
    """
    d = np.asarray(drift, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 2:
        raise ValueError(f"drift must have shape (t, 2) (dy, dx); got {d.shape}")
    return np.stack([np.hypot(d[:, 0], d[:, 1]), -d[:, 1], -d[:, 0]], axis=1).astype(
        np.float32
    )


def from_nanopyx_table(table: np.ndarray) -> np.ndarray:
    """NanoPyx drift table (t, 3) [magnitude, x, y] of the correction -> (t, 2)
    float64 displacement (dy, dx) = ``(-y, -x)``."""
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(
            f"table must have shape (t, 3) [magnitude, x, y]; got {t.shape}"
        )
    return np.stack([-t[:, 2], -t[:, 1]], axis=1)
