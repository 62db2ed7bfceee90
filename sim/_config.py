"""Typed, frozen configuration of the simulated microscope.

All lengths are in micrometres in the *sample plane*, times in seconds or
milliseconds as the field name says, photon numbers per frame at the configured
exposure. Every config validates itself in ``__post_init__``; errors name the
field, the value and the valid range.

Default optics (``na=1.1``, ``wavelength_um=0.68``) give a Gaussian PSF with
``sigma = 0.21 * 0.68 / 1.1 = 0.1298 um = 1.30 px`` at the default
``pixel_size_um=0.1``, the PSF width eSRRF is usually tuned for. (NA 1.3 at the
same wavelength would give 1.10 px.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from livesr.sim._validate import check as _check
from livesr.sim._validate import finite as _finite
from livesr.sim._validate import int_ge as _int_ge
from livesr.sim._validate import nonneg as _nonneg
from livesr.sim._validate import pair as _pair
from livesr.sim._validate import positive as _pos

__all__ = [
    "CameraConfig",
    "DriftConfig",
    "OpticsConfig",
    "SampleConfig",
    "SimConfig",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleConfig:
    """The fluorescent sample: structures, labelling, blinking and photon budget.

    Structures are placed at random (from the simulation seed, or
    ``structure_seed``) inside the sensor's field of view enlarged by
    ``margin_um`` on every side, so drift brings structure into view rather than
    emptiness. Counts are absolute; the defaults suit a 256 x 256 px sensor
    (:meth:`scaled_to_field` adapts them to another size, as
    :meth:`SimConfig.blinking` does). Sample coordinates (y, x) in um have their
    origin at the centre of sensor pixel (0, 0).

    Attributes
    ----------
    n_filaments : int
        Number of filaments (smooth worm-like curves), >= 0.
    filament_length_um : float
        Contour length of each filament, um.
    filament_persistence_um : float
        Persistence length (stiffness) of the filaments, um.
    n_rings : int
        Number of rings (e.g. nuclear-pore-like), >= 0.
    ring_radius_um : float
        Ring radius, um.
    n_clusters : int
        Number of point clusters, >= 0.
    cluster_size : int
        Emitters per cluster.
    cluster_radius_um : float
        Standard deviation of the Gaussian spread of a cluster, um.
    points_um : tuple of (y, x)
        Extra single emitters at exact sample positions, um.
    labelling_density_per_um : float
        Emitters per um of filament or ring contour (uniformly placed at random).
    linkage_error_um : float
        Standard deviation of the label's offset from the structure, um (per axis).
    on_rate_hz, off_rate_hz, bleach_rate_hz : float
        Blinking kinetics, 1/s: off -> on, on -> off and on -> bleached. Each
        frame is one step of a Markov chain with transition probabilities
        ``1 - exp(-rate * interval)``. ``off_rate_hz=0`` (with
        ``bleach_rate_hz=0``) gives always-on emitters.
    photons_per_frame : float
        Photons emitted into the detection path per emitter per frame while on.
    background_photons : float
        Uniform background, photons per pixel per frame.
    structure_seed : int or None
        Seed of the structure placement; None uses the simulation seed.
    """

    n_filaments: int = 8
    filament_length_um: float = 15.0
    filament_persistence_um: float = 5.0
    n_rings: int = 6
    ring_radius_um: float = 0.25
    n_clusters: int = 6
    cluster_size: int = 20
    cluster_radius_um: float = 0.08
    points_um: tuple[tuple[float, float], ...] = ()
    labelling_density_per_um: float = 10.0
    linkage_error_um: float = 0.0
    margin_um: float = 1.0
    on_rate_hz: float = 20.0
    off_rate_hz: float = 80.0
    bleach_rate_hz: float = 0.05
    photons_per_frame: float = 500.0
    background_photons: float = 20.0
    structure_seed: int | None = None

    def __post_init__(self) -> None:
        c = "SampleConfig"
        for n in ("n_filaments", "n_rings", "n_clusters", "cluster_size"):
            _int_ge(c, self, n, 0)
        _pos(c, self, "filament_length_um", "filament_persistence_um", "ring_radius_um")
        _nonneg(
            c,
            self,
            "cluster_radius_um",
            "labelling_density_per_um",
            "linkage_error_um",
            "margin_um",
            "on_rate_hz",
            "off_rate_hz",
            "bleach_rate_hz",
            "photons_per_frame",
            "background_photons",
        )
        pts = self.points_um
        ok = isinstance(pts, tuple) and all(
            isinstance(p, tuple) and len(p) == 2 and all(_finite(v) for v in p)
            for p in pts
        )
        _check(ok, c, "points_um", pts, "a tuple of (y, x) tuples of finite numbers")
        s = self.structure_seed
        ok = s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 0)
        _check(ok, c, "structure_seed", s, "None or an integer >= 0")

    @classmethod
    def static_bright(cls, **overrides: Any) -> SampleConfig:
        """Dense, bright, always-on structure (registration and shift tests)."""
        kw: dict[str, Any] = {
            "n_filaments": 12,
            "labelling_density_per_um": 20.0,
            "on_rate_hz": 1.0,
            "off_rate_hz": 0.0,
            "bleach_rate_hz": 0.0,
            "photons_per_frame": 2000.0,
            "background_photons": 10.0,
        }
        kw.update(overrides)
        return cls(**kw)

    def scaled_to_field(
        self, shape: tuple[int, int], reference: int = 256
    ) -> SampleConfig:
        """Copy with structure counts scaled to a sensor of ``shape`` pixels.

        The default counts are for a ``reference x reference`` sensor; a smaller
        one would otherwise get the same structures crowded into less area.
        Counts scale with the area ratio, rounded, keeping at least one of each
        kind that was present. Filament length and labelling stay the same.
        """
        ratio = shape[0] * shape[1] / float(reference * reference)

        def n(v: int) -> int:
            return 0 if v == 0 else max(1, round(v * ratio))

        return replace(
            self,
            n_filaments=n(self.n_filaments),
            n_rings=n(self.n_rings),
            n_clusters=n(self.n_clusters),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OpticsConfig:
    """Detection optics: Gaussian approximation of the Airy PSF.

    Attributes
    ----------
    na : float
        Numerical aperture, 0 < na <= 1.7.
    wavelength_um : float
        Emission wavelength, um, in [0.2, 2].
    defocus_range_um : float
        Defocus at which the PSF sigma has grown by sqrt(2):
        ``sigma(z) = sigma0 * sqrt(1 + (z / defocus_range_um)**2)``, um > 0.
    """

    na: float = 1.1
    wavelength_um: float = 0.68
    defocus_range_um: float = 0.6

    def __post_init__(self) -> None:
        c = "OpticsConfig"
        _check(
            _finite(self.na) and 0 < self.na <= 1.7, c, "na", self.na, "0 < na <= 1.7"
        )
        w = self.wavelength_um
        _check(
            _finite(w) and 0.2 <= w <= 2.0,
            c,
            "wavelength_um",
            w,
            "0.2 <= wavelength_um <= 2.0",
        )
        _pos(c, self, "defocus_range_um")

    @property
    def psf_sigma_um(self) -> float:
        """In-focus PSF standard deviation, ``0.21 * wavelength_um / na``, um."""
        return 0.21 * self.wavelength_um / self.na

    def sigma_um(self, defocus_um: float) -> float:
        """PSF standard deviation at a defocus ``defocus_um`` (um)."""
        return self.psf_sigma_um * math.sqrt(
            1.0 + (defocus_um / self.defocus_range_um) ** 2
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraConfig:
    """sCMOS camera model.

    ``ADU = round(offset + gain * (Poisson(qe * photons) + Normal(0, read_noise_e)))``,
    clipped to [0, 65535] and stored as uint16.

    Attributes
    ----------
    shape : (int, int)
        Sensor size, rows x columns.
    pixel_size_um : float
        Pixel size in the sample plane, um.
    offset : float
        Dark offset, ADU.
    gain : float
        ADU per electron.
    read_noise_e : float
        Read noise standard deviation, electrons.
    qe : float
        Quantum efficiency in (0, 1].
    exposure_ms : float
        Exposure time, ms. Photon numbers in :class:`SampleConfig` are at this
        exposure.
    interval_ms : float
        Frame interval, ms (>= exposure_ms).
    roi : (row, col, height, width) or None
        Region of interest on the sensor; None for the full sensor.
    stamp_index : bool
        Write the frame index into pixels [0, 0] (low 16 bits) and [0, 1]
        (high 16 bits).
    noise : bool
        False renders the expected value (no shot or read noise), still offset,
        gain and quantisation: for PSF and geometry tests.
    """

    shape: tuple[int, int] = (256, 256)
    pixel_size_um: float = 0.1
    offset: float = 100.0
    gain: float = 2.0
    read_noise_e: float = 1.5
    qe: float = 0.8
    exposure_ms: float = 10.0
    interval_ms: float = 10.0
    roi: tuple[int, int, int, int] | None = None
    stamp_index: bool = False
    noise: bool = True

    def __post_init__(self) -> None:
        c = "CameraConfig"
        s = self.shape
        ok = (
            isinstance(s, tuple)
            and len(s) == 2
            and all(
                isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 16384
                for v in s
            )
        )
        _check(ok, c, "shape", s, "a (rows, cols) tuple of integers in [2, 16384]")
        _pos(c, self, "pixel_size_um", "gain", "exposure_ms", "interval_ms")
        _nonneg(c, self, "read_noise_e")
        o = self.offset
        _check(
            _finite(o) and 0 <= o <= 60000, c, "offset", o, "0 <= offset <= 60000 ADU"
        )
        q = self.qe
        _check(_finite(q) and 0 < q <= 1, c, "qe", q, "0 < qe <= 1")
        _check(
            self.interval_ms >= self.exposure_ms,
            c,
            "interval_ms",
            self.interval_ms,
            f">= exposure_ms ({self.exposure_ms})",
        )
        r = self.roi
        if r is not None:
            ok = (
                isinstance(r, tuple)
                and len(r) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
                and r[0] >= 0
                and r[1] >= 0
                and r[2] >= 2
                and r[3] >= 2
                and r[0] + r[2] <= s[0]
                and r[1] + r[3] <= s[1]
            )
            _check(
                ok,
                c,
                "roi",
                r,
                f"None or (row, col, height, width) integers inside the sensor {s}, "
                "height and width >= 2",
            )
        for n in ("stamp_index", "noise"):
            v = getattr(self, n)
            _check(isinstance(v, bool), c, n, v, "True or False")

    @property
    def roi_or_full(self) -> tuple[int, int, int, int]:
        """(row, col, height, width) of the active region."""
        return self.roi if self.roi is not None else (0, 0, *self.shape)


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftConfig:
    """Sample drift relative to the objective, seeded by the simulation seed.

    ``drift(t) = velocity * t + random_walk + amplitude * sin(2 pi t / period)``,
    where the random walk adds an independent normal step per frame.
    Pairs are (y, x) in um (per second for velocities, per frame for the walk).

    Attributes
    ----------
    velocity_um_per_s : (float, float)
        Linear drift (vy, vx), um/s.
    velocity_z_um_per_s : float
        Linear axial drift, um/s.
    random_walk_um : float
        Per-frame step standard deviation of the lateral random walk, um (each axis).
    random_walk_z_um : float
        Per-frame step standard deviation of the axial random walk, um.
    oscillation_amplitude_um : (float, float)
        Amplitude (y, x) of the slow oscillation, um.
    oscillation_z_um : float
        Amplitude of the axial oscillation, um.
    oscillation_period_s : float
        Period of the oscillation, s.
    """

    velocity_um_per_s: tuple[float, float] = (0.0, 0.0)
    velocity_z_um_per_s: float = 0.0
    random_walk_um: float = 0.0
    random_walk_z_um: float = 0.0
    oscillation_amplitude_um: tuple[float, float] = (0.0, 0.0)
    oscillation_z_um: float = 0.0
    oscillation_period_s: float = 20.0

    def __post_init__(self) -> None:
        c = "DriftConfig"
        _pair(c, self, "velocity_um_per_s")
        _pair(c, self, "oscillation_amplitude_um", nonneg=True)
        _check(
            _finite(self.velocity_z_um_per_s),
            c,
            "velocity_z_um_per_s",
            self.velocity_z_um_per_s,
            "a finite number",
        )
        _nonneg(c, self, "random_walk_um", "random_walk_z_um", "oscillation_z_um")
        _pos(c, self, "oscillation_period_s")

    @classmethod
    def none(cls) -> DriftConfig:
        """No drift."""
        return cls()

    @classmethod
    def linear(cls) -> DriftConfig:
        """Linear drift of (0.02, 0.03) um/s (y, x): 0.5 px/s at 0.1 um pixels."""
        return cls(velocity_um_per_s=(0.02, 0.03), velocity_z_um_per_s=0.005)

    @classmethod
    def random(cls) -> DriftConfig:
        """Random walk of 2 nm per frame (lateral) and 1 nm per frame (axial)."""
        return cls(random_walk_um=0.002, random_walk_z_um=0.001)

    @classmethod
    def oscillation(cls) -> DriftConfig:
        """Slow oscillation of (0.05, 0.08) um amplitude, 20 s period."""
        return cls(oscillation_amplitude_um=(0.05, 0.08), oscillation_z_um=0.02)

    @classmethod
    def all(cls) -> DriftConfig:
        """Linear + random walk + oscillation together."""
        lin, rw, osc = cls.linear(), cls.random(), cls.oscillation()
        return cls(
            velocity_um_per_s=lin.velocity_um_per_s,
            velocity_z_um_per_s=lin.velocity_z_um_per_s,
            random_walk_um=rw.random_walk_um,
            random_walk_z_um=rw.random_walk_z_um,
            oscillation_amplitude_um=osc.oscillation_amplitude_um,
            oscillation_z_um=osc.oscillation_z_um,
        )

    @property
    def is_zero(self) -> bool:
        """True when this config produces no drift at all."""
        return (
            self.velocity_um_per_s == (0.0, 0.0)
            and self.velocity_z_um_per_s == 0
            and self.random_walk_um == 0
            and self.random_walk_z_um == 0
            and self.oscillation_amplitude_um == (0.0, 0.0)
            and self.oscillation_z_um == 0
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything the simulated microscope needs; same config -> same bytes.

    Attributes
    ----------
    sample, optics, camera, drift
        The parts; see their classes.
    seed : int
        Seed of every random process (structure, blinking, drift, noise), >= 0.
    """

    sample: SampleConfig = field(default_factory=SampleConfig)
    optics: OpticsConfig = field(default_factory=OpticsConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        c = "SimConfig"
        for name, typ in (
            ("sample", SampleConfig),
            ("optics", OpticsConfig),
            ("camera", CameraConfig),
            ("drift", DriftConfig),
        ):
            v = getattr(self, name)
            _check(isinstance(v, typ), c, name, type(v).__name__, f"a {typ.__name__}")
        _int_ge(c, self, "seed", 0)

    @property
    def psf_sigma_px(self) -> float:
        """In-focus PSF sigma in camera pixels."""
        return self.optics.psf_sigma_um / self.camera.pixel_size_um

    @property
    def frame_interval_s(self) -> float:
        """Time between frames, s."""
        return self.camera.interval_ms / 1000.0

    def with_(self, **changes: Any) -> SimConfig:
        """Copy with top-level fields replaced (``sample=``, ``seed=``, ...)."""
        return replace(self, **changes)

    @classmethod
    def blinking(
        cls,
        *,
        seed: int = 0,
        shape: tuple[int, int] = (256, 256),
        drift: DriftConfig | None = None,
    ) -> SimConfig:
        """Typical eSRRF acquisition: blinking (~25 % on), sigma 1.30 px, noise on.

        Structure counts are scaled to the sensor area
        (:meth:`SampleConfig.scaled_to_field`), so small test frames keep the
        default's structure density (8 filaments, 6 rings, 6 clusters at 256 x 256).
        """
        return cls(
            seed=seed,
            sample=SampleConfig().scaled_to_field(shape),
            camera=CameraConfig(shape=shape),
            drift=drift or DriftConfig(),
        )

    @classmethod
    def static_bright(
        cls,
        *,
        seed: int = 0,
        shape: tuple[int, int] = (128, 128),
        drift: DriftConfig | None = None,
        noise: bool = True,
    ) -> SimConfig:
        """Bright, dense, always-on sample (registration / drift tests).

        12 filaments, 6 rings and 6 clusters at any sensor size (not scaled
        with the area: small frames stay richly textured for registration),
        20 labels/um.

        Emitters never switch off or bleach; 2000 photons per emitter per frame
        on 10 photons/px background, read noise 1 e-: shot-noise limited and far
        from noise dominated.
        """
        return cls(
            seed=seed,
            sample=SampleConfig.static_bright(),
            camera=CameraConfig(shape=shape, read_noise_e=1.0, noise=noise),
            drift=drift or DriftConfig(),
        )
