"""Catmull-Rom sampling in numpy: the reference (oracle) implementation.

Reproduces NanoPyx 2.1.5's ``CRShiftAndMagnify`` (ESRRF.md section 2.1, step 1):

- "corner convention": input pixel ``k`` covers ``[k, k+1)``, centre ``k + 0.5``;
- a sample at coordinate ``r`` is 0 when ``r < 0`` or ``r >= n``;
- neighbours ``floor(r - 0.5) - 1 .. + 2``; those outside the image are skipped
  (zero padding, weights not renormalised);
- weight ``K(r - (k + 0.5))`` with the Keys kernel, a = -0.5, in float64.

The interpolation is separable: four taps (index, weight) per output row and per
output column, gathered and summed in float64 (rows first, then columns, as
NanoPyx), rounded once to float32.
"""

from __future__ import annotations

import numpy as np

from livesr.kernels._params import GEOMETRIES

__all__ = [
    "catmull_rom_sample",
    "cubic_kernel",
    "gradient_coordinates",
    "magnification_coordinates",
    "magnify",
    "sample_taps",
    "sample_weights",
    "upsample_gradient",
]


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (Catmull-Rom), float64.

    ``K(x) = 1.5|x|^3 - 2.5|x|^2 + 1`` for ``|x| < 1``,
    ``-0.5|x|^3 + 2.5|x|^2 - 4|x| + 2`` for ``1 <= |x| < 2``, else 0, evaluated
    in the same operation order as NanoPyx's ``_c_cubic`` (bit-identical doubles).
    """
    v = np.abs(np.asarray(x, dtype=np.float64))
    near = v * v * (v * 1.5 + (-2.5)) + 1.0
    far = -0.5 * v * v * v + 2.5 * v * v - 4.0 * v + 2.0
    return np.where(v < 1.0, near, np.where(v < 2.0, far, 0.0))


def sample_taps(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The four Catmull-Rom taps of every sample along one axis.

    Parameters
    ----------
    coords : (k,) float array
        Sample coordinates in input pixels, corner convention (pixel ``i`` is
        centred at ``i + 0.5``).
    n : int
        Number of input pixels along the axis.

    Returns
    -------
    index : (k, 4) int64
        Neighbours ``floor(r - 0.5) - 1 .. + 2`` (clipped into ``[0, n)``).
    weight : (k, 4) float64
        ``K(r - (index + 0.5))``; 0 for neighbours outside the image (skipped, as
        NanoPyx) and for samples outside ``[0, n)`` (which are 0).
    """
    r = np.asarray(coords, dtype=np.float64)
    inside = (r >= 0) & (r < n)
    # NanoPyx: (int)floor((float)(r - 0.5))
    base = np.floor((r - 0.5).astype(np.float32)).astype(np.int64)
    index = base[:, None] + np.arange(-1, 3)[None, :]
    ok = inside[:, None] & (index >= 0) & (index < n)
    weight = np.where(ok, cubic_kernel(r[:, None] - (index + 0.5)), 0.0)
    return np.clip(index, 0, n - 1), weight


def sample_weights(coords: np.ndarray, n: int) -> np.ndarray:
    """Dense ``(k, n)`` float64 form of :func:`sample_taps` (``W[s, i]`` = weight of
    input pixel ``i`` for sample ``s``); for inspection and tests."""
    index, weight = sample_taps(coords, n)
    w = np.zeros((index.shape[0], n), dtype=np.float64)
    np.add.at(w, (np.arange(index.shape[0])[:, None], index), weight)
    return w


def catmull_rom_sample(
    image: np.ndarray, row_coords: np.ndarray, col_coords: np.ndarray
) -> np.ndarray:
    """Sample ``image`` on the grid ``row_coords x col_coords``.

    Separable, in NanoPyx's order: for every output pixel the four row taps are
    summed per column tap, then the four column sums weighted by the column taps,
    all in float64 (NanoPyx's ``double`` accumulators), rounded once to float32.

    Parameters
    ----------
    image : (H, W) float32
    row_coords, col_coords : 1-D float arrays
        Coordinates in input pixels, corner convention.

    Returns
    -------
    (len(row_coords), len(col_coords)) float32
    """
    img = np.asarray(image, dtype=np.float64)
    ri, rw = sample_taps(row_coords, img.shape[0])
    ci, cw = sample_taps(col_coords, img.shape[1])
    # rows first: p[s, c] = sum_t rw[s, t] * img[ri[s, t], c]   (k_rows, W)
    p = np.zeros((ri.shape[0], img.shape[1]), dtype=np.float64)
    for t in range(4):
        p += rw[:, t, None] * img[ri[:, t], :]
    # then columns: q[s, u] = sum_t cw[u, t] * p[s, ci[u, t]]
    q = np.zeros((ri.shape[0], ci.shape[0]), dtype=np.float64)
    for t in range(4):
        q += p[:, ci[:, t]] * cw[None, :, t]
    return q.astype(np.float32)


