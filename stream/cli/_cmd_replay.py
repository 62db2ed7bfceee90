"""``livesr replay FILE``: run a recorded stack through the live pipeline, as if live.

Examples::

    livesr replay run1/raw.ome.zarr --output run1-again    # at the recorded timing
    livesr replay stack.ome.tif --rate asap --window 100 --stride 100 --drift off
    livesr replay movie.tif --rate 200 --range 1000:5000 --pixel-size 0.107
    livesr replay frames.npy --config run.toml --radius 2
    livesr replay stack.ome.tif --connect ipc:///tmp/x.ipc   # to `livesr run --listen`
    livesr replay day1/*.ome.tif --output week --scheduler local --workers 8
    livesr replay a.ome.zarr b.ome.zarr -o out --scheduler tcp://10.0.0.5:8786

Reads OME-TIFF, plain TIFF, OME-Zarr (folder) and ``.npy`` stacks frame by frame (memory
map or zarr chunks; never the whole file) and pushes the frames over the same lossless
link as ``livesr run``'s simulated camera, into the same pipeline with the same flags
(:func:`livesr.stream.cli._run_args.add_pipeline_arguments`) and the same outputs:
``sr.ome.zarr``, ``windows.csv``, ``drift.csv``, ``summary.json``, ``config.toml``,
plus ``replay.json`` (file, range, rate, pixel size and where it came from, link
counters).  The raw frames are not copied: they are already in the file, so
``raw.json`` records the file, the frame range and the per-frame times instead
(:class:`livesr.stream._rawstore.ReferenceRawStore`; the summary's ``files.raw``
names the file).  ``--copy-raw`` (or ``--raw-format``) writes ``raw.ome.zarr`` (or
``raw.ome.tif``) as a live run does.

A livesr recording (its ``raw.ome.zarr`` / ``raw.ome.tif``, or the run folder) is
replayed with its own acquisition parameters: pixel size and frame interval from the
store, the live stream's name, and the ``[esrrf]`` and ``[drift]`` settings of the
run's ``config.toml`` unless ``--config`` is given (eSRRF flags and ``--drift``
override single settings).  A raw store whose writer died (``kill -9``) is recovered
first: exactly the frames that were written are replayed.

``--rate``: ``recorded`` (default when the file has timing metadata), ``asap``
(default otherwise, with a warning) or frames per second.  ``asap`` runs in step with
processing (the source waits until the pipeline has processed all but 2 of the frames
sent), so no window is skipped: the images equal an offline reconstruction (with
``--connect`` the remote pipeline's progress is not visible: ``asap`` is then as fast
as it acknowledges, and it may skip windows for latency).  With a rate, frames are
timed as a live camera's, and a pipeline that falls behind the latency budget skips
windows exactly as it would live.

``--range START:STOP`` selects frames (stop exclusive, either side may be empty);
``--frames N`` caps the count.  ``--pixel-size UM`` overrides the file's pixel size;
a file without one is replayed at 0.1 um with a warning.

Several inputs: each one's results go to ``--output DIR/<input name>/`` (the file name
without its extension; made unique with the parent folder's name, then a number).
Every input, range and output folder is checked before anything runs.  Without
``--scheduler`` the inputs are replayed one after the other through the pipeline.

``--scheduler ADDRESS`` (a running ``dask.distributed`` scheduler) or ``--scheduler
local`` (a ``LocalCluster`` of ``--workers`` processes on this machine) computes the
same images on Dask (:mod:`livesr.stream._dask_replay`): each input is cut into
chunks of ``--chunk-frames`` frames (plus ``window - 1`` frames of overlap), drift is
estimated once per input by the pipeline's causal estimator, and the chunks run in
parallel; the results (``sr.ome.zarr``, ``windows.csv``, ``drift.csv``,
``summary.json``, ``config.toml``, ``replay.json``; no copy of the raw frames) equal an
``--rate asap`` replay's.  The inputs must be readable at the same paths on the
workers.  It prints the dashboard link, a progress bar and one line per input.

Exit status: 0 success; 2 bad arguments or an input that cannot be replayed as asked
(missing file, unsupported type, 2-D data, several channels, range out of bounds,
``--rate recorded`` without timing, output folder already used, a ``--scheduler``
that is not valid or cannot be reached, ``dask.distributed`` not installed); 1 a
damaged file or a failure while running (any input).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from livesr.stream.cli._run_args import (
    add_pipeline_arguments,
    client_keys,
    config_from_args,
)

NAME = "replay"
HELP = "replay a recording (OME-TIFF, TIFF, OME-Zarr, .npy) through the live pipeline"

logger = logging.getLogger(__name__)


def _rate(text: str) -> str | float:
    from livesr.adapters.sources.replay import parse_rate
    from livesr.stream._rawread import RecordingError

    try:
        return parse_rate(text)
    except RecordingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _frame_range(text: str) -> tuple[int, int | None]:
    from livesr.stream._rawread import RecordingError, parse_range

    try:
        return parse_range(text)
    except RecordingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pixel_size(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a pixel size in um (a number > 0), got {text!r}"
        ) from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(
            f"expected a pixel size in um (a number > 0), got {text!r}"
        )
    return v


def _scheduler(text: str) -> str:
    from livesr.stream._dask_replay import SchedulerError, parse_scheduler

    try:
        return parse_scheduler(text)
    except SchedulerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {text!r}"
        ) from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``livesr replay`` flags (the pipeline flags are ``livesr run``'s)."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="recording(s): .ome.tif(f), .tif(f), .ome.zarr/.zarr folder or .npy",
    )
    add_pipeline_arguments(parser)
    parser.add_argument(
        "--rate",
        type=_rate,
        default=None,
        metavar="recorded|asap|FPS",
        help="recorded timing, as fast as processed, or frames per second "
        "(default: recorded if the file has timing, else asap)",
    )
    parser.add_argument(
        "--range",
        dest="frame_range",
        type=_frame_range,
        default=None,
        metavar="START:STOP",
        help="frames START..STOP-1 of the file (either side may be empty)",
    )
    parser.add_argument(
        "--pixel-size",
        type=_pixel_size,
        default=None,
        metavar="UM",
        help="pixel size in the sample plane, um (overrides the file)",
    )
    parser.add_argument(
        "--copy-raw",
        action="store_true",
        help="write the replayed frames again as a raw store in the output folder "
        "(default: record the source file and frame range in raw.json instead)",
    )
    parser.add_argument(
        "--connect",
        metavar="ADDRESS",
        default=None,
        help="send the frames to a pipeline listening there (livesr run --listen)",
    )
    dask = parser.add_argument_group("Dask (livesr[dask])")
    dask.add_argument(
        "--scheduler",
        type=_scheduler,
        default=None,
        metavar="ADDRESS|local",
        help="compute on a running dask.distributed scheduler (tcp://HOST:PORT), or "
        "'local': a LocalCluster on this machine",
    )
    dask.add_argument(
        "--workers",
        type=_count,
        default=None,
        metavar="N",
        help="--scheduler local: worker processes (default: the CPU count)",
    )
    dask.add_argument(
        "--chunk-frames",
        type=_count,
        default=None,
        metavar="N",
        help="--scheduler: frames per task (default max(8 x window, 16 x stride))",
    )


def _usage_error(message: str) -> int:
    sys.stderr.write(f"livesr replay: error: {message}\n")
    return 2


def _failure(message: str) -> int:
    sys.stderr.write(f"livesr replay: error: {message}\n")
    return 1


#: result files that mark an output folder as used (Pipeline.start refuses it too)
_RESULT_NAMES = (
    "summary.json",
    "raw.ome.zarr",
    "raw.ome.tif",
    "raw.json",
    "sr.ome.zarr",
)


def input_name(path: str | Path) -> str:
    """An input's name for its output folder: the file name without its extension."""
    from livesr.stream._rawread import SUPPORTED

    name = Path(path).name
    for suffix in sorted(SUPPORTED, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def output_folders(files: list[str], output: Path) -> list[Path]:
    """Output folder of each input: ``output`` for one, else ``output/<unique name>``
    (:func:`input_name`)."""
    if len(files) == 1:
        return [output]
    names = [input_name(f) for f in files]
    if len(set(names)) < len(names):  # same name: prefix the parent folder's name
        names = [
            f"{Path(f).resolve().parent.name}_{n}" if names.count(n) > 1 else n
            for f, n in zip(files, names, strict=True)
        ]
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        unique.append(n if k == 0 else f"{n}-{k + 1}")
    return [output / n for n in unique]


def _used(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return [n for n in _RESULT_NAMES if (folder / n).exists()]


def _check_flags(args: argparse.Namespace) -> str | None:
    """Flag combinations that cannot work (usage errors), or None."""
    n = len(args.files)
    if args.connect is not None and n > 1:
        return f"--connect sends one recording; got {n} inputs"
    if args.scheduler is None:
        for flag, v in (
            ("--workers", args.workers),
            ("--chunk-frames", args.chunk_frames),
        ):
            if v is not None:
                return f"{flag} applies to --scheduler only"
        return None
    if args.connect is not None:
        return "--connect and --scheduler exclude each other (Dask computes the images)"
    if args.rate not in (None, "asap"):
        return (
            f"--rate {args.rate}: a replay on --scheduler runs as fast as it can "
            "(nothing is paced or skipped); drop --rate or use --rate asap"
        )
    if args.workers is not None and args.scheduler != "local":
        return "--workers applies to --scheduler local only"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 success, 1 failure (damaged file, run error), 2 bad input."""
    from livesr.adapters.sources.replay import ReplayConfig, check_replay
    from livesr.stream._rawread import (
        CorruptRecordingError,
        RecordingError,
        open_recording,
    )

    if (problem := _check_flags(args)) is not None:
        return _usage_error(problem)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        return _usage_error(str(exc))
    outputs = output_folders(list(args.files), Path(cfg.stream.output))
    # check every input, range and output folder before anything runs
    plans: list[tuple[str, Path, Any, Any]] = []
    start, stop = args.frame_range if args.frame_range is not None else (0, None)
    for file, out in zip(args.files, outputs, strict=True):
        try:
            rec = open_recording(file, pixel_size_um=args.pixel_size)
        except (FileNotFoundError, RecordingError) as exc:
            return _usage_error(str(exc))
        except CorruptRecordingError as exc:
            return _failure(str(exc))
        with rec:
            try:
                file_cfg = _recording_config(cfg, rec, args)
            except ValueError as exc:
                return _usage_error(str(exc))
            rate = args.rate
            if rate is None:
                rate = "recorded" if rec.has_timing and not args.scheduler else "asap"
                if rate == "asap" and not args.scheduler:
                    logger.warning(
                        "%s has no timing metadata: replaying as fast as processed "
                        "(--rate asap)",
                        rec.path,
                    )
            try:
                rcfg = ReplayConfig(
                    rate=rate,
                    start=start,
                    stop=stop,
                    frames=cfg.stream.frames,
                    stream=rec.acquisition.get("stream") or "replay",
                )
                a, b = check_replay(rec, rcfg)
            except RecordingError as exc:
                return _usage_error(str(exc))
            # --connect only sends: it writes no output folder, so never checks one
            if getattr(args, "connect", None) is None and (used := _used(out)):
                return _usage_error(
                    f"output folder {out} already holds results ({', '.join(used)}); "
                    "choose another --output or remove them"
                )
            plan: Any = rcfg
            if args.scheduler:
                from livesr.stream._dask_replay import ReplayInput

                plan = ReplayInput.of(rec, out, a, b)
            plans.append((file, out, plan, file_cfg))
    if args.scheduler:
        return _run_dask(cfg, [p for _, _, p, _ in plans], args)
    rc = 0
    for file, out, rcfg, file_cfg in plans:
        one = (
            file_cfg if len(plans) == 1 else file_cfg.replace("stream", output=str(out))
        )
        rc = max(rc, _replay_one(one, file, rcfg, args))
    return rc


_ESRRF_FLAGS = (
    "window",
    "stride",
    "magnification",
    "radius",
    "sensitivity",
    "temporal",
)


def _recording_config(cfg: Any, rec: Any, args: argparse.Namespace) -> Any:
    """``cfg`` with the eSRRF settings of the livesr run that recorded ``rec``.

    When ``rec`` is a livesr raw store in a run folder with a ``config.toml`` and no
    ``--config`` was given, that run's ``[esrrf]`` and ``[drift]`` sections are the
    base; eSRRF flags and ``--drift`` given on the command line still override them.
    Any other recording: ``cfg``.
    """
    run_cfg = rec.acquisition.get("config") if rec.acquisition else None
    if not run_cfg or args.config:
        return cfg
    import dataclasses

    from livesr.stream._config import load_config

    try:
        run = load_config(run_cfg)
    except (OSError, ValueError) as exc:
        logger.warning(
            "%s: the run's %s cannot be read (%s); eSRRF settings from the flags "
            "and defaults",
            rec.path,
            run_cfg,
            exc,
        )
        return cfg
    fields = dataclasses.asdict(run.esrrf)
    for name in _ESRRF_FLAGS:
        if getattr(args, name, None) is not None:
            fields[name] = getattr(args, name)
    drift = dataclasses.asdict(run.drift)
    if args.drift is not None:
        drift["enabled"] = args.drift == "on"
    logger.info(
        "%s: eSRRF and drift settings of the recording run (%s)", rec.path, run_cfg
    )
    return cfg.replace("esrrf", **fields).replace("drift", **drift)


def _replay_one(cfg: Any, file: str, rcfg: Any, args: argparse.Namespace) -> int:
    from livesr.stream._rawread import (
        CorruptRecordingError,
        RecordingError,
        open_recording,
    )

    try:
        rec = open_recording(file, pixel_size_um=args.pixel_size)
    except (FileNotFoundError, RecordingError) as exc:  # changed since it was checked
        return _usage_error(str(exc))
    except CorruptRecordingError as exc:
        return _failure(str(exc))
    with rec:
        if args.connect is not None:
            return _run_connect(rec, rcfg, args, client_keys(cfg))
        return _run_pipeline(cfg, rec, rcfg, args)


def _run_dask(cfg: Any, inputs: list[Any], args: argparse.Namespace) -> int:
    from livesr.stream._dask_replay import (
        DaskReplayConfig,
        SchedulerError,
        connect,
        replay_on_dask,
    )

    try:
        client, cluster = connect(args.scheduler, workers=args.workers)
    except (SchedulerError, ImportError) as exc:
        return _usage_error(str(exc))
    dcfg = DaskReplayConfig(
        chunk_frames=args.chunk_frames or 0,
        progress=False if args.no_status else None,
    )
    try:
        results = replay_on_dask(client, inputs, cfg, dcfg)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    failed = [r for r in results if not r.ok]
    sys.stderr.write(
        f"livesr replay: {len(results) - len(failed)} of {len(results)} recording(s) "
        f"replayed on Dask, {sum(r.windows for r in results)} images"
        + (f"; {len(failed)} failed" if failed else "")
        + "\n"
    )
    return 1 if failed else 0


def _run_connect(rec: Any, rcfg: Any, args: argparse.Namespace, curve: Any) -> int:
    from livesr.adapters.sources.replay import ReplaySource
    from livesr.stream._rawread import CorruptRecordingError

    src = ReplaySource(rec, args.connect, rcfg, curve=curve)
    error = None
    try:
        summary = src.run()
    except KeyboardInterrupt:
        src.stop()
        summary = src.summary or {}
    except CorruptRecordingError as exc:
        error = str(exc)
        summary = src.summary or {}
    sys.stderr.write(
        f"livesr replay: sent {summary.get('frames_acquired', 0)} of {src.n_frames} "
        f"frame(s) of {rec.path} "
        f"to {args.connect}: {summary.get('frames_acked', 0)} acknowledged, "
        f"{summary.get('frames_in_gaps', 0)} in gaps, "
        f"{summary.get('frames_unacked', 0)} unacknowledged\n"
    )
    if error:
        return _failure(error)
    return 0 if summary.get("frames_unacked", 1) == 0 else 1


def _run_pipeline(cfg: Any, rec: Any, rcfg: Any, args: argparse.Namespace) -> int:
    import zmq

    from livesr.adapters.sources.replay import ReplaySource, processing_throttle
    from livesr.stream._pipeline import READY_TIMEOUT_S, Pipeline
    from livesr.stream._run_session import drain, finish_run
    from livesr.stream._status import StatusReporter

    ctx = zmq.Context()
    endpoint = f"inproc://livesr-replay-{secrets.token_hex(4)}"
    raw_store = None
    if not (args.copy_raw or args.raw_format is not None):
        from livesr.adapters.sources.replay import check_replay
        from livesr.stream._rawstore import ReferenceRawStore

        a, b = check_replay(rec, rcfg)
        raw_store = ReferenceRawStore(
            rec.path, cfg.stream.output, start=a, stop=b, fmt=rec.format
        )
    pipe = Pipeline(
        cfg,
        endpoint=endpoint,
        context=ctx,
        frame_shape=(rec.shape[1], rec.shape[2]),
        raw_store=raw_store,
        length=_replay_length(rec, rcfg),  # the processing ring needs no more
    )
    src: ReplaySource | None = None
    status = None
    try:
        try:
            pipe.start()
        except (FileExistsError, ValueError) as exc:
            return _usage_error(str(exc))
        status = StatusReporter(
            pipe.snapshot,
            enabled=False if args.no_status else None,
            total_frames=_replay_length(rec, rcfg),
        ).start()
        # kernels loaded and implementations timed before the first frame arrives
        pipe.ready.wait(READY_TIMEOUT_S)
        throttle = None
        if rcfg.rate == "asap":
            # keep about one batch waiting: processing takes it in one step
            throttle = processing_throttle(
                pipe.progress,
                max_lag=max(2, cfg.stream.max_batch // 2),
                stop_event=pipe.stop_requested,
            )
        src = ReplaySource(
            rec,
            pipe.endpoint,
            rcfg,
            stop_event=pipe.stop_requested,
            context=ctx,
            throttle=throttle,
        ).start()
        try:
            drain(pipe, src)
        except KeyboardInterrupt:
            logger.warning("interrupted: stopping the replay, finishing the run")
            src.stop()
            src.join(35.0)
    finally:
        if status is not None:
            status.stop()
        summary = pipe.close()
        ctx.term()
    src_error = None if src is None or src.error is None else str(src.error)
    _write_replay_json(Path(summary["output"]), rec, rcfg, src, src_error)
    if src is not None:
        a, b = src.range
        where = f"frames {a}..{b - 1} of {rec.path}: "
    else:  # the source never started
        where = f"{rec.path}: "
    return finish_run("livesr replay", summary, status, head=where, errors=[src_error])


def _write_replay_json(
    out: Path, rec: Any, rcfg: Any, src: Any, error: str | None
) -> None:
    info = {
        "recording": rec.describe(),
        "range": list(src.range) if src is not None else None,
        "rate": rcfg.rate,
        "frames_sent": src.frames_sent if src is not None else 0,
        "link": src.summary if src is not None else None,
        "error": error,
    }
    try:
        (out / "replay.json").write_text(
            json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8"
        )
    except OSError as exc:
        logger.error("could not write %s: %s", out / "replay.json", exc)


def _replay_length(rec: Any, rcfg: Any) -> int:
    """Frames this replay sends (its range, capped by ``--frames``), for the ETA."""
    try:
        n = int(rec.shape[0])
    except (AttributeError, IndexError, TypeError):
        return 0
    stop = n if rcfg.stop is None else min(n, int(rcfg.stop))
    count = max(0, stop - int(rcfg.start))
    return min(count, int(rcfg.frames)) if rcfg.frames else count
