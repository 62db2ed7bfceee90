"""Running temporal statistics of a sliding window of images, free of rounding drift.

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
only other rounding -- that of the sums -- is carried by the compensation. ``K`` is
re-chosen whenever the window empties (or is rebuilt); in an endless stream it stays
the first image, which keeps removal exact and only matters for cancellation if the
scene changes completely (then ``|y|`` is at most about ``|x| + |K|``).

Two backends give the same bits: numpy (one array operation at a time, needs
float64 work arrays) and fused numba kernels (one pass over the pixels per update,
multi-threaded from :data:`PARALLEL_MIN_PIXELS`; :func:`numba_kernels`). Their code
lives in :mod:`livesr.kernels.window_sums` (one file per implementation, with the
CUDA kernels of the GPU window); this module keeps the window state and picks.

The combination into AVG / VAR / TAC2 (:meth:`WindowMoments.combine`) follows
NanoPyx 2.1.5 (``/work/shared/ESRRF.md`` section 2.2): mean, population variance
(ddof 0), and ``mean_{t=0}^{n-2} (x_t - m)(x_{t+1} - m)`` with ``m`` the window mean.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from livesr.kernels._params import TEMPORAL_MODES
from livesr.kernels.window_sums._numpy import CompensatedSum, Scratch

__all__ = [
    "CompensatedSum",
    "TEMPORAL_MODES",
    "TemporalMode",
    "WindowMoments",
    "numba_kernels",
    "warm_up_kernels",
    "window_mean",
]

logger = logging.getLogger(__name__)

TemporalMode = Literal["avg", "var", "tac2"]
_BACKENDS: tuple[str, ...] = ("auto", "numba", "numpy")
_E64 = np.empty(0, dtype=np.float64)
_E32 = np.empty(0, dtype=np.float32)


def _fits(*images: np.ndarray | None) -> bool:
    """Whether every given image can go to the numba kernels as it is."""
    return all(
        x is None or (x.dtype == np.float32 and x.flags.c_contiguous) for x in images
    )


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1)


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
    backend : {"auto", "numba", "numpy"}
        ``"numba"``: fused one-pass kernels (:func:`numba_kernels`); ``"numpy"``: one
        array operation at a time; ``"auto"``: numba when it can be imported. Both
        give the same bits (tested).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        *,
        need_squares: bool,
        need_lag: bool,
        backend: str = "auto",
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.shape = tuple(shape)
        self.n = 0
        self._kernels = None
        if backend != "numpy":
            self._kernels = numba_kernels()
            if self._kernels is None and backend == "numba":
                raise ValueError(
                    "backend='numba' requested but numba cannot be imported "
                    f"({_NUMBA_FAILED}); "
                    "install numba or use backend='numpy'"
                )
        self.backend = "numba" if self._kernels is not None else "numpy"
        # offset into the kernel tuple: 0 = multi-threaded, 2 = serial
        self._serial = 0 if math.prod(self.shape) >= PARALLEL_MIN_PIXELS else 2
        self._scratch = Scratch(self.shape)
        self.s = CompensatedSum(self.shape, self._scratch)
        self.q = CompensatedSum(self.shape, self._scratch) if need_squares else None
        self.p = CompensatedSum(self.shape, self._scratch) if need_lag else None
        self._centred = need_squares or need_lag
        if self._centred:
            self._ref = np.zeros(self.shape, dtype=np.float32)

    @classmethod
    def for_mode(
        cls, shape: tuple[int, int], mode: str, backend: str = "auto"
    ) -> WindowMoments:
        """Moments holding exactly what ``mode`` (see :data:`TEMPORAL_MODES`) needs."""
        return cls(
            shape, need_squares=mode == "var", need_lag=mode == "tac2", backend=backend
        )

    def supports(self, mode: str) -> bool:
        """Whether the kept sums suffice to combine ``mode``."""
        if mode == "var":
            return self.q is not None
        if mode == "tac2":
            return self.p is not None
        return True

    @staticmethod
    def bytes_needed(shape: tuple[int, int], mode: str, backend: str = "auto") -> int:
        """Bytes a :meth:`for_mode` object holds at most for images of ``shape``.

        Per pixel: 16 per compensated float64 sum (one for AVG, two for VAR/TAC2),
        4 for the float32 reference (VAR/TAC2); the numpy backend adds its float64
        work arrays (24 for AVG, 40 for VAR, 48 for TAC2). So 16 / 36 / 36 bytes per
        pixel with numba, 40 / 76 / 84 with numpy.
        """
        px = int(shape[0]) * int(shape[1])
        if backend == "auto":
            backend = "numba" if numba_kernels() is not None else "numpy"
        numpy_work = (
            {"avg": 24, "var": 40, "tac2": 48}[mode] if backend == "numpy" else 0
        )
        per_px = (16 if mode == "avg" else 36) + numpy_work
        return px * per_px

    def drop_unneeded(self, mode: str) -> None:
        """Stop keeping the sums ``mode`` does not need (free; re-adding: rebuild)."""
        if mode != "var":
            self.q = None
        if mode != "tac2":
            self.p = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the sums and scratch arrays."""
        total = self.s.nbytes + self._scratch.nbytes
        for acc in (self.q, self.p):
            if acc is not None:
                total += acc.nbytes
        if self._centred:
            total += self._ref.nbytes
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
        if self.p is not None and self.n > 0 and previous is None:
            raise ValueError("append needs the previous image to update the lag-1 sum")
        if self._kernels is not None and _fits(x, previous):
            if self._centred and self.n == 0:
                np.copyto(self._ref, x)
            self._run_update(None, None, x, previous if self.n > 0 else None)
            self.n += 1
            return
        if not self._centred:
            self.s.add(x)
            self.n += 1
            return
        if self.n == 0:
            np.copyto(self._ref, x)
        sc = self._scratch
        y = self._centre(x, sc.get("ya"))
        self.s.add(y)
        if self.q is not None:
            self.q.add(np.multiply(y, y, out=sc.get("prod")))
        if self.p is not None and self.n > 0:
            if previous is None:
                raise ValueError(
                    "append needs the previous image to update the lag-1 sum"
                )
            yp = self._centre(previous, sc.get("yb"))
            self.p.add(np.multiply(yp, y, out=sc.get("prod")))
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
        if self.p is not None and following is None:
            raise ValueError(
                "pop_first needs the following image to update the lag-1 sum"
            )
        if self._kernels is not None and _fits(x, following):
            self._run_update(x, following, None, None)
            self.n -= 1
            return
        if not self._centred:
            self.s.subtract(x)
            self.n -= 1
            return
        sc = self._scratch
        y = self._centre(x, sc.get("ya"))
        self.s.subtract(y)
        if self.q is not None:
            self.q.subtract(np.multiply(y, y, out=sc.get("prod")))
        if self.p is not None:
            if following is None:
                raise ValueError(
                    "pop_first needs the following image to update the lag-1 sum"
                )
            yf = self._centre(following, sc.get("yb"))
            self.p.subtract(np.multiply(y, yf, out=sc.get("prod")))
        self.n -= 1

    def slide(
        self,
        leaving: np.ndarray,
        following: np.ndarray | None,
        entering: np.ndarray,
        previous: np.ndarray | None,
    ) -> None:
        """``pop_first(leaving, following)`` then ``append(entering, previous)``.

        One pass over the pixels with the numba backend (same bits as the two calls).
        """
        if (
            self.n >= 2
            and self._kernels is not None
            and _fits(leaving, following, entering, previous)
        ):
            if self.p is not None and (following is None or previous is None):
                raise ValueError(
                    "slide needs the following and previous images for TAC2"
                )
            if entering.shape != self.shape:
                raise ValueError(
                    f"image must have shape {self.shape}, got {entering.shape}"
                )
            self._run_update(leaving, following, entering, previous)
            return
        self.pop_first(leaving, following)
        self.append(entering, previous)

    def _run_update(
        self,
        rem: np.ndarray | None,
        nxt: np.ndarray | None,
        add: np.ndarray | None,
        prev: np.ndarray | None,
    ) -> None:
        assert self._kernels is not None
        q, p = self.q, self.p
        self._kernels[0 + self._serial](
            _flat(self.s.hi),
            _flat(self.s.lo),
            _flat(q.hi) if q is not None else _E64,
            _flat(q.lo) if q is not None else _E64,
            _flat(p.hi) if p is not None else _E64,
            _flat(p.lo) if p is not None else _E64,
            _flat(self._ref) if self._centred else _E32,
            self._centred,
            q is not None,
            p is not None,
            _flat(rem) if rem is not None else _E32,
            _flat(nxt) if nxt is not None else _E32,
            rem is not None,
            _flat(add) if add is not None else _E32,
            _flat(prev) if prev is not None else _E32,
            add is not None,
            prev is not None,
        )

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
            raise ValueError(
                f"temporal mode must be one of {TEMPORAL_MODES}, got {mode!r}"
            )
        if not self.supports(mode):
            raise ValueError(
                f"temporal mode {mode!r} needs sums this window does not keep"
            )
        n = self.n
        if mode == "tac2":
            if n < 2:
                raise ValueError("TAC2 needs at least 2 images in the window, got 1")
            if first is None or last is None:
                raise ValueError("TAC2 needs the first and last image of the window")
        if self._kernels is not None and _fits(first, last):
            return self._run_combine(mode, first, last)
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
        assert self.p is not None and first is not None and last is not None
        a_plus_b = self.s.value()
        a_plus_b *= 2.0
        a_plus_b -= self._centre(first, self._scratch.get("ya"))
        a_plus_b -= self._centre(last, self._scratch.get("yb"))
        acc = self.p.value()
        acc -= mean * a_plus_b
        acc += (n - 1) * (mean * mean)
        acc /= n - 1
        return acc.astype(np.float32)

    def _run_combine(
        self, mode: str, first: np.ndarray | None, last: np.ndarray | None
    ) -> np.ndarray:
        """:meth:`combine` by the numba kernel (same bits as the numpy path)."""
        assert self._kernels is not None
        out = np.empty(self.shape, dtype=np.float32)
        q, p = self.q, self.p
        self._kernels[1 + self._serial](
            TEMPORAL_MODES.index(mode),
            self.n,
            _flat(self.s.hi),
            _flat(self.s.lo),
            _flat(q.hi) if q is not None else _E64,
            _flat(q.lo) if q is not None else _E64,
            _flat(p.hi) if p is not None else _E64,
            _flat(p.lo) if p is not None else _E64,
            _flat(self._ref) if self._centred else _E32,
            self._centred,
            _flat(first) if first is not None else _E32,
            _flat(last) if last is not None else _E32,
            out.reshape(-1),
        )
        return out


