"""Flags shared by ``livesr run`` and ``livesr replay`` and the configuration they
make: the run configuration file (``--config``) first, then every flag given.

:func:`add_pipeline_arguments` adds the flags; :func:`config_from_args` turns the
parsed flags into a :class:`~livesr.stream._config.LivesrConfig`.  The argument
converters (``int_range`` ...) reject bad values with a message naming the range.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = [
    "RAW_FORMATS",
    "TEMPORAL_CHOICES",
    "add_pipeline_arguments",
    "config_from_args",
    "float_range",
    "frame_shape",
    "int_range",
    "positive_float",
]

TEMPORAL_CHOICES = ("avg", "var", "tac2")
RAW_FORMATS = ("ome-zarr", "ome-tiff")


def int_range(lo: int, hi: int | None = None) -> Any:
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise argparse.ArgumentTypeError(f"expected an integer {rng}, got {v}")
        return v

    return conv


def float_range(lo: float, hi: float, what: str) -> Any:
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number, got {text!r}"
            ) from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} in {lo}..{hi}, got {v}")
        return v

    return conv


def frame_shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("*", "x").split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a frame shape; expected ROWSxCOLS, e.g. 512x512"
        ) from None
    if not (16 <= rows <= 65536 and 16 <= cols <= 65536):
        raise argparse.ArgumentTypeError(
            f"{text!r}: rows and columns must be within 16..65536"
        )
    return rows, cols


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {v}")
    return v



def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``livesr run`` and ``livesr replay`` (not ``--log-level``)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML run configuration (all parameters)",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default=None,
        help="output folder",
    )
    parser.add_argument(
        "--frames",
        "-n",
        type=int_range(0),
        default=None,
        metavar="N",
        help="stop after N frames (0 = until the source ends)",
    )
    _esrrf_arguments(parser)
    parser.add_argument(
        "--latency-budget-ms",
        type=positive_float,
        default=None,
        metavar="MS",
        help="frame acquired -> image published target; windows are skipped beyond it",
    )
    parser.add_argument(
        "--raw-format", choices=RAW_FORMATS, default=None, help="raw frame file format"
    )
    parser.add_argument("--no-status", action="store_true", help="no live status line")
    parser.add_argument(
        "--keys",
        metavar="DIR",
        default=None,
        help="CURVE key folder ('livesr keys DIR') for a non-loopback --listen / "
        "--connect and the results publisher ([security] keys)",
    )
    parser.add_argument(
        "--control",
        metavar="ENDPOINT",
        default=None,
        help="control channel of the run: 'livesr ctl ENDPOINT set|status|stop' "
        "([stream] control; default an automatic ipc:// endpoint, printed at start)",
    )


def _esrrf_arguments(parser: argparse.ArgumentParser) -> None:
    """The reconstruction flags: window, stride, eSRRF parameters, drift."""
    parser.add_argument(
        "--window",
        type=int_range(2),
        default=None,
        metavar="W",
        help="frames per image (>= 2)",
    )
    parser.add_argument(
        "--stride",
        type=int_range(1),
        default=None,
        metavar="S",
        help="a new image every S frames",
    )
    parser.add_argument(
        "--magnification",
        type=int_range(1, 16),
        default=None,
        metavar="M",
        help="output pixels per input pixel per axis (1..16)",
    )
    parser.add_argument(
        "--radius",
        type=float_range(0.5, 10.0, "a radius (input px)"),
        default=None,
        metavar="R",
        help="radial gradient convergence radius, input px (0.5..10)",
    )
    parser.add_argument(
        "--sensitivity",
        type=float_range(0.0, 16.0, "a sensitivity"),
        default=None,
        metavar="S",
        help="convergence exponent (0..16)",
    )
    parser.add_argument(
        "--temporal", choices=TEMPORAL_CHOICES, default=None, help="temporal statistic"
    )
    parser.add_argument(
        "--drift", choices=("on", "off"), default=None, help="rolling drift correction"
    )
    parser.add_argument(
        "--auto-params",
        action="store_true",
        help="choose radius and sensitivity from the data while acquiring (QnR sweep "
        "in the background every [esrrf] auto_params_every windows, best pair applied "
        "live)",
    )
    parser.add_argument(
        "--error-map",
        action="store_true",
        help="SQUIRREL error map (RSP, RSE) of the published images, in the background: "
        "in each image's header (error_map) and in error_maps.npz ([stream] error_map)",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The effective :class:`~livesr.stream._config.LivesrConfig`: file, then flags."""
    from livesr.stream._config import LivesrConfig, load_config

    cfg = load_config(args.config) if args.config else LivesrConfig()
    esrrf = {
        k: getattr(args, k)
        for k in (
            "window",
            "stride",
            "magnification",
            "radius",
            "sensitivity",
            "temporal",
        )
        if getattr(args, k, None) is not None
    }
    if esrrf:
        cfg = cfg.replace("esrrf", **esrrf)
    if getattr(args, "auto_params", False):
        cfg = cfg.replace("esrrf", auto_params=True)
    if args.drift is not None:
        cfg = cfg.replace("drift", enabled=args.drift == "on")
    stream: dict[str, Any] = {}
    if args.frames is not None:
        stream["frames"] = args.frames
    if args.output is not None:
        stream["output"] = args.output
    hooks = getattr(args, "hook", None)
    if hooks:
        enabled = list(cfg.hooks.enabled)
        enabled += [h for h in hooks if h not in enabled]
        cfg = cfg.replace("hooks", enabled=tuple(enabled))
    if getattr(args, "error_map", False):
        stream["error_map"] = True
    if args.latency_budget_ms is not None:
        stream["latency_budget_ms"] = args.latency_budget_ms
    if args.raw_format is not None:
        stream["raw_format"] = args.raw_format
    if getattr(args, "control", None):
        stream["control"] = args.control
    if stream:
        cfg = cfg.replace("stream", **stream)
    if getattr(args, "keys", None):
        cfg = cfg.replace("security", keys=args.keys)
    if args.output is None and cfg.stream.output == DEFAULT_OUTPUT:
        # neither --output nor [stream] output: a folder of its own for this run, so
        # that two runs (two README examples, two hooks) never collide
        cfg = cfg.replace("stream", output=unique_output_dir())
    return cfg


