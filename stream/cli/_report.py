"""``livesr bench --report DIR``: a Markdown benchmark report with PNG plots.

Sections (each states the machine, the load average before and after, the livesr
version and the command that reproduces it):

1. eSRRF throughput vs frame size: every available ``esrrf_map`` implementation and
   NanoPyx's ``eSRRF_ST`` threaded, interleaved, warm-up excluded;
2. transport: SourceLink -> Ingest over ``ipc://``, paced, latency histograms;
3. end-to-end latency of a short live :class:`~livesr.stream._pipeline.Pipeline` run;
4. the delay agent under an induced delay (cf. NanoPyx Extended Data Fig. 7);
5. GPU streaming figures from ``bench/gpu_esrrf.py --json`` (``--gpu-json FILE``).

Writes ``DIR/report.md``, one PNG per figure and ``DIR/report.json`` (the numbers).
A section that fails is reported as failed (with the error) and the others still
run; the command then exits with status 1.  Optional pieces (NanoPyx, CuPy, the GPU
JSON) that are missing give a note.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream.cli import _report_measure as measure
from livesr.stream.cli import _report_plots as plots

logger = logging.getLogger(__name__)

#: Section headings, in order (the test checks each is present).
HEADINGS: tuple[str, ...] = (
    "## 1. eSRRF throughput vs frame size",
    "## 2. Transport throughput and latency",
    "## 3. End-to-end latency of the live pipeline",
    "## 4. Delay agent under an induced delay",
    "## 5. GPU streaming figures",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and durations of every experiment for one mode (quick, default, full)."""

    esrrf_sizes: tuple[int, ...]
    esrrf_rounds: int
    nanopyx_rounds: int
    transport_shape: tuple[int, int]
    transport_fps: float
    transport_s: float
    pipeline_size: int
    pipeline_fps: float
    pipeline_frames: int
    pipeline_window: int
    pipeline_stride: int
    agent_size: int
    agent_calls: int
    agent_delayed: range
    agent_warm_runs: int

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        """``"quick"`` (seconds, for tests), ``"default"`` or ``"full"`` (adds 512²)."""
        if mode == "quick":
            return cls(
                (32, 48),
                2,
                1,
                (128, 128),
                200.0,
                0.5,
                32,
                40.0,
                40,
                10,
                5,
                32,
                60,
                range(20, 35),
                10,
            )
        if mode not in ("default", "full"):
            raise ValueError(f"mode={mode!r}: expected quick, default or full")
        sizes = (64, 128, 256, 512) if mode == "full" else (64, 128, 256)
        return cls(
            sizes,
            7,
            3,
            (512, 512),
            1000.0,
            5.0 if mode == "full" else 3.0,
            64,
            20.0,
            300 if mode == "full" else 200,
            20,
            10,
            64,
            200,
            range(50, 100),
            12,
        )


@dataclasses.dataclass
class Options:
    """What ``livesr bench --report`` was asked to do."""

    out_dir: Path
    mode: str = "default"
    nanopyx: bool = True
    gpu_json: Path | None = None

    def command(self) -> str:
        """The exact command line that reproduces this report."""
        parts = ["livesr", "bench", "--report", str(self.out_dir)]
        if self.mode != "default":
            parts.append(f"--{self.mode}")
        if not self.nanopyx:
            parts.append("--no-nanopyx")
        if self.gpu_json is not None:
            parts += ["--gpu-json", str(self.gpu_json)]
        return shlex.join(parts)


@dataclasses.dataclass
class Section:
    heading: str
    body: list[str]
    data: dict[str, Any]
    failed: str = ""


# ------------------------------------------------------------------ formatting
def _f(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (``-`` for NaN/None)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _machine_line(
    info: dict[str, Any], load0: Sequence[float], load1: Sequence[float]
) -> str:
    gpus = ", ".join(info["gpus"]) or "none"
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {gpus}; load average "
        f"(1/5/15 min) {'/'.join(_f(x, 2) for x in load0)} before, "
        f"{'/'.join(_f(x, 2) for x in load1)} after; livesr {info['livesr']}, "
        f"Python {info['python']}, numpy {info['numpy']}."
    )


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


