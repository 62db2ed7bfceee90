"""``livesr run --source mm --mm-config FILE.cfg``: a Micro-Manager configuration loaded
into pymmcore-plus's ``UniMMCore`` exactly as a real one, here the shipped
``livesr_sim.cfg`` (the simulated microscope as ``#py`` Python devices).

Real pymmcore-plus, no mocks: the raw frames the run stores are compared with the
simulator rendering the same frames directly, every SR image with batch eSRRF.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("pymmcore_plus")

from livesr.adapters.sources.mm_config import (  # noqa: E402
    PYMMCORE_MISSING,
    MMConfigError,
    MMConfigSession,
    load_mm_config,
)
from livesr.adapters.sources.mm_devices import SIM_CFG  # noqa: E402
from livesr.kernels import esrrf  # noqa: E402
from livesr.sim import Microscope, SimConfig, shutdown_core  # noqa: E402
from livesr.stream.cli import main  # noqa: E402

#: a latency budget no window misses on a loaded machine (tests count every window)
NO_SKIP_MS = "60000"


def test_shipped_cfg_is_packaged_and_loads_the_simulated_microscope() -> None:
    assert SIM_CFG.is_file() and SIM_CFG.suffix == ".cfg"
    text = SIM_CFG.read_text()
    # Python devices only (lines plain Micro-Manager reads as comments)
    assert "#py pyDevice,SimCamera,livesr.adapters.sources.mm_devices," in text
    core = load_mm_config(SIM_CFG)
    try:
        assert core.getCameraDevice() == "SimCamera"
        assert core.getXYStageDevice() == "SimXY"
        assert core.getFocusDevice() == "SimZ"
        assert core.getPixelSizeUm() == pytest.approx(0.1)
        assert (core.getImageHeight(), core.getImageWidth()) == (64, 64)
        assert core.getBytesPerPixel() == 2
        assert int(core.getProperty("LivesrHub", "Rows")) == 64
        # a snap through the core equals the simulator's first frame
        core.snapImage()
        ref, _ = Microscope(SimConfig.blinking(seed=0, shape=(64, 64))).next_frame()
        np.testing.assert_array_equal(core.getImage(), ref)
    finally:
        shutdown_core(core)


def test_two_cores_from_one_file_are_independent_microscopes() -> None:
    a = load_mm_config(SIM_CFG)
    b = load_mm_config(SIM_CFG)
    try:
        a.setXYPosition(12.5, -3.0)
        b.setPosition(1.5)
        assert a.getXYPosition() == pytest.approx((12.5, -3.0))
        assert b.getXYPosition() == pytest.approx((0.0, 0.0))
        assert a.getPosition() == pytest.approx(0.0)
        assert b.getPosition() == pytest.approx(1.5)
    finally:
        shutdown_core(a)
        shutdown_core(b)


def test_run_source_mm_in_a_subprocess_stores_the_simulators_frames(
    tmp_path: Path,
) -> None:
    """The CLI path end to end, as a user runs it (exit status 0: also no abort at
    interpreter exit, ECOSYSTEM.md §1.8)."""
    out = tmp_path / "out"
    n, window = 40, 10
    cmd = [
        sys.executable,
        "-m",
        "livesr.stream",
        "run",
        "--source",
        "mm",
        "--mm-config",
        str(SIM_CFG),
        "--frames",
        str(n),
        "--window",
        str(window),
        "--stride",
        str(window),
        "--magnification",
        "2",
        "--drift",
        "off",
        "--latency-budget-ms",
        NO_SKIP_MS,
        "--output",
        str(out),
        "--no-status",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{n}/{n} frames persisted, 0 in gaps; 4 images published" in proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == s["frames_persisted"] == n
    assert s["frames_in_gaps"] == 0 and s["windows_published"] == n // window
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    scope = Microscope(SimConfig.blinking(seed=0, shape=(64, 64)))
    ref = np.stack([scope.next_frame()[0] for _ in range(n)])
    np.testing.assert_array_equal(raw, ref)
    sr = zarr.open_group(str(out / "sr.ome.zarr"), mode="r")["0"][:, 0, 0]
    with open(out / "windows.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(int(r["first_frame"]), int(r["last_frame"])) for r in rows] == [
        (k * window, k * window + window - 1) for k in range(n // window)
    ]
    for img, r in zip(sr, rows, strict=True):
        a, b = int(r["first_frame"]), int(r["last_frame"])
        np.testing.assert_allclose(
            img, esrrf(raw[a : b + 1], magnification=2), rtol=1e-5, atol=1e-5
        )


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bad_configurations_are_one_line_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o")
    bad_module = _write(tmp_path, "bad.cfg", "#py pyDevice,Cam,no_such_pkg.cams,Cam\n")
    no_camera = _write(
        tmp_path,
        "nocam.cfg",
        "#py pyDevice,Hub,livesr.adapters.sources.mm_devices,LivesrSimHub\n"
        "Property,Core,Initialize,1\n",
    )
    cases = [
        ([], "--source mm needs --mm-config FILE.cfg"),
        (
            ["--mm-config", str(tmp_path / "missing.cfg")],
            f"Micro-Manager configuration {str(tmp_path / 'missing.cfg')!r} does not "
            "exist",
        ),
        (
            ["--mm-config", str(bad_module)],
            "at line 1: 'pyDevice,Cam,no_such_pkg.cams,Cam' 'no_such_pkg.cams' is not "
            "a known Micro-manager DeviceAdapter, or an importable python module",
        ),
        (["--mm-config", str(no_camera)], "nocam.cfg sets no camera"),
        (
            ["--mm-config", str(SIM_CFG), "--mm-path", str(tmp_path / "nodir")],
            "is not a folder; expected a Micro-Manager installation",
        ),
    ]
    for flags, expect in cases:
        rc = main(["run", "--source", "mm", *flags, "--output", out, "--no-status"])
        err = capsys.readouterr().err
        assert rc == 2, (flags, err)
        line = [x for x in err.splitlines() if x.startswith("livesr run: error:")]
        assert len(line) == 1 and expect in line[0], (flags, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written
    assert main(["run", "--mm-config", str(SIM_CFG), "--output", out]) == 2
    assert (
        "--mm-config / --mm-path / --mda apply to --source mm"
        in capsys.readouterr().err
    )


def test_cpp_adapters_without_micro_manager_say_what_to_do(tmp_path: Path) -> None:
    from pymmcore_plus import find_micromanager

    if find_micromanager():
        pytest.skip("a Micro-Manager installation is present here")
    cfg = _write(
        tmp_path,
        "demo.cfg",
        "Property,Core,Initialize,0\nDevice,Camera,DemoCamera,DCam\n"
        "Property,Core,Initialize,1\n",
    )
    with pytest.raises(MMConfigError) as info:
        load_mm_config(cfg)
    msg = str(info.value)
    assert "demo.cfg loads C++ device adapters (Camera (DemoCamera))" in msg
    assert "pass --mm-path DIR or run 'mmcore install'" in msg


@pytest.mark.parametrize("source", ["mm", "mm-sim"])
def test_without_pymmcore_plus_the_error_names_the_extra(
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "pymmcore_plus", None)  # import fails
    flags = ["--mm-config", str(SIM_CFG)] if source == "mm" else []
    rc = main(["run", "--source", source, *flags, "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"livesr run: error: --source {source}: {PYMMCORE_MISSING}" in err
    with pytest.raises(MMConfigError, match="pip install"):
        MMConfigSession(SIM_CFG).open()


def test_drift_lock_moves_the_stage_of_a_loaded_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stage hook reaches the XY stage the .cfg declared (not a SimCore)."""
    out = tmp_path / "out"
    rc = main(
        [
            "run",
            "--source",
            "mm",
            "--mm-config",
            str(SIM_CFG),
            "--hook",
            "drift-lock",
            "--frames",
            "300",
            "--output",
            str(out),
            "--no-status",
        ]
    )
    assert rc == 0, capsys.readouterr().err[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_persisted"] == 300 and s["frames_in_gaps"] == 0
    hooks = s["hooks"]
    assert hooks["controller"]["kind"] == "microscope"
    assert hooks["hooks"][0]["failures"] == 0
    assert hooks["controller"]["refusals"] == 0
    assert hooks["controller"]["commands"]["xy"] >= 1  # the seeded drift was corrected


def test_run_source_mm_with_an_mda_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = _write(tmp_path, "seq.yaml", "time_plan:\n  interval: 0\n  loops: 30\n")
    out = tmp_path / "out"
    argv = ["run", "--source", "mm", "--mm-config", str(SIM_CFG), "--mda", str(seq)]
    rc = main(
        [*argv, "--window", "10", "--stride", "10", "--output", str(out)]
        + ["--latency-budget-ms", NO_SKIP_MS]
    )
    assert rc == 0, capsys.readouterr().err[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == s["frames_persisted"] == 30
    assert s["frames_in_gaps"] == 0 and s["windows_published"] == 3
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    scope = Microscope(SimConfig.blinking(seed=0, shape=(64, 64)))
    np.testing.assert_array_equal(
        raw, np.stack([scope.next_frame()[0] for _ in range(30)])
    )
    assert main([*argv, "--frames", "5"]) == 2
    assert "--frames does not apply to --mda" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--source",
                "mm",
                "--mm-config",
                str(SIM_CFG),
                "--mda",
                str(tmp_path / "none.yaml"),
            ]
        )
        == 2
    )
    assert "expected a useq-schema MDA sequence" in capsys.readouterr().err


def test_connect_sends_a_loaded_configuration_to_a_listening_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = f"ipc://{tmp_path}/ingest.ipc"
    out = tmp_path / "out"
    result: dict[str, int] = {}

    def listen() -> None:
        result["listen"] = main(
            ["run", "--listen", ep, "--frame-shape", "64x64", "--window", "10"]
            + ["--stride", "10", "--drift", "off", "--output", str(out), "--no-status"]
            + ["--latency-budget-ms", NO_SKIP_MS]
        )

    t = threading.Thread(target=listen, name="test-mm-listen", daemon=True)
    t.start()
    rc = main(
        ["run", "--source", "mm", "--mm-config", str(SIM_CFG), "--connect", ep]
        + ["--frames", "30", "--no-status"]
    )
    t.join(120.0)
    assert not t.is_alive()
    assert rc == 0 and result["listen"] == 0
    assert "30 acknowledged, 0 in gaps, 0 unacknowledged" in capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == s["frames_persisted"] == 30
    assert s["windows_published"] == 3
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    scope = Microscope(SimConfig.blinking(seed=0, shape=(64, 64)))
    np.testing.assert_array_equal(
        raw, np.stack([scope.next_frame()[0] for _ in range(30)])
    )
