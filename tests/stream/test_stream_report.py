"""``livesr bench --report DIR``: the Markdown report, its PNGs and its numbers.

One ``--quick --no-nanopyx`` report is written in-process (module fixture, ~10-20 s
on the shared 2-core machine); the tests read it.  NanoPyx beside livesr is checked
on one tiny frame size directly (skipped when nanopyx is not installed).  No timed
assertions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from livesr.stream.cli import _report, main
from livesr.stream.cli import _report_measure as measure
from livesr.stream.cli._report_model import fmt
from livesr.stream.cli._report_sections import gpu_section
from livesr.stream.cli._report_sweep import (
    read_sweep_gpu_json,
    sweep_gpu_rows,
    sweep_section,
)

ROOT = Path(__file__).resolve().parents[2]
GPU_JSON = ROOT / "bench" / "results" / "h100_gpu_esrrf.json"
SWEEP_GPU_JSON = ROOT / "bench" / "results" / "sweep_gpu_h100.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUMBER = re.compile(r"^[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?$")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    out = tmp_path_factory.mktemp("report") / "rep"
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIVESR_CACHE_DIR", str(cache))
        rc = main(["bench", "--report", str(out), "--quick", "--no-nanopyx"])
    yield rc, out


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _tables(body: str) -> list[list[list[str]]]:
    """Markdown tables of ``body``: rows of cells (header and rule dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current[2:])
            current = []
    return tables


def test_report_exit_status_and_files(report: tuple[int, Path]) -> None:
    rc, out = report
    assert rc == 0, (
        (out / "report.md").read_text() if (out / "report.md").exists() else rc
    )
    assert (out / "report.md").is_file()
    data = json.loads((out / "report.json").read_text())
    assert data["mode"] == "quick"
    assert all(not s["failed"] for s in data["sections"].values())


def test_report_has_every_section_with_machine_and_command(
    report: tuple[int, Path],
) -> None:
    _, out = report
    text = (out / "report.md").read_text()
    sections = _sections(text)
    assert list(sections) == list(_report.HEADINGS)
    for heading, body in sections.items():
        assert "Machine:" in body and "cores" in body and "load average" in body, (
            heading
        )
        assert f"`livesr bench --report {out} --quick --no-nanopyx`" in body, heading
        assert "**Failed**" not in body, body


def test_report_pngs_exist_and_are_valid(report: tuple[int, Path]) -> None:
    from matplotlib.image import imread

    _, out = report
    text = (out / "report.md").read_text()
    names = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    # eSRRF, transport, pipeline, agent, drift, resolution
    assert len(names) == 6, names
    for name in names:
        png = out / name
        assert png.is_file(), name
        raw = png.read_bytes()
        assert raw[:8] == PNG_MAGIC, name
        assert 5_000 < len(raw) < 300_000, (name, len(raw))
        image = imread(png)
        assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 300
        assert float(image[..., :3].std()) > 0.01, f"{name} looks blank"


def test_report_tables_contain_numbers(report: tuple[int, Path]) -> None:
    _, out = report
    sections = _sections((out / "report.md").read_text())
    for heading in _report.HEADINGS[:4]:
        tables = _tables(sections[heading])
        assert tables, heading
        numbers = [
            float(cell)
            for table in tables
            for row in table
            for cell in row
            if NUMBER.match(cell)
        ]
        assert len(numbers) >= 4, (heading, tables)
        assert all(math.isfinite(x) for x in numbers)

    # eSRRF: every implementation row has a positive frames/s, both quick sizes
    (esrrf,) = _tables(sections[_report.HEADINGS[0]])
    assert {row[0] for row in esrrf} == {"32²", "48²"}
    assert all(float(row[5]) > 0 and float(row[3]) > 0 for row in esrrf)
    impls = {row[1] for row in esrrf}
    assert impls & {"numba", "cython"}, impls

    # transport: every offered frame accounted for, none corrupted
    counters, latency = _tables(sections[_report.HEADINGS[1]])
    offered, received, lost, gaps, dup, corrupted = (int(c) for c in counters[0][:6])
    assert offered == 100 and received + lost + gaps == offered
    assert corrupted == 0 and dup == 0
    assert all(float(c) >= 0 for row in latency for c in row[1:])

    # pipeline: images published, p50 <= p99
    counters = _tables(sections[_report.HEADINGS[2]])[0][0]
    assert int(counters[0]) == int(counters[1]) + int(counters[2])
    assert int(counters[3]) >= 1
    assert 0 < float(counters[5]) <= float(counters[6])

    # agent: two sequences and a stated mean ratio
    agent = sections[_report.HEADINGS[3]]
    rows = _tables(agent)[0]
    assert [r[0].split()[0] for r in rows] == ["always", "agent"]
    assert re.search(r"ratio, always-favourite / agent: ×\d", agent)