def magnification_coordinates(
    n: int, magnification: int, shift: float = 0.0, geometry: str = "nanopyx"
) -> np.ndarray:
    """Sample coordinates of the ``n * magnification`` output pixels along one axis.

    ``"nanopyx"``: output pixel ``k`` samples ``float32(k) / float32(M)`` (no
    half-pixel centring, as NanoPyx); ``"corrected"``: ``(k + 0.5) / M``, i.e. the
    output pixel centre ``(k + 0.5)/M - 0.5`` in centre convention.  ``shift`` (input
    pixels) is added to every coordinate.

    Returns
    -------
    (n * magnification,) float64
    """
    k = np.arange(n * magnification)
    if geometry == "nanopyx":
        c = (k.astype(np.float32) / np.float32(magnification)).astype(np.float64)
    elif geometry == "corrected":
        c = (k + 0.5) / magnification
    else:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    return c + float(shift)


def gradient_coordinates(
    n: int, magnification: int, shift: float = 0.0, geometry: str = "nanopyx"
) -> np.ndarray:
    """Coordinates of the half-pixel gradient samples read by RGC along one axis.

    Entry ``s < 2n`` is the gradient at half-pixel position ``s / 2``; entry ``2n``
    is what RGC reads for every position ``>= n`` (NanoPyx clamps its ``2M``-
    magnified index to ``2nM - 1``).

    ``"nanopyx"``: the interpolator is read at ``s / 2`` and the clamped entry at
    ``float32((2nM - 1) / (2M))``.  Because the Roberts-cross gradient ``G[k]`` is
    physically centred at the corner ``k`` but interpolated as if centred at
    ``k + 0.5``, this displaces the gradient field by +0.5 input pixel.
    ``"corrected"``: read at ``s / 2 + 0.5`` for ``s = 0 .. 2n`` (true positions;
    the last entry lies beyond the image and is 0 unless shifted).

    Returns
    -------
    (2n + 1,) float64
    """
    s = np.arange(2 * n + 1, dtype=np.float64)
    if geometry == "nanopyx":
        c = s / 2.0
        c[-1] = float(
            np.float32(2 * n * magnification - 1) / np.float32(2 * magnification)
        )
    elif geometry == "corrected":
        c = s / 2.0 + 0.5
    else:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    return c + float(shift)


def magnify(
    image: np.ndarray,
    magnification: int,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
    geometry: str = "nanopyx",
) -> np.ndarray:
    """Catmull-Rom magnification of one frame.

    Parameters
    ----------
    image : (H, W) float32
    magnification : int >= 1
    shift : (dy, dx), input pixels
        Sample displacement to undo: output pixel ``k`` samples coordinate
        ``c(k) + shift`` (NanoPyx's ``CRShiftAndMagnify`` with ``shift_row = -dy``).
    geometry : {"nanopyx", "corrected"}
        See :func:`magnification_coordinates`.

    Returns
    -------
    (H * M, W * M) float32
        With ``shift=(0, 0)`` and ``"nanopyx"``, equal to
        ``CRShiftAndMagnify().run(image, 0, 0, M, M)``.
    """
    h, w = image.shape
    rows = magnification_coordinates(h, magnification, shift[0], geometry)
    cols = magnification_coordinates(w, magnification, shift[1], geometry)
    return catmull_rom_sample(image, rows, cols)


def upsample_gradient(
    gradient: np.ndarray,
    magnification: int,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
    geometry: str = "nanopyx",
) -> np.ndarray:
    """The "2x gradient trick": the half-pixel samples of a gradient image RGC reads.

    NanoPyx magnifies the gradients by ``2M`` but RGC reads them only at indices
    that are multiples of ``M`` (half-pixel grid) and at the clamped last index;
    this returns exactly those samples.

    Parameters
    ----------
    gradient : (H, W) float32
    magnification : int >= 1
    shift : (dy, dx), input pixels
    geometry : {"nanopyx", "corrected"}
        See :func:`gradient_coordinates`.

    Returns
    -------
    (2H + 1, 2W + 1) float32
        ``out[a, b]`` = the gradient at half-pixel position ``(a/2, b/2)``; row
        ``2H`` / column ``2W`` hold the clamped border read.
    """
    h, w = gradient.shape
    rows = gradient_coordinates(h, magnification, shift[0], geometry)
    cols = gradient_coordinates(w, magnification, shift[1], geometry)
    return catmull_rom_sample(gradient, rows, cols)


def _register() -> None:
    from livesr.engine import implementation

    @implementation("catmull_rom", backend="numpy")
    def catmull_rom_numpy(
        image: np.ndarray, row_coords: np.ndarray, col_coords: np.ndarray
    ) -> np.ndarray:
        """Engine wrapper of :func:`catmull_rom_sample` (the reference)."""
        return catmull_rom_sample(image, row_coords, col_coords)


_register()