# ------------------------------------------------------------------ sections
def _esrrf_section(opts: Options, st: Settings) -> Section:
    res = measure.measure_esrrf(
        st.esrrf_sizes,
        st.esrrf_rounds,
        nanopyx=opts.nanopyx,
        nanopyx_rounds=st.nanopyx_rounds,
    )
    rows = res["rows"]
    png = plots.plot_esrrf(rows, opts.out_dir / "esrrf_throughput.png")
    npx = {r["size"]: r["median_s"] for r in rows if r["impl"] == measure.NANOPYX_ID}
    table = []
    for r in sorted(rows, key=lambda r: (r["size"], r["median_s"])):
        vs = npx.get(r["size"])
        table.append(
            [
                f"{r['size']}²",
                r["impl"],
                r["n"],
                _f(r["median_s"] * 1e3),
                _f(r["min_s"] * 1e3),
                _f(r["fps"]),
                _f(vs / r["median_s"]) if vs else "-",
            ]
        )
    body = [
        "Per-frame eSRRF map (RGC × magnified intensity), M=5, R=1.5, S=1, intensity "
        "weighting, one input frame per call (frames of Poisson-noisy Gaussian "
        f"emitters). Per size: one untimed warm-up call of each implementation, then "
        f"{st.esrrf_rounds} rounds in which every implementation runs once, in a "
        f'rotating order; NanoPyx (`eSRRF_ST(...).run(..., run_type="threaded")`, '
        f"a 1-frame stack, private HOME, `NANOPYX_DISABLE_OPENCL=1`) and any "
        f"implementation whose warm-up took over 2 s take part in the first "
        f"{st.nanopyx_rounds} rounds only. Frames/s = 1 / median seconds per frame.",
        "",
        *_table(
            [
                "size",
                "implementation",
                "timed calls",
                "median ms",
                "min ms",
                "frames/s",
                "× NanoPyx",
            ],
            table,
        ),
        f"![eSRRF throughput vs frame size]({png.name})",
        "",
    ]
    via = sorted({r["via"] for r in rows if r["via"] != "nanopyx"})
    body.append(f"livesr implementations called through: {', '.join(via) or '-'}.")
    if res["nanopyx"]:
        body.append(f"NanoPyx version: {res['nanopyx']}.")
    body += [f"- Note: {n}" for n in res["notes"]]
    if npx:
        best = {}
        for r in rows:
            if r["impl"] != measure.NANOPYX_ID and r["size"] in npx:
                best[r["size"]] = max(best.get(r["size"], 0.0), r["fps"])
        body.append("")
        body.append(
            "Fastest livesr implementation vs NanoPyx threaded: "
            + "; ".join(f"{s}²: ×{_f(best[s] * npx[s])}" for s in sorted(best))
            + "."
        )
    return Section(
        HEADINGS[0],
        body,
        {"rows": rows, "notes": res["notes"], "nanopyx": res["nanopyx"]},
    )


def _transport_section(opts: Options, st: Settings) -> Section:
    res = measure.measure_transport(
        st.transport_shape, st.transport_fps, st.transport_s
    )
    png = plots.plot_transport(res, opts.out_dir / "transport_latency.png")
    lat, age = res["latency_ms"], res["age_ms"]
    h, w = res["shape"]
    summary = {
        "latency_ms_p50": _pct(lat, 50),
        "latency_ms_p99": _pct(lat, 99),
        "latency_ms_max": max(lat) if lat else math.nan,
        "age_ms_p50": _pct(age, 50),
        "age_ms_p99": _pct(age, 99),
    }
    body = [
        f"SourceLink (this process) → Ingest (a child process) over `ipc://`, "
        f"{h}×{w} uint16 frames offered at a paced {res['offered_fps']:g} frames/s "
        f"for {res['seconds']:g} s (credit window 16, replay ring "
        f"256 frames, overflow → gap). The ingest checks the seq stamped into the "
        f"pixels; latency = receive time − header `t_send` (the wire), age = receive "
        f"time − `t_acq` (ring + credit wait + wire).",
        "",
        *_table(
            [
                "frames offered",
                "received",
                "lost",
                "in gaps",
                "duplicates",
                "corrupted",
                "producer late",
                "achieved frames/s",
                "MB/s",
            ],
            [
                [
                    res["frames"],
                    res["received"],
                    res["lost"],
                    res["frames_in_gaps"],
                    res["duplicates"],
                    res["corrupted"],
                    res["producer_late"],
                    _f(res["achieved_fps"], 4),
                    _f(res["MB_per_s"], 4),
                ]
            ],
        ),
        *_table(
            ["path", "p50 ms", "p99 ms", "max ms"],
            [
                [
                    "receive − t_send",
                    _f(summary["latency_ms_p50"]),
                    _f(summary["latency_ms_p99"]),
                    _f(summary["latency_ms_max"]),
                ],
                [
                    "receive − t_acq",
                    _f(summary["age_ms_p50"]),
                    _f(summary["age_ms_p99"]),
                    _f(max(age) if age else math.nan),
                ],
            ],
        ),
        f"![transport latency histograms]({png.name})",
        "",
    ]
    data = {k: v for k, v in res.items() if k not in ("latency_ms", "age_ms")}
    return Section(HEADINGS[1], body, {**data, **summary})


