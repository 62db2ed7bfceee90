"""eSRRF of a stack and of one frame, numerically equal to NanoPyx 2.1.5, run
through the engine (``livesr.kernels`` exports :func:`esrrf` and
:func:`esrrf_frame` from here; the module is not named ``esrrf`` so that it does
not shadow the function).

Per frame (:func:`esrrf_frame`): Catmull-Rom magnification of the frame, Roberts-
cross gradients, their half-pixel Catmull-Rom samples (the "2x gradient trick"),
radial gradient convergence times the magnified intensity.  Per block of frames
(:func:`esrrf`): a temporal statistic (AVG, VAR, TAC2) accumulated frame by frame,
then optional macro-pixel correction.  See the project notes ESRRF.md, section 2, for
the step-by-step description this follows.

Every per-frame map runs through ``livesr.engine``: the fused kernel ``esrrf_map``
(``geometry="nanopyx"``) or the stage kernels ``catmull_rom``, ``roberts_cross``
and ``rgc`` (``"corrected"``); the macro-pixel correction through ``macro_pixel``.
The numpy stages (:func:`_esrrf_frame_numpy`) are the reference every
implementation is tested against.  By default the fastest implementation is
measured once per process and input signature and then kept (``impl=None``), so
repeated calls give identical results; ``impl="auto"`` dispatches every call
through the delay agent; ``impl="<id>"`` pins one implementation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from livesr.kernels._params import (
    EsrrfParams,
    stack_shape,
    validate_batch,
    validate_frame,
    validate_out,
    validate_shift,
)
from livesr.kernels.catmull_rom import magnify, upsample_gradient
from livesr.kernels.macro_pixel import macro_pixel_correction
from livesr.kernels.rgc import radial_gradient_convergence
from livesr.kernels.roberts_cross import roberts_cross
from livesr.kernels.temporal import TemporalAccumulator

__all__ = ["EsrrfParams", "esrrf", "esrrf_frame", "macro_pixel_correction"]

logger = logging.getLogger(__name__)

_mp_correct = macro_pixel_correction


def esrrf_frame(
    frame: Any,
    params: EsrrfParams,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
    out: np.ndarray | None = None,
    impl: str | None = None,
) -> np.ndarray:
    """Per-frame eSRRF map: RGC times magnified intensity (or RGC alone).

    No temporal step and no macro-pixel correction. With ``shift=(0, 0)`` and
    ``params.geometry == "nanopyx"`` this equals NanoPyx 2.1.5's
    ``eSRRF_ST().run(frame, ...)`` output for the frame.

    Runs through the engine: ``geometry="nanopyx"`` dispatches the fused kernel
    :data:`livesr.kernels.esrrf_map.kernel`; ``"corrected"`` (which the fused
    implementations do not offer) dispatches the stage kernels ``catmull_rom``,
    ``roberts_cross`` and ``rgc``.  Every implementation equals the numpy reference
    within its kernel's tolerance (``esrrf_map``: ``rtol=1e-4, atol=1e-5`` for
    frames of maximum 1; measured <= 2e-7 of the map's maximum).

    Parameters
    ----------
    frame : (H, W) array-like, any real dtype
        One camera frame; cast to float32. Must be finite.
    params : EsrrfParams
    shift : (dy, dx), input pixels
        Sample displacement of this frame (positive = towards larger row / column
        index) to undo *inside* the magnification: the magnified intensity and the
        half-pixel gradients are Catmull-Rom sampled at positions offset by
        ``+shift``, so a drifting stack is registered while it is magnified,
        interpolated only once. Gradients are computed at input resolution from
        the raw frame. The zero margin and the validity of RGC samples stay tied
        to the output grid.
    out : (H*M, W*M) float32 C-contiguous array, optional
        Written in place and returned.
    impl : str, optional
        Which implementation runs.  ``None`` (default): the fastest available for
        this input signature, measured once per process (every available
        implementation is run twice on the first frame of a new signature) and then
        kept, so results are reproducible within a process; nothing is recorded
        in the engine's benchmark store.  ``"auto"``: the
        engine's adaptive dispatch on every call (the delay agent may switch).
        An implementation id (``"numpy"``, ``"numba"``, ``"cython-guided"``,
        ``"opencl"``, ``"cupy"``, see ``livesr backends``): exactly that one; for
        ``geometry="corrected"`` its backend part pins the stage kernels.

    Returns
    -------
    (H*M, W*M) float32
        Zero in the ``int(R*M)``-pixel margin.
    """
    if not isinstance(params, EsrrfParams):
        raise TypeError(f"params must be an EsrrfParams, got {type(params).__name__}")
    img = validate_frame(frame)
    dy, dx = validate_shift(shift)
    m = params.magnification
    out = validate_out(out, (img.shape[0] * m, img.shape[1] * m))
    if impl is not None and not isinstance(impl, str):
        raise ValueError(
            f"impl must be None, 'auto' or an implementation id, got {impl!r}"
        )
    if params.geometry == "nanopyx":
        from livesr.kernels.esrrf_map import kernel as esrrf_map

        args = (img, m, params.radius, params.sensitivity, params.intensity_weighting)
        result = _run(esrrf_map, impl, args, {"shift": (dy, dx)})
    else:
        result = _esrrf_frame_stages(img, params, (dy, dx), impl)
    if out is None:
        return result
    out[...] = result
    return out


def _esrrf_frame_numpy(
    frame: np.ndarray,
    params: EsrrfParams,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The numpy stages of :func:`esrrf_frame` (the ``esrrf_map`` reference).

    ``frame`` is a validated (H, W) float32 array; ``shift`` two floats.
    """
    img = validate_frame(frame)
    dy, dx = validate_shift(shift)
    m = params.magnification
    geometry = params.geometry
    intensity = (
        magnify(img, m, shift=(dy, dx), geometry=geometry)
        if params.intensity_weighting
        else None
    )
    gx, gy = roberts_cross(img)
    gx2 = upsample_gradient(gx, m, shift=(dy, dx), geometry=geometry)
    gy2 = upsample_gradient(gy, m, shift=(dy, dx), geometry=geometry)
    return radial_gradient_convergence(gx2, gy2, intensity, params, out=out)


