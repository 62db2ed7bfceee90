"""``livesr bench --report DIR``: a Markdown benchmark report with PNG plots.

Sections (each states the machine, the load average before and after, the livesr
version and the command that reproduces it):

1. eSRRF throughput vs frame size: every available ``esrrf_map`` implementation and
   NanoPyx's ``eSRRF_ST`` threaded, interleaved, warm-up excluded;
2. transport: SourceLink -> Ingest over ``ipc://``, paced, latency histograms;
3. end-to-end latency of a short live :class:`~livesr.stream._pipeline.Pipeline` run;
4. the delay agent under an induced delay (cf. NanoPyx Extended Data Fig. 7);
5. GPU streaming figures from ``bench/gpu_esrrf.py --json`` (``--gpu-json FILE``);
6. the eSRRF parameter sweep: seconds per (sensitivity, radius) pair of every CPU
   implementation and of NanoPyx's sweep on the same frames, and the GPU figures of
   ``bench/sweep_bench.py --json`` (``--sweep-gpu-json FILE``).
7. drift against the simulator's ground truth: live (causal and table), batch and
   NanoPyx RMS, the no-drift mean, the largest step, a plot of estimated vs true
   drift (:mod:`._report_science`);
8. live resolution against ground truth: decorrelation and even/odd FRC per window
   length vs the PSF's FWHM and the Nyquist floor, plotted.

Writes ``DIR/report.md``, one PNG per figure and ``DIR/report.json`` (the numbers).
A section that fails is reported as failed (with the error) and the others still
run; the command then exits with status 1.  Optional pieces (NanoPyx, CuPy, the GPU
JSON) that are missing give a note.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream.cli import _report_measure as measure
from livesr.stream.cli._report_model import (
    HEADINGS,
    Options,
    Section,
    Settings,
    machine_line,
)
from livesr.stream.cli._report_science import drift_section, resolution_section
from livesr.stream.cli._report_sections import (
    agent_section,
    esrrf_section,
    fastest,
    gpu_section,
    pipeline_section,
    transport_section,
)
from livesr.stream.cli._report_sweep import sweep_section

__all__ = ["HEADINGS", "Options", "Settings", "key_figures", "write_report"]

logger = logging.getLogger(__name__)


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

    def run(heading: str, fn: Callable[[], Section]) -> Section:
        return _run_section(heading, fn, command)

    esrrf = run(HEADINGS[0], lambda: esrrf_section(opts, st))
    ranking = fastest(esrrf.data.get("rows", []), st.agent_size)
    pipe_rank = fastest(esrrf.data.get("rows", []), st.pipeline_size)
    sections = [
        esrrf,
        run(HEADINGS[1], lambda: transport_section(opts, st)),
        run(HEADINGS[2], lambda: pipeline_section(opts, st, pipe_rank)),
        run(HEADINGS[3], lambda: agent_section(opts, st, ranking)),
        run(HEADINGS[4], lambda: gpu_section(opts, st)),
        run(HEADINGS[5], lambda: sweep_section(opts, st)),
        run(HEADINGS[6], lambda: drift_section(opts, st)),
        run(HEADINGS[7], lambda: resolution_section(opts, st)),
    ]
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    path = out / "report.md"
    path.write_text(
        _markdown(sections, info, opts, command, now, time.perf_counter() - started),
        encoding="utf-8",
    )
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


def _run_section(heading: str, fn: Callable[[], Section], command: str) -> Section:
    """Run one section's ``fn``; a failure becomes a failed section (the others
    still run).  Prepends the machine line (load average before and after) and the
    command that reproduces it."""
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
        machine_line(info_now, load0, sec.data["load_average_after"]),
        f"Reproduce: `{command}` ({sec.data['seconds']:.0f} s for this section).",
        "",
    ]
    if sec.failed:
        sec.body.append(f"**Failed**: {sec.failed}")
    return sec


def _markdown(
    sections: list[Section],
    info: dict[str, Any],
    opts: Options,
    command: str,
    now: str,
    seconds: float,
) -> str:
    """``report.md``: title, how it was made, the machine, then every section."""
    gpus = ", ".join(info["gpus"]) or "none"
    lines = [
        "# livesr benchmark report",
        "",
        f"Generated {now} by `{command}` (mode: {opts.mode}; "
        f"{seconds:.0f} s in all).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {gpus}; livesr "
        f"{info['livesr']}, Python {info['python']}, numpy {info['numpy']}. Timings "
        "on a shared machine are noisy: compare implementations measured in the same "
        "run (they are interleaved) and read the load averages.",
        "",
    ]
    for sec in sections:
        lines += [sec.heading, "", *sec.body, ""]
    return "\n".join(lines).rstrip() + "\n"


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
    sw = secs.get(HEADINGS[5], {})
    for r in sw.get("rows", []):
        out[f"sweep {r['impl']} s/pair"] = round(r["s_per_pair"], 4)
    if "ratio" in sw:
        out["sweep NanoPyx s/pair"] = round(sw["nanopyx_s_per_pair"], 4)
        out["sweep x NanoPyx (fastest)"] = round(sw["ratio"], 2)
        out["sweep same best pair"] = sw["same_best"]
    dr = secs.get(HEADINGS[6], {})
    if "no_drift_max_abs_mean_px" in dr:
        out["drift no-drift max |mean| px"] = round(dr["no_drift_max_abs_mean_px"], 4)
        out["drift live max RMS px"] = round(dr["drift_max_live_rms_px"], 4)
        out["drift max step px"] = round(dr["max_step_px"], 4)
    for r in sw.get("gpu", []):
        out[f"sweep {r['device']} {r['case']['size']}² cupy s/pair"] = round(
            r["s_per_pair"], 5
        )
    return out