def _fastest(rows: Sequence[dict[str, Any]], size: int) -> list[str]:
    """Ids, fastest first (NanoPyx excluded), at the size nearest ``size``."""
    mine = [r for r in rows if r["impl"] != measure.NANOPYX_ID]
    if not mine:
        return []
    near = min({r["size"] for r in mine}, key=lambda s: abs(s - size))
    return [
        r["impl"]
        for r in sorted(
            (r for r in mine if r["size"] == near), key=lambda r: r["median_s"]
        )
    ]


def _ordered_impls(ranking: Sequence[str]) -> list[measure.MapImpl]:
    impls, _ = measure.esrrf_map_impls()
    rank = {impl_id: i for i, impl_id in enumerate(ranking)}
    return sorted(impls, key=lambda i: (rank.get(i.id, len(rank)), i.id))


def _pipeline_section(opts: Options, st: Settings, ranking: Sequence[str]) -> Section:
    impls = _ordered_impls(ranking)
    frame_map = measure.frame_map_of(impls[0]) if impls else None
    res = measure.measure_pipeline(
        size=st.pipeline_size,
        fps=st.pipeline_fps,
        frames=st.pipeline_frames,
        window=st.pipeline_window,
        stride=st.pipeline_stride,
        frame_map=frame_map,
    )
    png = plots.plot_pipeline(res, opts.out_dir / "pipeline_latency.png")
    lat = res["latency_ms"]
    paths = res["by_path"]
    rows = [
        [name, _f(p.get("p50")), _f(p.get("p99")), _f(p.get("max")), p.get("n", "-")]
        for name, p in paths.items()
    ]
    body = [
        f"One `Pipeline` run in this process: simulated camera ({st.pipeline_size}², "
        f"blinking emitters, paced at {st.pipeline_fps:g} frames/s, "
        f"{st.pipeline_frames} frames) → lossless link (inproc) → raw OME-Zarr → "
        f"processing ring → sliding eSRRF (M=5, R=1.5, S=1, AVG, "
        f"**window {st.pipeline_window}, stride {st.pipeline_stride}**, drift "
        f"correction off; per-frame map: `{res['implementation']}`, the fastest in "
        f"section 1 at the nearest size) → PUB; latency budget "
        f"{res['budget_ms']:g} ms. Latency is measured for the newest frame of every "
        f"published image: frame acquired → SR image published.",
        "",
        *_table(
            [
                "frames acquired",
                "persisted",
                "in gaps",
                "images published",
                "windows skipped",
                "end-to-end p50 ms",
                "end-to-end p99 ms",
            ],
            [
                [
                    res["frames_acquired"],
                    res["frames_persisted"],
                    res["frames_in_gaps"],
                    res["windows_published"],
                    res["windows_skipped"],
                    _f(_pct(lat, 50)),
                    _f(_pct(lat, 99)),
                ]
            ],
        ),
        *_table(["latency path", "p50 ms", "p99 ms", "max ms", "n"], rows),
        f"![end-to-end latency histogram]({png.name})",
        "",
    ]
    return Section(
        HEADINGS[2], body, {**res, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}
    )


