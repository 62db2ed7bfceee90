"""Macro-pixel correction in numpy: the reference (oracle) implementation.

As NanoPyx 2.1.5 ``mpcorrector.macro_pixel_corrector`` (ESRRF.md section 2.2)::

    C[a, b] = sum over macro-pixels (p, q) of float32(Y[p M + a, q M + b] / (H W))
    Y[y, x] /= C[y mod M, x mod M]     wherever C != 0

with ``H = rows // M``, ``W = cols // M``.  The zero margin left by RGC is part of
the sums, exactly as NanoPyx does (it biases the phases slightly, on purpose).
Terms are divided in float32 (as NanoPyx), summed in float64, rounded to float32.
"""

from __future__ import annotations

import numpy as np

__all__ = ["macro_pixel_correction"]


def macro_pixel_correction(image: np.ndarray, magnification: int) -> np.ndarray:
    """Divide every sub-pixel phase by its mean over the macro-pixels.

    Parameters
    ----------
    image : (Y, X) or (n, Y, X) real array
        eSRRF image(s) at magnified resolution.
    magnification : int >= 1

    Returns
    -------
    float32 array of ``image``'s shape
        A new array; values are of order 1 per phase.
    """
    m = magnification
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"magnification must be an integer >= 1, got {m!r}")
    arr = np.array(image, dtype=np.float32, copy=True)
    if arr.ndim not in (2, 3):
        raise ValueError(
            "image must be 2-D (Y, X) or 3-D (n, Y, X), "
            f"got an array of shape {arr.shape}"
        )
    stack = arr.reshape((-1, *arr.shape[-2:]))
    rows_m, cols_m = stack.shape[1:]
    rows, cols = rows_m // m, cols_m // m
    if rows == 0 or cols == 0:
        return arr  # no complete macro-pixel: NanoPyx's map stays 0, nothing divided
    for s in range(stack.shape[0]):
        terms = stack[s, : rows * m, : cols * m] / np.float32(rows * cols)
        cmap = terms.reshape(rows, m, cols, m).sum(axis=(0, 2), dtype=np.float64)
        cmap = cmap.astype(np.float32)
        # tile the per-phase map over the whole image (also rows/cols beyond rows*m)
        tiled = np.tile(cmap, (-(-rows_m // m), -(-cols_m // m)))[:rows_m, :cols_m]
        np.divide(stack[s], tiled, out=stack[s], where=tiled != 0)
    return arr


def _register() -> None:
    from livesr.engine import implementation

    @implementation("macro_pixel", backend="numpy")
    def macro_pixel_numpy(image: np.ndarray, magnification: int) -> np.ndarray:
        """Engine wrapper of :func:`macro_pixel_correction` (the reference)."""
        return macro_pixel_correction(image, magnification)


_register()
