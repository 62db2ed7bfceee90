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

:func:`~livesr.stream.cli._run_args.add_pipeline_arguments` and
:func:`~livesr.stream.cli._run_args.config_from_args` are shared with ``livesr
replay``; the sources, hooks and ground truth wired around the pipeline are in
:mod:`livesr.stream.cli._run_sources`.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

from livesr.stream.cli._run_args import (
    add_pipeline_arguments,
    client_keys,
    config_from_args,
    frame_shape,
    int_range,
)
from livesr.stream.cli._run_sources import (
    add_source_report,
    chain,
    check_hooks,
    check_mm,
    hook_runner,
    mm_frames,
    mm_session,
)

NAME = "run"
HELP = "acquire (simulated microscope, Micro-Manager) and reconstruct eSRRF images live"

logger = logging.getLogger(__name__)

SOURCES = ("sim", "mm-sim", "mm")
#: ``--viewer``: how long acquisition waits for the viewer's window, s (napari loads
#: in 3-6 s on the 2-core VM; a cold disk or a loaded machine takes longer)
VIEWER_READY_TIMEOUT_S = 60.0


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
        type=int_range(0, 100_000),
        default=0,
        metavar="N",
        help="simulated source: render N frames before acquiring and cycle them, "
        "for camera rates beyond the renderer's (default 0: render every frame)",
    )
    parser.add_argument(
        "--frame-shape",
        type=frame_shape,
        default=None,
        metavar="ROWSxCOLS",
        help="with --listen: the camera's frame shape, so the memory plan is checked "
        "and the kernels are timed and compiled at that shape before acquisition",
    )
    parser.add_argument(
        "--viewer",
        action="store_true",
        help="napari (livesr[viewer]) in its own process: live SR and raw frames; "
        "closing it stops acquisition (in a terminal it stays open after the run)",
    )


def _usage_error(message: str) -> int:
    sys.stderr.write(f"livesr run: error: {message}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 success, 1 failure (e.g. raw store error), 2 bad arguments."""
    from livesr.adapters.sources._sim_config import sim_config_from

    if (problem := check_mm(args)) is not None:
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
    if (problem := check_hooks(cfg, args)) is not None:
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
            return _usage_error(
                "--viewer needs the pipeline in this process (not --connect)"
            )
        from livesr.adapters.sinks.napari_viewer import viewer_unavailable_reason

        if (reason := viewer_unavailable_reason()) is not None:
            return _usage_error(f"--viewer: {reason}")
    if args.connect is not None:
        return _run_connect(cfg, sim, args)
    return _run_pipeline(cfg, sim, args)


def _run_connect(cfg: Any, sim: Any, args: argparse.Namespace) -> int:
    if args.source in ("mm-sim", "mm"):
        import zmq

        from livesr.adapters.sources.mm_config import MMConfigError

        ctx = zmq.Context()
        try:
            try:
                mm = mm_session(args, sim).open()
            except MMConfigError as exc:
                return _usage_error(str(exc))
            with mm:
                frames, mda = mm_frames(cfg, args)
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
            curve=client_keys(cfg),
        )
        try:
            summary = src.run()
        except KeyboardInterrupt:
            src.stop()
            summary = src.summary or {}
    acked = summary.get("frames_acked", 0)
    gaps = summary.get("frames_in_gaps", 0)
    # acknowledged is not persisted when the pipeline's raw store failed: the
    # pipeline's own count (its answer to "end") says how many it could not write
    remote = summary.get("ingest") or {}
    lost = int(remote.get("frames_lost_at_pipeline") or 0)
    sys.stderr.write(
        f"livesr run: sent {summary.get('frames_acquired', 0)} frame(s) to "
        f"{args.connect}: "
        f"{acked} acknowledged, {gaps} in gaps, {summary.get('frames_unacked', 0)} "
        "unacknowledged\n"
    )
    if lost:
        sys.stderr.write(
            f"livesr run: error: {lost} acknowledged frame(s) could not be written by "
            f"the pipeline ({acked - lost} persisted there); see its summary.json\n"
        )
    if summary.get("stop_reason"):  # the pipeline sent "stop"
        sys.stderr.write(
            f"livesr run: stopped by the pipeline: {summary['stop_reason']}\n"
        )
    return 0 if summary.get("frames_unacked", 1) == 0 and not lost else 1


