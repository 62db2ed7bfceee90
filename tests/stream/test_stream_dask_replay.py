"""``livesr replay`` on Dask: chunk plan, results equal to the single-process replay
(images <= 1e-6 of the maximum, identical drift table), a worker killed mid-run,
several inputs, and bad inputs with exit code 2.

One module-scoped ``LocalCluster`` (2 worker processes, 1 thread each) serves the
tests that do not start their own; the worker-kill test runs last (its nanny restarts
the worker)."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr

from livesr.stream.cli import main

WINDOW, STRIDE, M = 10, 5, 2
FLAGS = [
    "--window",
    str(WINDOW),
    "--stride",
    str(STRIDE),
    "--magnification",
    str(M),
    "--latency-budget-ms",
    "100000",
    "--pixel-size",
    "0.1",
    "--no-status",
]


def _stack(n: int, seed: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Blinking spots drifting by ~0.03 px/frame plus an oscillation, Poisson noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    pts = rng.random((25, 2)) * (h - 8, w - 8) + 4
    frames = []
    for t in range(n):
        dy, dx = 0.03 * t, -0.02 * t + 0.3 * np.sin(t / 7)
        img = np.zeros(shape)
        for (cy, cx), on in zip(pts, rng.random(len(pts)) < 0.4, strict=True):
            if on:
                img += np.exp(-((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2) / 3.4)
        frames.append(rng.poisson(20 + 300 * img))
    return np.asarray(frames, dtype=np.uint16)


def _sr(out: Path) -> np.ndarray:
    g = zarr.open_group(str(out / "sr.ome.zarr"), mode="r")
    return np.asarray(g["0"][:])


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def assert_same_results(got: Path, ref: Path) -> None:
    """Dask results == single-process results (images, drift table, window table)."""
    a, b = _sr(got), _sr(ref)
    assert a.shape == b.shape and a.shape[0] > 0
    assert _max_rel_diff(a, b) <= 1e-6
    assert _rows(got / "drift.csv") == _rows(ref / "drift.csv")
    wa, wb = _rows(got / "windows.csv"), _rows(ref / "windows.csv")
    assert wa[0] == wb[0] and len(wa) == len(wb) == a.shape[0] + 1
    cols = [wa[0].index(c) for c in ("index", "first_frame", "last_frame")]
    cols += [wa[0].index(c) for c in ("dy_px", "dx_px", "sigma_px")]
    q = wa[0].index("quality")
    for ra, rb in zip(wa[1:], wb[1:], strict=True):
        assert [ra[i] for i in cols] == [rb[i] for i in cols]
        assert float(ra[q]) == pytest.approx(float(rb[q]), rel=1e-5)
    sa = json.loads((got / "summary.json").read_text())
    sb = json.loads((ref / "summary.json").read_text())
    assert sa["windows_published"] == sb["windows_published"] == a.shape[0]
    assert sa["windows_skipped"] == sb["windows_skipped"] == 0
    assert sa["params"] == sb["params"] and sa["error"] is None
    assert sa["sr_pixel_size_um"] == pytest.approx(sb["sr_pixel_size_um"])
    ga = zarr.open_group(str(got / "sr.ome.zarr"), mode="r").attrs
    gb = zarr.open_group(str(ref / "sr.ome.zarr"), mode="r").attrs
    assert dict(ga)["ome"] == dict(gb)["ome"]
    assert dict(ga)["livesr"]["complete"] is True


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two recordings (.npy 50 frames, OME-TIFF 43 frames) and their single-process
    replays (drift on, as fast as processed)."""
    tmp = tmp_path_factory.mktemp("dask-replay")
    a = tmp / "a.npy"
    np.save(a, _stack(50, seed=1))
    b = tmp / "b.ome.tif"
    tifffile.imwrite(b, _stack(43, seed=2), ome=True, metadata={"axes": "TYX"})
    refs = {}
    for p in (a, b):
        out = tmp / f"single-{p.name}"
        rc = main(["replay", str(p), "--output", str(out), "--drift", "on", *FLAGS])
        assert rc == 0
        refs[p.name] = out
    return {"tmp": tmp, "files": [a, b], "refs": refs}


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _config(drift: bool = True) -> Any:
    from livesr.stream._config import LivesrConfig

    cfg = LivesrConfig()
    cfg = cfg.replace("esrrf", window=WINDOW, stride=STRIDE, magnification=M)
    return cfg.replace("drift", enabled=drift)


