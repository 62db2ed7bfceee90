"""Batch of per-frame maps by a loop over one backend's compiled per-frame map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def map_loop(
    per_frame: Callable[..., np.ndarray],
    frames: np.ndarray,
    magnification: int,
    radius: float,
    sensitivity: float,
    intensity_weighting: bool,
    shifts: np.ndarray | None,
    out: Any = None,
    writes_into: bool = False,
) -> np.ndarray:
    """``(N, H*M, W*M)`` float32 maps of ``frames`` ``(N, H, W)``, frame ``k`` with
    ``shifts[k]`` (input px), each by ``per_frame(frame, M, R, S, weighting, shift)``.

    With ``writes_into``, ``per_frame`` also takes ``out=`` (a C-contiguous
    ``(H*M, W*M)`` float32 array) and writes frame ``k``'s map straight into
    ``out[k]``, saving a copy of every map when ``out`` is a C-contiguous numpy
    array."""
    n, h, w = frames.shape
    m = int(magnification)
    if out is None:
        out = np.empty((n, h * m, w * m), dtype=np.float32)
    direct = (
        writes_into
        and isinstance(out, np.ndarray)
        and out.dtype == np.float32
        and out.flags.c_contiguous
        and out.flags.writeable
    )
    for k in range(n):
        shift = (
            (0.0, 0.0) if shifts is None else (float(shifts[k, 0]), float(shifts[k, 1]))
        )
        frame = np.ascontiguousarray(frames[k])
        if direct:
            per_frame(
                frame, m, radius, sensitivity, intensity_weighting, shift, out=out[k]
            )
        else:
            out[k] = per_frame(
                frame, m, radius, sensitivity, intensity_weighting, shift
            )
    return out


def batch_of(
    per_frame: Callable[..., np.ndarray],
    name: str,
    what: str,
    writes_into: bool = False,
) -> Callable[..., np.ndarray]:
    """The ``esrrf_map_batch`` implementation looping over ``per_frame``
    (``per_frame(frame, M, R, S, weighting, shift)``; with ``writes_into`` it also
    takes ``out=``, see :func:`map_loop`), named ``name``."""

    def esrrf_map_batch(
        frames: np.ndarray,
        magnification: int,
        radius: float,
        sensitivity: float,
        intensity_weighting: bool,
        shifts: np.ndarray | None = None,
        out: Any = None,
    ) -> np.ndarray:
        return map_loop(
            per_frame,
            frames,
            magnification,
            radius,
            sensitivity,
            intensity_weighting,
            shifts,
            out,
            writes_into,
        )

    esrrf_map_batch.__name__ = esrrf_map_batch.__qualname__ = name
    esrrf_map_batch.__doc__ = (
        f"Maps of a ``(N, H, W)`` float32 batch ({what} per frame); ``(N, H*M, W*M)``."
    )
    return esrrf_map_batch
