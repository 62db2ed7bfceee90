"""``livesr run``: acquire (simulated microscope), persist, reconstruct live, publish.

Examples::

    livesr run --output demo --frames 200 --window 20 --stride 10 --magnification 2
    livesr run --config run.toml                      # every parameter in one file
    livesr run --config run.toml --radius 2 --drift off   # flags override the file
    livesr run --listen ipc:///tmp/livesr.ipc --output out   # processing only
    livesr run --connect ipc:///tmp/livesr.ipc --frames 500  # acquisition only

Writes into ``--output``: ``raw.ome.zarr`` (or ``raw.ome.tif``), ``sr.ome.zarr``,
``windows.csv``, ``drift.csv``, ``summary.json`` and ``config.toml`` (the effective
configuration).  A live status line goes to stderr when it is a terminal
(``--no-status`` turns it off); one final line says where the results are.

:func:`add_pipeline_arguments` and :func:`config_from_args` are shared with other
commands (``livesr replay``).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from typing import Any

NAME = "run"
HELP = "acquire from the simulated microscope and reconstruct eSRRF images live"

logger = logging.getLogger(__name__)

TEMPORAL_CHOICES = ("avg", "var", "tac2")
SOURCES = ("sim",)
RAW_FORMATS = ("ome-zarr", "ome-tiff")
#: simulated sensor when the configuration's [sim.camera] gives no shape
DEFAULT_SIM_SHAPE = (64, 64)


def _int_range(lo: int, hi: int | None = None) -> Any:
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


def _float_range(lo: float, hi: float, what: str) -> Any:
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


def _positive_float(text: str) -> float:
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
        help="output folder (default [stream] output)",
    )
    parser.add_argument(
        "--frames",
        "-n",
        type=_int_range(0),
        default=None,
        metavar="N",
        help="stop after N frames (0 = until the source ends)",
    )
    parser.add_argument(
        "--window",
        type=_int_range(2),
        default=None,
        metavar="W",
        help="frames per image (>= 2)",
    )
    parser.add_argument(
        "--stride",
        type=_int_range(1),
        default=None,
        metavar="S",
        help="a new image every S frames",
    )
    parser.add_argument(
        "--magnification",
        type=_int_range(1, 16),
        default=None,
        metavar="M",
        help="output pixels per input pixel per axis (1..16)",
    )
    parser.add_argument(
        "--radius",
        type=_float_range(0.5, 10.0, "a radius (input px)"),
        default=None,
        metavar="R",
        help="radial gradient convergence radius, input px (0.5..10)",
    )
    parser.add_argument(
        "--sensitivity",
        type=_float_range(0.0, 16.0, "a sensitivity"),
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
        "--latency-budget-ms",
        type=_positive_float,
        default=None,
        metavar="MS",
        help="frame acquired -> image published target; windows are skipped beyond it",
    )
    parser.add_argument(
        "--raw-format", choices=RAW_FORMATS, default=None, help="raw frame file format"
    )
    parser.add_argument("--no-status", action="store_true", help="no live status line")


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
    if args.drift is not None:
        cfg = cfg.replace("drift", enabled=args.drift == "on")
    stream: dict[str, Any] = {}
    if args.frames is not None:
        stream["frames"] = args.frames
    if args.output is not None:
        stream["output"] = args.output
    if args.latency_budget_ms is not None:
        stream["latency_budget_ms"] = args.latency_budget_ms
    if args.raw_format is not None:
        stream["raw_format"] = args.raw_format
    if stream:
        cfg = cfg.replace("stream", **stream)
    return cfg


def sim_config_from(cfg: Any) -> Any:
    """The run's simulated microscope: blinking preset at the [sim] shape + [sim]."""
    from livesr.sim import SimConfig
    from livesr.sim._toml import config_from_mapping

    table = dict(cfg.sim)
    shape = tuple(table.get("camera", {}).get("shape", DEFAULT_SIM_SHAPE))
    if len(shape) != 2:
        raise ValueError(
            f"[sim.camera] shape={list(shape)!r} is not valid; expected [rows, cols]"
        )
    base = SimConfig.blinking(shape=(int(shape[0]), int(shape[1])))
    return config_from_mapping(table, base=base)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``livesr run`` flags to ``parser``."""
    add_pipeline_arguments(parser)
    parser.add_argument(
        "--source", choices=SOURCES, default="sim", help="frame source (default sim)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--listen",
        metavar="ENDPOINT",
        default=None,
        help="processing only: bind the ingest here and wait for a source",
    )
    where.add_argument(
        "--connect",
        metavar="ADDRESS",
        default=None,
        help="acquisition only: push the source's frames to a pipeline listening there",
    )
    parser.add_argument(
        "--no-pace",
        action="store_true",
        help="simulated source: send as fast as accepted, not at the camera rate",
    )
    parser.add_argument(
        "--viewer",
        action="store_true",
        help="show the live results in napari (livesr[viewer]); closing the window "
        "stops acquisition and finishes the run",
    )


def _usage_error(message: str) -> int:
    sys.stderr.write(f"livesr run: error: {message}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 success, 1 failure (e.g. raw store error), 2 bad arguments."""
    try:
        cfg = config_from_args(args)
        sim = sim_config_from(cfg) if args.listen is None else None
    except ValueError as exc:
        return _usage_error(str(exc))
    if args.viewer:
        if args.connect is not None:
            return _usage_error("--viewer needs the pipeline in this process (not --connect)")
        from livesr.adapters.sinks.napari_viewer import viewer_unavailable_reason

        if (reason := viewer_unavailable_reason()) is not None:
            return _usage_error(f"--viewer: {reason}")
    if args.connect is not None:
        return _run_connect(cfg, sim, args)
    return _run_pipeline(cfg, sim, args)