def test_report_drift_section_against_ground_truth(report: tuple[int, Path]) -> None:
    _, out = report
    sections = _sections((out / "report.md").read_text())
    body = sections[_report.HEADINGS[6]]
    (table,) = _tables(body)
    assert [r[0] for r in table] == ["none", "linear", "linear+walk"]  # seed 1
    data = json.loads((out / "report.json").read_text())["sections"]
    dr = data[_report.HEADINGS[6]]
    assert dr["runs"] == 3 and len(dr["rows"]) == 3
    for row, rec in zip(table, dr["rows"], strict=True):
        for key in ("live", "live_table", "batch"):
            assert 0 < rec[key]["rms"] < 1.0, (key, rec)  # 48² x 200: ~0.1-0.25 px
        assert float(row[3]) == pytest.approx(rec["live"]["rms"], abs=1e-4)
        assert row[6] == "-" and rec["nanopyx"] is None  # --no-nanopyx
    none = dr["rows"][0]
    assert dr["no_drift_max_abs_mean_px"] == pytest.approx(
        max(abs(v) for v in none["live"]["mean"])
    )
    assert "drift_accuracy.png" in body and "Not the issue's scenario size" in body


def test_report_resolution_section_against_ground_truth(
    report: tuple[int, Path],
) -> None:
    _, out = report
    sections = _sections((out / "report.md").read_text())
    (table,) = _tables(sections[_report.HEADINGS[7]])
    assert [int(r[0]) for r in table] == [10, 20]
    data = json.loads((out / "report.json").read_text())["sections"]
    res = data[_report.HEADINGS[7]]
    assert res["sr_pixel_nm"] == pytest.approx(50.0)  # 100 nm pixels, M = 2
    assert res["psf_fwhm_nm"] == pytest.approx(306, abs=1)
    for row, rec in zip(table, res["rows"], strict=True):
        # the even/odd FRC of a 10-20 frame window: about the PSF (367 / 297 nm
        # measured), above the Nyquist floor
        assert rec["frc_px"] is not None and rec["frc_resolved"]
        assert 0.7 * 306 < rec["frc_px"] * 50.0 < 1.6 * 306, rec
        assert float(row[3]) == pytest.approx(rec["frc_px"] * 50.0, rel=2e-3)
        assert row[6] == "100"  # the Nyquist floor: 2 SR px
        # the decorrelation as published live: resolved only where the FRC of the
        # same window confirms it (within 1.5 x), else with its reason
        if rec["decorr_resolved"]:
            assert rec["decorr_reason"] is None and row[2] == "yes"
            assert rec["frc_px"] / 1.5 <= rec["decorr_px"] <= rec["frc_px"] * 1.5
        else:
            assert row[2] == f"no ({rec['decorr_reason']})" and rec["decorr_reason"]


def test_report_notes_missing_optional_pieces(report: tuple[int, Path]) -> None:
    _, out = report
    sections = _sections((out / "report.md").read_text())
    assert "NanoPyx skipped: --no-nanopyx given" in sections[_report.HEADINGS[0]]
    assert "no `--gpu-json FILE` given" in sections[_report.HEADINGS[4]]
    assert "NanoPyx skipped: --no-nanopyx given" in sections[_report.HEADINGS[5]]
    assert "no `--sweep-gpu-json FILE` given" in sections[_report.HEADINGS[5]]


