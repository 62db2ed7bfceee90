"""Live SQUIRREL error maps (``--error-map``, issue 18): the registration follows the
map's shift convention, the live map equals the offline one on the same frames, and a
run writes the map and its RSP beside the SR series."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from livesr.kernels import error_map
from livesr.stream._errormap_live import LiveErrorMap, registered_mean


def _spot(shape: tuple[int, int], cy: float, cx: float, sigma: float = 1.5) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    return (1000 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))).astype(
        np.float32
    )


def _centroid(img: np.ndarray) -> tuple[float, float]:
    y, x = np.mgrid[: img.shape[0], : img.shape[1]]
    w = img / img.sum()
    return float((y * w).sum()), float((x * w).sum())


def test_registered_mean_samples_each_frame_at_its_shift() -> None:
    """The map samples frame k at p + shift_k: a spot at c appears at c - shift."""
    frames = np.stack([_spot((32, 32), 16.0 + k, 12.0 - 0.5 * k) for k in range(4)])
    shifts = np.array([[k, -0.5 * k] for k in range(4)], dtype=np.float64)
    mean = registered_mean(frames, shifts)
    cy, cx = _centroid(mean)
    assert cy == pytest.approx(16.0, abs=0.05) and cx == pytest.approx(12.0, abs=0.05)
    # the opposite sign spreads the spot: its peak falls
    wrong = registered_mean(frames, -shifts)
    assert wrong.max() < 0.8 * mean.max()


def test_live_map_equals_offline_map_and_the_buffer_keeps_the_right_frames() -> None:
    rng = np.random.default_rng(3)
    frames = rng.poisson(50.0, (30, 24, 24)).astype(np.uint16)
    shifts = rng.normal(0, 0.3, (30, 2))
    sr = rng.random((48, 48)).astype(np.float32) + _spot((48, 48), 20, 30, 3.0)
    live = LiveErrorMap(enabled=True, background=False)
    for a in range(0, 30, 7):  # uneven batches, the buffer wraps
        b = min(30, a + 7)
        live.push(np.arange(a, b), frames[a:b], shifts[a:b], window=8)
    assert live.offer(5, 22, 29, sr)
    got = live.take()
    assert got is not None and got.image_index == 5
    ref = error_map(registered_mean(frames[22:30], shifts[22:30]), sr)
    assert got.rsp == pytest.approx(float(ref.rsp), abs=1e-9)
    assert got.rse == pytest.approx(float(ref.rse), rel=1e-9)
    np.testing.assert_array_equal(got.error_map, ref.error_map)
    assert live.take() is None  # handed out once
    # frames that left the buffer: no map, counted
    assert not live.offer(6, 0, 7, sr)
    assert live.report()["not_analysed"] == 1
    assert LiveErrorMap(enabled=False).report() is None


def test_run_with_error_map_writes_rsp_beside_the_sr_images(tmp_path: Path) -> None:
    from livesr.stream.cli import main

    out = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sim]\nseed = 5\n[sim.camera]\nshape = [48, 48]\n")
    rc = main(
        [
            "run", "--config", str(cfg), "--output", str(out), "--frames", "800",
            "--window", "20", "--stride", "20", "--magnification", "2",
            "--drift", "off", "--error-map", "--no-status",
        ]
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    em = s["error_map"]
    assert em["analysed"] >= 1 and em["failures"] == 0
    z = np.load(out / "error_maps.npz")
    assert z["maps"].shape[1:] == (96, 96) and len(z["index"]) == em["analysed"]
    # recompute the first map from the run's own files: raw frames and SR image
    sr_store = zarr.open_group(str(out / "sr.ome.zarr"), mode="r")
    info = sr_store.attrs["livesr"]["image_frames"]
    k = int(z["index"][0])
    pos = [i for i, f in enumerate(info) if f["window"] == k]
    assert pos, "the analysed image is in the SR store"
    f = info[pos[0]]
    raw = np.asarray(zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"])
    raw = raw.reshape(raw.shape[0], *raw.shape[-2:])
    window = raw[f["first_frame"] : f["last_frame"] + 1]
    sr = np.asarray(sr_store["0"][pos[0]]).reshape(96, 96)
    ref = error_map(window.mean(axis=0), sr)
    assert float(z["rsp"][0]) == pytest.approx(float(ref.rsp), abs=1e-5)
    # the header of a later image carries it, and so does windows.csv
    with (out / "windows.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["error_map_image"]]
    assert rows and int(rows[0]["error_map_image"]) == k
    assert float(rows[0]["rsp"]) == pytest.approx(float(z["rsp"][0]), abs=1e-6)
