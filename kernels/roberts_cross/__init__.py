"""Roberts-cross gradients as NanoPyx 2.1.5 computes them.

``roberts_cross(image (H, W) float32) -> (gx, gy)``, each (H, W) float32 (column
gradient first). ``_numpy.py`` is the reference implementation.
"""

from __future__ import annotations

from livesr.kernels.roberts_cross._numpy import roberts_cross

__all__ = ["roberts_cross"]
