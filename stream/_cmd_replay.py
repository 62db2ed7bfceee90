"""``livesr replay FILE``: run a recorded stack through the live pipeline, as if live.

Examples::

    livesr replay run1/raw.ome.zarr --output run1-again    # at the recorded timing
    livesr replay stack.ome.tif --rate asap --window 100 --stride 100 --drift off
    livesr replay movie.tif --rate 200 --range 1000:5000 --pixel-size 0.107
    livesr replay frames.npy --config run.toml --radius 2
    livesr replay stack.ome.tif --connect ipc:///tmp/x.ipc   # to `livesr run --listen`

Reads OME-TIFF, plain TIFF, OME-Zarr (folder) and ``.npy`` stacks frame by frame (memory
map or zarr chunks; never the whole file) and pushes the frames over the same lossless
link as ``livesr run``'s simulated camera, into the same pipeline with the same flags
(:func:`livesr.stream._cmd_run.add_pipeline_arguments`) and the same outputs:
``raw.ome.zarr`` (or ``raw.ome.tif``), ``sr.ome.zarr``, ``windows.csv``, ``drift.csv``,
``summary.json``, ``config.toml``, plus ``replay.json`` (file, range, rate, pixel size
and where it came from, link counters).

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

Exit status: 0 success; 2 bad arguments or an input that cannot be replayed as asked
(missing file, unsupported type, 2-D data, several channels, range out of bounds,
``--rate recorded`` without timing, output folder already used); 1 a damaged file or a
failure while running.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from livesr.stream._cmd_run import add_pipeline_arguments, config_from_args

NAME = "replay"
HELP = "replay a recording (OME-TIFF, TIFF, OME-Zarr, .npy) through the live pipeline"

logger = logging.getLogger(__name__)


def _rate(text: str) -> str | float:
    from livesr.adapters.sources._readers import RecordingError
    from livesr.adapters.sources.replay import parse_rate

    try:
        return parse_rate(text)
    except RecordingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _frame_range(text: str) -> tuple[int, int | None]:
    from livesr.adapters.sources._readers import RecordingError, parse_range

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``livesr replay`` flags (the pipeline flags are ``livesr run``'s)."""
    parser.add_argument(
        "file",
        metavar="FILE",
        help="recording: .ome.tif(f), .tif(f), .ome.zarr/.zarr folder or .npy",
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
        "--connect",
        metavar="ADDRESS",
        default=None,
        help="send the frames to a pipeline listening there (livesr run --listen)",
    )


def _usage_error(message: str) -> int:
    sys.stderr.write(f"livesr replay: error: {message}\n")
    return 2


def _failure(message: str) -> int:
    sys.stderr.write(f"livesr replay: error: {message}\n")
    return 1


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 success, 1 failure (damaged file, run error), 2 bad input."""
    from livesr.adapters.sources._readers import (
        CorruptRecordingError,
        RecordingError,
        open_recording,
    )
    from livesr.adapters.sources.replay import ReplayConfig, check_replay

    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        return _usage_error(str(exc))
    try:
        rec = open_recording(args.file, pixel_size_um=args.pixel_size)
    except (FileNotFoundError, RecordingError) as exc:
        return _usage_error(str(exc))
    except CorruptRecordingError as exc:
        return _failure(str(exc))
    with rec:
        rate = args.rate
        if rate is None:
            rate = "recorded" if rec.has_timing else "asap"
            if rate == "asap":
                logger.warning(
                    "%s has no timing metadata: replaying as fast as processed (--rate "
                    "asap)",
                    rec.path,
                )
        start, stop = args.frame_range if args.frame_range is not None else (0, None)
        try:
            rcfg = ReplayConfig(
                rate=rate, start=start, stop=stop, frames=cfg.stream.frames
            )
            check_replay(rec, rcfg)
        except RecordingError as exc:
            return _usage_error(str(exc))
        if args.connect is not None:
            return _run_connect(rec, rcfg, args)
        return _run_pipeline(cfg, rec, rcfg, args)


def _run_connect(rec: Any, rcfg: Any, args: argparse.Namespace) -> int:
    from livesr.adapters.sources._readers import CorruptRecordingError
    from livesr.adapters.sources.replay import ReplaySource

    src = ReplaySource(rec, args.connect, rcfg)
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
    from livesr.stream._pipeline import Pipeline
    from livesr.stream._status import StatusReporter

    ctx = zmq.Context()
    endpoint = f"inproc://livesr-replay-{secrets.token_hex(4)}"
    pipe = Pipeline(cfg, endpoint=endpoint, context=ctx)
    src: ReplaySource | None = None
    status = None
    try:
        try:
            pipe.start()
        except (FileExistsError, ValueError) as exc:
            return _usage_error(str(exc))
        status = StatusReporter(
            pipe.snapshot, enabled=False if args.no_status else None
        ).start()
        pipe.ready.wait(30.0)  # kernels loaded before the first frame arrives
        throttle = None
        if rcfg.rate == "asap":
            throttle = processing_throttle(
                pipe.snapshot, max_lag=2, stop_event=pipe.stop_requested
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
            while src.join(0.2) is None:
                pass
            if pipe.source_ended.wait(5.0):
                while not pipe.wait(0.5):
                    pass
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
    lat = summary["latency_ms"]
    p50 = "-" if lat["p50"] is None or lat["p50"] != lat["p50"] else f"{lat['p50']:.0f}"
    p99 = "-" if lat["p99"] is None or lat["p99"] != lat["p99"] else f"{lat['p99']:.0f}"
    assert src is not None
    a, b = src.range
    line = (
        f"livesr replay: frames {a}..{b - 1} of {rec.path}: "
        f"{summary['frames_persisted']}/"
        f"{summary['frames_acquired']} frames persisted, {summary['frames_in_gaps']} "
        "in gaps; "
        f"{summary['windows_published']} images published, "
        f"{summary['windows_skipped']} skipped; "
        f"latency p50 {p50} ms p99 {p99} ms; results in {summary['output']}/ "
        "(summary.json)"
    )
    if summary.get("error"):
        line += f"\nlivesr replay: error: {summary['error']}"
    if src_error:
        line += f"\nlivesr replay: error: {src_error}"
    assert status is not None
    status.final(line)
    return (
        1 if summary.get("error") or summary.get("processing_error") or src_error else 0
    )


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