def test_report_sweep_section_times_every_cpu_implementation(
    report: tuple[int, Path],
) -> None:
    """Quick report, no NanoPyx: one row per CPU implementation, each with a
    positive time per pair = best sweep / 4 pairs, the fastest marked."""
    _, out = report
    sections = _sections((out / "report.md").read_text())
    (table,) = _tables(sections[_report.HEADINGS[5]])
    data = json.loads((out / "report.json").read_text())["sections"]
    sweep = data[_report.HEADINGS[5]]
    assert sweep["case"]["pairs"] == 4 and sweep["case"]["size"] == 32
    assert {row[0].split("`")[1] for row in table} == {
        r["impl"] for r in sweep["rows"]
    }
    assert {r["impl"] for r in sweep["rows"]} >= {"numpy"}
    for row, rec in zip(table, sweep["rows"], strict=True):
        assert rec["s_per_pair"] > 0 and len(rec["seconds"]) == int(row[1]) == 1
        assert rec["s_per_pair"] == pytest.approx(min(rec["seconds"]) / 4, rel=1e-12)
        assert row[2] == fmt(min(rec["seconds"])) and row[3] == fmt(rec["s_per_pair"])
        assert row[4] == "-" and row[6] == "-"  # no NanoPyx to compare with
    fastest = min(sweep["rows"], key=lambda r: r["s_per_pair"])["impl"]
    assert [row[0] for row in table if "(fastest)" in row[0]] == [
        f"livesr `{fastest}` (fastest)"
    ]
    # every implementation computes the same sweep: the same best pair
    assert len({tuple(r["best"]) for r in sweep["rows"]}) == 1


def test_sweep_section_beside_nanopyx(tmp_path: Path) -> None:
    """livesr's fastest CPU sweep vs NanoPyx's on the quick stack: positive times,
    ratio = their quotient, the same best pair, QnR maps equal to 1e-3."""
    import importlib.util

    if importlib.util.find_spec("nanopyx") is None:
        pytest.skip("nanopyx not installed")
    st = _report.Settings.for_mode("quick")
    sec = sweep_section(_report.Options(out_dir=tmp_path, mode="quick"), st)
    d = sec.data
    assert d["nanopyx"], d["notes"]
    fastest = {r["impl"]: r for r in d["rows"]}[d["fastest"]]
    assert fastest["s_per_pair"] > 0 and d["nanopyx_s_per_pair"] > 0
    assert d["nanopyx_s_per_pair"] == pytest.approx(
        min(d["nanopyx_seconds"]) / 4, rel=1e-12
    )
    assert d["ratio"] == pytest.approx(
        d["nanopyx_s_per_pair"] / fastest["s_per_pair"], rel=1e-12
    )
    assert d["same_best"] is True and fastest["best"] == d["nanopyx_best"]
    assert d["max_abs_qnr_diff"] < 1e-3
    body = "\n".join(sec.body)
    (table,) = _tables(body)
    rows = {row[0]: row for row in table}
    npx_row = rows[f"NanoPyx {d['nanopyx']}"]
    assert npx_row[3] == fmt(d["nanopyx_s_per_pair"])
    for rec in d["rows"]:
        (row,) = [r for k, r in rows.items() if f"`{rec['impl']}`" in k]
        assert float(row[3]) > 0 and row[4] == fmt(rec["ratio"])
        assert rec["ratio"] == pytest.approx(
            d["nanopyx_s_per_pair"] / rec["s_per_pair"], rel=1e-12
        )
        assert row[6] == "yes"
    assert f"×{fmt(d['ratio'])}**; same best pair: yes" in body


def _sweep_run(impl: str, per_pair: float, best: list[float], size: int = 64):
    return {
        "machine": {"gpu": "NVIDIA H100 80GB HBM3"},
        "case": {
            "size": size,
            "frames": 30,
            "magnification": 2,
            "sensitivities": [1.0, 2.0],
            "radii": [1.0, 1.5],
            "impl": impl,
            "pairs": 4,
        },
        "livesr_s": [per_pair * 4, per_pair * 5],
        "livesr_s_per_pair": per_pair,
        "livesr_best": best,
    }


def test_sweep_gpu_rows_pair_cupy_with_numpy_of_the_same_case() -> None:
    runs = [
        _sweep_run("cupy", 0.002, [1.0, 1.0]),
        _sweep_run("numpy", 0.05, [1.0, 1.0]),
        _sweep_run("cupy", 0.01, [2.0, 1.5], size=256),  # no numpy run of 256²
    ]
    rows = sweep_gpu_rows(runs)
    assert [r["case"]["size"] for r in rows] == [64, 256]
    assert rows[0]["vs_numpy"] == pytest.approx(0.05 / 0.002, rel=1e-12)
    assert rows[0]["same_best_as_numpy"] is True
    assert "vs_numpy" not in rows[1]
    assert rows[0]["device"] == "NVIDIA H100 80GB HBM3"