def _agent_section(opts: Options, st: Settings, ranking: Sequence[str]) -> Section:
    impls = _ordered_impls(ranking)
    pair: list[measure.MapImpl] = []
    for impl in impls:  # the fastest, then the fastest of another backend
        if not pair or (len(pair) == 1 and impl.backend != pair[0].backend):
            pair.append(impl)
    if len(pair) < 2:
        pair = impls[:2]
    res = measure.measure_agent(
        pair,
        size=st.agent_size,
        calls=st.agent_calls,
        delayed=st.agent_delayed,
        warm_runs=st.agent_warm_runs,
    )
    png = plots.plot_agent(res, opts.out_dir / "agent_delay.png")
    start, stop = res["delayed"]
    med = res["medians_s"]
    body = [
        f"A private toy kernel with two implementations that run the real "
        f"`esrrf_map` backends `{res['favourite']}` and `{res['other']}` on a "
        f"{res['size']}² frame (M=5, R=1.5). After {st.agent_warm_runs} benchmark runs "
        f"of each (medians {_f(med[res['favourite']] * 1e3)} ms and "
        f"{_f(med[res['other']] * 1e3)} ms), `{res['favourite']}` is the benchmark "
        f"favourite. During calls {start}-{stop - 1} of {res['calls']} a hook slows "
        f"it by `time.sleep({_f(res['extra_s'] * 1e3)} ms)` per call "
        f"({res['delay_factor']:g}× the other's median: its device is busy with "
        f"someone else's work, as the GPU overloaded by another process in the "
        f"NanoPyx paper's Extended Data Fig. 7). The two sequences, \"always "
        f'`{res["favourite"]}`" (`kernel.using`) and the dispatcher with its '
        f"`DelayAgent`, are interleaved call by call.",
        "",
        *_table(
            [
                "sequence",
                "mean ms per call",
                f"mean ms, calls {start}-{stop - 1}",
                f"calls on {res['other']} (delayed stretch)",
                f"calls on {res['other']} (elsewhere)",
            ],
            [
                [
                    f"always {res['favourite']}",
                    _f(res["mean_always_s"] * 1e3),
                    _f(res["stretch_mean_always_s"] * 1e3),
                    0,
                    0,
                ],
                [
                    "agent",
                    _f(res["mean_agent_s"] * 1e3),
                    _f(res["stretch_mean_agent_s"] * 1e3),
                    res["agent_other_in_stretch"],
                    res["agent_other_outside"],
                ],
            ],
        ),
        f"**Mean run time ratio, always-favourite / agent: ×{_f(res['ratio'])}** "
        f"(over the delayed stretch: "
        f"×{_f(res['stretch_mean_always_s'] / res['stretch_mean_agent_s'])}; the "
        f"NanoPyx paper reports ×1.8 for convolutions and ×1.5 for eSRRF).",
        "",
        f"![run time per call, agent vs always the favourite]({png.name})",
        "",
    ]
    return Section(HEADINGS[3], body, res)


def _gpu_section(opts: Options, st: Settings) -> Section:
    body: list[str] = []
    if opts.gpu_json is None:
        body.append(
            "- Note: no `--gpu-json FILE` given. On a GPU machine run "
            "`python bench/gpu_esrrf.py --json FILE` and pass the file (the H100 "
            "figures are in `bench/results/h100_gpu_esrrf.json`). When CuPy is "
            "installed, section 1 includes the `cupy` implementation."
        )
        return Section(HEADINGS[4], body, {})
    path = Path(opts.gpu_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"--gpu-json {path}: cannot read it as bench/gpu_esrrf.py JSON ({exc}); "
            "pass the file written by 'python bench/gpu_esrrf.py --json FILE'"
        ) from exc
    stream = data.get("stream") if isinstance(data, dict) else None
    if not isinstance(stream, list) or not stream:
        raise ValueError(
            f"--gpu-json {path}: no 'stream' list (not bench/gpu_esrrf.py output?)"
        )
    ceilings = data.get("ceilings") or {}
    parity = data.get("parity") or []
    device = ceilings.get("device", "?")
    ok = sum(1 for p in parity if p.get("ok"))
    rows = []
    best: dict[int, float] = {}
    for e in sorted(stream, key=lambda e: (e["size"], e["batch"], not e.get("upload"))):
        rows.append(
            [
                f"{e['size']}²",
                e["batch"],
                e.get("window", "-"),
                "yes" if e.get("upload") else "no",
                e.get("frames", "-"),
                _f(e["fps"], 4),
                _f(e.get("limit_fps", math.nan), 4),
            ]
        )
        if e.get("upload"):
            best[e["size"]] = max(best.get(e["size"], 0.0), float(e["fps"]))
    body += [
        f"Streaming eSRRF (M=5, R=1.5, S=1, intensity weighting) on `{device}`, from "
        f"`{path.name}` written by `bench/gpu_esrrf.py` (not measured by this "
        "command): "
        f"frames uploaded from pinned host memory on a copy stream, per-frame map and "
        f"window accumulation on a compute stream, B frames per launch. Parity checks "
        f"passed: {ok} of {len(parity)}.",
        "",
        *_table(
            [
                "size",
                "batch B",
                "window",
                "upload",
                "frames",
                "input frames/s",
                "arithmetic limit frames/s",
            ],
            rows,
        ),
        "Best with upload: "
        + "; ".join(f"{s}²: {_f(v, 4)} frames/s" for s, v in sorted(best.items()))
        + ".",
        "",
    ]
    return Section(
        HEADINGS[4],
        body,
        {"device": device, "best_fps": best, "parity_ok": ok, "parity": len(parity)},
    )


