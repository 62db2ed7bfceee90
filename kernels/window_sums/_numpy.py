"""Numpy implementation of the window sums: compensated float64 sums, one array
operation at a time (the reference of :mod:`livesr.kernels.window_sums`).

:class:`CompensatedSum` is an element-wise float64 sum with a TwoSum compensation
term; the sums of one :class:`livesr.kernels._window.WindowMoments` share the float64
work arrays of a :class:`Scratch` (allocated on first use: the numba kernels need
none).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CompensatedSum", "Scratch", "window_mean"]


class Scratch:
    """Float64 work arrays shared by the sums of one :class:`WindowMoments`.

    Allocated on first use only: the numba kernels need none of them.
    """

    __slots__ = ("shape", "t", "z", "e", "prod", "ya", "yb")

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self.t: np.ndarray | None = None
        self.z: np.ndarray | None = None
        self.e: np.ndarray | None = None
        self.prod: np.ndarray | None = None
        self.ya: np.ndarray | None = None
        self.yb: np.ndarray | None = None

    def get(self, name: str) -> np.ndarray:
        """The work array ``name`` (allocated now if needed)."""
        arr = getattr(self, name)
        if arr is None:
            arr = np.empty(self.shape, dtype=np.float64)
            setattr(self, name, arr)
        return arr

    @property
    def nbytes(self) -> int:
        total = 0
        for name in ("t", "z", "e", "prod", "ya", "yb"):
            arr = getattr(self, name)
            if arr is not None:
                total += arr.nbytes
        return total


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

    def __init__(self, shape: tuple[int, ...], scratch: Scratch | None = None) -> None:
        self.hi = np.zeros(shape, dtype=np.float64)
        self.lo = np.zeros(shape, dtype=np.float64)
        self._scratch = scratch if scratch is not None else Scratch(shape)
        if self._scratch.shape != self.hi.shape:
            raise ValueError(
                f"scratch arrays have shape {self._scratch.shape}, "
                f"expected {self.hi.shape}"
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
        s, t, z, e = self.hi, sc.get("t"), sc.get("z"), sc.get("e")
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



def window_mean(ring: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """AVG of the stored images ``ring[slots]`` summed at once, into ``out``.

    Parameters
    ----------
    ring : numpy.ndarray
        ``(C, P)`` float32 stored images (flattened).
    slots : numpy.ndarray
        ``(n,)`` int64 rows of ``ring`` in the window, oldest first.
    out : numpy.ndarray
        ``(P,)`` float32, receives ``(hi + lo) / n`` of the compensated sum of the
        rows added in order: the bits of the numba kernel and of a
        :class:`CompensatedSum` that gained the same images one by one.
    """
    acc = CompensatedSum(out.shape)
    for j in slots:
        acc.add(ring[int(j)])
    mean = acc.value()
    mean /= len(slots)
    out[...] = mean.astype(np.float32)
