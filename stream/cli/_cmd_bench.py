"""``livesr bench``: time every available implementation and fill the benchmark store.

Examples::

    livesr bench                               # all kernels, small inputs, 5 repeats
    livesr bench --kernel esrrf_map --size large --repeats 20
    livesr bench --write-defaults engine/factory_defaults.json   # developers
    livesr bench --report bench-report         # Markdown report with PNG plots
    livesr bench --report bench-report --quick --no-nanopyx     # seconds

Inputs come from each kernel's ``bench_cases(size)`` hook (default: its ``cases``).
The first call of an implementation per input is a warm-up (JIT, OpenCL build, CuPy
compile) and is not recorded; the timed runs are synchronised with the device and
written to the benchmark store (``$LIVESR_CACHE_DIR`` or the user cache directory),
where the dispatcher uses them from then on.

``--report DIR`` runs the report instead (:mod:`livesr.stream.cli._report`): eSRRF
throughput vs frame size beside NanoPyx, transport and end-to-end latency
histograms, the delay agent under an induced delay, (``--gpu-json``) the GPU
streaming figures of ``bench/gpu_esrrf.py``, and the eSRRF parameter sweep's time
per pair beside NanoPyx's (with ``--sweep-gpu-json``, the GPU figures of
``bench/sweep_bench.py``); ``--quick`` makes it small, ``--full`` adds 512² frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from typing import Any

from livesr.stream.cli._cmd_backends import _table, select_kernels

NAME = "bench"
HELP = "benchmark every available implementation of the kernels and store the timings"

logger = logging.getLogger(__name__)

SIZES = (
    "small",
    "medium",
    "large",
)  # = livesr.engine.BENCH_SIZES (literal: cheap parser)


def _repeats(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kernel",
        action="append",
        metavar="NAME",
        help="only this kernel (repeatable)",
    )
    parser.add_argument(
        "--package",
        action="append",
        metavar="PKG",
        help="kernel package to benchmark (repeatable; default: livesr.kernels.KERNEL_PACKAGES)",
    )
    parser.add_argument(
        "--impl",
        action="append",
        metavar="ID",
        help="only this implementation id (repeatable)",
    )
    parser.add_argument(
        "--repeats",
        type=_repeats,
        default=5,
        help="timed runs per implementation (default 5)",
    )
    parser.add_argument(
        "--size",
        choices=SIZES,
        default="small",
        help="input size class (default small)",
    )
    parser.add_argument(
        "--write-defaults",
        metavar="PATH",
        help="also write the measured times as a factory-defaults JSON file",
    )
    rep = parser.add_argument_group("report (--report DIR)")
    rep.add_argument(
        "--report",
        metavar="DIR",
        help="write a Markdown benchmark report with PNG plots into DIR (instead of "
        "filling the benchmark store)",
    )
    mode = rep.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="with --report: small sizes and short runs (about a minute)",
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="with --report: also 512x512 eSRRF frames and longer runs",
    )
    rep.add_argument(
        "--no-nanopyx",
        action="store_true",
        help="with --report: do not run NanoPyx beside livesr",
    )
    _add_e2e_arguments(parser)
    rep.add_argument(
        "--gpu-json",
        metavar="FILE",
        help="with --report: add the streaming figures of "
        "'bench/gpu_esrrf.py --json FILE'",
    )
    rep.add_argument(
        "--sweep-gpu-json",
        metavar="FILE",
        help="with --report: add the GPU parameter-sweep figures of "
        "'bench/sweep_bench.py --impl cupy --json FILE' (its numpy run on the "
        "same machine in the same file is the baseline)",
    )


def _add_e2e_arguments(parser: argparse.ArgumentParser) -> None:
    e2e = parser.add_argument_group(
        "end to end (--e2e DIR): highest camera rate the live path sustains"
    )
    e2e.add_argument(
        "--e2e",
        metavar="DIR",
        help="run end-to-end trials (source and pipeline in their own processes) "
        "at rising rates per frame size; writes e2e.md, e2e.json, e2e.png into DIR",
    )
    e2e.add_argument("--sizes", nargs="+", metavar="PX", help="frame sizes (default 256 512 2048)")
    e2e.add_argument(
        "--seconds", type=float, default=30.0, help="acquisition per trial, s (default 30)"
    )
    e2e.add_argument(
        "--start-rate", type=float, default=None, metavar="FPS",
        help="first rate tried (default: a quarter of the window's kernel rate)",
    )
    e2e.add_argument(
        "--max-rate", type=float, default=None, metavar="FPS",
        help="highest rate tried (default: 1.5 x the window's kernel rate)",
    )
    e2e.add_argument(
        "--growth", type=float, default=1.5, help="rate factor between trials (default 1.5)"
    )
    e2e.add_argument(
        "--budget-ms", type=float, default=100.0,
        help="latency p99 a sustained rate must keep, ms (default 100)",
    )
    e2e.add_argument(
        "--no-drift", action="store_true", help="drift correction off (default on)"
    )


def _run_e2e(args: argparse.Namespace) -> int:
    from pathlib import Path

    from livesr.stream.cli._bench_e2e import E2eOptions, parse_sizes, run_e2e

    opts = E2eOptions(
        out_dir=Path(args.e2e),
        sizes=parse_sizes(args.sizes),
        seconds=args.seconds,
        start=args.start_rate,
        max_rate=args.max_rate,
        growth=args.growth,
        budget_ms=args.budget_ms,
        drift=not args.no_drift,
    )
    path, results = run_e2e(opts)
    for s in results["sizes"]:
        sus = s["sustained_fps"]
        sys.stdout.write(
            f"{s['size']}x{s['size']}: sustained "
            f"{'none' if sus is None else f'{sus:.0f}'} frames/s; window alone "
            f"{s['window_fps']:.0f}, map alone {s['map_fps']:.0f} frames/s\n"
        )
    sys.stdout.write(f"e2e results written to {path}\n")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from livesr.stream.cli._report import Options, write_report

    if args.gpu_json is not None and not Path(args.gpu_json).is_file():
        raise ValueError(
            f"--gpu-json {args.gpu_json}: no such file; pass the JSON written by "
            "'python bench/gpu_esrrf.py --json FILE'"
        )
    if args.sweep_gpu_json is not None and not Path(args.sweep_gpu_json).is_file():
        raise ValueError(
            f"--sweep-gpu-json {args.sweep_gpu_json}: no such file; pass the JSON "
            "written by 'python bench/sweep_bench.py --impl cupy --json FILE'"
        )
    opts = Options(
        out_dir=Path(args.report),
        mode="quick" if args.quick else "full" if args.full else "default",
        nanopyx=not args.no_nanopyx,
        gpu_json=Path(args.gpu_json) if args.gpu_json is not None else None,
        sweep_gpu_json=(
            Path(args.sweep_gpu_json) if args.sweep_gpu_json is not None else None
        ),
    )
    path, ok = write_report(opts)
    sys.stdout.write(f"report written to {path}\n")
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    if getattr(args, "e2e", None):
        return _run_e2e(args)
    if getattr(args, "report", None):
        return _run_report(args)
    given = [
        flag
        for flag, on in (
            ("--quick", args.quick),
            ("--full", args.full),
            ("--no-nanopyx", args.no_nanopyx),
            ("--gpu-json", args.gpu_json is not None),
            ("--sweep-gpu-json", args.sweep_gpu_json is not None),
        )
        if on
    ]
    if given:
        raise ValueError(
            f"{', '.join(given)} only apply to --report DIR; add --report DIR"
        )
    return _run_store(args)


def _time_case(
    kernel: Any, case: Any, wanted: list[Any], repeats: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Time each of the ``wanted`` implementations on one bench case.

    Returns the run times per implementation id, s, and a note per implementation
    that was not timed (``"unavailable: ..."`` or ``"failed: ..."``).
    """
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    for info in wanted:
        if not info.available:
            notes[info.id] = f"unavailable: {info.reason}"
            continue
        try:
            got = kernel.benchmark(
                *case.args, repeats=repeats, impls=[info.id], **dict(case.kwargs)
            )
        except Exception as exc:  # report and go on with the others
            notes[info.id] = f"failed: {type(exc).__name__}: {exc}"
            logger.error("%s %s on %s failed: %s", kernel.name, info.id, case.name, exc)
            continue
        times.update(got)
    return times, notes