#: ``[stream] output``'s default: a run given neither it nor ``--output`` gets
#: ``livesr-out-YYYYmmdd-HHMMSS`` instead (:func:`unique_output_dir`)
DEFAULT_OUTPUT = "livesr-out"


def unique_output_dir(now: float | None = None, parent: Path | None = None) -> str:
    """A new output folder name: ``livesr-out-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... when
    taken), relative to the current directory (or ``parent``)."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{DEFAULT_OUTPUT}-{stamp}"
    where = parent if parent is not None else Path.cwd()
    name, k = base, 1
    while (where / name).exists():
        k += 1
        name = f"{base}-{k}"
    return name


#: flag dest -> (config section, field): their defaults are shown by ``--help``
_DEFAULTS_SHOWN = {
    "output": ("stream", "output"),
    "frames": ("stream", "frames"),
    "window": ("esrrf", "window"),
    "stride": ("esrrf", "stride"),
    "magnification": ("esrrf", "magnification"),
    "radius": ("esrrf", "radius"),
    "sensitivity": ("esrrf", "sensitivity"),
    "temporal": ("esrrf", "temporal"),
    "drift": ("drift", "enabled"),
    "latency_budget_ms": ("stream", "latency_budget_ms"),
    "raw_format": ("stream", "raw_format"),
}


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append each flag's effective default (the configuration's) to its help, and
    the simulated camera's shape and rate to the parser's epilog."""
    from livesr.adapters.sources._sim_config import DEFAULT_SIM_SHAPE
    from livesr.sim import SimConfig
    from livesr.stream._config import LivesrConfig

    cfg = LivesrConfig()
    for action in parser._actions:
        where = _DEFAULTS_SHOWN.get(action.dest)
        if where is None or action.help in (None, argparse.SUPPRESS):
            continue
        value = getattr(getattr(cfg, where[0]), where[1])
        if action.dest == "output":
            shown = f"{DEFAULT_OUTPUT}-YYYYmmdd-HHMMSS, new per run"
        elif action.dest == "drift":
            shown = "on" if value else "off"
        elif action.dest == "frames" and value == 0:
            shown = "0, until the source ends"
        else:
            shown = str(value)
        action.help = f"{action.help} (default: {shown}; [{where[0]}] {where[1]})"
    cam = SimConfig().camera
    rate = 1e3 / cam.interval_ms if cam.interval_ms > 0 else 0.0
    parser.epilog = (
        (parser.epilog + "\n\n" if parser.epilog else "")
        + f"simulated camera (--source sim, the default): {DEFAULT_SIM_SHAPE[0]}x"
        f"{DEFAULT_SIM_SHAPE[1]} "
        f"px at {rate:g} frames/s ([sim.camera] shape, interval_ms = {cam.interval_ms:g})"
    )


def client_keys(cfg: Any) -> Any:
    """CURVE client keys of ``[security]`` (``--keys``) for ``--connect``; None
    without a key folder."""
    sec = cfg.security
    if not sec.keys:
        return None
    from livesr.stream._keys import load_client_keys

    return load_client_keys(sec.keys, sec.client)