# ---------------------------------------------------------------------------- numba
_NUMBA_KERNELS: tuple[Any, Any, Any, Any] | None = None
#: images with at least this many pixels use the multi-threaded kernels; smaller ones
#: the serial ones (thread start-up and synchronisation cost more than they save)
PARALLEL_MIN_PIXELS = 1 << 16
_NUMBA_FAILED: str | None = None


def numba_kernels() -> tuple[Any, Any, Any, Any] | None:
    """Compile (once, cached on disk) and return the fused numba kernels, or None.

    ``(update, combine)`` multi-threaded, then the same two single-threaded
    (:data:`livesr.kernels.window_sums._numba.KERNELS`, where they are described).
    They give the bits of the numpy path. Returns None when numba cannot be imported.
    """
    global _NUMBA_KERNELS, _NUMBA_FAILED
    if _NUMBA_KERNELS is not None or _NUMBA_FAILED is not None:
        return _NUMBA_KERNELS
    try:
        from livesr.kernels.window_sums._numba import KERNELS
    except ImportError as err:  # pragma: no cover - numba is a dependency
        _NUMBA_FAILED = str(err)
        logger.info("numba unavailable (%s): window sums use numpy", err)
        return None
    _NUMBA_KERNELS = KERNELS
    return _NUMBA_KERNELS


