"""Running temporal statistics of a sliding window of images, without drift.

This module knows nothing about eSRRF: it keeps, for a window of equally shaped
float32 images ``x_0 .. x_{n-1}`` that gains images at the end and loses them at the
start, the sums the eSRRF temporal step needs,

- ``S = sum_t x_t``                      (AVG, VAR, TAC2)
- ``Q = sum_t x_t**2``                   (VAR)
- ``P = sum_{t=0}^{n-2} x_t * x_{t+1}``  (TAC2, pairs inside the window only)

in float64 with error-free (Knuth TwoSum) compensation, so adding and later removing
the same image leaves no residue however long the stream. For AVG the terms are the
float32 images themselves, exact in float64. For VAR and TAC2 the images are first
centred on a reference image ``K`` (``y = x - K``, see :class:`WindowMoments`), as the
batch accumulator of :mod:`livesr.kernels.temporal` does; a term ``y*y`` or
``y_t*y_{t+1}`` is rounded once in float64 but is a deterministic function of the
images, so the term subtracted on removal is bit-identical to the one added and the
only other rounding -- that of the sums -- is carried by the compensation.

The combination into AVG / VAR / TAC2 (:meth:`WindowMoments.combine`) follows
NanoPyx 2.1.5 (``/work/shared/ESRRF.md`` section 2.2): mean, population variance
(ddof 0), and ``mean_{t=0}^{n-2} (x_t - m)(x_{t+1} - m)`` with ``m`` the window mean.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from livesr.kernels._params import TEMPORAL_MODES

__all__ = ["CompensatedSum", "TemporalMode", "TEMPORAL_MODES", "WindowMoments"]

logger = logging.getLogger(__name__)

TemporalMode = Literal["avg", "var", "tac2"]


class _Scratch:
    """Three float64 work arrays shared by the sums of one :class:`WindowMoments`."""

    __slots__ = ("t", "z", "e")

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.t = np.empty(shape, dtype=np.float64)
        self.z = np.empty(shape, dtype=np.float64)
        self.e = np.empty(shape, dtype=np.float64)

    @property
    def nbytes(self) -> int:
        return 3 * self.t.nbytes


class CompensatedSum:
    """An element-wise float64 sum with a TwoSum compensation term.

    The represented value is ``hi + lo``; ``add``/``subtract`` apply Knuth's
    branch-free TwoSum per element, so the rounding error of every update is captured
    exactly in ``lo`` (it is itself accumulated in float64, so its own error is of
    order ``2**-53`` of the lost bits: negligible for any stream length).

    Parameters
    ----------
    shape : tuple of int
        Shape of the summed images.
    """

    __slots__ = ("hi", "lo", "_scratch")

    def __init__(self, shape: tuple[int, ...], scratch: _Scratch | None = None) -> None:
        self.hi = np.zeros(shape, dtype=np.float64)
        self.lo = np.zeros(shape, dtype=np.float64)
        self._scratch = scratch if scratch is not None else _Scratch(shape)
        if self._scratch.t.shape != self.hi.shape:
            raise ValueError(
                f"scratch arrays have shape {self._scratch.t.shape}, expected {self.hi.shape}"
            )

    @property
    def nbytes(self) -> int:
        """Bytes held by the sum itself (``hi`` and ``lo``; scratch not included)."""
        return 2 * self.hi.nbytes

    def clear(self) -> None:
        """Set the sum to exactly zero."""
        self.hi.fill(0.0)
        self.lo.fill(0.0)

    def add(self, x: np.ndarray) -> None:
        """Add ``x`` (any real dtype; converted to float64) element-wise."""
        self._two_sum(x, np.add)

    def subtract(self, x: np.ndarray) -> None:
        """Subtract ``x`` element-wise (exactly the inverse of :meth:`add`)."""
        self._two_sum(x, np.subtract)

    def _two_sum(self, x: np.ndarray, op: np.ufunc) -> None:
        sc = self._scratch
        s, t, z, e = self.hi, sc.t, sc.z, sc.e
        # y = op(0, x) is +x or -x; TwoSum(s, y): t = s + y, z = t - s,
        # e = (s - (t - z)) + (y - z); then s = t, lo += e.
        op(s, x, out=t)
        np.subtract(t, s, out=z)
        # e = y - z
        if op is np.add:
            np.subtract(x, z, out=e, dtype=np.float64)
        else:
            np.add(x, z, out=e, dtype=np.float64)
            np.negative(e, out=e)
        # z <- t - z ; z <- s - z ; e += z
        np.subtract(t, z, out=z)
        np.subtract(s, z, out=z)
        np.add(e, z, out=e)
        np.add(self.lo, e, out=self.lo)
        # the old sum array becomes the shared scratch ``t`` (no copy)
        self.hi, sc.t = t, s

    def value(self, out: np.ndarray | None = None) -> np.ndarray:
        """The sum ``hi + lo`` as float64 (written to ``out`` if given)."""
        return np.add(self.hi, self.lo, out=out)


class WindowMoments:
    """Running S, Q, P sums of a sliding window of images (see the module docstring).

    The caller owns the images; this object only needs, on each update, the image
    entering or leaving and its neighbour inside the window (for the lag-1 products).

    When squares or lag products are kept, every image is first centred on a
    reference ``K`` -- the first image appended after the sums were last emptied --
    (``y = x - K``, in float64), as the batch accumulator does: VAR and TAC2 are
    invariant to it and it avoids the cancellation of ``Q/n - m**2`` (a window of
    identical images gives exactly 0). The same ``x`` always gives the same ``y``
    while ``K`` is unchanged, so removal stays exact.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(rows, cols)`` of the images.
    need_squares : bool
        Keep ``Q`` (needed by VAR).
    need_lag : bool
        Keep ``P`` (needed by TAC2).
    """

    def __init__(self, shape: tuple[int, int], *, need_squares: bool, need_lag: bool) -> None:
        self.shape = tuple(shape)
        self.n = 0
        self._scratch = _Scratch(self.shape)
        self.s = CompensatedSum(self.shape, self._scratch)
        self.q = CompensatedSum(self.shape, self._scratch) if need_squares else None
        self.p = CompensatedSum(self.shape, self._scratch) if need_lag else None
        self._prod = np.empty(self.shape, dtype=np.float64)
        self._centred = need_squares or need_lag
        if self._centred:
            self._ref = np.zeros(self.shape, dtype=np.float32)
            self._ya = np.empty(self.shape, dtype=np.float64)
            self._yb = np.empty(self.shape, dtype=np.float64)

    @classmethod
    def for_mode(cls, shape: tuple[int, int], mode: str) -> WindowMoments:
        """Moments holding exactly what ``mode`` (one of :data:`TEMPORAL_MODES`) needs."""
        return cls(shape, need_squares=mode == "var", need_lag=mode == "tac2")

    def supports(self, mode: str) -> bool:
        """Whether the kept sums suffice to combine ``mode``."""
        if mode == "var":
            return self.q is not None
        if mode == "tac2":
            return self.p is not None
        return True

    @staticmethod
    def bytes_needed(shape: tuple[int, int], mode: str) -> int:
        """Bytes :meth:`for_mode` allocates for images of ``shape``.

        AVG: 48 bytes per pixel (one compensated float64 sum, 3 shared scratch
        arrays, a product buffer); VAR/TAC2: 84 (two sums, two centred images and
        the float32 reference on top).
        """
        px = int(shape[0]) * int(shape[1])
        if mode == "avg":
            return px * (16 + 24 + 8)
        return px * (32 + 24 + 8 + 16 + 4)

    def drop_unneeded(self, mode: str) -> None:
        """Stop keeping the sums ``mode`` does not need (free; re-adding needs a rebuild)."""
        if mode != "var":
            self.q = None
        if mode != "tac2":
            self.p = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the sums and scratch arrays."""
        total = self.s.nbytes + self._prod.nbytes + self._scratch.nbytes
        for acc in (self.q, self.p):
            if acc is not None:
                total += acc.nbytes
        if self._centred:
            total += self._ref.nbytes + self._ya.nbytes + self._yb.nbytes
        return total

    def clear(self) -> None:
        """Forget every image (sums become exactly zero; the reference is re-chosen)."""
        self.n = 0
        for acc in (self.s, self.q, self.p):
            if acc is not None:
                acc.clear()

    def _centre(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.subtract(x, self._ref, out=out, dtype=np.float64)

    def append(self, x: np.ndarray, previous: np.ndarray | None) -> None:
        """Add image ``x`` at the end of the window.

        Parameters
        ----------
        x : ndarray, float32, shape ``shape``
            The entering image.
        previous : ndarray or None
            The image currently last in the window (ignored when the window is empty).
        """
        if x.shape != self.shape:
            raise ValueError(f"image must have shape {self.shape}, got {x.shape}")
        if not self._centred:
            self.s.add(x)
            self.n += 1
            return
        if self.n == 0:
            np.copyto(self._ref, x)
        y = self._centre(x, self._ya)
        self.s.add(y)
        if self.q is not None:
            self.q.add(np.multiply(y, y, out=self._prod))
        if self.p is not None and self.n > 0:
            if previous is None:
                raise ValueError("append needs the previous image to update the lag-1 sum")
            yp = self._centre(previous, self._yb)
            self.p.add(np.multiply(yp, y, out=self._prod))
        self.n += 1

    def pop_first(self, x: np.ndarray, following: np.ndarray | None) -> None:
        """Remove image ``x`` from the start of the window.

        Parameters
        ----------
        x : ndarray, float32
            The leaving image (must be the one added earlier, bit for bit).
        following : ndarray or None
            The image after ``x`` in the window (ignored when ``x`` is the only one).
        """
        if self.n <= 0:
            raise RuntimeError("WindowMoments.pop_first called on an empty window")
        if self.n == 1:
            self.clear()
            return
        if not self._centred:
            self.s.subtract(x)
            self.n -= 1
            return
        y = self._centre(x, self._ya)
        self.s.subtract(y)
        if self.q is not None:
            self.q.subtract(np.multiply(y, y, out=self._prod))
        if self.p is not None:
            if following is None:
                raise ValueError("pop_first needs the following image to update the lag-1 sum")
            yf = self._centre(following, self._yb)
            self.p.subtract(np.multiply(y, yf, out=self._prod))
        self.n -= 1

    def combine(
        self, mode: str, first: np.ndarray | None = None, last: np.ndarray | None = None
    ) -> np.ndarray:
        """The temporal statistic of the current window.

        Parameters
        ----------
        mode : {"avg", "var", "tac2"}
            Temporal combination.
        first, last : ndarray, float32, optional
            First and last image of the window (required for ``"tac2"``).

        Returns
        -------
        ndarray, float32, shape ``shape``
            With ``y = x - K`` (``K = 0`` for AVG-only moments), ``m = S/n``:
            AVG: ``K + m``; VAR: ``Q/n - m**2`` clipped at 0 (ddof 0);
            TAC2: ``(P - m (A + B) + (n-1) m**2) / (n-1)`` with ``A = S - y_last``
            (sum of the first n-1 images) and ``B = S - y_first`` (sum of the last
            n-1) -- the expansion of ``mean_{t<n-1} (x_t - m)(x_{t+1} - m)``.
        """
        if self.n == 0:
            raise RuntimeError("cannot combine an empty window")
        if mode not in TEMPORAL_MODES:
            raise ValueError(f"temporal mode must be one of {TEMPORAL_MODES}, got {mode!r}")
        if not self.supports(mode):
            raise ValueError(f"temporal mode {mode!r} needs sums this window does not keep")
        n = self.n
        mean = self.s.value()
        mean /= n
        if mode == "avg":
            if self._centred:
                mean += self._ref
            return mean.astype(np.float32)
        if mode == "var":
            assert self.q is not None
            var = self.q.value()
            var /= n
            var -= mean * mean
            np.maximum(var, 0.0, out=var)
            return var.astype(np.float32)
        assert self.p is not None
        if n < 2:
            raise ValueError("TAC2 needs at least 2 images in the window, got 1")
        if first is None or last is None:
            raise ValueError("TAC2 needs the first and last image of the window")
        a_plus_b = self.s.value()
        a_plus_b *= 2.0
        a_plus_b -= self._centre(first, self._ya)
        a_plus_b -= self._centre(last, self._yb)
        acc = self.p.value()
        acc -= mean * a_plus_b
        acc += (n - 1) * (mean * mean)
        acc /= n - 1
        return acc.astype(np.float32)