def _inputs(files: list[Path], out: Path) -> list[Any]:
    from livesr.stream._dask_replay import ReplayInput
    from livesr.stream._rawread import open_recording

    inputs = []
    for p in files:
        with open_recording(p, pixel_size_um=0.1) as rec:
            inputs.append(ReplayInput.of(rec, out / p.name, 0, len(rec)))
    return inputs


# --------------------------------------------------------------------- the plan
@pytest.mark.parametrize("window,stride", [(10, 5), (10, 10), (4, 7), (2, 1), (7, 3)])
@pytest.mark.parametrize("n_frames", [0, 3, 10, 41, 100])
@pytest.mark.parametrize("chunk", [1, 5, 13, 1000])
def test_plan_covers_every_window_once_with_window_overlap(
    window: int, stride: int, n_frames: int, chunk: int
) -> None:
    from livesr.stream._replay_chunks import n_windows, plan_chunks, window_end

    plan = plan_chunks(n_frames, window, stride, chunk)
    expected = n_windows(n_frames, window, stride)
    assert expected == (
        len(range(window - 1, n_frames, stride)) if n_frames >= window else 0
    )
    owned = [
        k for c in plan for k in range(c.first_window, c.first_window + c.n_windows)
    ]
    assert owned == list(range(expected))  # each window once, in order
    for i, c in enumerate(plan):
        assert c.index == i and c.n_windows >= 1
        first_end = window_end(c.first_window, window, stride)
        last_end = window_end(c.first_window + c.n_windows - 1, window, stride)
        # a chunk owns the window ends in its [a, b) and reads window - 1 more frames
        assert first_end // chunk == last_end // chunk
        assert c.read_start == first_end - (window - 1) >= 0
        assert c.read_stop == last_end + 1 <= n_frames


def test_plan_rejects_bad_arguments() -> None:
    from livesr.stream._replay_chunks import plan_chunks

    with pytest.raises(ValueError, match="chunk_frames=0; expected an integer >= 1"):
        plan_chunks(10, 5, 1, 0)
    with pytest.raises(ValueError, match="window=True"):
        plan_chunks(10, True, 1, 3)


def test_chunks_without_dask_equal_the_single_process_replay(
    recordings: dict[str, Any],
) -> None:
    """compute_chunk + drift_pass in this process: the pipeline's images and drift."""
    from livesr.stream._config import EsrrfConfig
    from livesr.stream._replay_chunks import compute_chunk, drift_pass, plan_chunks

    path = recordings["files"][0]
    ref = recordings["refs"][path.name]
    dp = drift_pass(str(path), 0, 50, block=10, max_drift_px=10.0)
    assert len(dp.rows) == 5 and dp.shifts.shape == (50, 2)
    assert np.abs(dp.shifts[-1]).max() > 0.5  # the stack drifts: shifts are not zero
    e = EsrrfConfig(window=WINDOW, stride=STRIDE, magnification=M)
    plan = plan_chunks(50, WINDOW, STRIDE, 12)
    assert len(plan) == 5
    images = np.concatenate(
        [
            compute_chunk(
                str(path), 0, c, e, dp.shifts[c.read_start : c.read_stop]
            ).images
            for c in plan
        ]
    )
    assert images.shape == (9, 128, 128)
    assert _max_rel_diff(images, _sr(ref)[:, 0, 0]) <= 1e-6
    rows = _rows(ref / "drift.csv")[1:]
    assert [int(r[1]) for r in rows] == [row[1] for row in dp.rows]
    assert [r[3] for r in rows] == [f"{row[3]:.5f}" for row in dp.rows]


