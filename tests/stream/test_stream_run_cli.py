"""``livesr run`` via ``livesr.stream.cli.main``: files, exact counts, bad flags."""

from __future__ import annotations

import csv
import json
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
import zarr

from livesr.stream.cli import main
from livesr.stream.cli._run_args import add_pipeline_arguments, config_from_args

CONFIG = """
[esrrf]
window = 10
stride = 10
magnification = 2
radius = 1.5

[drift]
enabled = true
block = 10

[stream]
latency_budget_ms = 100000.0
ring_mb = 1.0

[sim]
seed = 2
[sim.camera]
shape = [32, 32]
interval_ms = 2.0
exposure_ms = 2.0
stamp_index = true
"""


def _write_config(tmp_path: Path) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(CONFIG)
    return p


def test_run_sim_writes_all_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "run",
            "--source",
            "sim",
            "--config",
            str(_write_config(tmp_path)),
            "--frames",
            "60",
            "--output",
            str(out),
            "--drift",
            "off",
            "--stride",
            "5",
            "--no-status",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"results in {out}/ (summary.json, preview.png)" in err
    # issue 16: the run ends with a picture, the raw mean beside the last SR image
    png = (out / "preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import struct
    import zlib

    w, h = struct.unpack(">II", png[16:24])
    m = json.loads((out / "summary.json").read_text())["params"]["esrrf"]["magnification"]
    sr_side = int(np.asarray(zarr.open_group(str(out / "sr.ome.zarr"), mode="r")["0"]).shape[-1])
    assert (w, h) == (2 * sr_side + 4, sr_side) and sr_side % m == 0
    idat = png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8]
    pixels = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w + 1)[:, 1:]
    assert pixels[:, :sr_side].std() > 0 and pixels[:, sr_side + 4 :].std() > 0
    for name in (
        "raw.ome.zarr",
        "sr.ome.zarr",
        "windows.csv",
        "drift.csv",
        "summary.json",
        "config.toml",
    ):
        assert (out / name).exists(), name
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == 60 == s["frames_persisted"] + s["frames_in_gaps"]
    assert s["frames_in_gaps"] == 0
    assert s["windows_published"] + s["windows_skipped"] == (60 - 10) // 5 + 1
    assert s["windows_skipped"] == 0  # budget 100 s: nothing skipped
    assert set(s["latency_ms"]) >= {"p50", "p99"}
    assert (
        s["params"]["esrrf"]["stride"] == 5 and s["params"]["drift"]["enabled"] is False
    )
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    np.testing.assert_array_equal(raw[:, 0, 0], np.arange(60))
    # the effective configuration: the file with the flags applied, loadable again
    eff = tomllib.loads((out / "config.toml").read_text())
    assert eff["esrrf"]["stride"] == 5 and eff["drift"]["enabled"] is False
    assert eff["stream"]["frames"] == 60 and eff["sim"]["camera"]["shape"] == [32, 32]
    with open(out / "windows.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == s["windows_published"]


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (
            ["--temporal", "median"],
            "invalid choice: 'median' (choose from 'avg', 'var', 'tac2')",
        ),
        (["--drift", "maybe"], "invalid choice: 'maybe' (choose from 'on', 'off')"),
        (["--source", "camera"], "invalid choice: 'camera' (choose from 'sim', 'mm-sim', 'mm')"),
        (["--window", "1"], "expected an integer >= 2, got 1"),
        (["--magnification", "40"], "expected an integer in 1..16, got 40"),
        (["--radius", "abc"], "expected a number, got 'abc'"),
        (
            ["--listen", "ipc:///tmp/a", "--connect", "ipc:///tmp/a"],
            "not allowed with argument",
        ),
    ],
)
def test_bad_flags_return_2_with_valid_choices(
    argv: list[str], expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *argv]) == 2
    assert expect in capsys.readouterr().err