def test_sweep_gpu_rows_carry_nanopyx_timed_beside_cupy(tmp_path: Path) -> None:
    """A run of bench/nanopyx_gpu_sweep.py (NanoPyx's sweep timed on the same GPU
    machine and stack) gives its row NanoPyx's seconds per pair, the ratio, whether
    both chose the same pair and the run types NanoPyx's agent chose; the section
    renders them."""
    run = _sweep_run("cupy", 0.004, [1.0, 1.5])
    run.update(
        nanopyx_s=[0.9, 1.0], nanopyx_s_per_pair=0.225, same_best=True,
        max_abs_qnr_diff=2e-7, nanopyx_run_types={"opencl_nvidia h100 80gb hbm3": 8},
    )  # fmt: skip
    rows = sweep_gpu_rows([run, _sweep_run("numpy", 0.05, [1.0, 1.5])])
    (row,) = rows
    assert row["vs_nanopyx"] == pytest.approx(0.225 / 0.004, rel=1e-12)
    assert row["same_best_as_nanopyx"] is True and row["max_abs_qnr_diff"] == 2e-7
    assert row["nanopyx_run_types"] == {"opencl_nvidia h100 80gb hbm3": 8}
    assert "vs_nanopyx" not in sweep_gpu_rows([_sweep_run("cupy", 0.004, [1, 1.5])])[0]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps([run]))
    opts = _report.Options(
        out_dir=tmp_path, mode="quick", nanopyx=False, sweep_gpu_json=path
    )
    body = "\n".join(sweep_section(opts, _report.Settings.for_mode("quick")).body)
    _, gpu = _tables(body)
    assert gpu[0][9:] == [fmt(0.225), fmt(0.225 / 0.004), "yes", "opencl_nvidia h100 80gb hbm3 ×8"]


def test_sweep_section_renders_the_h100_json(tmp_path: Path) -> None:
    if not SWEEP_GPU_JSON.is_file():
        pytest.skip(f"{SWEEP_GPU_JSON} not in this checkout")
    opts = _report.Options(
        out_dir=tmp_path, mode="quick", nanopyx=False, sweep_gpu_json=SWEEP_GPU_JSON
    )
    sec = sweep_section(opts, _report.Settings.for_mode("quick"))
    body = "\n".join(sec.body)
    cpu, gpu = _tables(body)
    assert cpu and gpu
    assert all("H100" in row[0] and row[1] == "cupy" for row in gpu)
    runs = read_sweep_gpu_json(SWEEP_GPU_JSON)
    for row, rec in zip(gpu, sec.data["gpu"], strict=True):
        assert rec["s_per_pair"] > 0 and row[4] == fmt(rec["s_per_pair"])
        if "numpy_s_per_pair" in rec:
            assert rec["vs_numpy"] == pytest.approx(
                rec["numpy_s_per_pair"] / rec["s_per_pair"], rel=1e-12
            )
            assert row[6] == fmt(rec["vs_numpy"])
            assert rec["same_best_as_numpy"] is True, rec
    assert len(sec.data["gpu"]) == sum(r["case"]["impl"] == "cupy" for r in runs)


def test_sweep_gpu_json_errors_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "bench",
            "--report",
            str(tmp_path / "r"),
            "--quick",
            "--sweep-gpu-json",
            str(tmp_path / "nope.json"),
        ]
    )
    assert rc == 1
    assert "sweep_bench.py --impl cupy --json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"stream": []}')
    with pytest.raises(ValueError, match="expected a list of runs"):
        read_sweep_gpu_json(bad)
    numpy_only = tmp_path / "numpy_only.json"
    numpy_only.write_text(json.dumps([_sweep_run("numpy", 0.05, [1.0, 1.0])]))
    opts = _report.Options(
        out_dir=tmp_path, mode="quick", nanopyx=False, sweep_gpu_json=numpy_only
    )
    with pytest.raises(ValueError, match="no run with --impl cupy"):
        sweep_section(opts, _report.Settings.for_mode("quick"))


def test_gpu_section_reads_gpu_esrrf_json(tmp_path: Path) -> None:
    if not GPU_JSON.is_file():
        pytest.skip(f"{GPU_JSON} not in this checkout")
    opts = _report.Options(out_dir=tmp_path, mode="quick", gpu_json=GPU_JSON)
    sec = gpu_section(opts, _report.Settings.for_mode("quick"))
    body = "\n".join(sec.body)
    assert "H100" in body
    (table,) = _tables(body)
    assert {row[0] for row in table} >= {"256²", "512²"}
    assert all(float(row[5]) > 0 for row in table)
    assert sec.data["best_fps"][256] > 0


