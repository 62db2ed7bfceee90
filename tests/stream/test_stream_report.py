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
from livesr.stream.cli._report_sections import gpu_section

ROOT = Path(__file__).resolve().parents[2]
GPU_JSON = ROOT / "bench" / "results" / "h100_gpu_esrrf.json"
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
    assert len(names) == 4, names  # eSRRF, transport, pipeline, agent
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


def test_report_notes_missing_optional_pieces(report: tuple[int, Path]) -> None:
    _, out = report
    sections = _sections((out / "report.md").read_text())
    assert "NanoPyx skipped: --no-nanopyx given" in sections[_report.HEADINGS[0]]
    assert "no `--gpu-json FILE` given" in sections[_report.HEADINGS[4]]


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
    path, ok = _report.write_report(_report.Options(out_dir=tmp_path, mode="quick"))
    assert not ok
    sections = _sections(path.read_text())
    assert list(sections) == list(_report.HEADINGS)
    for heading in _report.HEADINGS[1:3]:
        assert "**Failed**: RuntimeError: ingest child process" in sections[heading]
    assert "**Failed**" not in sections[_report.HEADINGS[0]]
    # quick: 60 calls, 15 delayed: always (15 * 50 + 45 * 10) / 60 = 20 ms, agent 12.5
    assert "always-favourite / agent: ×1.6**" in sections[_report.HEADINGS[3]]
    for name in ("esrrf_throughput.png", "agent_delay.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["sections"][_report.HEADINGS[1]]["failed"].startswith("RuntimeError")