# --------------------------------------------------------------------- on Dask
def test_dask_replay_equals_single_process_replay(
    recordings: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    from livesr.stream._dask_replay import DaskReplayConfig, replay_on_dask

    files = recordings["files"]
    seen: list[tuple[int, str]] = []
    results = replay_on_dask(
        client,
        _inputs(files, tmp_path),
        _config(),
        DaskReplayConfig(chunk_frames=8, progress=False),
        on_result=lambda i, kind, res: seen.append((i, kind)),
    )
    assert [r.ok for r in results] == [True, True]
    assert [r.windows for r in results] == [9, 7]
    # one drift pass per file, then its chunks: window ends 9, 14, ..., 49 (a) and
    # 9, ..., 39 (b) in the 8-frame chunks [8, 16) [16, 24) ... -> 6 and 4 chunks
    assert sorted(seen) == sorted(
        [(0, "drift")] + [(0, "chunk")] * 6 + [(1, "drift")] + [(1, "chunk")] * 4
    )
    for i, p in enumerate(files):
        assert seen.index((i, "drift")) < seen.index((i, "chunk"))
        assert_same_results(tmp_path / p.name, recordings["refs"][p.name])
    s = results[0].summary
    assert s["mode"] == "dask" and s["chunks"] == 6 and len(s["workers"]) >= 1
    assert s["frames_acquired"] == 50 and s["windows_expected"] == 9


def test_dask_replay_drift_off_chunks_equal_one_chunk(
    recordings: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    """Drift off: many chunks (overlap at every boundary) == one chunk, and the
    drift table is empty like the pipeline's."""
    from livesr.stream._dask_replay import DaskReplayConfig, replay_on_dask

    path = recordings["files"][0]
    out = {}
    for chunk in (3, 1000):
        d = tmp_path / f"c{chunk}"
        (res,) = replay_on_dask(
            client,
            _inputs([path], d),
            _config(drift=False),
            DaskReplayConfig(chunk_frames=chunk, progress=False),
        )
        assert res.ok and res.summary["chunks"] == (9 if chunk == 3 else 1)
        out[chunk] = d / path.name
    assert _max_rel_diff(_sr(out[3]), _sr(out[1000])) <= 1e-6
    assert _rows(out[3] / "drift.csv") == [
        ["block", "frame", "center", "dy_px", "dx_px", "sigma_px", "rejected", "psr"]
    ]


def test_a_failing_recording_is_reported_and_the_others_finish(
    recordings: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    from livesr.stream._dask_replay import DaskReplayConfig, replay_on_dask

    good = recordings["files"][0]
    out = tmp_path / "out"
    inputs = _inputs([good], out)
    gone = tmp_path / "gone.npy"
    np.save(gone, _stack(20, seed=5, shape=(16, 16)))
    bad = _inputs([gone], out)[0]
    gone.unlink()  # disappears after the client checked it
    results = replay_on_dask(
        client,
        [bad, *inputs],
        _config(),
        DaskReplayConfig(chunk_frames=25, retries=0, progress=False),
    )
    assert not results[0].ok and "FileNotFoundError" in str(results[0].error)
    summary = json.loads((out / "gone.npy" / "summary.json").read_text())
    assert summary["error"] == results[0].error and summary["windows_published"] == 0
    assert results[1].ok and results[1].windows == 9
    assert_same_results(out / good.name, recordings["refs"][good.name])


def test_cli_several_inputs_on_a_running_scheduler(
    recordings: dict[str, Any],
    client: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = recordings["files"]
    out = tmp_path / "week"
    address = client.scheduler.address
    rc = main(
        [
            "replay",
            str(a),
            str(b),
            "--output",
            str(out),
            "--drift",
            "on",
            "--scheduler",
            address,
            "--chunk-frames",
            "16",
            *FLAGS,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"on the Dask scheduler {address} (2 worker(s)); dashboard: http" in err
    assert f"{a}: frames 0..49: 9 images" in err and f"results in {out / 'a'}/" in err
    assert f"{b}: frames 0..42: 7 images" in err and f"results in {out / 'b'}/" in err
    assert "2 of 2 recording(s) replayed on Dask, 16 images" in err
    for p, name in ((a, "a"), (b, "b")):
        assert_same_results(out / name, recordings["refs"][p.name])
        assert (out / name / "config.toml").exists()
        info = json.loads((out / name / "replay.json").read_text())
        assert info["scheduler"] == address and info["range"] == [
            0,
            50 if name == "a" else 43,
        ]


def test_cli_range_on_a_scheduler_equals_the_single_process_range(
    recordings: dict[str, Any],
    client: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--range 7:44: frames are numbered from the range start in both replays."""
    a = recordings["files"][0]
    flags = ["--range", "7:44", "--drift", "on", *FLAGS]
    assert main(["replay", str(a), "-o", str(tmp_path / "one"), *flags]) == 0
    addr = client.scheduler.address
    rc = main(
        ["replay", str(a), "-o", str(tmp_path / "d"), "--scheduler", addr, *flags]
    )
    assert rc == 0, capsys.readouterr().err
    assert_same_results(tmp_path / "d", tmp_path / "one")
    assert len(_sr(tmp_path / "d")) == (37 - WINDOW) // STRIDE + 1
    info = json.loads((tmp_path / "d" / "replay.json").read_text())
    assert info["range"] == [7, 44]


def test_cli_scheduler_local_one_window_drift_off_equals_batch_esrrf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from livesr.kernels import esrrf

    n = 12
    stack = _stack(n, seed=3, shape=(24, 24))
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
            "--scheduler",
            "local",
            "--workers",
            "1",
            "--no-status",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["windows_published"] == 1 and s["chunks"] == 1
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
    np.testing.assert_allclose(_sr(out).reshape(ref.shape), ref, rtol=0, atol=1e-5)


def test_several_inputs_without_scheduler_replay_one_after_the_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "s.npy", _stack(20, seed=4, shape=(24, 24)))
    out = tmp_path / "out"
    rc = main(
        [
            "replay",
            str(tmp_path / "x" / "s.npy"),
            str(tmp_path / "y" / "s.npy"),
            "--output",
            str(out),
            "--drift",
            "off",
            *FLAGS,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    for name in ("x_s", "y_s"):  # same file name: the parent folder tells them apart
        s = json.loads((out / name / "summary.json").read_text())
        assert s["windows_published"] == 3 and s["frames_acquired"] == 20
        assert f"results in {out / name}/ (summary.json)" in err
    # same frames; the engine may run another map implementation (float32 rounding)
    assert _max_rel_diff(_sr(out / "x_s"), _sr(out / "y_s")) <= 1e-6


def test_output_folder_names() -> None:
    from livesr.stream.cli._cmd_replay import input_name, output_folders

    assert input_name("/d/run1.ome.tif") == "run1"
    assert input_name("/d/raw.ome.zarr") == "raw" and input_name("x.npy") == "x"
    out = Path("/o")
    assert output_folders(["/a/x.npy"], out) == [out]
    assert output_folders(["/a/x.npy", "/a/y.tif"], out) == [out / "x", out / "y"]
    assert output_folders(["/a/raw.ome.zarr", "/b/raw.ome.zarr"], out) == [
        out / "a_raw",
        out / "b_raw",
    ]
    assert output_folders(["/a/s.npy", "/a/s.tif", "/b/t.npy"], out) == [
        out / "a_s",
        out / "a_s-2",
        out / "t",
    ]


@pytest.mark.parametrize(
    "extra,expect",
    [
        (["--scheduler", "nonsense"], "scheduler 'nonsense' is not valid; expected"),
        (["--scheduler", "tcp://host:port"], "expected 'local'"),
        (["--scheduler", "http://host:8786"], "PROTOCOL one of tcp"),
        (["--workers", "2"], "--workers applies to --scheduler only"),
        (["--chunk-frames", "20"], "--chunk-frames applies to --scheduler only"),
        (["--scheduler", "local", "--workers", "0"], "expected an integer >= 1, got 0"),
        (["--scheduler", "local", "--rate", "100"], "drop --rate or use --rate asap"),
        (
            ["--scheduler", "local", "--connect", "ipc:///tmp/x"],
            "--connect and --scheduler exclude each other",
        ),
        (
            ["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
            "--workers applies to --scheduler local only",
        ),
        (["--connect", "ipc:///tmp/x", "SECOND"], "--connect sends one recording"),
        (["MISSING"], "does not exist"),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expect: str,
) -> None:
    f = tmp_path / "s.npy"
    np.save(f, _stack(12, seed=6, shape=(16, 16)))
    # a second input (this one again, or a missing file) follows the first
    second = {"SECOND": [str(f)], "MISSING": [str(tmp_path / "missing.npy")]}
    files = [str(f)] + [x for a in extra for x in second.get(a, [])]
    flags = [a for a in extra if a not in second]
    rc = main(
        ["replay", *files, *flags, "--output", str(tmp_path / "o"), "--no-status"]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert expect in err
    assert not (tmp_path / "o").exists()  # nothing ran


def test_unreachable_scheduler_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from livesr.stream import _dask_replay

    monkeypatch.setattr(_dask_replay, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    f = tmp_path / "s.npy"
    np.save(f, _stack(12, seed=6, shape=(16, 16)))
    rc = main(
        ["replay", str(f), "--scheduler", f"tcp://127.0.0.1:{port}", "--no-status"]
        + ["--output", str(tmp_path / "o")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert (
        f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 1 s" in err
    )


def test_scheduler_local_listens_on_loopback_only() -> None:
    """``--scheduler local``: scheduler, dashboard/HTTP server and its link on
    127.0.0.1 (the HTTP server answered ``/json/identity.json`` on 0.0.0.0)."""
    from urllib.parse import urlparse

    from livesr.stream._dask_replay import connect

    client, cluster = connect("local", workers=1)
    try:
        sched = cluster.scheduler
        assert urlparse(sched.address).hostname == "127.0.0.1"
        bound = [s.getsockname()[0] for s in sched.http_server._sockets.values()]
        assert bound and set(bound) == {"127.0.0.1"}, bound
        assert urlparse(client.dashboard_link).hostname == "127.0.0.1"
    finally:
        client.close()
        cluster.close()


def test_used_output_folder_refused_before_anything_runs(
    recordings: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = recordings["files"]
    out = tmp_path / "o"
    (out / "b").mkdir(parents=True)
    (out / "b" / "summary.json").write_text("{}")
    rc = main(
        ["replay", str(a), str(b), "--output", str(out), "--scheduler", "local"]
        + ["--no-status"]
    )
    assert rc == 2
    assert f"output folder {out / 'b'} already holds results" in capsys.readouterr().err
    assert not (out / "a").exists()


# ----------------------------------------------------------------- worker killed
def test_worker_killed_mid_run_results_complete_and_identical(
    recordings: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    """SIGKILL a worker process while it runs a chunk task: the scheduler reruns its
    tasks on the other worker / the restarted one; results are identical."""
    from livesr.stream._dask_replay import DaskReplayConfig, replay_on_dask

    client.wait_for_workers(2, timeout=60)
    pids = client.run(os.getpid)
    killed: dict[str, Any] = {}

    def kill_one(i: int, kind: str, res: Any) -> None:
        if killed or kind != "chunk":
            return
        busy = {w: keys for w, keys in client.processing().items() if keys}
        for worker, keys in busy.items():
            if worker in pids:
                killed.update(worker=worker, keys=list(keys))
                os.kill(pids[worker], signal.SIGKILL)
                return

    files = recordings["files"]
    results: list[Any] = []
    t = threading.Thread(
        target=lambda: results.extend(
            replay_on_dask(
                client,
                _inputs(files, tmp_path),
                _config(),
                DaskReplayConfig(chunk_frames=5, progress=False),
                on_result=kill_one,
            )
        )
    )
    t.start()
    t.join(240)
    assert not t.is_alive()
    assert killed and killed["keys"], "no worker was busy when the first chunk returned"
    assert [r.ok for r in results] == [True, True], [r.error for r in results]
    for p in files:
        assert_same_results(tmp_path / p.name, recordings["refs"][p.name])
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert killed["worker"] not in client.scheduler_info()["workers"]
