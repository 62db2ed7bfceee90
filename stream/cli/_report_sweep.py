"""Section 6 of ``livesr bench --report``: the eSRRF parameter sweep, time per
(sensitivity, radius) pair vs NanoPyx, CPU (measured by the report) and GPU (read
from ``bench/sweep_bench.py --json`` output of a GPU machine, ``--sweep-gpu-json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livesr.stream.cli import _report_measure as measure
from livesr.stream.cli._report_model import (
    HEADINGS,
    Options,
    Section,
    Settings,
    fmt,
    md_table,
)

__all__ = ["read_sweep_gpu_json", "sweep_gpu_rows", "sweep_section"]

#: Where the H100 figures of the sweep go in the repository.
H100_JSON = "bench/results/sweep_gpu_h100.json"


def _case_text(case: dict[str, Any]) -> str:
    return (
        f"{case['size']}²×{case['frames']}, M={case['magnification']}, "
        f"{len(case['sensitivities'])}×{len(case['radii'])}"
    )


def _pair(best: Sequence[float]) -> str:
    return f"({best[0]:g}, {best[1]:g})"


def _rounds(n: int) -> str:
    return "1 round sweeps" if n == 1 else f"{n} rounds sweep"


def _yes(flag: Any) -> str:
    return "-" if flag is None else ("yes" if flag else "no")


def sweep_section(opts: Options, st: Settings) -> Section:
    res = measure.measure_sweep(
        size=st.sweep_size,
        frames=st.sweep_frames,
        magnification=st.sweep_magnification,
        sensitivities=st.sweep_sensitivities,
        radii=st.sweep_radii,
        rounds=st.sweep_rounds,
        nanopyx=opts.nanopyx,
    )
    case = res["case"]
    table = [
        [
            f"livesr `{r['impl']}`"
            + (" (fastest)" if r["impl"] == res["fastest"] else ""),
            len(r["seconds"]),
            fmt(min(r["seconds"])),
            fmt(r["s_per_pair"]),
            fmt(r["ratio"]) if "ratio" in r else "-",
            _pair(r["best"]),
            _yes(r.get("same_best")),
            f"{r['max_abs_qnr_diff']:.2g}" if "max_abs_qnr_diff" in r else "-",
        ]
        for r in res["rows"]
    ]
    if res["nanopyx"]:
        table.append(
            [
                f"NanoPyx {res['nanopyx']}",
                len(res["nanopyx_seconds"]),
                fmt(min(res["nanopyx_seconds"])),
                fmt(res["nanopyx_s_per_pair"]),
                "1",
                _pair(res["nanopyx_best"]),
                "-",
                "-",
            ]
        )
    body = [
        f"`livesr.kernels.esrrf_sweep` (QnR = FRC resolution × error-map RSP, AVG, "
        f"sensitivities {', '.join(f'{s:g}' for s in case['sensitivities'])} × radii "
        f"{', '.join(f'{r:g}' for r in case['radii'])}, M={case['magnification']}) on "
        f"every CPU implementation of the engine, beside NanoPyx's "
        f"`run_esrrf_parameter_sweep(..., return_qnr=True)` (OpenCL off, private "
        f"HOME), on the same simulated blinking stack of {case['frames']} frames of "
        f"{case['size']}² (`bench/sweep_bench.py`'s, seed 1). Each first sweeps 4 "
        f"frames untimed, then {_rounds(st.sweep_rounds)} the whole stack with "
        f"each, in a rotating order; s per pair = best sweep / {case['pairs']} pairs. "
        f"× NanoPyx = NanoPyx's s per pair / this row's.",
        "",
        *md_table(
            [
                "implementation",
                "timed sweeps",
                "best s per sweep",
                "s per pair",
                "× NanoPyx",
                "best pair (S, R)",
                "same best pair as NanoPyx",
                "max abs QnR diff vs NanoPyx",
            ],
            table,
        ),
    ]
    if res["nanopyx"]:
        body.append(
            f"**Fastest livesr CPU implementation `{res['fastest']}`: "
            f"{fmt(res['nanopyx_s_per_pair'] / res['ratio'])} s per pair vs NanoPyx "
            f"{fmt(res['nanopyx_s_per_pair'])} s: ×{fmt(res['ratio'])}**; same best "
            f"pair: {_yes(res['same_best'])}; largest |QnR difference| "
            f"{res['max_abs_qnr_diff']:.2g}."
        )
    body += [f"- Note: {n}" for n in res["notes"]]
    gpu_body, gpu_rows = _gpu_part(opts, res)
    body += ["", *gpu_body]
    return Section(HEADINGS[5], body, {**res, "gpu": gpu_rows})


def _gpu_part(
    opts: Options, cpu: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The GPU table from ``--sweep-gpu-json`` (or a note where none was given)."""
    if opts.sweep_gpu_json is None:
        return [
            "- Note: no `--sweep-gpu-json FILE` given. On a GPU machine run "
            "`python bench/sweep_bench.py --impl cupy --no-nanopyx --json FILE` and "
            "the same with `--impl numpy` (the baseline on that machine), then pass "
            f"the file (H100 figures go to `{H100_JSON}`; recipe in "
            "`bench/sweep_bench.py`)."
        ], []
    path = Path(opts.sweep_gpu_json)
    rows = sweep_gpu_rows(read_sweep_gpu_json(path))
    if not rows:
        raise ValueError(
            f"--sweep-gpu-json {path}: no run with --impl cupy in it; pass the file "
            "written by 'python bench/sweep_bench.py --impl cupy --json FILE'"
        )
    table = [
        [
            r["device"],
            r["impl"],
            _case_text(r["case"]),
            len(r["seconds"]),
            fmt(r["s_per_pair"]),
            fmt(r.get("numpy_s_per_pair", math.nan)),
            fmt(r.get("vs_numpy", math.nan)),
            _pair(r["best"]),
            _yes(r.get("same_best_as_numpy")),
            fmt(r.get("nanopyx_s_per_pair", math.nan)),
            fmt(r.get("vs_nanopyx", math.nan)),
            _yes(r.get("same_best_as_nanopyx")),
            _run_types(r.get("nanopyx_run_types")),
        ]
        for r in rows
    ]
    body = [
        f"GPU, from `{path.name}` (written by `bench/sweep_bench.py --json` on the "
        "GPU machine, not measured by this command): the CuPy implementation of every "
        "sweep kernel, beside the numpy one on the same machine's CPU and, where "
        "`bench/nanopyx_gpu_sweep.py` ran, NanoPyx 2.1.5's sweep on the same stack and "
        "machine (its Liquid Engine agent free to choose OpenCL on the GPU; the run "
        "types it chose are counted).",
        "",
        *md_table(
            [
                "device",
                "implementation",
                "stack, pairs",
                "timed sweeps",
                "s per pair",
                "numpy s per pair (same machine)",
                "× numpy",
                "best pair (S, R)",
                "same best pair as numpy",
                "NanoPyx s per pair (same machine)",
                "× NanoPyx",
                "same best pair as NanoPyx",
                "NanoPyx run types",
            ],
            table,
        ),
    ]
    same = [r for r in rows if r["case"] == _case_key(cpu["case"])]
    if same and cpu.get("nanopyx"):
        r = same[0]
        body.append(
            f"Same case as the CPU table ({_case_text(r['case'])}): `{r['impl']}` on "
            f"{r['device']} {fmt(r['s_per_pair'])} s per pair vs NanoPyx "
            f"{fmt(cpu['nanopyx_s_per_pair'])} s on this machine's CPU (different "
            f"machines): ×{fmt(cpu['nanopyx_s_per_pair'] / r['s_per_pair'])}."
        )
    return body, rows


