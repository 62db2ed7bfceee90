"""What ``livesr run`` wires around the pipeline: the Micro-Manager sources
(``--source mm-sim``, ``mm``), the feedback hooks and their controller, and the
simulated run's ground truth (``sim_truth.csv``).

Each ``check_*`` function says why a flag combination cannot run (``None``: it
can) before anything is opened; the others build what :mod:`._cmd_run` starts.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "MMSim",
    "add_source_report",
    "chain",
    "check_hooks",
    "check_mm",
    "hook_runner",
    "mm_frames",
    "mm_session",
]


def check_hooks(cfg: Any, args: argparse.Namespace) -> str | None:
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
            f"hook {stage[0]} commands the microscope: it needs a source through a "
            "pymmcore-plus core (--source mm-sim or mm), not "
            f"--source {args.source}"
        )
    try:
        # user hooks import now, settings are checked: errors before acquiring
        make_hooks(names, cfg.hooks, output=cfg.stream.output)
    except ValueError as exc:
        return str(exc)
    return None


def check_mm(args: argparse.Namespace) -> str | None:
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


def mm_frames(cfg: Any, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """Frames to acquire and the ``mda`` keyword of ``source()`` (``--mda``: the
    sequence sets the length)."""
    if args.mda is not None:
        return 0, {"mda": args.mda}
    return cfg.stream.frames, {}


def mm_session(args: argparse.Namespace, sim: Any) -> Any:
    """The run's pymmcore-plus core (``--source mm-sim`` or ``mm``), not yet open."""
    if args.source == "mm":
        from livesr.adapters.sources.mm_config import MMConfigSession

        return MMConfigSession(args.mm_config, mm_path=args.mm_path)
    return MMSim(sim)



def chain(source: Any, target: Any) -> None:
    """Set ``target`` when ``source`` is set (a raw-store failure stops the source)."""
    import threading

    def watch() -> None:
        while not target.is_set():
            if source.wait(0.1):
                target.set()
                return

    threading.Thread(target=watch, name="livesr-stop-chain", daemon=True).start()


class MMSim:
    """The run's simulated microscope as Micro-Manager devices (``--source mm-sim``)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.core: Any = None

    def open(self) -> MMSim:
        from livesr.sim._core import make_core

        if self.core is None:
            # 64 MiB holds >= 500 frames of 256 x 256 behind a slow link; the camera
            # stops (never overwrites) when it is full
            self.core = make_core(self.sim, buffer_mb=64)
        return self

    def __enter__(self) -> MMSim:
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


def hook_runner(cfg: Any, mm: Any) -> Any:
    """The run's HookRunner (None without hooks): a MicroscopeController over the
    mm-sim / mm core, else a stop-only controller."""
    names = cfg.hooks.enabled
    if not names:
        return None
    from livesr.adapters.feedback import HookRunner, MicroscopeController
    from livesr.adapters.feedback._builtin import make_hooks
    from livesr.adapters.feedback._controller import StopOnlyController

    hooks = make_hooks(names, cfg.hooks, output=cfg.stream.output)
    if mm is not None:
        ctl: Any = MicroscopeController(mm.core, cfg.hooks.limits)
    else:
        ctl = StopOnlyController()
    logger.info(
        "feedback hooks: %s (controller: %s)", ", ".join(names), type(ctl).__name__
    )
    return HookRunner(hooks, ctl, slow_call_s=cfg.hooks.slow_call_s)


def add_source_report(
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