def _run_pipeline(cfg: Any, sim: Any, args: argparse.Namespace) -> int:
    """Process here (``--listen``: frames come from elsewhere; else the source runs
    in this process too), wait for the run's end, write where the results are."""
    import zmq

    from livesr.stream._pipeline import READY_TIMEOUT_S
    from livesr.stream._run_session import run_failures
    from livesr.stream._status import StatusReporter
    from livesr.stream._transport import TransportError

    run = _Run(cfg, sim, args, zmq.Context())
    if (problem := run.open_scope()) is not None:
        return _usage_error(problem)
    pipe = run.pipeline()
    status = None
    try:
        try:
            pipe.start()
        except (FileExistsError, ValueError) as exc:
            return _usage_error(str(exc))
        except TransportError as exc:  # e.g. the --listen endpoint is taken
            sys.stderr.write(f"livesr run: error: {exc}\n")
            return 1
        # where to change parameters, ask for the status or stop (livesr ctl)
        sys.stderr.write(
            f"livesr run: control: livesr ctl {pipe.control_endpoint} status|set|stop\n"
        )
        run.open_viewer(pipe)
        status = StatusReporter(
            pipe.snapshot,
            enabled=False if args.no_status else None,
            total_frames=cfg.stream.frames,
        ).start()
        # kernels loaded and implementations timed before the first frame arrives
        pipe.ready.wait(READY_TIMEOUT_S)
        run.wait_viewer()
        run.follow(pipe, run.start_source(pipe))
    finally:
        if status is not None:
            status.stop()
        summary = run.close(pipe)
    reasons = run_failures(summary)
    assert status is not None
    status.final(_final_line(summary, reasons))
    run.finish_viewer()
    return 1 if reasons else 0


