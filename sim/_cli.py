"""``livesr sim``: write a simulated acquisition and its ground truth to a folder.

Examples::

    livesr sim --output demo --frames 200
    livesr sim --output demo --frames 1000 --format ome-zarr --drift all --seed 3
    livesr sim --output demo --config sim.toml --shape 128 128

The base configuration comes from ``--preset`` (default ``blinking``), then
``--config FILE`` (TOML, see :mod:`livesr.sim._toml`), then the individual flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livesr.sim._config import SimConfig

NAME = "sim"
HELP = "write a simulated acquisition and its ground truth to a folder"

logger = logging.getLogger(__name__)

_DRIFTS = ("none", "linear", "random", "oscillation", "all")
_PRESETS = ("blinking", "static-bright")
_FORMATS = (
    "ome-tiff",
    "ome-zarr",
)  # = livesr.sim._io.FORMATS (kept literal: cheap parser)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0, got {text!r}"
        ) from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``livesr sim`` flags to ``parser``."""
    parser.add_argument(
        "--output", "-o", required=True, metavar="DIR", help="output folder"
    )
    parser.add_argument(
        "--frames",
        "-n",
        type=_positive_int,
        default=200,
        metavar="N",
        help="frames (default 200)",
    )
    parser.add_argument(
        "--seed", type=_nonneg_int, default=None, help="random seed (default 0)"
    )
    parser.add_argument(
        "--format",
        choices=_FORMATS,
        default="ome-tiff",
        help="frame file format (default ome-tiff)",
    )
    parser.add_argument(
        "--shape",
        type=_positive_int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="sensor rows and columns (default 256 256)",
    )
    parser.add_argument(
        "--drift", choices=_DRIFTS, default=None, help="drift preset (default none)"
    )
    parser.add_argument(
        "--preset",
        choices=_PRESETS,
        default="blinking",
        help="base sample (default blinking)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="SimConfig file: TOML, or a config.json written by livesr sim",
    )
    parser.add_argument(
        "--stamp-index",
        action="store_true",
        help="write the frame index into pixels [0, 0:2]",
    )
    parser.add_argument(
        "--chunk",
        type=_positive_int,
        default=64,
        metavar="N",
        help="frames per write (default 64)",
    )
    parser.add_argument(
        "--upsample",
        type=_positive_int,
        default=8,
        metavar="K",
        help="ground-truth image upsampling (default 8)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_config(args: argparse.Namespace) -> SimConfig:
    """Effective :class:`~livesr.sim.SimConfig` from the parsed flags."""
    from livesr.sim._config import DriftConfig, SimConfig
    from livesr.sim._toml import load_config

    # preset structure counts scale with --shape (see SampleConfig.scaled_to_field)
    shape = tuple(args.shape) if args.shape is not None else (256, 256)
    if args.preset == "static-bright":
        cfg = SimConfig.static_bright(shape=shape)
    else:
        cfg = SimConfig.blinking(shape=shape)
    if args.config is not None:
        cfg = load_config(args.config, base=cfg)
    cam = cfg.camera
    if args.shape is not None:
        cam = dataclasses.replace(cam, shape=tuple(args.shape), roi=None)
    if args.stamp_index:
        cam = dataclasses.replace(cam, stamp_index=True)
    changes: dict[str, Any] = {"camera": cam}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.drift is not None:
        changes["drift"] = getattr(DriftConfig, args.drift)()
    return dataclasses.replace(cfg, **changes)


def run(args: argparse.Namespace) -> int:
    """Run ``livesr sim``; returns 0 on success."""
    from tqdm import tqdm

    from livesr.sim._io import write_acquisition
    from livesr.sim._microscope import Microscope

    cfg = build_config(args)
    scope = Microscope(cfg)
    logger.info(
        "simulating %d frames of %dx%d px, %d emitters, seed %d",
        args.frames,
        *scope.shape,
        scope.n_emitters,
        cfg.seed,
    )
    with tqdm(
        total=args.frames,
        file=sys.stderr,
        disable=args.no_progress,
        unit="frame",
        desc="sim",
    ) as bar:
        target = write_acquisition(
            scope,
            args.output,
            args.frames,
            fmt=args.format,
            chunk=args.chunk,
            upsample=args.upsample,
            overwrite=args.overwrite,
            progress=bar.update,
        )
    logger.info("wrote %s and ground truth to %s", target, args.output)
    return 0
