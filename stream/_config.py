"""The pipeline's configuration: typed, frozen dataclasses loaded from one TOML file.

One file holds every parameter of a run (the BiaPy lesson: one shareable file per
workflow); command-line flags override fields; the effective configuration is written
next to the output (:func:`to_toml`) so a run can be repeated exactly::

    [esrrf]
    window = 50            # frames per reconstruction
    stride = 10            # a new image every `stride` frames
    magnification = 5
    radius = 1.5           # input px
    sensitivity = 1.0
    temporal = "avg"       # avg | var | tac2

    [drift]
    enabled = true
    block = 10             # frames per drift estimate

    [stream]
    frames = 500           # stop after N frames (0 = until the source ends)
    output = "livesr-out"
    latency_budget_ms = 500.0

    [sim]                  # the simulated microscope (livesr.sim TOML layout)
    seed = 1
    [sim.camera]
    shape = [128, 128]

    [hooks]                # feedback hooks (livesr.adapters.feedback)
    enabled = ["drift-lock"]   # drift-lock, stop-when-converged, "pkg.mod:callable"
    slow_call_s = 0.5      # a hook call longer than this is reported as slow
    [hooks.drift_lock]     # DriftLockConfig
    threshold_px = 0.1
    [hooks.stop_when_converged]   # ConvergedConfig
    rel_change = 0.05
    [hooks.limits]         # FeedbackLimits: every stage command passes them
    max_step_xy_um = 1.0

Unknown sections or keys are errors naming the key and listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livesr.stream._hook_registry import check_hook_name, hook_config

__all__ = [
    "DriftCorrectionConfig",
    "EsrrfConfig",
    "HooksConfig",
    "LivesrConfig",
    "StreamConfig",
    "config_from_mapping",
    "load_config",
    "to_toml",
]

TEMPORAL_MODES = ("avg", "var", "tac2")
GEOMETRIES = ("nanopyx", "corrected")
RAW_FORMATS = ("ome-zarr", "ome-tiff")
INGEST_MODES = ("auto", "process", "thread")
_CFG = dict(frozen=True, slots=True, kw_only=True)


def _fail(section: str, name: str, value: Any, valid: str) -> None:
    raise ValueError(f"[{section}] {name}={value!r} is out of range; expected {valid}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(**_CFG)
class EsrrfConfig:
    """Sliding-window eSRRF parameters (see :func:`livesr.kernels.esrrf`).

    Attributes
    ----------
    window : int
        Frames per reconstruction, >= 2.
    stride : int
        A new image every ``stride`` frames, >= 1.
    magnification : int
        Output pixels per input pixel per axis, 1..16.
    radius : float
        Radial-gradient-convergence radius in input pixels, 0.5..10.
    sensitivity : float
        Exponent applied to the convergence map when > 1, 0..16.
    temporal : str
        ``"avg"``, ``"var"`` or ``"tac2"``.
    intensity_weighting, macro_pixel_correction : bool
        As NanoPyx.
    geometry : str
        ``"nanopyx"`` (bit-compatible) or ``"corrected"`` (no +0.45 px offset).
    auto_params : bool
        Choose radius and sensitivity from the data during acquisition: every
        ``auto_params_every`` published windows, the QnR sweep
        (:class:`livesr.kernels.AutoParams`, NanoPyx's sweep) runs in the
        background on the newest window's raw frames and its best pair is applied
        as a live parameter change (recorded with the frame it took effect at).
    auto_params_every : int
        Published windows between two sweeps, >= 1.
    """

    window: int = 50
    stride: int = 10
    magnification: int = 5
    radius: float = 1.5
    sensitivity: float = 1.0
    temporal: str = "avg"
    intensity_weighting: bool = True
    macro_pixel_correction: bool = True
    geometry: str = "nanopyx"
    auto_params: bool = False
    auto_params_every: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.auto_params, bool):
            _fail("esrrf", "auto_params", self.auto_params, "true or false")
        if not (_is_int(self.auto_params_every) and self.auto_params_every >= 1):
            _fail("esrrf", "auto_params_every", self.auto_params_every, "an integer >= 1")
        if not (_is_int(self.window) and self.window >= 2):
            _fail("esrrf", "window", self.window, "an integer >= 2")
        if not (_is_int(self.stride) and self.stride >= 1):
            _fail("esrrf", "stride", self.stride, "an integer >= 1")
        if not (_is_int(self.magnification) and 1 <= self.magnification <= 16):
            _fail("esrrf", "magnification", self.magnification, "an integer in 1..16")
        if not (_is_num(self.radius) and 0.5 <= self.radius <= 10):
            _fail("esrrf", "radius", self.radius, "a number in 0.5..10 (input px)")
        if not (_is_num(self.sensitivity) and 0 <= self.sensitivity <= 16):
            _fail("esrrf", "sensitivity", self.sensitivity, "a number in 0..16")
        if self.temporal not in TEMPORAL_MODES:
            _fail("esrrf", "temporal", self.temporal, f"one of {', '.join(TEMPORAL_MODES)}")
        if self.geometry not in GEOMETRIES:
            _fail("esrrf", "geometry", self.geometry, f"one of {', '.join(GEOMETRIES)}")
        for name in ("intensity_weighting", "macro_pixel_correction"):
            if not isinstance(getattr(self, name), bool):
                _fail("esrrf", name, getattr(self, name), "true or false")


@dataclass(**_CFG)
class DriftCorrectionConfig:
    """Rolling drift estimation (see :class:`livesr.kernels.RollingDrift`).

    :meth:`block_frames` is the block used for a camera frame interval.

    Attributes
    ----------
    enabled : bool
        Estimate drift and undo it inside the magnification.
    block : int
        Frames averaged per estimate, >= 1 (at least; see ``block_ms``).
    block_ms : float
        Shortest time an estimate averages, ms (0: ``block`` frames whatever the
        rate).  A fast camera gets longer blocks: at 2 000 frames/s the default 25 ms
        makes 50 frames per estimate (40 registrations/s instead of 200; sample drift
        moves nanometres in that time, and each estimate sees five times the
        photons).  At 100 frames/s it is ``block``.
    max_drift_px : float
        Largest displacement searched between a block and its reference, px, > 0.
    region_px : int
        Drift is measured on the central ``region_px`` x ``region_px`` pixels of
        the frame (0: the whole frame), >= 64 when set.  The default 512 leaves
        frames up to 512² whole and keeps the cost of a 2048² camera at that of a
        512² one (a sample translation moves the centre as it moves the frame;
        262 144 pixels hold photons enough for a 0.05 px estimate).  The shift found
        is applied to the whole frame.
    """

    enabled: bool = True
    block: int = 10
    block_ms: float = 25.0
    max_drift_px: float = 10.0
    region_px: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            _fail("drift", "enabled", self.enabled, "true or false")
        if not (_is_int(self.block) and self.block >= 1):
            _fail("drift", "block", self.block, "an integer >= 1")
        if not (_is_num(self.block_ms) and self.block_ms >= 0):
            _fail("drift", "block_ms", self.block_ms, "a number >= 0 (ms; 0 = block frames)")
        if not (_is_num(self.max_drift_px) and self.max_drift_px > 0):
            _fail("drift", "max_drift_px", self.max_drift_px, "a number > 0 (px)")
        if not (_is_int(self.region_px) and (self.region_px == 0 or self.region_px >= 64)):
            _fail("drift", "region_px", self.region_px, "0 (whole frame) or an integer >= 64 (px)")

    def region(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        """Rows and columns of a frame of ``shape`` the drift is measured on."""
        out = []
        for n in (int(shape[0]), int(shape[1])):
            r = self.region_px
            if r <= 0 or n <= r:
                out.append(slice(0, n))
            else:
                a = (n - r) // 2
                out.append(slice(a, a + r))
        return out[0], out[1]

    def block_frames(self, interval_s: float | None) -> int:
        """Frames per estimate at this frame interval (None: unknown -> ``block``)."""
        if interval_s is None or not interval_s > 0 or self.block_ms <= 0:
            return self.block
        return max(self.block, int(round(self.block_ms / 1e3 / interval_s)))


@dataclass(**_CFG)
class StreamConfig:
    """Run-level settings.

    Attributes
    ----------
    frames : int
        Stop after this many frames; 0 = until the source ends.
    output : str
        Output folder.
    latency_budget_ms : float
        Target latency from frame acquired to image published, ms, > 0.
    ring_mb : float
        Memory of the processing ring, MiB; 0 (default) sizes it from the frame
        shape, the window, the batch and the latency budget
        (:func:`livesr.stream._persist.ring_frames`), within ``memory_budget_mb``.
    memory_budget_mb : float
        Host memory the run may hold for frames waiting for processing, MiB; 0
        (default) = a quarter of the physical memory, at most 16 GiB.  A window that
        cannot fit is refused before anything is acquired, naming what to change.
    max_batch : int
        Most frames processed in one step when several wait (one kernel launch,
        one Python step), 1..1024.
    sr_budget_mb_s : float
        SR images saved to ``sr.ome.zarr`` per second at most, MB/s (every image is
        published; beyond the budget every k-th is saved, see
        :mod:`livesr.stream._resultwriter`); 0 = no limit.
    resolution_interval_s : float
        Live resolution (decorrelation analysis of the newest SR image, in a worker
        process): at most one image per this many seconds; 0 = off.
    credit : int
        Frames in flight on the lossless link, 1..1024.
    raw_format : str
        ``"ome-zarr"`` or ``"ome-tiff"`` for the persisted raw frames.
    endpoint : str
        Ingest endpoint (``ipc://``, ``tcp://``, ``inproc://``); empty = automatic.
    publish : str
        Results PUB endpoint; empty = automatic (ipc in the output folder).
    control : str
        Control channel endpoint (``livesr ctl ENDPOINT set|status|stop``; a
        non-loopback one needs ``[security] keys``); empty = automatic (ipc beside
        the publisher).
    error_map : bool
        Compute the SQUIRREL error map (RSP, RSE) of published images in the
        background (``--error-map``; :mod:`livesr.stream._errormap_live`).
    ingest : str
        Where the ingest and the raw-frame persistence run: ``"process"`` (their own
        process, frames shared with processing through shared memory; what fast
        cameras need: no GIL shared with processing), ``"thread"`` (a thread of the
        processing process), or ``"auto"`` (default): the process, except for
        ``inproc://`` endpoints and raw stores given as objects, which cannot cross
        a process boundary.
    """

    frames: int = 0
    output: str = "livesr-out"
    latency_budget_ms: float = 500.0
    ring_mb: float = 0.0
    memory_budget_mb: float = 0.0
    max_batch: int = 16
    sr_budget_mb_s: float = 200.0
    resolution_interval_s: float = 1.0
    credit: int = 64
    raw_format: str = "ome-zarr"
    endpoint: str = ""
    publish: str = ""
    control: str = ""
    ingest: str = "auto"
    error_map: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.error_map, bool):
            _fail("stream", "error_map", self.error_map, "true or false")
        if self.ingest not in INGEST_MODES:
            _fail("stream", "ingest", self.ingest, f"one of {', '.join(INGEST_MODES)}")
        if not (_is_int(self.frames) and self.frames >= 0):
            _fail("stream", "frames", self.frames, "an integer >= 0 (0 = until the source ends)")
        if not (isinstance(self.output, str) and self.output):
            _fail("stream", "output", self.output, "a non-empty folder path")
        if not (_is_num(self.latency_budget_ms) and self.latency_budget_ms > 0):
            _fail("stream", "latency_budget_ms", self.latency_budget_ms, "a number > 0 (ms)")
        if not (_is_num(self.ring_mb) and self.ring_mb >= 0):
            _fail("stream", "ring_mb", self.ring_mb, "a number >= 0 (MiB; 0 = sized automatically)")
        if not (_is_num(self.memory_budget_mb) and self.memory_budget_mb >= 0):
            _fail(
                "stream", "memory_budget_mb", self.memory_budget_mb,
                "a number >= 0 (MiB; 0 = a quarter of the physical memory)",
            )
        if not (_is_num(self.resolution_interval_s) and self.resolution_interval_s >= 0):
            _fail(
                "stream", "resolution_interval_s", self.resolution_interval_s,
                "a number >= 0 (s; 0 = no live resolution)",
            )
        if not (_is_int(self.max_batch) and 1 <= self.max_batch <= 1024):
            _fail("stream", "max_batch", self.max_batch, "an integer in 1..1024")
        if not (_is_num(self.sr_budget_mb_s) and self.sr_budget_mb_s >= 0):
            _fail("stream", "sr_budget_mb_s", self.sr_budget_mb_s, "a number >= 0 (MB/s; 0 = no limit)")
        if not (_is_int(self.credit) and 1 <= self.credit <= 1024):
            _fail("stream", "credit", self.credit, "an integer in 1..1024")
        if self.raw_format not in RAW_FORMATS:
            _fail("stream", "raw_format", self.raw_format, f"one of {', '.join(RAW_FORMATS)}")
        for name in ("endpoint", "publish", "control"):
            if not isinstance(getattr(self, name), str):
                _fail("stream", name, getattr(self, name), "a string")


def _registered_default(table: str) -> Callable[[], Any]:
    """Default factory of a ``[hooks.<table>]`` field: the registered settings class's
    default (:mod:`livesr.stream._hook_registry`; the hooks' package registers it)."""
    return lambda: hook_config(table).default()


#: sub-tables of [hooks] (their classes are registered by name with the hook registry)
_HOOK_TABLES = ("drift_lock", "stop_when_converged", "event_trigger", "limits")


@dataclass(**_CFG)
class HooksConfig:
    """Feedback hooks of ``livesr run`` (see :mod:`livesr.adapters.feedback`).

    Attributes
    ----------
    enabled : tuple of str
        Hooks to run, in order: ``"drift-lock"``, ``"stop-when-converged"`` or a
        user hook ``"package.module:callable"`` (``--hook NAME`` adds to them).
    slow_call_s : float
        A hook call longer than this is counted and logged as slow, s, > 0.
    drift_lock : DriftLockConfig
        ``[hooks.drift_lock]``: threshold_px, gain, max_sigma_px, settle_s,
        settle_results.
    stop_when_converged : ConvergedConfig
        ``[hooks.stop_when_converged]``: rel_change, windows, min_results,
        accumulate.
    event_trigger : EventTriggerConfig
        ``[hooks.event_trigger]``: metric, above / below, frames, exposure_ms,
        cooldown_s, max_triggers, wait_s.
    limits : FeedbackLimits
        ``[hooks.limits]``: max_step_xy_um, max_step_z_um, x_range_um, y_range_um,
        z_range_um (``[low, high]``), max_moves_per_s, max_events_per_call.
    """

    enabled: tuple[str, ...] = ()
    slow_call_s: float = 0.5
    drift_lock: Any = field(default_factory=_registered_default("drift_lock"))
    stop_when_converged: Any = field(
        default_factory=_registered_default("stop_when_converged")
    )
    event_trigger: Any = field(default_factory=_registered_default("event_trigger"))
    limits: Any = field(default_factory=_registered_default("limits"))

    def __post_init__(self) -> None:
        en = self.enabled
        if isinstance(en, str) or not isinstance(en, (list, tuple)):
            _fail("hooks", "enabled", en, "a list of hook names")
        for name in en:
            try:
                check_hook_name(name)
            except ValueError as exc:
                raise ValueError(f"[hooks] enabled: {exc}") from None
        dup = sorted({n for n in en if list(en).count(n) > 1})
        if dup:
            _fail("hooks", "enabled", list(en), f"each hook once (repeated: {dup})")
        object.__setattr__(self, "enabled", tuple(en))
        if not (_is_num(self.slow_call_s) and self.slow_call_s > 0):
            _fail("hooks", "slow_call_s", self.slow_call_s, "a number > 0 (s)")
        for attr in _HOOK_TABLES:
            cls = hook_config(attr).cls
            if not isinstance(getattr(self, attr), cls):
                _fail("hooks", attr, getattr(self, attr), f"a {cls.__name__}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], base: HooksConfig) -> HooksConfig:
        """``[hooks]`` (with its sub-tables) on top of ``base``; errors name the key."""
        changes: dict[str, Any] = {}
        valid = ["enabled", "slow_call_s", *_HOOK_TABLES]
        for key, value in table.items():
            if key not in valid:
                raise ValueError(
                    f"unknown key hooks.{key}; valid keys of [hooks]: "
                    f"{', '.join(valid)}"
                )
            if key not in _HOOK_TABLES:
                changes[key] = value
                continue
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"[hooks.{key}] must be a table, got {type(value).__name__}"
                )
            current = getattr(base, key)
            keys = [f.name for f in dataclasses.fields(current)]
            for k in value:
                if k not in keys:
                    raise ValueError(
                        f"unknown key hooks.{key}.{k}; valid keys of [hooks.{key}]: "
                        f"{', '.join(keys)}"
                    )
            sub = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            try:
                changes[key] = dataclasses.replace(current, **sub)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"[hooks.{key}] {exc}") from None
            assert isinstance(changes[key], hook_config(key).cls)
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML/JSON serialisable)."""
        out: dict[str, Any] = {
            "enabled": list(self.enabled),
            "slow_call_s": self.slow_call_s,
        }
        for attr in _HOOK_TABLES:
            out[attr] = _plain(dataclasses.asdict(getattr(self, attr)))
        return out


@dataclass(**_CFG)
class SecurityConfig:
    """CURVE keys for links that leave the host (``livesr keys DIR`` creates them).

    Attributes
    ----------
    keys : str
        Key folder; empty (default): no keys, so only ipc and loopback TCP
        endpoints are allowed.  The listening side (``--listen``, the results
        publisher) loads ``DIR/server.key_secret`` and accepts the client keys in
        ``DIR/authorized_clients``; the connecting side (``--connect``) loads
        ``DIR/<client>.key_secret`` and the server's ``DIR/server.key``.
    client : str
        Name of this machine's client key pair in ``keys`` (default ``"client"``).
    """

    keys: str = ""
    client: str = "client"

    def __post_init__(self) -> None:
        if not isinstance(self.keys, str):
            _fail("security", "keys", self.keys, "a folder path (a string)")
        if self.keys and not Path(self.keys).is_dir():
            _fail(
                "security", "keys", self.keys,
                "an existing key folder (create one with 'livesr keys DIR')",
            )
        if not (isinstance(self.client, str) and self.client):
            _fail("security", "client", self.client, "a client key name")


@dataclass(**_CFG)
class LivesrConfig:
    """Everything a run needs; ``sim`` is the simulated microscope's TOML table."""

    esrrf: EsrrfConfig = field(default_factory=EsrrfConfig)
    drift: DriftCorrectionConfig = field(default_factory=DriftCorrectionConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    sim: Mapping[str, Any] = field(default_factory=dict)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def replace(self, section: str, **changes: Any) -> LivesrConfig:
        """Return a copy with fields of one section changed (validated)."""
        current = getattr(self, section)
        if section == "sim":
            return dataclasses.replace(self, sim={**current, **changes})
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **changes)})

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML/JSON serialisable)."""
        return {
            "esrrf": dataclasses.asdict(self.esrrf),
            "drift": dataclasses.asdict(self.drift),
            "stream": dataclasses.asdict(self.stream),
            "sim": _plain(self.sim),
            "hooks": self.hooks.to_dict(),
            "security": dataclasses.asdict(self.security),
        }


_SECTIONS: dict[str, type] = {
    "esrrf": EsrrfConfig,
    "drift": DriftCorrectionConfig,
    "stream": StreamConfig,
    "security": SecurityConfig,
}


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_from_mapping(data: Mapping[str, Any], base: LivesrConfig | None = None) -> LivesrConfig:
    """Build a :class:`LivesrConfig` from nested mappings on top of ``base``."""
    cfg = base if base is not None else LivesrConfig()
    valid = ["esrrf", "drift", "stream", "sim", "hooks", "security"]
    for section, table in data.items():
        if section not in valid:
            raise ValueError(f"unknown section [{section}]; valid sections: {', '.join(valid)}")
        if not isinstance(table, Mapping):
            raise ValueError(f"[{section}] must be a table, got {type(table).__name__}")
        if section == "sim":
            cfg = dataclasses.replace(cfg, sim={**cfg.sim, **table})
            continue
        if section == "hooks":
            hooks = HooksConfig.from_mapping(table, cfg.hooks)
            cfg = dataclasses.replace(cfg, hooks=hooks)
            continue
        keys = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        for key in table:
            if key not in keys:
                raise ValueError(
                    f"unknown key {section}.{key}; valid keys of [{section}]: {', '.join(keys)}"
                )
        cfg = cfg.replace(section, **dict(table))
    return cfg


def load_config(path: str | Path, base: LivesrConfig | None = None) -> LivesrConfig:
    """Read one TOML file (see the module docstring) into a :class:`LivesrConfig`."""
    import tomllib

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read config file {p}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from exc
    try:
        return config_from_mapping(data, base)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{p}: {exc}") from exc


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_table(prefix: str, table: Mapping[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) and v is not None}
    if prefix:
        out.append(f"[{prefix}]")
    out.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
    out.append("")
    for k, v in table.items():
        if isinstance(v, Mapping):
            _toml_table(f"{prefix}.{k}" if prefix else k, v, out)


def to_toml(cfg: LivesrConfig) -> str:
    """The effective configuration as TOML text (round-trips through :func:`load_config`)."""
    out: list[str] = ["# livesr effective configuration", ""]
    for section, table in cfg.to_dict().items():
        _toml_table(section, table, out)
    return "\n".join(out)