@dataclass
class _Run:
    """One ``livesr run`` with the pipeline in this process: what it opens around
    the pipeline (Micro-Manager core, ground truth recorder, hook runner), closed
    by :meth:`close` after the pipeline."""

    cfg: Any
    sim: Any
    args: argparse.Namespace
    ctx: Any
    mm: Any = None
    truth: Any = None
    runner: Any = None
    viewer: Any = None  # the ViewerProcess of --viewer
    viewer_seen_closed: bool = False

    def open_scope(self) -> str | None:
        """Open the Micro-Manager core and build the hook runner; returns a usage
        problem (the context is terminated then) or None."""
        in_process = self.args.listen is None
        if in_process and self.args.source != "sim":
            self.mm = mm_session(self.args, self.sim)
        if in_process and self.sim is not None:
            from livesr.adapters.sources.sim_truth import SimTruthRecorder

            self.truth = SimTruthRecorder(self.sim.camera)
        try:
            if self.mm is not None:
                from livesr.adapters.sources.mm_config import MMConfigError

                try:
                    self.mm.open()
                except MMConfigError as exc:
                    self.ctx.term()
                    return str(exc)
            self.runner = hook_runner(self.cfg, self.mm)
        except BaseException:
            if self.mm is not None:
                self.mm.close()
            self.ctx.term()
            raise
        return None

    def pipeline(self) -> Any:
        """The run's :class:`~livesr.stream._pipeline.Pipeline`, not started."""
        from livesr.stream._pipeline import Pipeline

        token = secrets.token_hex(4)
        # [stream] endpoint: where the ingest binds (the in-process source connects there)
        endpoint = (
            self.args.listen
            or self.cfg.stream.endpoint
            or f"inproc://livesr-ingest-{token}"
        )
        if self.sim is not None:
            shape = self.sim.camera.roi_or_full[2:]
        elif self.mm is not None:
            shape = self.mm.frame_shape
        else:
            shape = self.args.frame_shape
        return Pipeline(
            self.cfg,
            endpoint=endpoint,
            context=self.ctx,
            hooks=self.runner,
            frame_shape=shape,
        )

    def start_source(self, pipe: Any) -> Any:
        """Start the in-process source into ``pipe`` (None with ``--listen``)."""
        if self.mm is not None:
            frames, mda = mm_frames(self.cfg, self.args)
            return self.mm.source(
                pipe.endpoint,
                frames,
                self.ctx,
                stop_event=pipe.stop_requested,
                on_frame=self.truth,
                **mda,
            ).start()
        if self.args.listen is None:
            from livesr.adapters.sources.simulated import SimulatedSource

            # a stop-only controller's stop (stop-when-converged) ends acquisition
            stop = pipe.stop_requested
            if self.runner is not None and self.runner.controller is not None:
                stop = self.runner.controller.stop_requested
                chain(pipe.stop_requested, stop)
            return SimulatedSource(
                self.sim,
                pipe.endpoint,
                frames=self.cfg.stream.frames,
                pace=not self.args.no_pace,
                stop_event=stop,
                context=self.ctx,
                on_frame=self.truth,
                bank=self.args.bank,
            ).start()
        logger.warning(
            "listening on %s; results published on %s",
            pipe.endpoint,
            pipe.publish_endpoint,
        )
        return None

    def open_viewer(self, pipe: Any) -> None:
        """``--viewer``: start the napari viewer in its own process, subscribed to
        the run's results and raw frames (returns at once; GUI and pipeline never
        share a GIL)."""
        if getattr(self.args, "viewer", False):
            from livesr.adapters.sinks._viewer_process import ViewerProcess

            self.viewer = ViewerProcess(
                pipe.publish_endpoint,
                raw_endpoint=pipe.raw_publish_endpoint,
                title=f"livesr run: {pipe.output}",
            ).start()

    def wait_viewer(self) -> None:
        """``--viewer``: start acquiring once its window is up (at most
        :data:`VIEWER_READY_TIMEOUT_S`), so that loading napari does not compete
        with the first windows of the stream."""
        v = self.viewer
        if v is None:
            return
        t0 = time.monotonic()
        if v.wait_ready(VIEWER_READY_TIMEOUT_S):
            logger.info("viewer ready after %.1f s: acquiring", time.monotonic() - t0)
        else:
            logger.warning(
                "the viewer was not ready within %.0f s: acquiring without waiting",
                VIEWER_READY_TIMEOUT_S,
            )

    def _viewer_closed(self) -> bool:
        """True once, when the user closed the viewer window (a viewer that failed
        is reported and the run goes on)."""
        v = self.viewer
        if v is None or self.viewer_seen_closed or not v.closed:
            return False
        self.viewer_seen_closed = True
        code = v.wait(0)
        if code == 0:
            logger.warning("viewer closed: stopping acquisition, finishing the run")
            return True
        logger.error(
            "the viewer failed (exit code %s); the run goes on without it", code
        )
        return False

    def finish_viewer(self) -> None:
        """Reap the viewer: in a terminal it stays open until its window is closed
        (Ctrl-C closes it), else it is asked to quit at once."""
        v = self.viewer
        if v is None:
            return
        if not v.closed and sys.stdin.isatty() and sys.stderr.isatty():
            sys.stderr.write("livesr run: close the viewer window to exit\n")
            try:
                while v.wait(0.5) is None:
                    pass
            except KeyboardInterrupt:
                pass
        v.close()

    def follow(self, pipe: Any, src: Any) -> None:
        """Wait until the source ended and the pipeline processed its frames
        (``--listen``: until ``--frames`` persisted or the pipeline stops); Ctrl-C,
        or closing the ``--viewer`` window, stops the source first."""
        try:
            if src is not None:
                while src.join(0.2) is None:
                    if self._viewer_closed():
                        src.stop()
                if src.error is not None:
                    logger.error("the source failed: %s", src.error)
                if pipe.source_ended.wait(5.0):
                    while not pipe.wait(0.5):
                        pass
            else:
                while not pipe.wait(0.5):
                    if (
                        0
                        < self.cfg.stream.frames
                        <= pipe.snapshot()["frames_persisted"]
                    ):
                        pipe.stop_requested.set()  # --frames: tell the source to stop
                    if (
                        pipe.stop_requested.is_set()
                        and not pipe.progress()["frames_received"]
                    ):
                        break  # stopped (livesr ctl stop) before any source came
                    if self._viewer_closed():
                        pipe.stop_requested.set()
        except KeyboardInterrupt:
            logger.warning("interrupted: stopping acquisition, finishing the run")
            if src is not None:
                src.stop()
                src.join(35.0)

    def close(self, pipe: Any) -> dict[str, Any]:
        """Close the pipeline, then what :meth:`open_scope` opened; write the ground
        truth; returns the run summary."""
        summary: dict[str, Any] = pipe.close()
        if self.runner is not None and self.runner.controller is not None:
            self.runner.controller.close()
        if self.mm is not None:
            self.mm.close()
        self.ctx.term()
        if self.truth is not None and pipe.output.is_dir() and self.truth.frames:
            summary = add_source_report(
                summary, pipe.output, self.truth, self.args.source
            )
        return summary


def _final_line(summary: dict[str, Any], reasons: list[str]) -> str:
    """The run's last words: where the results are, who stopped it, what failed."""
    from livesr.stream._run_session import result_text  # shared with livesr replay

    line = f"livesr run: {result_text(summary)}"
    stop = (summary.get("hooks") or {}).get("stop")
    if stop:
        line += f"\nlivesr run: stopped by hook {stop['by']}: {stop['reason']}"
        if stop.get("frames_saved") is not None:
            line += f"; {stop['frames_saved']} of {stop['frames_planned']} frames saved"
    for hook in (summary.get("hooks") or {}).get("hooks") or []:
        for trig in ((hook.get("report") or {}).get("triggers")) or []:  # event-trigger
            line += (
                f"\nlivesr run: event trigger {trig['index']} at image {trig['window']} "
                f"({trig['reason']}): {trig['frames']} frames saved as {trig['path']}"
                + (f" ({trig['error']})" if trig.get("error") else "")
            )
    for reason in reasons:
        line += f"\nlivesr run: error: {reason}"
    return line
