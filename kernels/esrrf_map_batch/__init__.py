"""Batched per-frame eSRRF map, each frame with its own shift: engine kernel
``esrrf_map_batch``.

``kernel(frames (N, H, W) float32, magnification, radius, sensitivity,
intensity_weighting, shifts=(N, 2) px) -> (N, H*M, W*M) float32``: frame ``k``'s
map equals ``esrrf_map(frames[k], ..., shift=shifts[k])`` (the same
implementations, the same NanoPyx geometry).  One engine call maps a whole batch
of frames that waited together, so the per-frame Python and launch overhead of a
stream is paid once per batch.

Implementations (same set as ``esrrf_map``):

* ``numpy`` (reference) and the CPU backends (``numba``, ``cython``,
  ``cython-guided``, ``cython-dynamic``, ``opencl``) loop over the compiled
  per-frame map of the same backend (:mod:`._loop`); the CPU map of a 256² frame
  takes ~30 ms on 2 cores, its host tap plan for a new shift ~0.5 ms (cached per
  shift), so the loop costs nothing worth batching further.
* ``cupy`` maps up to 8 frames per pair of launches and computes every frame's
  Catmull-Rom taps on the device from the ``(N, 2)`` shift array (no host
  planning per shift); with cupy frames in and an ``out=`` device array it never
  touches the host (the device sliding window passes both through ``adapt``).

Deadline: the engine judges an implementation on the whole call, so a caller
mapping ``n`` frames of a camera with frame interval ``dt`` passes
``deadline_s = n * dt`` (throughput), see
:func:`livesr.kernels.framemap.batch_deadline`.

Tolerance as ``esrrf_map``: ``rtol=1e-4, atol=1e-5`` on frames normalised to 1.
"""

from __future__ import annotations

from typing import Any

from livesr.engine import Case, InputSignature, Kernel, Tolerance

__all__ = ["kernel", "validate_batch"]


def validate_batch(frames: Any, shifts: Any) -> tuple[Any, Any]:
    """Check a batch: ``(N, H, W)`` real frames and ``(N, 2)`` finite shifts.

    Frames are not scanned for NaN/inf (a full pass over every batch; NaN in
    gives NaN out): the sliding windows check float frames once, integer
    camera frames need no check.

    Returns
    -------
    frames : numpy.ndarray
        ``(N, H, W)`` float32, C-contiguous (a cupy array is passed through).
    shifts : numpy.ndarray
        ``(N, 2)`` float64 (zeros when ``shifts`` is None).
    """
    import numpy as np

    if type(frames).__module__.split(".")[0] == "cupy":
        arr = frames
    else:
        arr = np.asarray(frames)
        if arr.ndim == 3 and not (
            np.issubdtype(arr.dtype, np.integer)
            or np.issubdtype(arr.dtype, np.floating)
        ):
            raise ValueError(f"frames must have a real dtype, got {arr.dtype}")
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(
            f"frames must be a (N, H, W) stack with N, H, W >= 1, got shape {arr.shape}"
        )
    if isinstance(arr, np.ndarray):
        with np.errstate(over="ignore"):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
    n = int(arr.shape[0])
    if shifts is None:
        sh = np.zeros((n, 2), dtype=np.float64)
    else:
        sh = np.ascontiguousarray(np.asarray(shifts, dtype=np.float64))
        if sh.shape != (n, 2):
            raise ValueError(
                f"shifts must have shape ({n}, 2) -- one (dy, dx) per frame, input "
                f"px -- got {sh.shape}"
            )
        if not np.isfinite(sh).all():
            raise ValueError("shifts must be finite (dy, dx) in input pixels")
    return arr, sh


def _validate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from livesr.kernels._params import EsrrfParams

    def bind(
        frames: Any,
        magnification: Any,
        radius: Any,
        sensitivity: Any,
        intensity_weighting: Any,
        shifts: Any = None,
        out: Any = None,
    ) -> tuple[Any, ...]:
        return (
            frames,
            magnification,
            radius,
            sensitivity,
            intensity_weighting,
            shifts,
            out,
        )

    frames, m, r, s, iw, shifts, out = bind(*args, **kwargs)
    p = EsrrfParams(magnification=m, radius=r, sensitivity=s, intensity_weighting=iw)
    frames, sh = validate_batch(frames, shifts)
    kw: dict[str, Any] = {"shifts": sh}
    if out is not None:
        kw["out"] = out
    return (frames, p.magnification, p.radius, p.sensitivity, p.intensity_weighting), kw


def _signature(args: tuple[Any, ...], kwargs: Any) -> InputSignature:
    frames, m, r, s, iw = args[:5]
    return InputSignature.of(
        frames, magnification=m, radius=r, sensitivity=s, intensity_weighting=iw
    )


def _stack(n: int, h: int, w: int, seed: int) -> Any:
    import numpy as np

    from livesr.kernels.esrrf_map import _frame

    return np.stack([_frame(h, w, seed + k) for k in range(n)])


def _shifts(n: int, seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed).uniform(-0.6, 0.6, size=(n, 2))


def _cases() -> list[Case]:
    return [
        Case(
            "three_13x11_m3_shifted",
            (_stack(3, 13, 11, 1), 3, 1.5, 1.0, True),
            {"shifts": _shifts(3, 1)},
        ),
        Case("two_9x12_m2_unweighted", (_stack(2, 9, 12, 4), 2, 1.0, 2.0, False)),
        Case(
            "nine_10x9_m4_shifted",  # more frames than one CuPy launch takes (8)
            (_stack(9, 10, 9, 7), 4, 1.5, 1.0, True),
            {"shifts": _shifts(9, 2)},
        ),
    ]


def _bench_cases(size: str) -> list[Case]:
    n = {"small": 64, "medium": 256, "large": 512}[size]
    return [
        Case(
            f"8x{n}x{n}_m5",
            (_stack(8, n, n, 0), 5, 1.5, 1.0, True),
            {"shifts": _shifts(8, 0)},
        )
    ]


#: ``esrrf_map_batch(frames, magnification, radius, sensitivity,
#: intensity_weighting, shifts=None) -> (N, H*M, W*M) float32``.
kernel = Kernel(
    "esrrf_map_batch",
    package=__name__,
    reference="numpy",
    tolerance=Tolerance(rtol=1e-4, atol=1e-5),
    signature=_signature,
    validate=_validate,
    cases=_cases,
    bench_cases=_bench_cases,
)