def test_bad_config_file_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[esrrf]\nwindo = 3\n")
    assert main(["run", "--config", str(bad), "--output", str(tmp_path / "o")]) == 2
    assert (
        "unknown key esrrf.windo; valid keys of [esrrf]: window"
        in capsys.readouterr().err
    )
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_shared_flags_parse_into_config() -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_pipeline_arguments(p)
    cfg = config_from_args(
        p.parse_args(
            [
                "--window",
                "30",
                "--stride",
                "3",
                "--magnification",
                "4",
                "--radius",
                "2",
                "--sensitivity",
                "2",
                "--temporal",
                "var",
                "--drift",
                "off",
                "--frames",
                "9",
                "--output",
                "x",
                "--latency-budget-ms",
                "250",
                "--raw-format",
                "ome-tiff",
            ]
        )
    )
    assert (cfg.esrrf.window, cfg.esrrf.stride, cfg.esrrf.magnification) == (30, 3, 4)
    assert (cfg.esrrf.radius, cfg.esrrf.sensitivity, cfg.esrrf.temporal) == (
        2.0,
        2.0,
        "var",
    )
    assert cfg.drift.enabled is False
    assert (
        cfg.stream.frames,
        cfg.stream.output,
        cfg.stream.latency_budget_ms,
        cfg.stream.raw_format,
    ) == (9, "x", 250.0, "ome-tiff")


def test_listen_and_connect_in_two_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write_config(tmp_path)
    ep = f"ipc://{tmp_path}/ingest.ipc"
    out = tmp_path / "out"
    result: dict[str, int] = {}

    def listen() -> None:
        result["listen"] = main(
            [
                "run",
                "--config",
                str(cfg),
                "--listen",
                ep,
                "--output",
                str(out),
                "--no-status",
                "--drift",
                "off",
                "--raw-format",
                "ome-tiff",
            ]
        )

    t = threading.Thread(target=listen)
    t.start()
    rc = main(
        ["run", "--config", str(cfg), "--connect", ep, "--frames", "30", "--no-status"]
    )
    t.join(60.0)
    assert not t.is_alive()
    assert rc == 0 and result["listen"] == 0
    err = capsys.readouterr().err
    assert "30 acknowledged, 0 in gaps, 0 unacknowledged" in err
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == 30 == s["frames_persisted"] + s["frames_in_gaps"]
    assert s["windows_published"] == (30 - 10) // 10 + 1
    assert (out / "raw.ome.tif").is_file()


def test_output_with_results_returns_2_and_is_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"old": 1}')
    assert (
        main(
            [
                "run",
                "--config",
                str(_write_config(tmp_path)),
                "--output",
                str(out),
                "--frames",
                "5",
                "--no-status",
            ]
        )
        == 2
    )
    assert (
        "already holds results (summary.json); choose another --output"
        in capsys.readouterr().err
    )
    assert (out / "summary.json").read_text() == '{"old": 1}'
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_listen_on_a_taken_endpoint_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind("tcp://127.0.0.1:0")
    port = sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1]
    try:
        rc = main(
            [
                "run",
                "--config",
                str(_write_config(tmp_path)),
                "--no-status",
                "--listen",
                f"tcp://127.0.0.1:{port}",
                "--output",
                str(tmp_path / "o"),
            ]
        )
    finally:
        sock.close(linger=0)
        ctx.term()
    assert rc == 1
    assert "cannot bind the ingest to 'tcp://127.0.0.1:" in capsys.readouterr().err


