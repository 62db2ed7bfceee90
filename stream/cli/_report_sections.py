"""The five sections of ``livesr bench --report``, one function each: run the
experiment (through :mod:`._report_measure`, looked up as ``measure.X`` so a test
can replace one), draw its figure (:mod:`._report_plots`) and write its Markdown."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livesr.stream.cli import _report_measure as measure
from livesr.stream.cli import _report_plots as plots
from livesr.stream.cli._report_model import (
    HEADINGS,
    Options,
    Section,
    Settings,
    fmt,
    md_table,
    pct,
)

__all__ = [
    "agent_section",
    "esrrf_section",
    "fastest",
    "gpu_section",
    "pipeline_section",
    "transport_section",
]


def esrrf_section(opts: Options, st: Settings) -> Section:
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
                fmt(r["median_s"] * 1e3),
                fmt(r["min_s"] * 1e3),
                fmt(r["fps"]),
                fmt(vs / r["median_s"]) if vs else "-",
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
        *md_table(
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
        best: dict[int, float] = {}
        for r in rows:
            if r["impl"] != measure.NANOPYX_ID and r["size"] in npx:
                best[r["size"]] = max(best.get(r["size"], 0.0), r["fps"])
        body.append("")
        body.append(
            "Fastest livesr implementation vs NanoPyx threaded: "
            + "; ".join(f"{s}²: ×{fmt(best[s] * npx[s])}" for s in sorted(best))
            + "."
        )
    return Section(
        HEADINGS[0],
        body,
        {"rows": rows, "notes": res["notes"], "nanopyx": res["nanopyx"]},
    )


def transport_section(opts: Options, st: Settings) -> Section:
    res = measure.measure_transport(
        st.transport_shape, st.transport_fps, st.transport_s
    )
    png = plots.plot_transport(res, opts.out_dir / "transport_latency.png")
    lat, age = res["latency_ms"], res["age_ms"]
    h, w = res["shape"]
    summary = {
        "latency_ms_p50": pct(lat, 50),
        "latency_ms_p99": pct(lat, 99),
        "latency_ms_max": max(lat) if lat else math.nan,
        "age_ms_p50": pct(age, 50),
        "age_ms_p99": pct(age, 99),
    }
    body = [
        f"SourceLink (this process) → Ingest (a child process) over `ipc://`, "
        f"{h}×{w} uint16 frames offered at a paced {res['offered_fps']:g} frames/s "
        f"for {res['seconds']:g} s (credit window 16, replay ring "
        f"256 frames, overflow → gap). The ingest checks the seq stamped into the "
        f"pixels; latency = receive time − header `t_send` (the wire), age = receive "
        f"time − `t_acq` (ring + credit wait + wire).",
        "",
        *md_table(
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
                    fmt(res["achieved_fps"], 4),
                    fmt(res["MB_per_s"], 4),
                ]
            ],
        ),
        *md_table(
            ["path", "p50 ms", "p99 ms", "max ms"],
            [
                [
                    "receive − t_send",
                    fmt(summary["latency_ms_p50"]),
                    fmt(summary["latency_ms_p99"]),
                    fmt(summary["latency_ms_max"]),
                ],
                [
                    "receive − t_acq",
                    fmt(summary["age_ms_p50"]),
                    fmt(summary["age_ms_p99"]),
                    fmt(max(age) if age else math.nan),
                ],
            ],
        ),
        f"![transport latency histograms]({png.name})",
        "",
    ]
    data = {k: v for k, v in res.items() if k not in ("latency_ms", "age_ms")}
    return Section(HEADINGS[1], body, {**data, **summary})


def fastest(rows: Sequence[dict[str, Any]], size: int) -> list[str]:
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


def pipeline_section(opts: Options, st: Settings, ranking: Sequence[str]) -> Section:
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
        [name, fmt(p.get("p50")), fmt(p.get("p99")), fmt(p.get("max")), p.get("n", "-")]
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
        *md_table(
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
                    fmt(pct(lat, 50)),
                    fmt(pct(lat, 99)),
                ]
            ],
        ),
        *md_table(["latency path", "p50 ms", "p99 ms", "max ms", "n"], rows),
        f"![end-to-end latency histogram]({png.name})",
        "",
    ]
    return Section(
        HEADINGS[2], body, {**res, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    )


def agent_section(opts: Options, st: Settings, ranking: Sequence[str]) -> Section:
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
        f"of each (medians {fmt(med[res['favourite']] * 1e3)} ms and "
        f"{fmt(med[res['other']] * 1e3)} ms), `{res['favourite']}` is the benchmark "
        f"favourite. During calls {start}-{stop - 1} of {res['calls']} a hook slows "
        f"it by `time.sleep({fmt(res['extra_s'] * 1e3)} ms)` per call "
        f"({res['delay_factor']:g}× the other's median: its device is busy with "
        f"someone else's work, as the GPU overloaded by another process in the "
        f"NanoPyx paper's Extended Data Fig. 7). The two sequences, \"always "
        f'`{res["favourite"]}`" (`kernel.using`) and the dispatcher with its '
        f"`DelayAgent`, are interleaved call by call.",
        "",
        *md_table(
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
                    fmt(res["mean_always_s"] * 1e3),
                    fmt(res["stretch_mean_always_s"] * 1e3),
                    0,
                    0,
                ],
                [
                    "agent",
                    fmt(res["mean_agent_s"] * 1e3),
                    fmt(res["stretch_mean_agent_s"] * 1e3),
                    res["agent_other_in_stretch"],
                    res["agent_other_outside"],
                ],
            ],
        ),
        f"**Mean run time ratio, always-favourite / agent: ×{fmt(res['ratio'])}** "
        f"(over the delayed stretch: "
        f"×{fmt(res['stretch_mean_always_s'] / res['stretch_mean_agent_s'])}; the "
        f"NanoPyx paper reports ×1.8 for convolutions and ×1.5 for eSRRF).",
        "",
        f"![run time per call, agent vs always the favourite]({png.name})",
        "",
    ]
    return Section(HEADINGS[3], body, res)


def gpu_section(opts: Options, st: Settings) -> Section:
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
                fmt(e["fps"], 4),
                fmt(e.get("limit_fps", math.nan), 4),
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
        *md_table(
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
        + "; ".join(f"{s}²: {fmt(v, 4)} frames/s" for s, v in sorted(best.items()))
        + ".",
        "",
    ]
    return Section(
        HEADINGS[4],
        body,
        {"device": device, "best_fps": best, "parity_ok": ok, "parity": len(parity)},
    )