def window_mean(ring: np.ndarray, slots: np.ndarray, backend: str = "auto") -> np.ndarray:
    """AVG of stored images, summed at once: what :meth:`WindowMoments.combine`
    (``"avg"``, sums never centred) gives for a window that gained them one by one.

    A sliding window whose images are all stored (the ``"maps"`` strategy of
    :class:`~livesr.kernels.sliding.SlidingEsrrf`) and that emits every ``stride``
    frames can sum its ``window`` maps when it emits instead of adding and
    removing one map per frame: ``window / stride`` reads of a map per frame
    instead of two reads and a float64 read-modify-write of the sums (about 10
    map-sized transfers).  Same compensated float64 sum, so the same value as the
    running sums (which represent the same exact sum) after float32 rounding.

    Parameters
    ----------
    ring : numpy.ndarray
        ``(C, H, W)`` float32, C-contiguous: the stored images.
    slots : numpy.ndarray
        ``(n,)`` integer indices into ``ring``, the window's images oldest first.
    backend : {"auto", "numba", "numpy"}
        As :class:`WindowMoments` (same bits).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32 mean.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if ring.ndim != 3 or ring.dtype != np.float32 or not ring.flags.c_contiguous:
        raise ValueError(
            "ring must be a C-contiguous (C, H, W) float32 array, got "
            f"{ring.dtype} {ring.shape}"
        )
    idx = np.ascontiguousarray(slots, dtype=np.int64)
    if idx.ndim != 1 or len(idx) == 0:
        raise ValueError(f"slots must be a non-empty 1-D index array, got {slots!r}")
    flat = ring.reshape(ring.shape[0], -1)
    out = np.empty(ring.shape[1:], dtype=np.float32)
    kernels = None if backend == "numpy" else numba_kernels()
    if kernels is None and backend == "numba":
        raise ValueError(f"backend='numba' requested but numba cannot be imported ({_NUMBA_FAILED})")
    if kernels is None:
        from livesr.kernels.window_sums._numpy import window_mean as numpy_mean

        numpy_mean(flat, idx, out.reshape(-1))
        return out
    from livesr.kernels.window_sums._numba import WINDOW_MEAN

    serial = flat.shape[1] < PARALLEL_MIN_PIXELS
    WINDOW_MEAN[int(serial)](flat, idx, out.reshape(-1))
    return out


def warm_up_kernels() -> bool:
    """Compile (or load from numba's disk cache) every numba kernel now.

    Call before a live stream starts so its first frame does not wait for the
    compiler. Returns False when numba is unavailable (numpy is used then).
    """
    if numba_kernels() is None:
        return False
    from livesr.kernels.window_sums._numba import warm_up

    warm_up()
    return True