def _esrrf_frame_stages(
    img: np.ndarray, params: EsrrfParams, shift: tuple[float, float], impl: str | None
) -> np.ndarray:
    """:func:`esrrf_frame` with each stage dispatched through its engine kernel."""
    from livesr.kernels.catmull_rom import (
        gradient_coordinates,
        magnification_coordinates,
    )
    from livesr.kernels.catmull_rom import kernel as catmull_rom
    from livesr.kernels.rgc import kernel as rgc
    from livesr.kernels.roberts_cross import kernel as roberts

    stage_impl = impl if impl in (None, "auto") else impl.split("-", 1)[0]
    h, w = img.shape
    m, g = params.magnification, params.geometry
    dy, dx = shift
    intensity = None
    if params.intensity_weighting:
        rows = magnification_coordinates(h, m, dy, g)
        cols = magnification_coordinates(w, m, dx, g)
        intensity = _run(catmull_rom, stage_impl, (img, rows, cols), {})
    gx, gy = _run(roberts, stage_impl, (img,), {})
    rows = gradient_coordinates(h, m, dy, g)
    cols = gradient_coordinates(w, m, dx, g)
    gx2 = _run(catmull_rom, stage_impl, (gx, rows, cols), {})
    gy2 = _run(catmull_rom, stage_impl, (gy, rows, cols), {})
    return _run(rgc, stage_impl, (gx2, gy2, intensity, params), {})