def test_sigterm_stops_the_run_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (a scheduler, systemd, ``kill``) ends `livesr run` cleanly: the source
    is stopped, the raw store is completed, the summary is written and accounts for
    every frame (issue 14: it used to die with no summary, the store incomplete)."""
    import json
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    log = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesr.stream.cli", "run", "--output", str(out),
         "--frames", "0", "--window", "10", "--stride", "10", "--magnification", "2",
         "--no-status"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        deadline = time.monotonic() + 120
        raw = out / "raw.ome.zarr" / "frames" / "seq"
        while time.monotonic() < deadline and proc.poll() is None:
            if raw.exists() and any(raw.rglob("*")):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # some frames in
        assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    # an unbounded run (--frames 0) ends by being stopped: nothing lost -> 0
    assert rc == 0, (tmp_path / "stderr.log").read_text()
    assert "SIGTERM" in (tmp_path / "stderr.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounting_ok"] and summary["frames_persisted"] > 0
    assert summary["frames_in_gaps"] == 0
    attrs = json.loads((out / "raw.ome.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["livesr"]["complete"] is True
    assert attrs["livesr"]["frames"] == summary["frames_persisted"]


@pytest.mark.parametrize(
    ("summary", "n_reasons"),
    [
        ({"accounting_ok": True, "frames_in_gaps": 0}, 0),
        ({"accounting_ok": True, "frames_in_gaps": 3, "gaps": [[5, 7, "x"]]}, 1),
        ({"accounting_ok": False, "frames_in_gaps": 0}, 1),
        ({"accounting_ok": True, "frames_in_gaps": 0, "error": "disk full"}, 1),
        ({"accounting_ok": True, "frames_in_gaps": 0, "processing_error": "E"}, 1),
    ],
)
def test_exit_status_is_zero_only_for_a_complete_run(summary: dict, n_reasons: int) -> None:
    """Issue 14: lost frames, broken accounting, a store or processing failure each
    make `livesr run` / `livesr replay` exit non-zero, with the reason printed."""
    from livesr.stream._run_session import finish_run, run_failures

    assert len(run_failures(summary)) == n_reasons
    full = {"frames_acquired": 10, "frames_persisted": 10, "windows_published": 1,
            "windows_skipped": 0, "latency_ms": {"p50": 1.0, "p99": 2.0}, "output": "o",
            **summary}
    assert finish_run("livesr run", full, None) == (1 if n_reasons else 0)


def test_config_endpoint_is_where_the_ingest_binds(tmp_path: Path) -> None:
    """Issue 14: an accepted `[stream] endpoint` takes effect (it was ignored)."""
    import json

    ep = f"ipc://{tmp_path}/cfg-ingest.ipc"
    cfg = tmp_path / "ep.toml"
    cfg.write_text(
        f'[esrrf]\nwindow = 4\nstride = 4\nmagnification = 2\n[drift]\nenabled = false\n'
        f'[stream]\nendpoint = "{ep}"\n[sim.camera]\nshape = [32, 32]\n'
    )
    out = tmp_path / "run"
    assert main(["run", "--config", str(cfg), "--output", str(out), "--frames", "8",
                 "--no-status"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["endpoints"]["ingest"] == ep
    assert summary["frames_persisted"] == 8 and summary["windows_published"] == 2


def test_a_refused_start_leaves_nothing_behind(tmp_path: Path) -> None:
    """Issue 14: a start refused at the ingest (here: a non-loopback endpoint
    without keys) leaves no folder or summary that would block the retry."""
    out = tmp_path / "refused"
    rc = main(["run", "--listen", "tcp://0.0.0.0:5999", "--output", str(out),
               "--no-status"])
    assert rc == 2  # refused: a setting to change
    assert not out.exists()
    # the retry with the same --output is not refused for a used folder
    rc = main(["run", "--output", str(out), "--frames", "10", "--window", "5",
               "--stride", "5", "--magnification", "2", "--no-status"])
    assert rc == 0 and (out / "summary.json").is_file()


def test_help_shows_every_default(capsys) -> None:
    """Issue 16: `livesr run --help` shows the effective defaults (the
    configuration's), the output folder rule and the simulated camera's rate."""
    from livesr.stream._config import LivesrConfig
    from livesr.stream.cli import main as cli_main

    try:
        rc = cli_main(["run", "--help"])
    except SystemExit as exc:
        rc = exc.code
    assert rc == 0
    text = " ".join(capsys.readouterr().out.split())
    e = LivesrConfig().esrrf
    for flag, value in (
        ("window", e.window),
        ("stride", e.stride),
        ("magnification", e.magnification),
        ("radius", e.radius),
    ):
        assert f"(default: {value}; [esrrf] {flag})" in text
    assert "(default: livesr-out-YYYYmmdd-HHMMSS, new per run; [stream] output)" in text
    assert "(default: on; [drift] enabled)" in text
    assert "64x64 px at 100 frames/s" in text


def test_default_output_folders_are_unique_per_run(tmp_path: Path, monkeypatch) -> None:
    """Issue 16: without --output (or [stream] output) each run gets its own
    timestamped folder, so two runs never collide on ./livesr-out."""
    from livesr.stream.cli import main as cli_main
    from livesr.stream.cli._run_args import unique_output_dir

    t = 1.8e9
    (tmp_path / unique_output_dir(t, tmp_path)).mkdir()
    second = unique_output_dir(t, tmp_path)
    assert second.endswith("-2") and not (tmp_path / second).exists()
    monkeypatch.chdir(tmp_path)
    args = ["run", "--frames", "12", "--window", "6", "--stride", "6",
            "--magnification", "2", "--drift", "off", "--no-status"]
    assert cli_main(args) == 0
    assert cli_main(args) == 0
    runs = sorted(p for p in tmp_path.glob("livesr-out-*") if (p / "summary.json").is_file())
    assert len(runs) == 2
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        assert s["frames_persisted"] == 12 and s["accounting_ok"] is True