def _run_store(args: argparse.Namespace) -> int:
    from livesr.engine import default_store
    from livesr.engine._fingerprint import machine_description

    out = sys.stdout
    kernels = select_kernels(args)
    if not kernels:
        out.write(
            "no kernels to benchmark (livesr.kernels.KERNEL_PACKAGES is empty; pass --package)\n"
        )
        return 1
    store = default_store()
    rows = [["kernel", "case", "implementation", "median ms", "min ms", "vs best"]]
    defaults: dict[str, dict[str, dict[str, list[float]]]] = {}
    failed = 0
    for kernel in kernels:
        kernel.configure(store=store)
        cases = kernel.bench_cases(args.size)
        if not cases:
            out.write(f"{kernel.name}: no bench_cases/cases declared, skipped\n")
            continue
        infos = kernel.implementations(include_unavailable=True)
        wanted = [i for i in infos if not args.impl or i.id in args.impl]
        for case in cases:
            case_kwargs = dict(case.kwargs)
            times, notes = _time_case(kernel, case, wanted, args.repeats)
            failed += sum(n.startswith("failed:") for n in notes.values())
            best = min(
                (statistics.median(t) for t in times.values()), default=float("nan")
            )
            for impl_id in [i.id for i in wanted]:
                if impl_id in times:
                    med = statistics.median(times[impl_id])
                    rows.append(
                        [
                            kernel.name,
                            case.name,
                            impl_id,
                            f"{med * 1e3:.3f}",
                            f"{min(times[impl_id]) * 1e3:.3f}",
                            f"×{med / best:.2f}",
                        ]
                    )
                    key = kernel.signature(*case.args, **case_kwargs).key
                    defaults.setdefault(kernel.name, {}).setdefault(impl_id, {})[
                        key
                    ] = times[impl_id]
                else:
                    rows.append(
                        [
                            kernel.name,
                            case.name,
                            impl_id,
                            "-",
                            "-",
                            notes.get(impl_id, ""),
                        ]
                    )
    store.close()
    out.write(_table(rows) + "\n")
    out.write(f"{store.rows_written} run times written to {store.path}\n")
    if args.write_defaults:
        data = {"format": 1, "machine": machine_description(), "kernels": defaults}
        with open(args.write_defaults, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
        out.write(f"factory defaults written to {args.write_defaults}\n")
    return 1 if failed else 0