def _run_types(types: dict[str, int] | None) -> str:
    """``{"opencl_nvidia h100": 12}`` -> ``opencl_nvidia h100 ×12`` (or -)."""
    if not types:
        return "-"
    return ", ".join(f"{k} ×{v}" for k, v in sorted(types.items()))


def read_sweep_gpu_json(path: Path) -> list[dict[str, Any]]:
    """The runs of a ``bench/sweep_bench.py --json`` file (a list of run records)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"--sweep-gpu-json {path}: cannot read it as bench/sweep_bench.py JSON "
            f"({exc}); pass the file written by 'python bench/sweep_bench.py --json "
            "FILE'"
        ) from exc
    ok = isinstance(data, list) and all(
        isinstance(r, dict) and "case" in r and "livesr_s_per_pair" in r for r in data
    )
    if not ok:
        raise ValueError(
            f"--sweep-gpu-json {path}: expected a list of runs with 'case' and "
            "'livesr_s_per_pair' (bench/sweep_bench.py --json output)"
        )
    return list(data)


def _case_key(case: dict[str, Any]) -> dict[str, Any]:
    """The fields that make two sweep cases the same (implementation left out)."""
    return {
        "size": int(case["size"]),
        "frames": int(case["frames"]),
        "magnification": int(case["magnification"]),
        "sensitivities": [float(s) for s in case["sensitivities"]],
        "radii": [float(r) for r in case["radii"]],
    }


def sweep_gpu_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per CuPy run, with the numpy run of the same case (and machine).

    Returns
    -------
    list of dict
        ``{device, impl, case, seconds, s_per_pair, best}`` and, where a numpy run
        of the same case exists, ``numpy_s_per_pair``, ``vs_numpy`` (numpy / CuPy
        seconds per pair) and ``same_best_as_numpy``; where the run timed NanoPyx
        beside it (``bench/nanopyx_gpu_sweep.py``), ``nanopyx_s_per_pair``,
        ``vs_nanopyx`` (NanoPyx / CuPy seconds per pair), ``same_best_as_nanopyx``,
        ``max_abs_qnr_diff`` and ``nanopyx_run_types`` (what its agent chose); sorted
        by case.
    """
    numpy_runs = {
        json.dumps(_case_key(r["case"])): r
        for r in runs
        if r["case"].get("impl") == "numpy"
    }
    rows = []
    for r in runs:
        if r["case"].get("impl") != "cupy":
            continue
        machine = r.get("machine") or {}
        row: dict[str, Any] = {
            "device": str(machine.get("gpu") or "GPU"),
            "impl": "cupy",
            "case": _case_key(r["case"]),
            "seconds": list(r.get("livesr_s") or []),
            "s_per_pair": float(r["livesr_s_per_pair"]),
            "best": [float(v) for v in r["livesr_best"]],
        }
        base = numpy_runs.get(json.dumps(row["case"]))
        if base is not None:
            per_pair = float(base["livesr_s_per_pair"])
            row["numpy_s_per_pair"] = per_pair
            row["vs_numpy"] = per_pair / row["s_per_pair"]
            row["same_best_as_numpy"] = [float(v) for v in base["livesr_best"]] == row[
                "best"
            ]
        if "nanopyx_s_per_pair" in r:
            row["nanopyx_s_per_pair"] = float(r["nanopyx_s_per_pair"])
            row["vs_nanopyx"] = row["nanopyx_s_per_pair"] / row["s_per_pair"]
            row["same_best_as_nanopyx"] = bool(r.get("same_best"))
            row["max_abs_qnr_diff"] = float(r.get("max_abs_qnr_diff", math.nan))
            row["nanopyx_run_types"] = dict(r.get("nanopyx_run_types") or {})
        rows.append(row)
    return sorted(
        rows,
        key=lambda r: (
            r["case"]["size"],
            r["case"]["magnification"],
            r["case"]["frames"],
            math.prod((len(r["case"]["sensitivities"]), len(r["case"]["radii"]))),
        ),
    )