# ------------------------------------------------------------------ driver
def write_report(opts: Options) -> tuple[Path, bool]:
    """Run every section and write ``report.md``, the PNGs and ``report.json``.

    Returns
    -------
    path : Path
        ``report.md``.
    ok : bool
        False when a section failed (its error is in the report).
    """
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(
            "livesr bench --report draws its plots with matplotlib, which is not "
            "installed: pip install 'livesr[report]' (or pip install matplotlib)"
        )
    out = Path(opts.out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--report {out}: exists and is not a folder; pass a folder path"
        )
    out.mkdir(parents=True, exist_ok=True)
    st = Settings.for_mode(opts.mode)
    info = measure.machine()
    command = opts.command()
    started = time.perf_counter()
    sections: list[Section] = []
    ranking: list[str] = []

    def run(heading: str, fn: Callable[[], Section]) -> Section:
        load0 = measure.load_average()
        t0 = time.perf_counter()
        logger.info("report: %s", heading)
        try:
            sec = fn()
        except Exception as exc:  # report it, go on with the other sections
            logger.error(
                "report section %r failed: %s",
                heading,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            sec = Section(heading, [], {}, failed=f"{type(exc).__name__}: {exc}")
        info_now = measure.machine()
        sec.data["load_average_before"] = list(load0)
        sec.data["load_average_after"] = list(measure.load_average())
        sec.data["seconds"] = time.perf_counter() - t0
        sec.body[:0] = [
            _machine_line(info_now, load0, sec.data["load_average_after"]),
            f"Reproduce: `{command}` ({sec.data['seconds']:.0f} s for this section).",
            "",
        ]
        if sec.failed:
            sec.body.append(f"**Failed**: {sec.failed}")
        sections.append(sec)
        return sec

    esrrf = run(HEADINGS[0], lambda: _esrrf_section(opts, st))
    ranking = _fastest(esrrf.data.get("rows", []), st.agent_size)
    pipe_rank = _fastest(esrrf.data.get("rows", []), st.pipeline_size)
    run(HEADINGS[1], lambda: _transport_section(opts, st))
    run(HEADINGS[2], lambda: _pipeline_section(opts, st, pipe_rank))
    run(HEADINGS[3], lambda: _agent_section(opts, st, ranking))
    run(HEADINGS[4], lambda: _gpu_section(opts, st))

    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    gpus = ", ".join(info["gpus"]) or "none"
    lines = [
        "# livesr benchmark report",
        "",
        f"Generated {now} by `{command}` (mode: {opts.mode}; "
        f"{time.perf_counter() - started:.0f} s in all).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {gpus}; livesr "
        f"{info['livesr']}, Python {info['python']}, numpy {info['numpy']}. Timings "
        "on a shared machine are noisy: compare implementations measured in the same "
        "run (they are interleaved) and read the load averages.",
        "",
    ]
    for sec in sections:
        lines += [sec.heading, "", *sec.body, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    record = {
        "command": command,
        "mode": opts.mode,
        "generated": now,
        "machine": info,
        "sections": {s.heading: {**s.data, "failed": s.failed} for s in sections},
    }
    (out / "report.json").write_text(
        json.dumps(record, indent=1, default=_jsonable) + "\n", encoding="utf-8"
    )
    failed = [s.heading for s in sections if s.failed]
    if failed:
        logger.error("report sections failed: %s", "; ".join(failed))
    return path, not failed


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, range):
        return [obj.start, obj.stop]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def key_figures(record: dict[str, Any]) -> dict[str, Any]:
    """The few numbers worth quoting from a ``report.json`` (for the README)."""
    secs = record["sections"]
    out: dict[str, Any] = {}
    rows = secs.get(HEADINGS[0], {}).get("rows", [])
    for r in rows:
        out[f"esrrf {r['size']}² {r['impl']} frames/s"] = round(r["fps"], 3)
    t = secs.get(HEADINGS[1], {})
    if "latency_ms_p50" in t:
        out["transport p50/p99 ms"] = (t["latency_ms_p50"], t["latency_ms_p99"])
        out["transport lost"] = t["lost"]
    p = secs.get(HEADINGS[2], {})
    if "p50_ms" in p:
        out["end-to-end p50/p99 ms"] = (p["p50_ms"], p["p99_ms"])
    a = secs.get(HEADINGS[3], {})
    if "ratio" in a:
        out["agent ratio"] = a["ratio"]
    return out


__all__ = ["HEADINGS", "Options", "Settings", "key_figures", "write_report"]
