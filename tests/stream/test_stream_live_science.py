"""Live science of the pipeline (issue 15): the decorrelation resolution published
with the images (header, ``windows.csv``, status line, summary) and the true time
axis of the SR store (each image's frames and times; a t scale only when regular)."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import numpy as np
import pytest
import zarr

from livesr.stream._frc_live import FrcEstimate
from livesr.stream._resolution import (
    DEFAULT_KC_RESOLVED,
    LiveResolution,
    confirm_with_frc,
    estimate_resolution,
)
from livesr.stream._status import format_status


def _helpers() -> Any:
    """The pipeline test's run helpers (tests are not a package: load by path)."""
    import importlib.util
    import sys

    name = "_livesr_test_stream_pipeline_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("test_stream_pipeline.py")
        )
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


_h = _helpers()
_run, cheap_map = _h._run, _h.cheap_map


def _cfg(out: Path, **kw: Any) -> Any:
    """The pipeline tests' configuration (tests/stream/conftest.py's factory)."""
    import importlib.util
    import sys

    name = "_livesr_test_stream_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("conftest.py")
        )
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name].make_pipeline_config(
        out, ring_mb=1.0, drift_block=10, **kw
    )

WINDOW, STRIDE = 10, 9


def _windows(out: Path) -> list[dict[str, str]]:
    with open(out / "windows.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _sr(out: Path) -> tuple[np.ndarray, dict[str, Any]]:
    g = zarr.open_group(str(out / "sr.ome.zarr"), mode="r")
    return g["0"][:, 0, 0], dict(g.attrs)


def test_estimate_resolution_flags_the_nyquist_floor() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    obj = np.zeros((128, 128))
    obj[tuple(rng.integers(0, 128, size=(2, 400)))] = 1.0
    blurred = gaussian_filter(obj, 3.0)
    est = estimate_resolution(blurred, 7)
    assert est.image_index == 7 and est.method == "decorrelation"
    assert est.value_px == pytest.approx(2.0 / est.kc_max)
    assert est.value_px > 2.0 / DEFAULT_KC_RESOLVED  # clearly above the floor
    # alone it is unconfirmed: resolved only beside its window's FRC, within 1.5 x
    assert not est.resolved and est.reason == "no-frc"
    head = est.to_json(20.0)
    assert head["value_nm"] == pytest.approx(20.0 * est.value_px)
    assert head["reason"] == "no-frc" and head["resolved"] is False
    json.dumps(head, allow_nan=False)

    def frc(value: float | None, resolved: bool = True, index: int = 7) -> FrcEstimate:
        return FrcEstimate(index, "frc-even-odd", value, resolved, 20)

    v = est.value_px
    for frc_px, reason in (
        (v, None), (v * 1.49, None), (v / 1.49, None),  # agrees within 1.5 x
        (v * 1.51, "disagrees-with-frc"), (v / 1.51, "disagrees-with-frc"),
        (None, "frc-unresolved"),
    ):
        got = confirm_with_frc(est, frc(frc_px, frc_px is not None))
        assert (got.resolved, got.reason, got.value_px) == (reason is None, reason, v)
        assert estimate_resolution(blurred, 7, frc=frc(frc_px, frc_px is not None)) == (
            replace(got, seconds=ANY)
        )
    assert confirm_with_frc(est, frc(v, resolved=False)).reason == "frc-unresolved"
    assert confirm_with_frc(est, None).reason == "no-frc"
    with pytest.raises(ValueError, match="same window"):
        confirm_with_frc(est, frc(v, index=8))
    # white noise: no peak below Nyquist -> null value, unresolved; strict JSON
    noise = estimate_resolution(rng.random((128, 128)))
    assert noise.value_px is None and not noise.resolved and noise.reason == "no-peak"
    assert confirm_with_frc(noise, frc(5.0, index=0)) == noise  # no FRC makes a peak
    text = json.dumps(noise.to_json(20.0), allow_nan=False)
    assert json.loads(text)["value_nm"] is None
    # a peak at/near Nyquist (pixel-scale detail, blur 0.5 px) is never "resolved",
    # not even beside an FRC that agrees
    fine = gaussian_filter(obj, 0.5) + 0.01 * rng.random((128, 128))
    sharp = estimate_resolution(fine)
    assert not sharp.resolved and (sharp.value_px is None or sharp.value_px < 2.5)
    assert sharp.reason in ("nyquist-floor", "no-peak")
    if sharp.value_px is not None:
        assert not confirm_with_frc(sharp, frc(sharp.value_px, index=0)).resolved


def test_live_resolution_schedule_newest_only_and_once() -> None:
    from scipy.ndimage import gaussian_filter

    t = [0.0]
    live = LiveResolution(min_interval_s=1.0, background=False, clock=lambda: t[0])
    img = gaussian_filter(np.random.default_rng(1).random((64, 64)), 2.0)
    assert live.offer(0, img) and live.take().image_index == 0
    assert live.take() is None  # given once
    t[0] = 0.5
    assert not live.offer(1, img) and live.take() is None  # < 1 s later: skipped
    t[0] = 1.0
    assert live.offer(2, img) and live.take().image_index == 2
    assert not live.offer(3, np.zeros((32, 32)))  # too small for the analysis
    live.close()
    bg = LiveResolution(min_interval_s=0.0)
    try:
        assert bg.offer(5, img)
        assert bg.wait_idle(30.0)
        est = bg.take()
        assert est is not None and est.image_index == 5
        assert est.value_px == estimate_resolution(img).value_px
    finally:
        bg.close()


def test_pipeline_publishes_the_live_resolution(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _cfg(out, window=WINDOW, stride=STRIDE)
    seen: list[dict[str, Any]] = []

    def every_image(pipe: Any) -> None:  # analyse every image, on publication
        # in-thread: the background worker runs at nice +10 (it must cost the
        # pipeline nothing) and a CPU hog beside the suite could starve it for the
        # whole run; the schedule and the header/CSV/store plumbing are the same
        pipe._proc.resolution = LiveResolution(min_interval_s=0.0, background=False)
        orig = pipe._publish

        def spy(head: dict[str, Any], image: np.ndarray, stamps: Any) -> None:
            orig(head, image, stamps)
            seen.append(json.loads(json.dumps(head, allow_nan=False)))

        pipe._proc._publish_cb = spy

    summary, _ = _run(tmp_path, cfg, 200, frame_map=cheap_map, on_started=every_image)
    rows = _windows(out)
    sr, attrs = _sr(out)
    assert len(rows) == len(sr) == len(seen) == summary["windows_published"] == 22
    px_nm = 1e3 * summary["sr_pixel_size_um"]
    with_res = [r for r in rows if r["resolution_method"]]
    rep = summary["resolution"]
    assert 1 <= len(with_res) == rep["published"]
    # the last estimate may finish after the last image (then: summary only)
    assert rep["estimates"] - rep["published"] in (0, 1) and rep["failures"] == 0
    measured = [int(r["resolution_image"]) for r in with_res]
    frcs = {  # the even/odd FRC estimates published, by the image they measured
        h["frc"]["image_index"]: FrcEstimate(
            h["frc"]["image_index"], h["frc"]["method"], h["frc"]["value_px"],
            h["frc"]["resolved"], h["frc"]["frames"],
        )
        for h in seen
        if h["frc"] is not None
    }
    # each estimate published once (one held for its window's FRC may come late)
    assert len(measured) == len(set(measured))
    for r in rows:
        h = seen[int(r["index"])]
        if not r["resolution_method"]:
            assert h["resolution"] is None and r["resolution_nm"] == ""
            continue
        k = int(r["resolution_image"])
        assert k <= int(r["index"])  # measured on this image or an earlier one
        # the saved image, re-analysed, judged against its window's FRC if published
        ref = estimate_resolution(sr[k], k, frc=frcs.get(k))
        assert h["resolution"]["reason"] == ref.reason
        assert r["resolution_method"] == "decorrelation"
        assert int(r["resolved"]) == int(ref.resolved)
        assert h["resolution"]["resolved"] is ref.resolved
        if ref.value_px is None:
            assert r["resolution_px"] == "" and h["resolution"]["value_nm"] is None
        else:
            assert float(r["resolution_px"]) == pytest.approx(ref.value_px, rel=1e-4)
            assert float(r["resolution_nm"]) == pytest.approx(
                ref.value_px * px_nm, rel=1e-4
            )
            assert h["resolution"]["value_nm"] == pytest.approx(ref.value_px * px_nm)
    # hooks get the published estimates in Result.metrics, and the event trigger's
    # resolution_nm is the FRC when resolved, else a confirmed decorrelation, else
    # nothing (an unconfirmed decorrelation of an eSRRF image never fires)
    from livesr.adapters.feedback._triggered import metric_value
    from livesr.stream import Result

    fired = 0
    for h in seen:
        res = Result.from_header(h, np.zeros(h["shape"], np.float32))
        m = res.metrics
        assert m["live_estimates"] == 1.0
        expect = math.nan
        for key, name in (("resolution", "live_decorr"), ("frc", "live_frc")):
            est = h[key]
            if est is None or est["value_nm"] is None:
                assert f"{name}_nm" not in m
                continue
            assert m[f"{name}_nm"] == est["value_nm"]
            assert m[f"{name}_resolved"] is est["resolved"]
            if est["resolved"]:
                expect = est["value_nm"]  # the FRC (second) wins over decorrelation
        got = metric_value("resolution_nm", res)
        assert got == expect or (math.isnan(got) and math.isnan(expect))
        fired += math.isfinite(got)
    assert fired == sum(
        any(h[k] is not None and h[k]["resolved"] for k in ("frc", "resolution"))
        for h in seen
    )
    latest = summary["resolution"]["latest"]
    assert latest is not None and latest["image_index"] == measured[-1]
    line = format_status({"resolution": latest})
    assert ("res unresolved" in line) != latest["resolved"]


def test_sr_store_has_each_images_frames_and_a_regular_t_scale(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _cfg(out, window=WINDOW, stride=STRIDE)
    summary, _ = _run(tmp_path, cfg, 100, pace=True, frame_map=cheap_map)
    rows = _windows(out)
    _, attrs = _sr(out)
    live = attrs["livesr"]
    frames = live["image_frames"]
    assert len(frames) == len(rows) == live["images"] == (100 - WINDOW) // STRIDE + 1
    for k, (f, r) in enumerate(zip(frames, rows, strict=True)):
        assert f["window"] == int(r["index"]) == k
        assert (f["first_frame"], f["last_frame"]) == (
            k * STRIDE,
            k * STRIDE + WINDOW - 1,
        )
        assert f["t_last"] == pytest.approx(float(r["t_acquired"]), abs=1e-6)
        assert f["t_first"] <= f["t_last"]
    # stride 9, window 10: image k+1 starts on the frame image k ends on
    for a, b in zip(frames[:-1], frames[1:], strict=True):
        assert b["first_frame"] == a["last_frame"]
        assert b["t_first"] == pytest.approx(a["t_last"], abs=1e-9)
    axis = live["time_axis"]
    assert axis["regular"] is True and axis["step_frames"] == STRIDE
    interval = summary["frame_interval_s"]
    assert axis["step_s"] == pytest.approx(STRIDE * interval)
    ms = attrs["ome"]["multiscales"][0]
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[0] == pytest.approx(STRIDE * interval)


def test_sr_store_after_skips_has_the_true_frames_and_no_fake_t_scale(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    n, window, stride = 150, 10, 5
    cfg = _cfg(out, window=window, stride=stride, budget_ms=100.0)

    def hook(seq: int) -> None:
        if 30 <= seq < 40:
            time.sleep(0.06)

    summary, _ = _run(tmp_path, cfg, n, pace=True, frame_map=cheap_map, stage_hook=hook)
    assert summary["windows_skipped"] >= 1
    rows = _windows(out)
    _, attrs = _sr(out)
    live = attrs["livesr"]
    frames = live["image_frames"]
    assert [(f["first_frame"], f["last_frame"]) for f in frames] == [
        (int(r["first_frame"]), int(r["last_frame"])) for r in rows
    ]
    assert all(f["last_frame"] - f["first_frame"] == window - 1 for f in frames)
    ends = [f["last_frame"] for f in frames]
    steps = {b - a for a, b in zip(ends[:-1], ends[1:], strict=True)}
    assert stride in steps and max(steps) > stride  # the skip is in the store
    assert [f["t_last"] for f in frames] == pytest.approx(
        [float(r["t_acquired"]) for r in rows], abs=1e-6
    )
    assert all(
        f["t_first"] is not None and f["t_first"] < f["t_last"] for f in frames
    )
    axis = live["time_axis"]
    assert axis["regular"] is False and axis["step_s"] is None
    assert "image_frames" in axis["reason"]
    ms = attrs["ome"]["multiscales"][0]
    assert ms["axes"][0] == {"name": "t", "type": "time"}  # no unit: image index
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 1.0
    assert not math.isnan(summary["frame_interval_s"])


def test_pipeline_publishes_the_live_even_odd_frc(tmp_path: Path) -> None:
    """Each window's even/odd FRC, analysed in-thread with no rest (the schedule's
    rest is tested in test_stream_newest_only.py), is in the header of the image it
    measured and equals the FRC of that window's raw frames recomputed offline."""
    from livesr.stream._frc_live import LiveFrc, frc_of_window

    out = tmp_path / "out"
    cfg = _cfg(out, window=WINDOW, stride=STRIDE)
    seen: list[dict[str, Any]] = []

    def every_window(pipe: Any) -> None:
        proc = pipe._proc
        proc.frc = LiveFrc(proc.frc.esrrf, background=False, cpu_share=1.0)
        orig = pipe._publish

        def spy(head: dict[str, Any], image: np.ndarray, stamps: Any) -> None:
            orig(head, image, stamps)
            seen.append(json.loads(json.dumps(head, allow_nan=False)))

        proc._publish_cb = spy

    summary, _ = _run(tmp_path, cfg, 60, frame_map=cheap_map, on_started=every_window)
    assert len(seen) == summary["windows_published"] == 6
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    rep = summary["frc"]
    with_frc = [h for h in seen if h["frc"] is not None]
    assert len(with_frc) == rep["published"] == rep["estimates"] == 6
    assert rep["failures"] == 0 and rep["frames_mapped"] == 6 * WINDOW
    e = cfg.esrrf
    for h in with_frc:
        assert h["frc"]["image_index"] == h["index"]  # in-thread: its own window
        frames = raw[h["first_frame"] : h["last_frame"] + 1].astype(np.float32)
        ref = frc_of_window(
            frames, None, h["index"], magnification=e.magnification, radius=e.radius,
            sensitivity=e.sensitivity, intensity_weighting=e.intensity_weighting,
            macro_pixel_correction=e.macro_pixel_correction, temporal=e.temporal,
            geometry=e.geometry,
        )
        assert h["frc"]["resolved"] is ref.resolved
        if ref.value_px is None:
            assert h["frc"]["value_px"] is None
        else:
            assert h["frc"]["value_px"] == pytest.approx(ref.value_px, rel=1e-6)
    # windows.csv carries each estimate beside its image, in nm of the SR pixel
    px_nm = 1e3 * summary["sr_pixel_size_um"]
    rows = _windows(out)
    assert len(rows) == 6
    for r, h in zip(rows, seen, strict=True):
        f = h["frc"]
        assert int(r["frc_image"]) == f["image_index"] == int(r["index"])
        assert int(r["frc_resolved"]) == int(f["resolved"])
        if f["value_px"] is None:
            assert r["frc_px"] == r["frc_nm"] == ""
        else:
            assert float(r["frc_px"]) == pytest.approx(f["value_px"], rel=1e-4)
            assert float(r["frc_nm"]) == pytest.approx(f["value_px"] * px_nm, rel=1e-4)
    latest = summary["frc"]["latest"]
    line = format_status({"frc": latest})
    assert ("frc unresolved" in line) != bool(latest["resolved"])
