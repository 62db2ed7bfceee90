"""The live pipeline end to end in one process: simulated source -> lossless link ->
persist -> ring -> (drift) -> sliding eSRRF -> PUB + files.  Exact counts throughout;
``frames_acquired == frames_persisted + frames_in_gaps`` in every test."""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zmq

from livesr.adapters.sources.simulated import SimulatedSource
from livesr.kernels import esrrf
from livesr.sim import Microscope, SimConfig
from livesr.stream._config import LivesrConfig
from livesr.stream._pipeline import Pipeline, quality_metric
from livesr.stream._pubsub import LatestSubscriber
from livesr.stream._rawstore import OmeZarrRawStore


def _esrrf_map_ids() -> set[str]:
    from livesr.kernels.esrrf_map import kernel

    return {info.id for info in kernel.implementations() if info.available}


_ESRRF_MAP_IDS = _esrrf_map_ids()


def _sim(**drift: Any) -> SimConfig:
    sim = SimConfig.blinking(shape=(32, 32), seed=3)
    sim = dataclasses.replace(
        sim,
        camera=dataclasses.replace(
            sim.camera, stamp_index=True, interval_ms=4.0, exposure_ms=4.0
        ),
    )
    return sim


def cheap_map(
    frame: np.ndarray,
    params: Any,
    *,
    shift: Any = (0.0, 0.0),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Stand-in per-frame map (pixel replication): the eSRRF stage nearly free."""
    m = params.magnification
    big = np.repeat(np.repeat(np.asarray(frame, np.float32), m, 0), m, 1)
    if out is None:
        return big
    out[...] = big
    return out


def _run(
    tmp_path: Path,
    cfg: LivesrConfig,
    frames: int,
    *,
    pace: bool = False,
    frame_map: Callable[..., np.ndarray] | None = None,
    stage_hook: Callable[[int], None] | None = None,
    on_started: Callable[[Pipeline], None] | None = None,
    subscribe: bool = False,
    sim: SimConfig | None = None,
) -> tuple[dict[str, Any], list[list[Any]]]:
    ctx = zmq.Context()
    name = tmp_path.name
    pipe = Pipeline(
        cfg,
        endpoint=f"inproc://ingest-{name}",
        publish=f"inproc://results-{name}",
        context=ctx,
        frame_map=frame_map,
        stage_hook=stage_hook,
    ).start()
    sub = (
        LatestSubscriber(pipe.publish_endpoint, hwm=64, context=ctx).start()
        if subscribe
        else None
    )
    received: list[list[Any]] = []
    try:
        assert pipe.ready.wait(60.0)  # stages warmed up before the first frame
        if on_started is not None:
            on_started(pipe)
        src = SimulatedSource(
            _sim() if sim is None else sim,
            pipe.endpoint,
            frames=frames,
            pace=pace,
            stop_event=pipe.stop_requested,
            context=ctx,
        ).start()
        assert src.join(60.0) is not None, "source did not finish"
        assert src.error is None
        assert pipe.wait(120.0), "pipeline did not finish"
        if sub is not None:
            for _ in range(3):
                msg = sub.latest(timeout_ms=200)
                if msg is not None:
                    received.append(msg)
    finally:
        if sub is not None:
            sub.close()
        summary = pipe.close()
        ctx.term()
    assert (
        summary["frames_acquired"]
        == summary["frames_persisted"] + summary["frames_in_gaps"]
    ), summary
    assert summary["accounting_ok"] is True
    on_disk = json.loads((cfg_out(cfg) / "summary.json").read_text())
    assert (
        on_disk["frames_acquired"]
        == on_disk["frames_persisted"] + on_disk["frames_in_gaps"]
    )
    return summary, received


def cfg_out(cfg: LivesrConfig) -> Path:
    return Path(cfg.stream.output)


def _windows(out: Path) -> list[dict[str, str]]:
    with open(out / "windows.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _raw(out: Path) -> np.ndarray:
    return zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]


def _sr(out: Path) -> tuple[np.ndarray, dict[str, Any]]:
    g = zarr.open_group(str(out / "sr.ome.zarr"), mode="r")
    return g["0"][:, 0, 0], dict(g.attrs)


def test_windows_equal_batch_esrrf_and_raw_equals_source(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    out = tmp_path / "out"
    n, window, stride = 80, 20, 10
    cfg = pipeline_config(out, window=window, stride=stride, ring_mb=1.0)
    summary, msgs = _run(tmp_path, cfg, n, subscribe=True)
    expected_windows = (n - window) // stride + 1
    assert summary["frames_acquired"] == n
    assert summary["frames_persisted"] == n and summary["frames_in_gaps"] == 0
    assert summary["frames_processed"] == n
    assert summary["windows_published"] == expected_windows == 7
    assert summary["windows_skipped"] == 0
    # the engine chose one of the registered esrrf_map implementations
    assert set(summary["implementation"]) == {"esrrf"}
    assert summary["implementation"]["esrrf"] in _ESRRF_MAP_IDS
    assert summary["latency_ms"]["n"] == expected_windows
    assert summary["params"]["esrrf"]["window"] == window
    # raw store: every frame, equal to the source (index stamped in pixel [0, 0])
    raw = _raw(out)
    source, _ = Microscope(_sim()).acquire(n)
    np.testing.assert_array_equal(raw, source)
    np.testing.assert_array_equal(raw[:, 0, 0], np.arange(n))
    # every SR image equals batch eSRRF over the same frames
    images, attrs = _sr(out)
    rows = _windows(out)
    assert images.shape == (expected_windows, 64, 64)
    assert [(int(r["first_frame"]), int(r["last_frame"])) for r in rows] == [
        (k * stride, k * stride + window - 1) for k in range(expected_windows)
    ]
    for img, r in zip(images, rows, strict=True):
        ref = esrrf(
            raw[int(r["first_frame"]) : int(r["last_frame"]) + 1], magnification=2
        )
        np.testing.assert_allclose(img, ref, rtol=1e-5, atol=1e-5)
        assert abs(float(r["quality"]) - quality_metric(img)) <= 1e-5 * abs(
            quality_metric(img)
        )
    ms = attrs["ome"]["multiscales"][0]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][3:] == [
        0.05,
        0.05,
    ]
    assert (
        attrs["livesr"]["complete"] is True
        and attrs["livesr"]["images"] == expected_windows
    )
    # the PUB side: newest message carries image + metadata
    assert msgs, "no result received on the PUB socket"
    head = json.loads(bytes(msgs[-1][0].buffer))
    img = np.frombuffer(msgs[-1][1].buffer, dtype=np.float32).reshape(head["shape"])
    assert head["kind"] == "sr" and head["pixel_size_um"] == pytest.approx(0.05)
    assert set(head["implementation"]) == {"esrrf"}
    assert head["implementation"]["esrrf"] in _ESRRF_MAP_IDS
    assert head["quality"]["metric"] == "normalized_gradient_energy"
    counters = head["counters"]  # what a viewer paces its drawing by
    assert (counters["windows_published"], counters["windows_skipped"]) == (head["index"], 0)
    ts = head["timestamps"]
    assert ts["acquired"] <= ts["received"] <= ts["processed"] <= ts["published"]
    np.testing.assert_array_equal(img, images[head["index"]])
    for name in ("config.toml", "drift.csv", "summary.json"):
        assert (out / name).is_file()


def test_param_change_recorded_and_applied_from_next_window(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    out = tmp_path / "out"
    n, window, stride = 60, 10, 5
    cfg = pipeline_config(out, window=window, stride=stride, radius=1.5, ring_mb=1.0)
    state: dict[str, Any] = {}

    def hook(seq: int) -> None:
        if (
            seq == 24
        ):  # ask from the processing thread's context: applied before frame 25
            state["pipe"].set_params(radius=2.0, sensitivity=2.0)

    summary, _ = _run(
        tmp_path, cfg, n, stage_hook=hook, on_started=lambda p: state.update(pipe=p)
    )
    assert summary["param_changes"] == [
        {"frame_index": 25, "changes": {"radius": 2.0, "sensitivity": 2.0}}
    ]
    assert summary["params_final"]["radius"] == 2.0
    assert (
        summary["windows_published"] == (n - window) // stride + 1
        and summary["windows_skipped"] == 0
    )
    images, attrs = _sr(out)
    assert attrs["livesr"]["param_changes"] == summary["param_changes"]
    raw = _raw(out)
    rows = _windows(out)
    for img, r in zip(images, rows, strict=True):
        a, b = int(r["first_frame"]), int(r["last_frame"])
        new = b >= 25  # emitted after the change (stored maps recomputed)
        ref = esrrf(
            raw[a : b + 1],
            magnification=2,
            radius=2.0 if new else 1.5,
            sensitivity=2.0 if new else 1.0,
        )
        np.testing.assert_allclose(img, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="magnification cannot change while streaming"):
        Pipeline(cfg).set_params(magnification=3)


def test_slow_stretch_skips_windows_never_raw_frames(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    out = tmp_path / "out"
    n, window, stride = 150, 10, 5
    cfg = pipeline_config(
        out, window=window, stride=stride, budget_ms=100.0, ring_mb=1.0
    )

    def hook(seq: int) -> None:
        if 30 <= seq < 40:
            time.sleep(0.06)

    summary, _ = _run(tmp_path, cfg, n, pace=True, frame_map=cheap_map, stage_hook=hook)
    assert summary["frames_acquired"] == n
    assert summary["frames_persisted"] == n and summary["frames_in_gaps"] == 0
    np.testing.assert_array_equal(_raw(out)[:, 0, 0], np.arange(n))
    scheduled = (n - window) // stride + 1
    assert summary["windows_skipped"] >= 1
    assert summary["windows_published"] + summary["windows_skipped"] == scheduled
    events = summary["skip_events"]
    assert sum(e["windows_skipped"] for e in events) == summary["windows_skipped"]
    assert (
        summary["frames_processed"]
        + summary["frames_dropped_for_processing"]
        + summary["frames_not_offered"]
        == n
    )
    rows = _windows(out)
    ends = [int(r["last_frame"]) for r in rows]
    assert all((e - (window - 1)) % stride == 0 for e in ends)  # schedule phase kept
    assert ends[-1] == n - 1  # recovered: the last scheduled window is published
    assert summary["implementation"] == {"esrrf": "cheap_map"}


def test_disk_full_stops_acquisition_and_records_the_gap(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    out = tmp_path / "out"
    cfg = pipeline_config(out, window=10, stride=5, ring_mb=1.0)
    real = OmeZarrRawStore._write_frame

    def failing(self: OmeZarrRawStore, index: int, frame: np.ndarray) -> None:
        if index >= 25:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, index, frame)

    monkeypatch.setattr(OmeZarrRawStore, "_write_frame", failing)
    summary, _ = _run(tmp_path, cfg, 400, pace=True, frame_map=cheap_map)
    assert summary["frames_persisted"] == 25
    assert summary["stopped"] is True and "ENOSPC" in summary["error"]
    assert summary["frames_acquired"] < 400  # acquisition stopped
    assert summary["frames_in_gaps"] == summary["frames_acquired"] - 25 >= 1
    assert summary["gaps"] == [[25, summary["frames_acquired"] - 1, "raw store failed"]]
    g = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")
    raw = g["0"][:, 0, 0]
    assert raw.shape[0] == 25
    np.testing.assert_array_equal(raw, Microscope(_sim()).acquire(25)[0])
    assert (
        g.attrs["livesr"]["complete"] is False
        and "ENOSPC" in g.attrs["livesr"]["error"]
    )
    assert g.attrs["livesr"]["gaps"] == summary["gaps"]
    assert summary["windows_published"] == (25 - 10) // 5 + 1


def test_drift_on_writes_table_and_publishes_estimates(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    out = tmp_path / "out"
    n = 60
    cfg = pipeline_config(out, window=20, stride=20, drift=True, ring_mb=1.0)
    summary, msgs = _run(tmp_path, cfg, n, frame_map=cheap_map, subscribe=True)
    assert summary["implementation"] == {"drift": "numpy", "esrrf": "cheap_map"}
    with open(out / "drift.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["frame"]) for r in rows] == [9, 19, 29, 39, 49, 59]
    assert [float(r["center"]) for r in rows] == [4.5, 14.5, 24.5, 34.5, 44.5, 54.5]
    assert all(np.isfinite(float(r["dy_px"])) for r in rows)
    assert summary["windows_published"] == 3
    head = json.loads(bytes(msgs[-1][0].buffer))
    assert set(head["drift"]) == {"dy", "dx", "sigma_px", "rejected"}
    assert head["implementation"] == {"drift": "numpy", "esrrf": "cheap_map"}


def test_drift_is_measured_on_the_central_region(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    """[drift] region_px: the estimates are those of the central region's frames
    (96² frames, region 64: rows and columns 16..79), applied to the whole frame."""
    from livesr.kernels import RollingDrift

    out = tmp_path / "out"
    n = 60
    cfg = pipeline_config(out, window=20, stride=20, drift=True, drift_block=10, ring_mb=4.0)
    cfg = cfg.replace("drift", region_px=64)
    sim = SimConfig.blinking(shape=(96, 96), seed=5)
    sim = dataclasses.replace(
        sim, camera=dataclasses.replace(sim.camera, interval_ms=4.0, exposure_ms=4.0)
    )
    summary, _ = _run(tmp_path, cfg, n, frame_map=cheap_map, sim=sim)
    assert summary["frames_persisted"] == n
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    rd = RollingDrift(block=10, max_drift=cfg.drift.max_drift_px)
    expected = [e for k in range(n) if (e := rd.push(raw[k, 16:80, 16:80])) is not None]
    with open(out / "drift.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(expected) == 6
    for row, est in zip(rows, expected, strict=True):
        assert float(row["dy_px"]) == pytest.approx(est.dy, abs=6e-6)  # 5 decimals
        assert float(row["dx_px"]) == pytest.approx(est.dx, abs=6e-6)
    whole = RollingDrift(block=10, max_drift=cfg.drift.max_drift_px)
    full = [e for k in range(n) if (e := whole.push(raw[k])) is not None]
    # the whole frame gives other numbers: the crop really is what was measured
    assert any(abs(e.dx - x.dx) > 1e-3 or abs(e.dy - x.dy) > 1e-3
               for e, x in zip(expected[1:], full[1:], strict=True))


def test_drift_region_config() -> None:
    from livesr.stream._config import DriftCorrectionConfig

    assert DriftCorrectionConfig().region((2048, 2048)) == (slice(768, 1280), slice(768, 1280))
    assert DriftCorrectionConfig().region((256, 300)) == (slice(0, 256), slice(0, 300))
    assert DriftCorrectionConfig(region_px=0).region((2048, 100)) == (
        slice(0, 2048), slice(0, 100))
    assert DriftCorrectionConfig(region_px=64).region((97, 64)) == (
        slice(16, 80), slice(0, 64))
    for bad in (-1, 10, 63, 1.5, "512"):
        with pytest.raises(ValueError, match="region_px"):
            DriftCorrectionConfig(region_px=bad)


def test_output_with_results_is_refused(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    pipe = Pipeline(pipeline_config(out, window=10, stride=5, ring_mb=1.0))
    with pytest.raises(FileExistsError, match="already holds results"):
        pipe.start()
    pipe.close()
    assert (out / "summary.json").read_text() == "{}"  # untouched


def test_set_params_validation_is_clear(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    pipe = Pipeline(pipeline_config(tmp_path / "o", window=10, stride=5, ring_mb=1.0))
    with pytest.raises(ValueError, match="temporal"):
        pipe.set_params(temporal="median")
    with pytest.raises(ValueError, match="window"):
        pipe.set_params(window=1)
    pipe.set_params(window=12)  # accepted before start; applied at the first frame


def test_full_ring_refuses_frames_for_processing_only(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    out = tmp_path / "out"
    n, window, stride = 200, 10, 5
    cfg = pipeline_config(
        out, window=window, stride=stride, ring_mb=1.0
    )  # budget 1e7 ms: no backlog skips
    cfg = cfg.replace("stream", ring_mb=12 * 32 * 32 * 2 / 2**20)  # 12 frames

    def hook(seq: int) -> None:
        if 20 <= seq < 24:
            time.sleep(0.05)

    summary, _ = _run(tmp_path, cfg, n, pace=True, frame_map=cheap_map, stage_hook=hook)
    assert summary["ring"]["capacity"] == 12
    assert summary["frames_persisted"] == n and summary["frames_in_gaps"] == 0
    np.testing.assert_array_equal(_raw(out)[:, 0, 0], np.arange(n))
    assert summary["frames_not_offered"] >= 1
    assert summary["frames_processed"] + summary["frames_not_offered"] == n
    assert summary["windows_skipped"] >= 1
    assert (
        summary["windows_published"] + summary["windows_skipped"]
        == (n - window) // stride + 1
    )
    ends = [int(r["last_frame"]) for r in _windows(out)]
    assert all((e - (window - 1)) % stride == 0 for e in ends)
    assert ends[-1] > 23 + window  # windows again after the stall


@pytest.mark.parametrize("hint", [True, False])
def test_frame_shape_hint_times_implementations_before_streaming(
    tmp_path: Path,
    hint: bool,
    monkeypatch: pytest.MonkeyPatch,
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    """With the camera's shape known, the batch-map implementations are timed (and
    the host or GPU window chosen) during the warm-up, before ``ready``; without it,
    on the first real frame."""
    from livesr.kernels.framemap import esrrf_map_batch_kernel

    kernel = esrrf_map_batch_kernel()
    calls: list[tuple[tuple[int, ...], bool]] = []
    pipe_ref: list[Pipeline] = []
    real = kernel.fastest

    def fastest(frames: np.ndarray, *args: Any, **kwargs: Any) -> str:
        ready = bool(pipe_ref) and pipe_ref[0].ready.is_set()
        calls.append((tuple(np.shape(frames)[1:]), ready))
        return real(frames, *args, **kwargs)

    monkeypatch.setattr(kernel, "fastest", fastest)
    cfg = pipeline_config(tmp_path / "out", window=4, stride=4, ring_mb=1.0)
    ctx = zmq.Context()
    pipe = Pipeline(
        cfg,
        endpoint=f"inproc://hint-{hint}",
        publish=f"inproc://hint-results-{hint}",
        context=ctx,
        frame_shape=(32, 32) if hint else None,
    )
    pipe_ref.append(pipe)
    try:
        pipe.start()
        assert pipe.ready.wait(120.0)
        before = list(calls)
        src = SimulatedSource(
            _sim(), pipe.endpoint, frames=12, pace=False, context=ctx
        ).start()
        assert src.join(60.0) is not None and src.error is None
        assert pipe.wait(60.0)
    finally:
        summary = pipe.close()
        ctx.term()
    assert summary["frames_persisted"] == 12 and summary["windows_published"] == 3
    if hint:
        assert before == [((32, 32), False)]  # timed in the warm-up, before ready
        assert calls == before  # and not again on the stream
    else:
        assert before == []
        assert calls == [((32, 32), True)]  # on the first real frame
    with pytest.raises(ValueError, match="frame_shape"):
        Pipeline(cfg, frame_shape=(0, 32))


def test_a_window_that_cannot_work_is_refused_before_anything_is_written(
    tmp_path: Path,
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    """Issue 14: a window longer than the run, or one whose ring and window state
    cannot fit the memory budget, is refused at start with what to change; nothing
    is created (a retry with the same output is not blocked)."""
    out = tmp_path / "out"
    cfg = pipeline_config(out, window=50, stride=10, ring_mb=1.0)
    cfg = dataclasses.replace(cfg, stream=dataclasses.replace(cfg.stream, frames=30))
    with pytest.raises(ValueError, match=r"window=50 is longer than the 30 frames"):
        Pipeline(cfg, output=out).start()
    assert not out.exists()
    big = pipeline_config(out, window=500, stride=10, ring_mb=1.0)
    big = dataclasses.replace(
        big, stream=dataclasses.replace(big.stream, ring_mb=0.0, memory_budget_mb=8.0)
    )
    with pytest.raises(ValueError, match=r"memory_budget_mb"):
        Pipeline(big, output=out, frame_shape=(256, 256)).start()
    assert not out.exists()


def test_the_ring_is_sized_from_the_frame_rate_and_stated(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    """The processing ring holds 3 latency budgets of frames at the camera's rate
    (at least a window and two batches) within the budget; the summary states it."""
    from livesr.stream._persist import check_memory, ring_frames

    n = ring_frames(window=50, max_batch=16, interval_s=0.0005, latency_budget_s=0.5)
    assert n == 3000  # 3 x 0.5 s at 2000 frames/s
    assert (
        ring_frames(window=50, max_batch=16, interval_s=None, latency_budget_s=0.5)
        == 100
    )
    plan = check_memory(
        (2048, 2048),
        "uint16",
        window=50,
        max_batch=16,
        interval_s=0.01,
        latency_budget_s=0.5,
        ring_mb=0.0,
        memory_budget_mb=4096.0,
    )
    assert plan.frames == 150 and plan.minimum == 66
    with pytest.raises(ValueError, match="lower --window"):
        check_memory(
            (2048, 2048),
            "uint16",
            window=50,
            max_batch=16,
            interval_s=0.01,
            latency_budget_s=0.5,
            ring_mb=0.0,
            memory_budget_mb=256.0,
        )
    out = tmp_path / "run"
    cfg = pipeline_config(out, window=4, stride=4, ring_mb=1.0)
    ctx = zmq.Context()
    pipe = Pipeline(cfg, endpoint="inproc://ring-plan", context=ctx)
    try:
        pipe.start()
        assert pipe.ready.wait(60)
        src = SimulatedSource(_sim(), pipe.endpoint, frames=8, pace=False, context=ctx)
        src.start()
        assert src.join(60) is not None
        assert pipe.wait(60)
    finally:
        summary = pipe.close()
        ctx.term()
    mem = summary["memory"]
    assert mem["ring_frames"] == summary["ring"]["capacity"] >= mem["ring_min_frames"]
    assert mem["ring_mb"] * 2**20 == pytest.approx(summary["ring"]["bytes"])


def test_a_dead_ingest_thread_ends_the_run_with_an_error(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    """Issue 14: if the ingest thread dies anyway (a bug), the run does not wait
    forever for frames that cannot arrive: wait() returns, acquisition is told to
    stop, and the summary reports the error (so the command exits non-zero)."""
    from livesr.stream._run_session import run_failures

    cfg = pipeline_config(tmp_path / "out", window=4, stride=4, ring_mb=1.0)
    # the ingest thread of this process is the one broken here; the ingest process
    # has its own test below
    cfg = replace(cfg, stream=replace(cfg.stream, ingest="thread"))
    ctx = zmq.Context()
    pipe = Pipeline(cfg, endpoint=f"ipc://{tmp_path}/dead.ipc", context=ctx)
    try:
        pipe.start()
        assert pipe.ready.wait(60)

        def broken(*a: Any, **k: Any) -> int:
            raise RuntimeError("simulated ingest bug")

        pipe._ingest.serve = broken  # the next message kills the thread
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(pipe.endpoint)
        dealer.send_multipart([b'{"v":1}', b""])
        t0 = time.monotonic()
        assert pipe.wait(30.0)
        assert time.monotonic() - t0 < 10.0
        assert pipe.stop_requested.is_set()
        dealer.close()
    finally:
        summary = pipe.close()
        ctx.term()
    assert "ingest thread failed" in (summary["error"] or "")
    assert "simulated ingest bug" in summary["error"]
    assert run_failures(summary)


def test_a_killed_ingest_process_ends_the_run_with_an_error(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    """The ingest process (the default for ipc/tcp endpoints) killed mid-stream: the
    run ends (wait() returns), acquisition is told to stop, the frames persisted
    before the kill are counted, and the summary names the process's exit."""
    from livesr.stream._run_session import run_failures
    from livesr.stream._source_link import SourceLink, SourceLinkConfig

    cfg = pipeline_config(tmp_path / "out", window=4, stride=4, ring_mb=1.0)
    assert cfg.stream.ingest == "auto"
    pipe = Pipeline(cfg, endpoint=f"ipc://{tmp_path}/killed.ipc", frame_map=cheap_map)
    link = None
    try:
        pipe.start()
        proc = pipe._ingest._proc
        assert proc.is_alive() and proc.pid != os.getpid()
        assert pipe.ready.wait(60)
        link = SourceLink(
            SourceLinkConfig(endpoint=pipe.endpoint, stream="cam0", shape=(8, 8))
        ).start()
        frame = np.ones((8, 8), np.uint16)
        for _ in range(12):
            link.send(frame, t_acq=time.time())
        deadline = time.monotonic() + 30
        while pipe.progress()["frames_received"] < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pipe.progress()["frames_received"] == 12
        proc.kill()
        assert pipe.wait(30.0)
        assert pipe.stop_requested.is_set()
    finally:
        if link is not None:
            link.close(timeout=1.0)
        summary = pipe.close()
    assert "ingest process exited with code -9" in (summary["error"] or "")
    assert summary["frames_persisted"] == 12
    assert run_failures(summary)
