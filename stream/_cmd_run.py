"""``livesr run``: acquire (simulated microscope), persist, reconstruct live, publish.

Examples::

    livesr run --output demo --frames 200 --window 20 --stride 10 --magnification 2
    livesr run --config run.toml                      # every parameter in one file
    livesr run --config run.toml --radius 2 --drift off   # flags override the file
    livesr run --listen ipc:///tmp/livesr.ipc --output out   # processing only
    livesr run --connect ipc:///tmp/livesr.ipc --frames 500  # acquisition only
    livesr run --source mm-sim --hook drift-lock --frames 2000   # closed loop
    livesr run --source mm --mm-config scope.cfg --mm-path /opt/Micro-Manager
    livesr run --hook stop-when-converged --frames 5000 --window 20 --stride 20

Sources: ``sim`` renders the simulated camera straight into the link; ``mm-sim`` runs
the same simulated microscope as Micro-Manager devices (``UniMMCore``: camera, XY and
focus stage, :func:`livesr.sim.make_core`) through pymmcore-plus sequence acquisition,
so feedback hooks can move its stage; ``mm`` loads a Micro-Manager configuration
(``--mm-config FILE.cfg``, C++ adapters from ``--mm-path`` or pymmcore-plus's
discovery, ``#py`` Python devices; :mod:`livesr.adapters.sources.mm_config`) and
acquires from its camera the same way.  ``sim`` and ``mm-sim`` also write
``sim_truth.csv`` (per-frame ground truth: true displacement, drift, stage, photons;
:mod:`livesr.adapters.sources.sim_truth`).

Feedback hooks (``--hook NAME``, repeatable, or ``[hooks] enabled``): ``drift-lock``
(needs ``--source mm-sim`` or ``mm``), ``stop-when-converged``, or
``package.module:callable``.
They receive every published window off the processing thread; stage commands go
through a :class:`~livesr.adapters.feedback.MicroscopeController` with the
``[hooks.limits]`` limits.  ``summary.json`` reports them under ``hooks`` (calls,
failures, slow calls, drops per hook; ``stop``: who stopped the acquisition, why, and
the frames, time and photons saved against ``--frames``).

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
HELP = "acquire (simulated microscope, Micro-Manager) and reconstruct eSRRF images live"

logger = logging.getLogger(__name__)

TEMPORAL_CHOICES = ("avg", "var", "tac2")
SOURCES = ("sim", "mm-sim", "mm")
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


def _frame_shape(text: str) -> tuple[int, int]:
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
        "--auto-params",
        action="store_true",
        help="choose radius and sensitivity from the data while acquiring (QnR sweep "
        "in the background every [esrrf] auto_params_every windows, best pair applied "
        "live)",
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
        "--source",
        choices=SOURCES,
        default="sim",
        help="frame source: sim (simulated camera), mm-sim (the simulated "
        "microscope as Micro-Manager devices through pymmcore-plus, with stages) or "
        "mm (a Micro-Manager configuration, --mm-config) (default sim)",
    )
    parser.add_argument(
        "--mm-config",
        metavar="FILE",
        default=None,
        help="--source mm: Micro-Manager configuration file (.cfg; livesr[mm])",
    )
    parser.add_argument(
        "--mm-path",
        metavar="DIR",
        default=None,
        help="--source mm: Micro-Manager installation holding the device adapters "
        "(default: pymmcore-plus's discovery; not needed for Python devices only)",
    )
    parser.add_argument(
        "--mda",
        metavar="FILE",
        default=None,
        help="--source mm: run this useq-schema MDA sequence (YAML/JSON) instead of "
        "a sequence acquisition",
    )
    parser.add_argument(
        "--hook",
        action="append",
        metavar="NAME",
        default=None,
        help="feedback hook run on every result (repeatable): drift-lock (needs "
        "--source mm-sim or mm), stop-when-converged, or package.module:callable; "
        "parameters in the [hooks] config section",
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
        "--bank",
        type=_int_range(0, 100_000),
        default=0,
        metavar="N",
        help="simulated source: render N frames before acquiring and cycle them, "
        "for camera rates beyond the renderer's (default 0: render every frame)",
    )
    parser.add_argument(
        "--frame-shape",
        type=_frame_shape,
        default=None,
        metavar="ROWSxCOLS",
        help="with --listen: the camera's frame shape, so the memory plan is checked "
        "and the kernels are timed and compiled at that shape before acquisition",
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
    if (problem := _check_mm(args)) is not None:
        return _usage_error(problem)
    try:
        cfg = config_from_args(args)
        sim = (
            sim_config_from(cfg)
            if args.listen is None and args.source != "mm"
            else None
        )
    except ValueError as exc:
        return _usage_error(str(exc))
    if (problem := _check_hooks(cfg, args)) is not None:
        return _usage_error(problem)
    if args.frame_shape is not None and args.listen is None:
        return _usage_error(
            "--frame-shape applies to --listen; the simulated camera's shape is "
            "[sim.camera] shape"
        )
    if args.bank and (args.source != "sim" or args.listen is not None):
        return _usage_error("--bank applies to the simulated source (--source sim)")
    if args.no_pace and args.source != "sim":
        return _usage_error(
            f"--no-pace applies to --source sim; the {args.source} camera runs at "
            "[sim.camera] interval_ms"
        )
    if args.viewer:
        if args.connect is not None:
            return _usage_error("--viewer needs the pipeline in this process (not --connect)")
        from livesr.adapters.sinks.napari_viewer import viewer_unavailable_reason

        if (reason := viewer_unavailable_reason()) is not None:
            return _usage_error(f"--viewer: {reason}")
    if args.connect is not None:
        return _run_connect(cfg, sim, args)
    return _run_pipeline(cfg, sim, args)


def _check_hooks(cfg: Any, args: argparse.Namespace) -> str | None:
    """Why the run's hooks cannot run with these flags (None: they can)."""
    from livesr.adapters.feedback._builtin import HOOKS_NEEDING_STAGE, make_hooks

    names = cfg.hooks.enabled
    if not names:
        return None
    if args.listen is not None or args.connect is not None:
        where = "--listen" if args.listen is not None else "--connect"
        return (
            f"--hook / [hooks] enabled ({', '.join(names)}) need the source and the "
            f"pipeline in this process, not {where}"
        )
    stage = [n for n in names if n in HOOKS_NEEDING_STAGE]
    if stage and args.source not in ("mm-sim", "mm"):
        return (
            f"hook {stage[0]} moves the stage: it needs a source through a "
            "pymmcore-plus core with an XY stage (--source mm-sim or mm), not "
            f"--source {args.source}"
        )
    try:
        make_hooks(names, cfg.hooks)  # user hooks import now: errors before acquiring
    except ValueError as exc:
        return str(exc)
    return None


