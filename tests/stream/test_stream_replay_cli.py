"""``livesr replay FILE`` via the CLI: same images as live, equal to
batch eSRRF, frame ranges, accounting, and bad inputs with exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from livesr.stream.cli import main

CONFIG = """
[esrrf]
window = 10
stride = 5
magnification = 2
radius = 1.5

[drift]
enabled = true
block = 10

[stream]
latency_budget_ms = 100000.0
ring_mb = 1.0

[sim]
seed = 7
[sim.camera]
shape = [32, 32]
interval_ms = 2.0
exposure_ms = 2.0
"""


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(CONFIG)
    return p


def _sr(out: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(out / "sr.ome.zarr"), mode="r")["0"][:])


def _summary(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == s["frames_persisted"] + s["frames_in_gaps"]
    return s


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A live run of the simulated microscope (drift on) writing its raw store."""
    tmp = tmp_path_factory.mktemp("live")
    out = tmp / "live"
    assert (
        main(
            [
                "run",
                "--source",
                "sim",
                "--config",
                str(_config(tmp)),
                "--frames",
                "40",
                "--output",
                str(out),
                "--no-status",
            ]
        )
        == 0
    )
    return tmp, out


@pytest.mark.parametrize("rate", ["recorded", "asap", "1000"])
def test_replay_of_raw_store_gives_the_live_images(
    live_run: tuple[Path, Path],
    tmp_path: Path,
    rate: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp, live = live_run
    out = tmp_path / "rep"
    rc = main(
        [
            "replay",
            str(live / "raw.ome.zarr"),
            "--config",
            str(_config(tmp)),
            "--output",
            str(out),
            "--rate",
            rate,
            "--no-status",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"results in {out}/ (summary.json)" in err
    for name in (
        "raw.json",
        "sr.ome.zarr",
        "windows.csv",
        "drift.csv",
        "summary.json",
        "config.toml",
        "replay.json",
    ):
        assert (out / name).exists(), name
    assert not (out / "raw.ome.zarr").exists()  # the frames are not copied again
    ref = json.loads((out / "raw.json").read_text())
    assert ref["source"] == str(live / "raw.ome.zarr") and ref["range"] == [0, 40]
    assert ref["frames_seq"] == list(range(40)) and ref["complete"] is True
    s, s_live = _summary(out), _summary(live)
    assert s["files"]["raw"] == str(live / "raw.ome.zarr")
    assert (
        s["frames_acquired"] == 40 == s["frames_persisted"] and s["frames_in_gaps"] == 0
    )
    assert s["windows_published"] == s_live["windows_published"] == (40 - 10) // 5 + 1
    assert s["windows_skipped"] == 0 and s["pixel_size_um"] == s_live["pixel_size_um"]
    assert s["frame_interval_s"] == pytest.approx(s_live["frame_interval_s"])
    np.testing.assert_allclose(_sr(out), _sr(live), rtol=0, atol=1e-6)
    info = json.loads((out / "replay.json").read_text())
    assert info["range"] == [0, 40] and info["link"]["frames_acked"] == 40
    assert info["recording"]["pixel_size_origin"] == "metadata"


def test_replay_one_window_equals_batch_esrrf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from livesr.kernels import esrrf

    rng = np.random.default_rng(3)
    n = 12
    yy, xx = np.mgrid[0:24, 0:24]
    spots = sum(
        np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
        for cy, cx in ((7, 8), (15, 16), (10, 18))
    )
    stack = rng.poisson(50 + 400 * spots[None] * rng.random((n, 1, 1))).astype(
        np.uint16
    )
    np.save(tmp_path / "s.npy", stack)
    out = tmp_path / "out"
    rc = main(
        [
            "replay",
            str(tmp_path / "s.npy"),
            "--output",
            str(out),
            "--window",
            str(n),
            "--stride",
            str(n),
            "--drift",
            "off",
            "--magnification",
            "3",
            "--radius",
            "1.5",
            "--no-status",
            "--latency-budget-ms",
            "100000",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    s = _summary(out)
    assert s["windows_published"] == 1 and s["frames_acquired"] == n
    e = s["params"]["esrrf"]
    ref = esrrf(
        stack,
        magnification=e["magnification"],
        radius=e["radius"],
        sensitivity=e["sensitivity"],
        intensity_weighting=e["intensity_weighting"],
        macro_pixel_correction=e["macro_pixel_correction"],
        temporal=e["temporal"],
        geometry=e["geometry"],
    )
    got = _sr(out)
    assert got.shape[0] == 1
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=0, atol=1e-5)


def test_replay_range_ome_tiff_pixel_size_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = (
        np.random.default_rng(1).integers(0, 3000, size=(40, 16, 16)).astype(np.uint16)
    )
    p = tmp_path / "s.ome.tif"
    tifffile.imwrite(
        p,
        stack,
        ome=True,
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 0.16,
            "PhysicalSizeY": 0.16,
            "TimeIncrement": 0.001,
            "TimeIncrementUnit": "s",
        },
    )
    out = tmp_path / "out"
    rc = main(
        [
            "replay",
            str(p),
            "--output",
            str(out),
            "--range",
            "5:25",
            "--window",
            "4",
            "--stride",
            "4",
            "--drift",
            "off",
            "--magnification",
            "2",
            "--pixel-size",
            "0.2",
            "--no-status",
            "--raw-format",
            "ome-tiff",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"frames 5..24 of {p}" in err
    s = _summary(out)
    assert (
        s["frames_acquired"] == 20 == s["frames_persisted"] and s["frames_in_gaps"] == 0
    )
    assert s["pixel_size_um"] == 0.2 and s["sr_pixel_size_um"] == pytest.approx(0.1)
    assert s["frame_interval_s"] == pytest.approx(0.001)
    assert s["windows_published"] + s["windows_skipped"] == 5
    np.testing.assert_array_equal(tifffile.imread(out / "raw.ome.tif"), stack[5:25])


def test_replay_frames_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "s.npy", np.ones((30, 16, 16), np.uint16))
    out = tmp_path / "out"
    rc = main(
        [
            "replay",
            str(tmp_path / "s.npy"),
            "--output",
            str(out),
            "--range",
            "10:",
            "--frames",
            "6",
            "--window",
            "3",
            "--stride",
            "3",
            "--drift",
            "off",
            "--magnification",
            "1",
            "--no-status",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    s = _summary(out)
    assert s["frames_acquired"] == 6 and json.loads((out / "replay.json").read_text())[
        "range"
    ] == [10, 16]


@pytest.mark.parametrize(
    ("make", "argv", "code", "expect"),
    [
        (None, ["missing.ome.tif"], 2, "missing.ome.tif does not exist"),
        (
            "png",
            ["img.png"],
            2,
            "file type '.png' is not supported; supported: OME-TIFF",
        ),
        ("2d", ["img.npy"], 2, "replay needs a stack of frames"),
        ("npy", ["s.npy", "--range", "10:50"], 2, "out of bounds for"),
        (
            "npy",
            ["s.npy", "--range", "10:50"],
            2,
            "(20 frames); valid: 0 <= START < STOP <= 20",
        ),
        (
            "npy",
            ["s.npy", "--range", "x:5"],
            2,
            "argument --range: frame range 'x:5' is not valid",
        ),
        (
            "npy",
            ["s.npy", "--rate", "fast"],
            2,
            "argument --rate: rate 'fast' is not valid",
        ),
        ("npy", ["s.npy", "--rate", "recorded"], 2, "has no timing metadata"),
        ("npy", ["s.npy", "--pixel-size", "-1"], 2, "expected a pixel size in um"),
        ("bad", ["bad.npy"], 1, "not a readable .npy file"),
    ],
)
def test_bad_inputs_exit_codes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: str | None,
    argv: list[str],
    code: int,
    expect: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if make == "png":
        Path("img.png").write_bytes(b"\x89PNG")
    elif make == "2d":
        np.save("img.npy", np.zeros((8, 8), np.uint16))
    elif make == "npy":
        np.save("s.npy", np.zeros((20, 8, 8), np.uint16))
    elif make == "bad":
        Path("bad.npy").write_bytes(b"garbage")
    assert main(["replay", *argv, "--output", "out", "--no-status"]) == code
    assert expect in capsys.readouterr().err
    assert not Path("out").exists()  # nothing started


def test_replay_into_used_output_refused(
    live_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, live = live_run
    assert (
        main(
            ["replay", str(live / "raw.ome.zarr"), "--output", str(live), "--no-status"]
        )
        == 2
    )
    assert "already holds results" in capsys.readouterr().err


@pytest.mark.parametrize("stale_cwd", [False, True])
def test_replay_connect_to_a_listening_pipeline(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stale_cwd: bool,
) -> None:
    """`replay --connect` only sends: a ./livesr-out holding results (it writes no
    output folder) must not stop it (issue 14: it refused, and the listener then
    waited forever and hung pytest)."""
    import threading

    if stale_cwd:
        cwd = tmp_path / "cwd"
        (cwd / "livesr-out").mkdir(parents=True)
        (cwd / "livesr-out" / "summary.json").write_text("{}")
        monkeypatch.chdir(cwd)
    stack = np.random.default_rng(2).integers(0, 3000, (24, 16, 16)).astype(np.uint16)
    np.save(tmp_path / "s.npy", stack)
    ep = f"ipc://{tmp_path}/ingest.ipc"
    out = tmp_path / "out"
    result: dict[str, int] = {}
    listen_argv = ["run", "--listen", ep, "--output", str(out), "--no-status"]
    listen_argv += ["--window", "4", "--stride", "4", "--drift", "off"]
    t = threading.Thread(
        target=lambda: result.update(rc=main(listen_argv)), daemon=True
    )
    t.start()
    rc = main(["replay", str(tmp_path / "s.npy"), "--connect", ep, "--range", "4:"])
    t.join(60.0)  # a daemon thread: a listener left waiting cannot hang pytest
    assert not t.is_alive()
    assert rc == 0 and result["rc"] == 0
    assert "20 acknowledged, 0 in gaps, 0 unacknowledged" in capsys.readouterr().err
    s = _summary(out)
    assert s["frames_acquired"] == 20 == s["frames_persisted"]
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    np.testing.assert_array_equal(raw, stack[4:])


def test_replay_of_ome_tiff_raw_store_gives_the_live_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(_config(tmp_path))
    live, out = tmp_path / "live", tmp_path / "rep"
    argv = ["--config", cfg, "--no-status", "--stride", "10"]
    run_argv = [
        "run",
        "--frames",
        "30",
        "--output",
        str(live),
        "--raw-format",
        "ome-tiff",
    ]
    assert main([*run_argv, *argv]) == 0
    assert main(["replay", str(live / "raw.ome.tif"), "--output", str(out), *argv]) == 0
    s = _summary(out)
    assert s["frames_acquired"] == 30 and s["windows_published"] == 3
    assert json.loads((out / "replay.json").read_text())["rate"] == "recorded"
    np.testing.assert_allclose(_sr(out), _sr(live), rtol=0, atol=1e-6)


def test_damaged_chunk_mid_replay_exits_1_with_frames_accounted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = np.random.default_rng(4).integers(0, 3000, (12, 16, 16)).astype(np.uint16)
    path = tmp_path / "d.zarr"  # a bare zarr array, 4 frames per chunk
    arr = zarr.create_array(
        str(path), shape=stack.shape, chunks=(4, 16, 16), dtype="uint16"
    )
    arr[:] = stack
    (path / "c" / "2" / "0" / "0").write_bytes(b"damaged")
    out = tmp_path / "out"
    argv = ["replay", str(path), "--output", str(out), "--no-status"]
    rc = main([*argv, "--window", "4", "--stride", "4", "--drift", "off"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "d.zarr: cannot read frames 8..11" in err
    s = _summary(out)
    assert (
        s["frames_acquired"] == 8 == s["frames_persisted"]
        and s["windows_published"] == 2
    )
    assert (
        "cannot read frames" in json.loads((out / "replay.json").read_text())["error"]
    )


def test_replay_of_a_livesr_run_folder_uses_its_own_acquisition_settings(
    live_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --config, no flags: the run's eSRRF/drift settings, stream name, pixel size
    and frame interval; the images equal the live ones.  A flag still overrides."""
    from livesr.stream._rawread import open_recording

    _, live = live_run
    with open_recording(live) as rec:  # the run folder opens its raw store
        assert rec.path == live / "raw.ome.zarr"
        assert rec.acquisition["config"] == str(live / "config.toml")
        stream = rec.acquisition["stream"]
    s_live = _summary(live)
    assert stream == s_live["stream"]
    out = tmp_path / "rep"
    argv = ["replay", str(live), "--output", str(out), "--rate", "asap", "--no-status"]
    assert main(argv) == 0, capsys.readouterr().err
    s = _summary(out)
    assert s["stream"] == stream and s["frames_persisted"] == 40
    assert s["windows_published"] == s_live["windows_published"] == 7
    assert s["pixel_size_um"] == s_live["pixel_size_um"]
    assert s["frame_interval_s"] == pytest.approx(s_live["frame_interval_s"])
    np.testing.assert_allclose(_sr(out), _sr(live), rtol=0, atol=1e-6)
    out2 = tmp_path / "rep2"
    argv = ["replay", str(live), "--output", str(out2), "--rate", "asap"]
    assert main([*argv, "--no-status", "--window", "20"]) == 0
    assert _summary(out2)["windows_published"] == (40 - 20) // 5 + 1
    # a replay's own folder holds no frames: the error names the file and range
    rc = main(["replay", str(out), "--output", str(tmp_path / "rep3"), "--no-status"])
    err = capsys.readouterr().err
    assert rc == 2 and "--range 0:40" in err and "raw.ome.zarr" in err


def test_copy_raw_writes_the_frames_again(
    live_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, live = live_run
    out = tmp_path / "rep"
    argv = ["replay", str(live / "raw.ome.zarr"), "--output", str(out), "--no-status"]
    assert main([*argv, "--rate", "asap", "--range", "5:35", "--copy-raw"]) == 0
    assert not (out / "raw.json").exists()
    copy = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    src = zarr.open_group(str(live / "raw.ome.zarr"), mode="r")["0"][5:35, 0, 0]
    np.testing.assert_array_equal(copy, src)
    assert _summary(out)["files"]["raw"] == str(out / "raw.ome.zarr")


def test_bad_input_gets_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: NaN frames, frames under the kernels' footprint and a truncated
    OME-TIFF each give a clear one-line error and a non-zero exit, no traceback."""
    import tifffile

    rng = np.random.default_rng(0)
    nan = (rng.random((30, 32, 32)) * 100).astype(np.float32)
    nan[5, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "tiny.npy", np.ones((30, 2, 2), np.uint16))
    tifffile.imwrite(tmp_path / "f.ome.tif", np.full((20, 32, 32), 7, np.uint16), ome=True)
    data = (tmp_path / "f.ome.tif").read_bytes()
    (tmp_path / "cut.ome.tif").write_bytes(data[: len(data) // 2])
    common = ["--window", "4", "--stride", "4", "--no-status"]
    cases = [
        ("nan.npy", 1, "non-finite values"),
        ("tiny.npy", 2, "smaller than eSRRF's 3x3 gradient footprint"),
        ("cut.ome.tif", 1, "damaged or truncated OME-TIFF"),
    ]
    for name, rc_want, text in cases:
        rc = main(["replay", str(tmp_path / name), "-o", str(tmp_path / f"o-{name}"),
                   *common])
        err = capsys.readouterr().err
        assert rc == rc_want, (name, err)
        assert text in err, (name, err)
        assert "Traceback" not in err, (name, err)
    assert not (tmp_path / "o-tiny.npy").exists()  # refused before anything
