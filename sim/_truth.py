"""The simulator's ground truth in frame metadata: flat ``livesr_*`` keys written by
:class:`~livesr.sim._devices.SimCamera` (:func:`frame_metadata`) and parsed back
(:func:`truth_from_metadata`).  Needs no pymmcore-plus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from livesr.sim._microscope import FrameTruth

__all__ = [
    "KEY_FRAME_INDEX",
    "TRUTH_KEYS",
    "MetadataTruth",
    "frame_metadata",
    "truth_from_metadata",
]

KEY_FRAME_INDEX = "livesr_frame_index"
KEY_TIME_S = "livesr_time_s"
KEY_DISP_PX_Y = "livesr_displacement_px_y"
KEY_DISP_PX_X = "livesr_displacement_px_x"
KEY_DISP_UM_Y = "livesr_displacement_um_y"
KEY_DISP_UM_X = "livesr_displacement_um_x"
KEY_DRIFT_UM_Y = "livesr_drift_um_y"
KEY_DRIFT_UM_X = "livesr_drift_um_x"
KEY_DRIFT_UM_Z = "livesr_drift_um_z"
KEY_STAGE_X_UM = "livesr_stage_x_um"
KEY_STAGE_Y_UM = "livesr_stage_y_um"
KEY_STAGE_Z_UM = "livesr_stage_z_um"
KEY_FOCUS_OFFSET_UM = "livesr_focus_offset_um"
KEY_SIGMA_PX = "livesr_psf_sigma_px"
KEY_PIXEL_SIZE_UM = "livesr_pixel_size_um"

#: Every ground-truth key a :class:`SimCamera` frame carries.
TRUTH_KEYS: tuple[str, ...] = (
    KEY_FRAME_INDEX,
    KEY_TIME_S,
    KEY_DISP_PX_Y,
    KEY_DISP_PX_X,
    KEY_DISP_UM_Y,
    KEY_DISP_UM_X,
    KEY_DRIFT_UM_Y,
    KEY_DRIFT_UM_X,
    KEY_DRIFT_UM_Z,
    KEY_STAGE_X_UM,
    KEY_STAGE_Y_UM,
    KEY_STAGE_Z_UM,
    KEY_FOCUS_OFFSET_UM,
    KEY_SIGMA_PX,
    KEY_PIXEL_SIZE_UM,
)


def frame_metadata(truth: FrameTruth, pixel_size_um: float) -> dict[str, float | int]:
    """Flat ground-truth metadata of one frame (keys :data:`TRUTH_KEYS`)."""
    dy_px, dx_px = truth.displacement_px
    dy_um, dx_um = truth.displacement_um
    sx, sy = truth.stage_xy_um
    ddy, ddx, ddz = truth.drift_um
    return {
        KEY_FRAME_INDEX: int(truth.index),
        KEY_TIME_S: float(truth.time_s),
        KEY_DISP_PX_Y: float(dy_px),
        KEY_DISP_PX_X: float(dx_px),
        KEY_DISP_UM_Y: float(dy_um),
        KEY_DISP_UM_X: float(dx_um),
        KEY_DRIFT_UM_Y: float(ddy),
        KEY_DRIFT_UM_X: float(ddx),
        KEY_DRIFT_UM_Z: float(ddz),
        KEY_STAGE_X_UM: float(sx),
        KEY_STAGE_Y_UM: float(sy),
        KEY_STAGE_Z_UM: float(truth.stage_z_um),
        KEY_FOCUS_OFFSET_UM: float(truth.focus_offset_um),
        KEY_SIGMA_PX: float(truth.sigma_px),
        KEY_PIXEL_SIZE_UM: float(pixel_size_um),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataTruth:
    """Ground truth parsed back from a frame's metadata.

    Attributes
    ----------
    index : int
        Simulator frame index.
    time_s : float
        Simulated acquisition time, s.
    displacement_px, displacement_um : (float, float)
        True (dy, dx) sample displacement in the image relative to frame 0
        (``drift - stage``), px and um.
    drift_um : (float, float, float)
        Drift (dy, dx, dz), um.
    stage_xy_um : (float, float)
        Simulator (physical) stage position (x, y), um.
    stage_z_um : float
        Simulator focus-drive position, um.
    focus_offset_um : float
        Sample distance from the focal plane, um.
    sigma_px : float
        PSF sigma in this frame, px.
    pixel_size_um : float
        Camera pixel size in the sample plane, um.
    """

    index: int
    time_s: float
    displacement_px: tuple[float, float]
    displacement_um: tuple[float, float]
    drift_um: tuple[float, float, float]
    stage_xy_um: tuple[float, float]
    stage_z_um: float
    focus_offset_um: float
    sigma_px: float
    pixel_size_um: float


def truth_from_metadata(md: Mapping[str, Any]) -> MetadataTruth:
    """Parse the ``livesr_*`` ground truth out of one frame's metadata.

    Parameters
    ----------
    md : Mapping
        The metadata of a :class:`SimCamera` frame: the dict the camera yields, a
        ``pymmcore_plus.Metadata`` from ``popNextImageAndMD`` (string values), or
        ``frame_meta["camera_metadata"]`` of an MDA ``frameReady``.

    Raises
    ------
    KeyError
        If a ground-truth key is missing (the frame is not from a SimCamera).
    """
    missing = [k for k in TRUTH_KEYS if k not in md]
    if missing:
        raise KeyError(
            f"frame metadata lacks the simulator's ground truth {missing}; "
            "expected a frame from the simulated camera of livesr.sim.make_core"
        )

    def f(key: str) -> float:
        return float(md[key])

    return MetadataTruth(
        index=int(md[KEY_FRAME_INDEX]),
        time_s=f(KEY_TIME_S),
        displacement_px=(f(KEY_DISP_PX_Y), f(KEY_DISP_PX_X)),
        displacement_um=(f(KEY_DISP_UM_Y), f(KEY_DISP_UM_X)),
        drift_um=(f(KEY_DRIFT_UM_Y), f(KEY_DRIFT_UM_X), f(KEY_DRIFT_UM_Z)),
        stage_xy_um=(f(KEY_STAGE_X_UM), f(KEY_STAGE_Y_UM)),
        stage_z_um=f(KEY_STAGE_Z_UM),
        focus_offset_um=f(KEY_FOCUS_OFFSET_UM),
        sigma_px=f(KEY_SIGMA_PX),
        pixel_size_um=f(KEY_PIXEL_SIZE_UM),
    )