def test_gpu_json_errors_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    rc = main(
        [
            "bench",
            "--report",
            str(tmp_path / "r"),
            "--quick",
            "--gpu-json",
            str(missing),
        ]
    )
    assert rc == 1
    assert "gpu_esrrf.py --json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    opts = _report.Options(out_dir=tmp_path, gpu_json=bad)
    with pytest.raises(ValueError, match="no 'stream' list"):
        gpu_section(opts, _report.Settings.for_mode("quick"))


def test_report_flags_need_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick"]) == 1
    assert "--report DIR" in capsys.readouterr().err
    assert main(["bench", "--report", "x", "--quick", "--full"]) == 2
    assert main(["bench", "--sweep-gpu-json", "x.json"]) == 1
    assert "--sweep-gpu-json only apply to --report DIR" in capsys.readouterr().err


def test_nanopyx_environment_is_restored(tmp_path: Path) -> None:
    import os

    before = (os.environ.get("HOME"), os.environ.get("NANOPYX_DISABLE_OPENCL"))
    with measure.nanopyx_environment(str(tmp_path)):
        assert os.environ["HOME"] == str(tmp_path)
        assert os.environ["NANOPYX_DISABLE_OPENCL"] == "1"
    assert (os.environ.get("HOME"), os.environ.get("NANOPYX_DISABLE_OPENCL")) == before


def test_esrrf_beside_nanopyx_on_a_tiny_frame() -> None:
    import importlib.util

    if importlib.util.find_spec("nanopyx") is None:
        pytest.skip("nanopyx not installed")
    res = measure.measure_esrrf((16,), 1, nanopyx=True, nanopyx_rounds=1)
    by_impl = {r["impl"]: r for r in res["rows"]}
    assert measure.NANOPYX_ID in by_impl, res["notes"]
    assert by_impl[measure.NANOPYX_ID]["fps"] > 0
    assert res["nanopyx"]


def _fake_esrrf(sizes, rounds, **_):
    rows = [
        {
            "impl": impl,
            "backend": impl,
            "via": "kernel.using",
            "size": s,
            "n": rounds,
            "median_s": t * s * s,
            "min_s": t * s * s,
            "fps": 1 / (t * s * s),
        }
        for s in sizes
        for impl, t in (("cython", 1e-6), ("numba", 2e-6))
    ]
    return {"rows": rows, "notes": ["NanoPyx skipped: test."], "nanopyx": None}


def _fake_agent(impls, *, size, calls, delayed, **_):
    slow = [0.05 if i in delayed else 0.01 for i in range(calls)]
    return {
        "size": size,
        "calls": calls,
        "delayed": [delayed.start, delayed.stop],
        "favourite": "cython",
        "other": "numba",
        "medians_s": {"cython": 0.01, "numba": 0.02},
        "extra_s": 0.04,
        "delay_factor": 3.0,
        "always_s": slow,
        "agent_s": [0.02 if i in delayed else 0.01 for i in range(calls)],
        "agent_impl": ["numba" if i in delayed else "cython" for i in range(calls)],
        "mean_always_s": sum(slow) / calls,
        "mean_agent_s": 0.0125,
        "ratio": sum(slow) / calls / 0.0125,
        "stretch_mean_always_s": 0.05,
        "stretch_mean_agent_s": 0.02,
        "agent_other_in_stretch": len(delayed),
        "agent_other_outside": 0,
    }


def test_a_failing_section_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("ingest child process did not start")

    monkeypatch.setattr(measure, "measure_esrrf", _fake_esrrf)
    monkeypatch.setattr(measure, "measure_transport", broken)
    monkeypatch.setattr(measure, "measure_pipeline", broken)
    monkeypatch.setattr(measure, "measure_agent", _fake_agent)
    monkeypatch.setattr(measure, "measure_sweep", broken)
    path, ok = _report.write_report(_report.Options(out_dir=tmp_path, mode="quick"))
    assert not ok
    sections = _sections(path.read_text())
    assert list(sections) == list(_report.HEADINGS)
    for heading in (*_report.HEADINGS[1:3], _report.HEADINGS[5]):
        assert "**Failed**: RuntimeError: ingest child process" in sections[heading]
    assert "**Failed**" not in sections[_report.HEADINGS[0]]
    # quick: 60 calls, 15 delayed: always (15 * 50 + 45 * 10) / 60 = 20 ms, agent 12.5
    assert "always-favourite / agent: ×1.6**" in sections[_report.HEADINGS[3]]
    for name in ("esrrf_throughput.png", "agent_delay.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["sections"][_report.HEADINGS[1]]["failed"].startswith("RuntimeError")
