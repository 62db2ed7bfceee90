"""The simulated microscope: sample + optics + sCMOS camera + drifting XYZ stage.

Coordinates
-----------
* Sample frame: (y, x) um, origin at the centre of sensor pixel (0, 0).
* Image (ROI) pixels: (row, col), pixel centres at integers; pixel ``r`` covers
  ``[r - 0.5, r + 0.5)``. At zero displacement, sample point (y, x) um images to
  ``(y / pixel_size_um - roi_row, x / pixel_size_um - roi_col)``.
* Displacement (dy, dx): the sample's motion in the image relative to frame 0,
  positive towards larger row / column, ``= drift - stage`` (stage in um, (y, x)).
  Emitter ``j`` is at ``positions_px[j] = pos0_px[j] + displacement_px`` in frame
  ``i``. Stage commands take effect from the next rendered frame.

Timing: frame ``i`` is exposed at ``time_s = i * interval`` (drift evaluated at
that instant, no motion blur within the exposure).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from livesr.sim._blinking import Blinking
from livesr.sim._camera import DiscreteSampler, background_adu_sampler, to_adu
from livesr.sim._config import SimConfig
from livesr.sim._render import render_expected
from livesr.sim._sample import ground_truth_histogram, place_emitters
from livesr.sim._stage import Drift

__all__ = ["FrameTruth", "Microscope", "simulate_stack"]

logger = logging.getLogger(__name__)

# independent random streams, derived from (seed, stream[, frame index])
_STREAM_STRUCTURE, _STREAM_BLINK, _STREAM_NOISE, _STREAM_DRIFT = 0, 1, 2, 3


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FrameTruth:
    """Ground truth of one rendered frame (compared by identity: it holds arrays).

    Attributes
    ----------
    index : int
        Frame index (0-based, in rendering order).
    time_s : float
        Acquisition time of the frame, s (``index * interval``).
    displacement_um : (float, float)
        True (dy, dx) displacement of the sample in the image relative to frame 0,
        um; positive = towards larger row / column; ``drift - stage``.
    displacement_px : (float, float)
        The same in camera pixels (``displacement_um / pixel_size_um``).
    drift_um : (float, float, float)
        Drift (dy, dx, dz) of the sample relative to the objective, um.
    stage_xy_um : (float, float)
        Stage position (x, y) um used for this frame.
    stage_z_um : float
        Z (focus drive) position, um.
    focus_offset_um : float
        Sample distance from the focal plane, ``drift_z - stage_z``, um.
    sigma_px : float
        PSF standard deviation in this frame (defocus included), px.
    on : numpy.ndarray
        (n,) bool on-state of every emitter in this frame (read-only).
    positions_px : numpy.ndarray
        (n, 2) float64 emitter positions (y, x) in this frame's ROI pixel
        coordinates (centres at integers); may lie outside the image (read-only).
    """

    index: int
    time_s: float
    displacement_um: tuple[float, float]
    displacement_px: tuple[float, float]
    drift_um: tuple[float, float, float]
    stage_xy_um: tuple[float, float]
    stage_z_um: float
    focus_offset_um: float
    sigma_px: float
    on: np.ndarray
    positions_px: np.ndarray


class Microscope:
    """Simulated fluctuation microscope with exact ground truth (thread-safe).

    Parameters
    ----------
    config : SimConfig, optional
        Full configuration; default ``SimConfig()`` (blinking eSRRF-like sample,
        256 x 256 px, no drift).

    Notes
    -----
    One internal lock serialises rendering and stage access, so a camera thread
    and a stage thread may call concurrently. Identical configs give identical
    frames and truth (bit for bit), provided the same sequence of calls.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        cfg = config if config is not None else SimConfig()
        if not isinstance(cfg, SimConfig):
            raise TypeError(f"config must be a SimConfig, got {type(cfg).__name__}")
        self._cfg = cfg
        self._lock = threading.RLock()
        cam = cfg.camera
        ps = cam.pixel_size_um
        r0, c0, h, w = cam.roi_or_full
        self._shape = (h, w)
        sseed = (
            cfg.sample.structure_seed
            if cfg.sample.structure_seed is not None
            else cfg.seed
        )
        srng = np.random.default_rng([sseed, _STREAM_STRUCTURE])
        field_um = ((cam.shape[0] - 1) * ps, (cam.shape[1] - 1) * ps)
        self._emitters_um = place_emitters(cfg.sample, field_um, srng)
        self._emitters_um.setflags(write=False)
        self._pos0_px = self._emitters_um / ps - np.array([r0, c0], dtype=np.float64)
        self._pos0_px.setflags(write=False)
        self._dt = cfg.frame_interval_s
        self._blink = Blinking(
            len(self._emitters_um),
            cfg.sample,
            self._dt,
            np.random.default_rng([cfg.seed, _STREAM_BLINK]),
        )
        self._drift = Drift(cfg.drift, np.random.default_rng([cfg.seed, _STREAM_DRIFT]))
        self._index = 0
        self._t = 0.0
        self._stage_xy = (0.0, 0.0)
        self._stage_z = 0.0
        self._exposure_ms = cam.exposure_ms
        self._table: DiscreteSampler | None = None
        self._table_ready = False
        logger.debug(
            "microscope: %d emitters, %dx%d px, sigma %.3f px",
            len(self._emitters_um),
            h,
            w,
            cfg.psf_sigma_px,
        )

    def __repr__(self) -> str:
        h, w = self._shape
        return (
            f"Microscope({h}x{w} px, {self.n_emitters} emitters, "
            f"seed={self._cfg.seed}, next frame {self.frame_index})"
        )

    # -- properties ---------------------------------------------------------
    @property
    def config(self) -> SimConfig:
        """The configuration."""
        return self._cfg

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the frames (the ROI)."""
        return self._shape

    @property
    def pixel_size_um(self) -> float:
        """Pixel size in the sample plane, um."""
        return self._cfg.camera.pixel_size_um

    @property
    def frame_index(self) -> int:
        """Index of the next frame to be rendered."""
        with self._lock:
            return self._index

    @property
    def emitter_positions_um(self) -> np.ndarray:
        """(n, 2) float64 emitter (y, x) positions, sample frame, um (read-only)."""
        return self._emitters_um

    @property
    def n_emitters(self) -> int:
        """Number of emitters."""
        return int(self._emitters_um.shape[0])

    @property
    def exposure_ms(self) -> float:
        """Current exposure, ms."""
        with self._lock:
            return self._exposure_ms

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Change the exposure; photon numbers scale linearly with it.

        The frame interval becomes ``max(interval_ms, exposure_ms)``; blinking
        steps stay one per frame.
        """
        if not (exposure_ms > 0 and np.isfinite(exposure_ms)):
            raise ValueError(
                f"exposure_ms={exposure_ms!r} is out of range; expected > 0"
            )
        with self._lock:
            self._exposure_ms = float(exposure_ms)
            self._table, self._table_ready = None, False

    # -- stage --------------------------------------------------------------
    def set_xy_um(self, x: float, y: float) -> None:
        """Move the XY stage to (x, y) um; the sample moves by (-y, -x) in the image."""
        with self._lock:
            self._stage_xy = (float(x), float(y))

    def get_xy_um(self) -> tuple[float, float]:
        """Current XY stage position (x, y), um."""
        with self._lock:
            return self._stage_xy

    def set_z_um(self, z: float) -> None:
        """Move the Z (focus) drive to ``z`` um."""
        with self._lock:
            self._stage_z = float(z)

    def get_z_um(self) -> float:
        """Current Z position, um."""
        with self._lock:
            return self._stage_z

    # -- rendering ----------------------------------------------------------
    def render_into(self, buffer: np.ndarray) -> FrameTruth:
        """Render the next frame into ``buffer`` and advance one frame interval.

        Parameters
        ----------
        buffer : numpy.ndarray
            Writable (h, w) uint16 array, filled in place.

        Returns
        -------
        FrameTruth
            Ground truth of the rendered frame.
        """
        if (
            not isinstance(buffer, np.ndarray)
            or buffer.dtype != np.uint16
            or buffer.shape != self._shape
            or not buffer.flags.writeable
        ):
            got = (
                f"{buffer.dtype} {buffer.shape}"
                if isinstance(buffer, np.ndarray)
                else type(buffer).__name__
            )
            raise ValueError(
                f"render_into needs a writable uint16 array of shape {self._shape}; "
                f"got {got}"
            )
        with self._lock:
            return self._render(buffer)

    def _render(self, buffer: np.ndarray) -> FrameTruth:
        cfg = self._cfg
        cam = cfg.camera
        ps = cam.pixel_size_um
        i = self._index
        t = self._t
        dy, dx, dz = self._drift.at(i, t)
        sx, sy = self._stage_xy
        disp_um = (dy - sy, dx - sx)
        disp_px = (disp_um[0] / ps, disp_um[1] / ps)
        focus = dz - self._stage_z
        sigma_px = cfg.optics.sigma_um(focus) / ps
        on = self._blink.on
        pos = self._pos0_px + np.array(disp_px)
        scale = self._exposure_ms / cam.exposure_ms
        signal = render_expected(
            pos[on], cfg.sample.photons_per_frame * scale, self._shape, sigma_px
        )
        background = cfg.sample.background_photons * scale
        rng = np.random.default_rng([cfg.seed, _STREAM_NOISE, i]) if cam.noise else None
        if cam.noise and not self._table_ready:
            self._table = background_adu_sampler(cam.qe * background, cam)
            self._table_ready = True
        to_adu(signal, background, cam, rng, self._table, buffer)
        if cam.stamp_index:
            buffer[0, 0] = i & 0xFFFF
            buffer[0, 1] = (i >> 16) & 0xFFFF
        on_copy = on.copy()
        on_copy.setflags(write=False)
        pos.setflags(write=False)
        truth = FrameTruth(
            index=i,
            time_s=t,
            displacement_um=disp_um,
            displacement_px=disp_px,
            drift_um=(dy, dx, dz),
            stage_xy_um=self._stage_xy,
            stage_z_um=self._stage_z,
            focus_offset_um=focus,
            sigma_px=sigma_px,
            on=on_copy,
            positions_px=pos,
        )
        self._blink.step()
        self._index = i + 1
        self._t = t + max(cam.interval_ms, self._exposure_ms) / 1000.0
        return truth

    def next_frame(self) -> tuple[np.ndarray, FrameTruth]:
        """Render the next frame into a new (h, w) uint16 array."""
        buf = np.empty(self._shape, dtype=np.uint16)
        return buf, self.render_into(buf)

    def acquire(self, n: int) -> tuple[np.ndarray, list[FrameTruth]]:
        """Render ``n`` consecutive frames.

        Returns
        -------
        stack : numpy.ndarray
            (n, h, w) uint16.
        truths : list of FrameTruth
            One per frame.
        """
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n={n!r} is out of range; expected an integer >= 0")
        stack = np.empty((int(n), *self._shape), dtype=np.uint16)
        truths = [self.render_into(stack[k]) for k in range(int(n))]
        return stack, truths

    def ground_truth_image(self, upsample: int = 8) -> np.ndarray:
        """High-resolution image of the labelled structure at zero displacement.

        Parameters
        ----------
        upsample : int
            High-resolution pixels per camera pixel along each axis (1..64).

        Returns
        -------
        numpy.ndarray
            (h * upsample, w * upsample) float32 count of emitters per
            high-resolution pixel (all emitters, bleached or not). High-res pixel
            ``i`` covers ROI pixel coordinates
            ``[i / upsample - 0.5, (i + 1) / upsample - 0.5)``: camera pixel ``r``
            is high-res pixels ``r * upsample`` .. ``r * upsample + upsample - 1``,
            so summing ``upsample x upsample`` blocks gives the camera grid.
        """
        if not isinstance(upsample, (int, np.integer)) or not 1 <= upsample <= 64:
            raise ValueError(
                f"upsample={upsample!r} is out of range; expected an integer in [1, 64]"
            )
        return ground_truth_histogram(self._pos0_px, self._shape, int(upsample))


def simulate_stack(
    n: int, config: SimConfig | None = None
) -> tuple[np.ndarray, list[FrameTruth]]:
    """Render ``n`` frames of a fresh :class:`Microscope`.

    Returns
    -------
    stack : numpy.ndarray
        (n, h, w) uint16.
    truths : list of FrameTruth
    """
    return Microscope(config).acquire(n)