def _run(
    kernel: Any, impl: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run ``kernel`` on ``args``: the engine's kept fastest (``None``), dispatched
    (``"auto"``) or exactly implementation ``impl``.

    ``None`` asks :meth:`livesr.engine.Kernel.fastest` (measured once per process and
    input signature, unrecorded, then kept by the engine), the one place that
    chooses an implementation.  Only ``"auto"`` records run times in the engine's
    benchmark store; the other paths run ``kernel.using(...)`` (validated,
    synchronised, not recorded), so a plain :func:`esrrf` call writes nothing and
    starts no thread.
    """
    if impl == "auto":
        return kernel(*args, **kwargs)
    if impl is not None:
        return kernel.using(impl)(*args, **kwargs)
    return kernel.using(kernel.fastest(*args, **kwargs))(*args, **kwargs)


def forget_choices() -> None:
    """Forget the engine's kept implementation choices of :func:`esrrf_frame`
    and :func:`esrrf` (tests)."""
    from livesr.kernels.catmull_rom import kernel as catmull_rom
    from livesr.kernels.esrrf_map import kernel as esrrf_map
    from livesr.kernels.macro_pixel import kernel as macro_pixel
    from livesr.kernels.rgc import kernel as rgc
    from livesr.kernels.roberts_cross import kernel as roberts

    for k in (catmull_rom, roberts, rgc, macro_pixel, esrrf_map):
        k.forget_fastest()


def esrrf(
    stack: Any,
    *,
    magnification: int = 5,
    radius: float = 1.5,
    sensitivity: float = 1.0,
    intensity_weighting: bool = True,
    macro_pixel_correction: bool = True,
    temporal: str = "avg",
    frames_per_timepoint: int = 0,
    geometry: str = "nanopyx",
    impl: str | None = None,
) -> np.ndarray:
    # Long because of its docstring (every option, as NanoPyx's, with its numbers);
    # the body is 35 lines.
    """Batch eSRRF, numerically equal to ``nanopyx.eSRRF`` 2.1.5.

    Frames are processed one at a time and the temporal statistic is accumulated
    in float64 running sums, so memory stays at a few output-sized maps whatever
    the number of frames; ``stack`` may be any array-like with ``shape``,
    ``len()`` and ``stack[i]`` (numpy memmap, zarr array) and is read frame by
    frame.

    Parameters
    ----------
    stack : (t, H, W) or (H, W) array-like, any real dtype
        Camera frames (a 2-D image is one frame). Cast to float32; must be finite.
    magnification : int >= 1
    radius : float > 0
        Ring radius in input pixels.
    sensitivity : float >= 0
        RGC exponent, applied only when > 1 (as NanoPyx).
    intensity_weighting : bool
        Multiply RGC by the magnified intensity.
    macro_pixel_correction : bool
        Divide each sub-pixel phase by its mean (NanoPyx's macro-pixel corrector,
        zero margin included in the means).
    temporal : {"avg", "var", "tac2"}
        Temporal statistic over the per-frame maps of a block (case-insensitive):
        mean, population variance (ddof 0), lag-1 autocovariance / (n - 1)
        (``tac2`` of a one-frame block is NaN, as NanoPyx; a warning is logged).
    frames_per_timepoint : int >= 0
        0: one image from all frames. F > 0: one image per block of F frames,
        ``ceil(t / F)`` blocks, the last one may be shorter (as NanoPyx).
    geometry : {"nanopyx", "corrected"}
        ``"nanopyx"`` (default) reproduces NanoPyx's numbers (magnification and
        gradients bit-identical, RGC to float32 rounding: <= 4e-6 of the image
        maximum measured), including its geometry: output pixel ``k`` samples the
        interpolated frame at ``k/M`` input pixels (corner convention, no
        half-pixel centring), and the Roberts-cross gradients, physically centred
        on pixel corners, are interpolated as if centred on pixels. The result
        sits about +0.45 input pixel towards +x and +y from the true emitter
        positions (+0.5 px for RGC alone, +0.1 px for the magnified intensity;
        ESRRF.md section 2.3). ``"corrected"`` samples the intensity at the output
        pixel centres (centre-convention position ``(k + 0.5)/M - 0.5``) and the
        gradients at their true positions, so output pixel ``k`` is centred at
        input position ``(k + 0.5)/M - 0.5`` (pixel centres at integers).
    impl : str, optional
        Implementation of the per-frame map (see :func:`esrrf_frame`): ``None``
        the fastest, chosen once per process and input signature; ``"auto"`` the
        engine's per-call dispatch; or an implementation id.  The macro-pixel
        correction runs through the engine kernel ``macro_pixel`` alike (its
        backend part pins it); the temporal statistic is accumulated on the host
        (float64 running sums, a few maps of memory).

    Returns
    -------
    float32
        ``(H*M, W*M)`` when ``frames_per_timepoint == 0``; always
        ``(n_blocks, H*M, W*M)`` when ``frames_per_timepoint > 0`` (NanoPyx
        squeezes, so it returns 2-D for a single block).

    Notes
    -----
    The ``int(R*M)``-pixel border is exactly 0 before macro-pixel correction (the
    CPU paths of NanoPyx do the same; its OpenCL path leaves garbage there). The
    correction includes that zero border in its per-phase means, as NanoPyx.
    """
    settings = validate_batch(
        magnification=magnification,
        radius=radius,
        sensitivity=sensitivity,
        intensity_weighting=intensity_weighting,
        geometry=geometry,
        temporal=temporal,
        frames_per_timepoint=frames_per_timepoint,
        macro_pixel_correction=macro_pixel_correction,
    )
    params, mode, f_per = settings.params, settings.temporal, settings.frames_per_timepoint
    t, h, w = stack_shape(stack)
    two_d = getattr(stack, "ndim", None) == 2 or (
        getattr(stack, "shape", None) is None and np.ndim(stack) == 2
    )
    if two_d:
        stack = np.asarray(stack)[None]
    block = t if f_per == 0 or f_per > t else f_per
    n_blocks = -(-t // block)
    m = params.magnification
    out = np.empty((n_blocks, h * m, w * m), dtype=np.float32)
    frame_map = np.empty((h * m, w * m), dtype=np.float32)
    acc = TemporalAccumulator(mode, (h * m, w * m))
    for b in range(n_blocks):
        frames = range(b * block, min((b + 1) * block, t))
        image = _block_image(stack, frames, params, acc, frame_map, impl)
        if mode == "tac2" and acc.count < 2:
            logger.warning(
                "temporal='tac2' needs at least 2 frames per block; block %d has "
                "%d frame, its image is NaN (as NanoPyx)",
                b,
                acc.count,
            )
        if macro_pixel_correction:
            from livesr.kernels.macro_pixel import kernel as macro_pixel

            mp_impl = impl if impl in (None, "auto") else impl.split("-", 1)[0]
            image = _run(macro_pixel, mp_impl, (image, m), {})
        out[b] = image
        logger.debug("esrrf: block %d/%d done (%d frames)", b + 1, n_blocks, acc.count)
    return out[0] if f_per == 0 else out


def _block_image(
    stack: Any,
    frames: range,
    params: EsrrfParams,
    acc: TemporalAccumulator,
    frame_map: np.ndarray,
    impl: str | None,
) -> np.ndarray:
    """The temporal statistic of ``acc`` over the maps of ``stack[i]`` for ``i`` in
    ``frames``, read and mapped one frame at a time into ``frame_map``."""
    acc.reset()
    for i in frames:
        try:
            frame = stack[i]
            esrrf_frame(frame, params, out=frame_map, impl=impl)
        except ValueError as err:
            raise ValueError(f"stack frame {i}: {err}") from None
        acc.add(frame_map)
    return acc.result()
