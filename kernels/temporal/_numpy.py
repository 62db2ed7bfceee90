"""Temporal step of eSRRF in numpy: two-pass reference and a streaming accumulator.

Statistics over the per-frame maps ``x_0 .. x_{n-1}`` of one block, as NanoPyx 2.1.5
``calculate_eSRRF_temporal_correlations`` (ESRRF.md section 2.2):

- ``avg``: mean;
- ``var``: population variance (ddof 0);
- ``tac2``: ``mean_{t=0..n-2} (x_t - m)(x_{t+1} - m)`` with ``m`` the block mean
  (lag-1 autocovariance / (n - 1); NaN for a one-frame block, as NanoPyx).

:class:`TemporalAccumulator` computes the same in one pass with float64 running
sums, holding at most four maps whatever the number of frames.  Sums are taken
about the first frame ``K = x_0`` (``y_t = x_t - K``), which both statistics are
invariant to and which avoids cancellation.  With ``S = sum y_t``,
``Q = sum y_t^2``, ``P = sum_{t<n-1} y_t y_{t+1}`` and ``m = S / n``:

- ``var = Q / n - m^2``;
- ``sum_{t<n-1} (y_t - m)(y_{t+1} - m) = P - m (A + B) + (n - 1) m^2`` with
  ``A = S - y_{n-1}`` (the first n-1 frames) and ``B = S - y_0 = S`` (the last
  n-1 frames), divided by ``n - 1``.
"""

from __future__ import annotations

import numpy as np

from livesr.kernels._params import validate_temporal

__all__ = ["TemporalAccumulator", "temporal_two_pass"]


def temporal_two_pass(maps: np.ndarray, mode: str) -> np.ndarray:
    """Two-pass float32 temporal statistic of a block, as NanoPyx computes it.

    Parameters
    ----------
    maps : (n, Y, X) real array
    mode : {"avg", "var", "tac2"}

    Returns
    -------
    (Y, X) float32
    """
    mode = validate_temporal(mode)
    x = np.asarray(maps, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(
            f"maps must be a non-empty (n, Y, X) array, got shape {x.shape}"
        )
    if mode == "avg":
        return np.mean(x, axis=0)
    if mode == "var":
        return np.var(x, axis=0)
    if x.shape[0] < 2:
        return np.full(x.shape[1:], np.nan, dtype=np.float32)
    centred = x - np.mean(x, axis=0)
    return np.mean(centred[:-1] * centred[1:], axis=0)


class TemporalAccumulator:
    """One-pass temporal statistic over a block of maps, float64 running sums.

    Parameters
    ----------
    mode : {"avg", "var", "tac2"}
    shape : (Y, X)
        Shape of every map.

    Examples
    --------
    >>> acc = TemporalAccumulator("var", (4, 4))
    >>> for m in maps:
    ...     acc.add(m)
    >>> image = acc.result()  # (4, 4) float32
    """

    __slots__ = ("_first", "_last", "_p", "_q", "_s", "count", "mode", "shape")

    def __init__(self, mode: str, shape: tuple[int, int]) -> None:
        self.mode = validate_temporal(mode)
        dims = tuple(int(s) for s in shape)
        if len(dims) != 2 or min(dims) < 1:
            raise ValueError(f"shape must be (Y, X) with Y, X >= 1, got {dims}")
        self.shape: tuple[int, int] = (dims[0], dims[1])
        self.reset()

    def reset(self) -> None:
        """Forget every map added so far."""
        self.count = 0
        self._s = np.zeros(self.shape, dtype=np.float64)
        self._first: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._q: np.ndarray | None = None
        self._p: np.ndarray | None = None
        if self.mode == "var":
            self._q = np.zeros(self.shape, dtype=np.float64)
        elif self.mode == "tac2":
            self._p = np.zeros(self.shape, dtype=np.float64)

    def add(self, frame_map: np.ndarray) -> None:
        """Add one (Y, X) map (any real dtype; used as float32, as NanoPyx)."""
        x = np.asarray(frame_map)
        if x.shape != self.shape:
            raise ValueError(f"map must have shape {self.shape}, got {x.shape}")
        x = x.astype(np.float32, copy=False).astype(np.float64)
        self.count += 1
        if self.mode == "avg":
            self._s += x
            return
        if self._first is None:
            self._first = x.copy()
        y = x - self._first
        self._s += y
        if self.mode == "var":
            assert self._q is not None
            self._q += y * y
        else:
            assert self._p is not None
            if self._last is not None:
                self._p += self._last * y
            self._last = y

    def result(self) -> np.ndarray:
        """The statistic of the maps added so far, (Y, X) float32.

        Raises ValueError when nothing was added. ``tac2`` of a single map is NaN
        (as NanoPyx).
        """
        n = self.count
        if n == 0:
            raise ValueError(
                "no map added yet: call add() at least once before result()"
            )
        if self.mode == "avg":
            return (self._s / n).astype(np.float32)
        assert self._first is not None
        mean_y = self._s / n
        if self.mode == "var":
            assert self._q is not None
            return np.maximum(self._q / n - mean_y * mean_y, 0.0).astype(np.float32)
        if n < 2:
            return np.full(self.shape, np.nan, dtype=np.float32)
        assert self._p is not None and self._last is not None
        a = self._s - self._last  # sum over t = 0 .. n-2
        b = self._s  # sum over t = 1 .. n-1 (y_0 = 0)
        lag = self._p - mean_y * (a + b) + (n - 1) * mean_y * mean_y
        return (lag / (n - 1)).astype(np.float32)


def _register() -> None:
    from livesr.engine import implementation

    @implementation("temporal", backend="numpy")
    def temporal_numpy(maps: np.ndarray, mode: str) -> np.ndarray:
        """Engine reference: the maps fed one by one to a :class:`TemporalAccumulator`.

        Parameters
        ----------
        maps : (n, Y, X) float32
        mode : {"avg", "var", "tac2"}

        Returns
        -------
        (Y, X) float32
        """
        acc = TemporalAccumulator(mode, maps.shape[1:])
        for m in maps:
            acc.add(m)
        return acc.result()


_register()
