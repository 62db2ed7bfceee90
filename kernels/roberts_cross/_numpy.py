"""Roberts-cross gradients in numpy: the reference (oracle) implementation.

As NanoPyx 2.1.5 ``GradientRobertsCross`` (ESRRF.md section 2.1, step 2), with
``r' = max(r - 1, 0)``, ``c' = max(c - 1, 0)``::

    Gx[r, c] = I[r', c] - I[r, c'] + I[r, c] - I[r', c']     (columns, x)
    Gy[r, c] = -I[r', c] + I[r, c'] + I[r, c] - I[r', c']    (rows, y)

evaluated left to right in float32 as NanoPyx does.  The value is centred on the
corner shared by the four pixels (half a pixel up-left of pixel ``(r, c)``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["roberts_cross"]


def roberts_cross(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roberts-cross gradients of one frame.

    Parameters
    ----------
    image : (H, W) float32

    Returns
    -------
    gx, gy : (H, W) float32 each
        Column (x) and row (y) gradient, in that order (NanoPyx's
        ``(grad_col, grad_row)``).
    """
    im = np.asarray(image, dtype=np.float32)
    h, w = im.shape
    rp = np.concatenate(([0], np.arange(h - 1)))  # r' = max(r - 1, 0)
    cp = np.concatenate(([0], np.arange(w - 1)))  # c' = max(c - 1, 0)
    up = im[rp, :]  # I[r', c]
    left = im[:, cp]  # I[r, c']
    diag = up[:, cp]  # I[r', c']
    gx = ((up - left) + im) - diag
    gy = ((-up + left) + im) - diag
    return gx, gy


def _register() -> None:
    from livesr.engine import implementation

    @implementation("roberts_cross", backend="numpy")
    def roberts_cross_numpy(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Engine wrapper of :func:`roberts_cross` (the reference)."""
        return roberts_cross(image)


_register()
