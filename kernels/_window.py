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
multi-threaded from :data:`PARALLEL_MIN_PIXELS`; :func:`numba_kernels`).

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

__all__ = [
    "CompensatedSum",
    "TEMPORAL_MODES",
    "TemporalMode",
    "WindowMoments",
    "numba_kernels",
    "warm_up_kernels",
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


class _Scratch:
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

    def __init__(self, shape: tuple[int, ...], scratch: _Scratch | None = None) -> None:
        self.hi = np.zeros(shape, dtype=np.float64)
        self.lo = np.zeros(shape, dtype=np.float64)
        self._scratch = scratch if scratch is not None else _Scratch(shape)
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
        self._scratch = _Scratch(self.shape)
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
            out = np.empty(self.shape, dtype=np.float32)
            q = self.q if self.q is not None else None
            p = self.p if self.p is not None else None
            self._kernels[1 + self._serial](
                TEMPORAL_MODES.index(mode),
                n,
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
        a_plus_b -= self._centre(first, self._scratch.get("ya"))
        a_plus_b -= self._centre(last, self._scratch.get("yb"))
        acc = self.p.value()
        acc -= mean * a_plus_b
        acc += (n - 1) * (mean * mean)
        acc /= n - 1
        return acc.astype(np.float32)


# ---------------------------------------------------------------------------- numba
_NUMBA_KERNELS: tuple[Any, Any, Any, Any] | None = None
#: images with at least this many pixels use the multi-threaded kernels; smaller ones
#: the serial ones (thread start-up and synchronisation cost more than they save)
PARALLEL_MIN_PIXELS = 1 << 16
_NUMBA_FAILED: str | None = None


def numba_kernels() -> tuple[Any, Any, Any, Any] | None:
    """Compile (once, cached on disk) and return the fused numba kernels, or None.

    ``(update, combine)`` multi-threaded, then the same two single-threaded.
    ``update(sums..., x_rem, x_next, do_rem, x_add, x_prev, do_add, ...)`` removes
    then adds an image in one pass over the pixels; ``combine(...)`` writes the
    statistic. Each performs, per element, exactly the float64 operations of the
    numpy path in the same order (no fast-math, so no contraction into FMA), hence
    the same bits. Returns None when numba cannot be imported.
    """
    global _NUMBA_KERNELS, _NUMBA_FAILED
    if _NUMBA_KERNELS is not None or _NUMBA_FAILED is not None:
        return _NUMBA_KERNELS
    try:
        import numba
    except ImportError as err:  # pragma: no cover - numba is a dependency
        _NUMBA_FAILED = str(err)
        logger.info("numba unavailable (%s): window sums use numpy", err)
        return None

    @numba.njit(inline="always", cache=True, nogil=True)
    def two_sum(hi, lo, y):  # type: ignore[no-untyped-def]
        t = hi + y
        z = t - hi
        e = (y - z) + (hi - (t - z))
        return t, lo + e

    def update(  # type: ignore[no-untyped-def]  # noqa: PLR0913
        s_hi,
        s_lo,
        q_hi,
        q_lo,
        p_hi,
        p_lo,
        ref,
        centred,
        need_q,
        need_p,
        x_rem,
        x_next,
        do_rem,
        x_add,
        x_prev,
        do_add,
        add_lag,
    ):
        for k in numba.prange(s_hi.shape[0]):
            r = np.float64(ref[k]) if centred else 0.0
            sh = s_hi[k]
            sl = s_lo[k]
            if do_rem:
                y = np.float64(x_rem[k]) - r
                sh, sl = two_sum(sh, sl, -y)
                if need_q:
                    q_hi[k], q_lo[k] = two_sum(q_hi[k], q_lo[k], -(y * y))
                if need_p:
                    yf = np.float64(x_next[k]) - r
                    p_hi[k], p_lo[k] = two_sum(p_hi[k], p_lo[k], -(y * yf))
            if do_add:
                y = np.float64(x_add[k]) - r
                sh, sl = two_sum(sh, sl, y)
                if need_q:
                    q_hi[k], q_lo[k] = two_sum(q_hi[k], q_lo[k], y * y)
                if need_p and add_lag:
                    yp = np.float64(x_prev[k]) - r
                    p_hi[k], p_lo[k] = two_sum(p_hi[k], p_lo[k], yp * y)
            s_hi[k] = sh
            s_lo[k] = sl

    def combine(  # type: ignore[no-untyped-def]  # noqa: PLR0913
        mode,
        n,
        s_hi,
        s_lo,
        q_hi,
        q_lo,
        p_hi,
        p_lo,
        ref,
        centred,
        first,
        last,
        out,
    ):
        nf = np.float64(n)
        for k in numba.prange(s_hi.shape[0]):
            mean = (s_hi[k] + s_lo[k]) / nf
            if mode == 0:
                if centred:
                    mean = mean + np.float64(ref[k])
                out[k] = np.float32(mean)
            elif mode == 1:
                v = (q_hi[k] + q_lo[k]) / nf
                v = v - mean * mean
                if v < 0.0:
                    v = 0.0
                out[k] = np.float32(v)
            else:
                r = np.float64(ref[k])
                ab = (s_hi[k] + s_lo[k]) * 2.0
                ab = ab - (np.float64(first[k]) - r)
                ab = ab - (np.float64(last[k]) - r)
                acc = p_hi[k] + p_lo[k]
                acc = acc - mean * ab
                acc = acc + np.float64(n - 1) * (mean * mean)
                out[k] = np.float32(acc / np.float64(n - 1))

    # nogil: the window update runs on the processing thread beside the ingest
    # thread (ZeroMQ receive + persist); holding the GIL for milliseconds per frame
    # starved it (the source ring overflowed on a 256² @ 200 fps run).
    opts = {"cache": True, "fastmath": False, "boundscheck": False, "nogil": True}
    _NUMBA_KERNELS = (
        numba.njit(parallel=True, **opts)(update),
        numba.njit(parallel=True, **opts)(combine),
        numba.njit(parallel=False, **opts)(update),
        numba.njit(parallel=False, **opts)(combine),
    )
    return _NUMBA_KERNELS


def warm_up_kernels() -> bool:
    """Compile (or load from numba's disk cache) every numba kernel now.

    Call before a live stream starts so its first frame does not wait for the
    compiler. Returns False when numba is unavailable (numpy is used then).
    """
    kernels = numba_kernels()
    if kernels is None:
        return False
    x = np.ones(1, dtype=np.float32)
    for offset in (0, 2):
        update, combine = kernels[offset], kernels[offset + 1]
        hi, lo = np.zeros(1), np.zeros(1)
        update(
            hi,
            lo,
            hi.copy(),
            lo.copy(),
            hi.copy(),
            lo.copy(),
            x,
            True,
            True,
            True,
            x,
            x,
            True,
            x,
            x,
            True,
            True,
        )
        combine(2, 2, hi, lo, hi, lo, hi, lo, x, True, x, x, np.empty(1, np.float32))
    return True