def _run_connect(cfg: Any, sim: Any, args: argparse.Namespace) -> int:
    from livesr.adapters.sources.simulated import SimulatedSource

    src = SimulatedSource(
        sim, args.connect, frames=cfg.stream.frames, pace=not args.no_pace
    )
    try:
        summary = src.run()
    except KeyboardInterrupt:
        src.stop()
        summary = src.summary or {}
    acked = summary.get("frames_acked", 0)
    gaps = summary.get("frames_in_gaps", 0)
    sys.stderr.write(
        f"livesr run: sent {summary.get('frames_acquired', 0)} frame(s) to "
        f"{args.connect}: "
        f"{acked} acknowledged, {gaps} in gaps, {summary.get('frames_unacked', 0)} "
        "unacknowledged\n"
    )
    if summary.get("stop_reason"):  # the pipeline sent "stop"
        sys.stderr.write(
            f"livesr run: stopped by the pipeline: {summary['stop_reason']}\n"
        )
    return 0 if summary.get("frames_unacked", 1) == 0 else 1


def _run_pipeline(cfg: Any, sim: Any, args: argparse.Namespace) -> int:
    import zmq

    from livesr.stream._pipeline import Pipeline
    from livesr.stream._status import StatusReporter
    from livesr.stream._transport import TransportError

    ctx = zmq.Context()
    token = secrets.token_hex(4)
    in_process = args.listen is None
    endpoint = args.listen if not in_process else f"inproc://livesr-ingest-{token}"
    pipe = Pipeline(cfg, endpoint=endpoint, context=ctx)
    src = None
    status = None
    try:
        try:
            pipe.start()
        except (FileExistsError, ValueError) as exc:
            return _usage_error(str(exc))
        except TransportError as exc:  # e.g. the --listen endpoint is taken
            sys.stderr.write(f"livesr run: error: {exc}\n")
            return 1
        status = StatusReporter(
            pipe.snapshot, enabled=False if args.no_status else None
        ).start()
        pipe.ready.wait(30.0)  # kernels loaded before the first frame arrives
        if in_process:
            from livesr.adapters.sources.simulated import SimulatedSource

            src = SimulatedSource(
                sim,
                pipe.endpoint,
                frames=cfg.stream.frames,
                pace=not args.no_pace,
                stop_event=pipe.stop_requested,
                context=ctx,
            ).start()
        else:
            logger.warning(
                "listening on %s; results published on %s",
                pipe.endpoint,
                pipe.publish_endpoint,
            )
        try:
            if getattr(args, "viewer", False):
                from livesr.adapters.sinks.napari_viewer import run_viewer

                # Qt needs the main thread; pipeline and source keep running in theirs
                run_viewer(pipe.publish_endpoint, title=f"livesr run: {pipe.output}")
                if src is not None and src.join(0) is None:
                    logger.warning("viewer closed: stopping acquisition, finishing the run")
                    src.stop()
            if src is not None:
                while src.join(0.2) is None:
                    pass
                if src.error is not None:
                    logger.error("the source failed: %s", src.error)
                if pipe.source_ended.wait(5.0):
                    while not pipe.wait(0.5):
                        pass
            else:
                while not pipe.wait(0.5):
                    if 0 < cfg.stream.frames <= pipe.snapshot()["frames_persisted"]:
                        pipe.stop_requested.set()  # --frames: tell the source to stop
        except KeyboardInterrupt:
            logger.warning("interrupted: stopping acquisition, finishing the run")
            if src is not None:
                src.stop()
                src.join(35.0)
    finally:
        if status is not None:
            status.stop()
        summary = pipe.close()
        ctx.term()
    from livesr.stream._run_session import result_text  # shared with livesr replay

    line = f"livesr run: {result_text(summary)}"
    if summary.get("error"):
        line += f"\nlivesr run: error: {summary['error']}"
    assert status is not None
    status.final(line)
    return 1 if summary.get("error") or summary.get("processing_error") else 0