def _check_mm(args: argparse.Namespace) -> str | None:
    """Why the Micro-Manager flags cannot run (None: they can)."""
    mm_flags = any(v is not None for v in (args.mm_config, args.mm_path, args.mda))
    if args.source != "mm" and mm_flags:
        return "--mm-config / --mm-path / --mda apply to --source mm"
    if args.mda is not None:
        from pathlib import Path

        if args.frames is not None:
            return "--frames does not apply to --mda (the MDA sequence sets the frames)"
        if not Path(args.mda).is_file():
            return (
                f"--mda {args.mda!r} does not exist; expected a useq-schema MDA "
                "sequence (YAML or JSON)"
            )
    if args.source == "mm" and args.listen is not None:
        return "--source mm acquires; with --listen this process only processes"
    if args.source == "mm" and args.mm_config is None:
        return "--source mm needs --mm-config FILE.cfg (a Micro-Manager configuration)"
    if args.source in ("mm", "mm-sim") and args.listen is None:
        from livesr.adapters.sources.mm_config import pymmcore_plus_missing

        if (missing := pymmcore_plus_missing()) is not None:
            return f"--source {args.source}: {missing}"
    return None


def _mm_frames(cfg: Any, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """Frames to acquire and the ``mda`` keyword of ``source()`` (``--mda``: the
    sequence sets the length)."""
    if args.mda is not None:
        return 0, {"mda": args.mda}
    return cfg.stream.frames, {}


def _mm_session(args: argparse.Namespace, sim: Any) -> Any:
    """The run's pymmcore-plus core (``--source mm-sim`` or ``mm``), not yet open."""
    if args.source == "mm":
        from livesr.adapters.sources.mm_config import MMConfigSession

        return MMConfigSession(args.mm_config, mm_path=args.mm_path)
    return _MMSim(sim)


def _run_connect(cfg: Any, sim: Any, args: argparse.Namespace) -> int:
    if args.source in ("mm-sim", "mm"):
        import zmq

        from livesr.adapters.sources.mm_config import MMConfigError

        ctx = zmq.Context()
        try:
            try:
                mm = _mm_session(args, sim).open()
            except MMConfigError as exc:
                return _usage_error(str(exc))
            with mm:
                frames, mda = _mm_frames(cfg, args)
                src = mm.source(args.connect, frames, ctx, **mda).start()
                try:
                    while src.join(0.2) is None:
                        pass
                except KeyboardInterrupt:
                    src.stop()
                    src.join(35.0)
                summary = src.summary or {}
        finally:
            ctx.term()
    else:
        from livesr.adapters.sources.simulated import SimulatedSource

        src = SimulatedSource(
            sim,
            args.connect,
            frames=cfg.stream.frames,
            pace=not args.no_pace,
            bank=args.bank,
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

    from livesr.stream._pipeline import READY_TIMEOUT_S, Pipeline
    from livesr.stream._status import StatusReporter
    from livesr.stream._transport import TransportError

    ctx = zmq.Context()
    token = secrets.token_hex(4)
    in_process = args.listen is None
    # [stream] endpoint: where the ingest binds (the in-process source connects there)
    endpoint = args.listen or cfg.stream.endpoint or f"inproc://livesr-ingest-{token}"
    mm = _mm_session(args, sim) if in_process and args.source != "sim" else None
    truth = None
    if in_process and sim is not None:
        from livesr.adapters.sources.sim_truth import SimTruthRecorder

        truth = SimTruthRecorder(sim.camera)
    runner = None
    try:
        if mm is not None:
            from livesr.adapters.sources.mm_config import MMConfigError

            try:
                mm.open()
            except MMConfigError as exc:
                ctx.term()
                return _usage_error(str(exc))
        runner = _hook_runner(cfg, mm)
    except BaseException:
        if mm is not None:
            mm.close()
        ctx.term()
        raise
    pipe = Pipeline(
        cfg,
        endpoint=endpoint,
        context=ctx,
        hooks=runner,
        frame_shape=(
            sim.camera.roi_or_full[2:]
            if sim is not None
            else mm.frame_shape
            if mm is not None
            else args.frame_shape
        ),
    )
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
        # kernels loaded and implementations timed before the first frame arrives
        pipe.ready.wait(READY_TIMEOUT_S)
        if mm is not None:
            frames, mda = _mm_frames(cfg, args)
            src = mm.source(
                pipe.endpoint,
                frames,
                ctx,
                stop_event=pipe.stop_requested,
                on_frame=truth,
                **mda,
            ).start()
        elif in_process:
            from livesr.adapters.sources.simulated import SimulatedSource

            # a stop-only controller's stop (stop-when-converged) ends acquisition
            stop = pipe.stop_requested
            if runner is not None and runner.controller is not None:
                stop = runner.controller.stop_requested
                _chain(pipe.stop_requested, stop)
            src = SimulatedSource(
                sim,
                pipe.endpoint,
                frames=cfg.stream.frames,
                pace=not args.no_pace,
                stop_event=stop,
                context=ctx,
                on_frame=truth,
                bank=args.bank,
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
        if runner is not None and runner.controller is not None:
            runner.controller.close()
        if mm is not None:
            mm.close()
        ctx.term()
        if truth is not None and pipe.output.is_dir() and truth.frames:
            summary = _add_source_report(summary, pipe.output, truth, args.source)
    from livesr.stream._run_session import result_text  # shared with livesr replay

    line = f"livesr run: {result_text(summary)}"
    stop = (summary.get("hooks") or {}).get("stop")
    if stop:
        line += f"\nlivesr run: stopped by hook {stop['by']}: {stop['reason']}"
        if stop.get("frames_saved") is not None:
            line += (
                f"; {stop['frames_saved']} of {stop['frames_planned']} frames saved"
            )
    from livesr.stream._run_session import run_failures

    reasons = run_failures(summary)
    for reason in reasons:
        line += f"\nlivesr run: error: {reason}"
    assert status is not None
    status.final(line)
    return 1 if reasons else 0


def _chain(source: Any, target: Any) -> None:
    """Set ``target`` when ``source`` is set (a raw-store failure stops the source)."""
    import threading

    def watch() -> None:
        while not target.is_set():
            if source.wait(0.1):
                target.set()
                return

    threading.Thread(target=watch, name="livesr-stop-chain", daemon=True).start()


class _MMSim:
    """The run's simulated microscope as Micro-Manager devices (``--source mm-sim``)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.core: Any = None

    def open(self) -> _MMSim:
        from livesr.sim import make_core

        if self.core is None:
            # 64 MiB holds >= 500 frames of 256 x 256 behind a slow link; the camera
            # stops (never overwrites) when it is full
            self.core = make_core(self.sim, buffer_mb=64)
        return self

    def __enter__(self) -> _MMSim:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.core is not None:
            self.core.close()
            self.core = None

    def source(
        self,
        endpoint: str,
        frames: int,
        ctx: Any,
        *,
        stop_event: Any = None,
        on_frame: Any = None,
    ) -> Any:
        from livesr.adapters.sources.mmcore_push import MMCorePushSource

        cam = self.sim.camera
        return MMCorePushSource(
            self.core,
            endpoint,
            frames=frames,
            interval_ms=max(cam.interval_ms, cam.exposure_ms),
            stream="mm-sim",
            stop_event=stop_event,
            context=ctx,
            on_frame=on_frame,
        )


def _hook_runner(cfg: Any, mm: Any) -> Any:
    """The run's HookRunner (None without hooks): a MicroscopeController over the
    mm-sim / mm core, else a stop-only controller."""
    names = cfg.hooks.enabled
    if not names:
        return None
    from livesr.adapters.feedback import HookRunner, MicroscopeController
    from livesr.adapters.feedback._builtin import make_hooks
    from livesr.adapters.feedback._controller import StopOnlyController

    hooks = make_hooks(names, cfg.hooks)
    if mm is not None:
        ctl: Any = MicroscopeController(mm.core, cfg.hooks.limits)
    else:
        ctl = StopOnlyController()
    logger.info(
        "feedback hooks: %s (controller: %s)", ", ".join(names), type(ctl).__name__
    )
    return HookRunner(hooks, ctl, slow_call_s=cfg.hooks.slow_call_s)


def _add_source_report(
    summary: dict[str, Any], output: Any, truth: Any, source: str
) -> dict[str, Any]:
    """Write ``sim_truth.csv``; add ``source`` (and the photons a hook's stop saved)
    to the summary and rewrite ``summary.json``."""
    from livesr.stream._results import write_summary

    try:
        path = truth.write(output / "sim_truth.csv")
    except OSError as exc:
        logger.error("could not write the ground truth into %s: %s", output, exc)
        return summary
    summary = dict(summary)
    ppf = truth.photons_per_frame
    summary["source"] = {
        "kind": source,
        "frames_recorded": truth.frames,
        "photons": truth.photons,
        "photons_per_frame": ppf,
        "truth": path.name,
    }
    stop = (summary.get("hooks") or {}).get("stop")
    if stop and stop.get("frames_saved") is not None:
        stop["photons_saved"] = stop["frames_saved"] * ppf
    summary["files"] = {**summary.get("files", {}), "truth": path.name}
    try:
        write_summary(output / "summary.json", summary)
    except OSError as exc:
        logger.error("could not rewrite the run summary in %s: %s", output, exc)
    return summary
