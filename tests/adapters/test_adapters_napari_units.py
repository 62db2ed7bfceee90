"""napari sink without napari: message decoding, the SR half-pixel mapping, status
bookkeeping, the reader on a real ``livesr run`` output folder, the npe2 manifest."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from livesr.adapters.sinks import _napari_reader as reader
from livesr.adapters.sinks.napari_viewer import (
    NANOPYX_DISPLACEMENT_PX,
    StreamStats,
    decode_result,
    sr_transform,
    viewer_unavailable_reason,
)

MANIFEST = Path(__file__).parents[2] / "adapters" / "sinks" / "napari.yaml"


def sr_parts(
    index: int,
    image: np.ndarray,
    *,
    raw_px: float = 0.1,
    m: int = 2,
    stride: int = 5,
    window: int = 10,
    t_acq: float = 1000.0,
    geometry: str | None = None,
) -> list[bytes]:
    """A results message as :meth:`Pipeline._publish` sends it."""
    last = window - 1 + index * stride
    params = {
        "window": window,
        "stride": stride,
        "magnification": m,
        "radius": 1.5,
        "sensitivity": 1.0,
        "temporal": "avg",
    }
    if geometry is not None:
        params["geometry"] = geometry
    head = {
        "v": 1,
        "kind": "sr",
        "stream": "sim",
        "index": index,
        "first_frame": last - window + 1,
        "last_frame": last,
        "shape": list(image.shape),
        "dtype": "float32",
        "pixel_size_um": raw_px / m,
        "drift": {
            "dy": 0.1 * index,
            "dx": -0.05 * index,
            "sigma_px": 0.01,
            "rejected": False,
        },
        "quality": {"metric": "normalized_gradient_energy", "value": 1.5},
        "implementation": {"drift": "numpy", "esrrf": "numpy"},
        "params": params,
        "timestamps": {
            "acquired": t_acq,
            "received": t_acq + 0.001,
            "processed": t_acq + 0.01,
            "published": t_acq + 0.02,
        },
    }
    return [
        json.dumps(head).encode(),
        np.ascontiguousarray(image, dtype=np.float32).tobytes(),
    ]


def test_decode_result_reads_the_pipeline_header() -> None:
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = decode_result(sr_parts(3, img, raw_px=0.16, m=4))
    assert msg.kind == "sr" and msg.index == 3 and msg.magnification == 4
    np.testing.assert_array_equal(msg.image, img)
    assert msg.pixel_size_um == pytest.approx(
        0.04
    ) and msg.raw_pixel_size_um == pytest.approx(0.16)
    assert msg.geometry == "nanopyx" and msg.drift == pytest.approx((0.3, -0.15))
    assert msg.last_frame == 9 + 3 * 5


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda p: p[:1], "1 part(s); expected 2"),
        (lambda p: [b"\xff", p[1]], "not UTF-8 JSON"),
        (lambda p: [b"[1]", p[1]], "not a JSON object"),
        (lambda p: [p[0].replace(b'"sr"', b'"x"'), p[1]], "kind='x'"),
        (lambda p: [p[0], p[1][:-4]], "needs 48"),
        (
            lambda p: [p[0].replace(b'"shape": [3, 4]', b'"shape": [3]'), p[1]],
            "shape=[3]",
        ),
        (
            lambda p: [
                p[0].replace(b'"magnification": 2', b'"magnification": 0'),
                p[1],
            ],
            "magnification=0",
        ),
    ],
)
def test_decode_result_rejects_malformed(mutate, expect: str) -> None:
    parts = sr_parts(0, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=re.escape(expect)):
        decode_result(mutate(parts))


def test_sr_transform_half_pixel_mapping() -> None:
    # corrected: SR pixel k centred at (k + 0.5)/M - 0.5 raw px -> first SR pixel of raw
    # pixel 0 starts exactly where raw pixel 0 starts (-p/2)
    p, m = 0.1, 4
    scale, tr = sr_transform(p, m, "corrected")
    assert scale == pytest.approx(p / m)
    assert tr - scale / 2 == pytest.approx(-p / 2)
    # the centre of the SR block of raw pixel i is at i*p
    i = 7
    centres = tr + scale * np.arange(i * m, (i + 1) * m)
    assert centres.mean() == pytest.approx(i * p)
    # nanopyx geometry: the measured +0.45 raw px displacement is undone
    _, tr_n = sr_transform(p, m, "nanopyx")
    assert tr_n == pytest.approx(tr - NANOPYX_DISPLACEMENT_PX * p)
    assert sr_transform(p, 1, "corrected") == (pytest.approx(p), pytest.approx(0.0))
    with pytest.raises(ValueError, match="geometry='bogus'"):
        sr_transform(p, m, "bogus")


def test_stream_stats_counts_drops_and_skips() -> None:
    st = StreamStats(window_s=100.0)
    img = np.ones((4, 4), np.float32)
    st.record_sr(decode_result(sr_parts(0, img, t_acq=10.0)), now=10.05)
    st.record_sr(decode_result(sr_parts(1, img, t_acq=10.5)), now=10.55)
    st.record_sr(
        decode_result(sr_parts(4, img, t_acq=12.0)), now=12.05
    )  # 2 images missed
    assert st.shown == 3 and st.missed == 2 and st.not_produced == 0
    # a frame jump of 3 strides, consecutive indices: 2 windows skipped by the pipeline
    head = dict(decode_result(sr_parts(5, img, t_acq=12.5)).header)
    head["last_frame"] += 2 * 5
    st.record_sr(decode_result([json.dumps(head).encode(), img.tobytes()]), now=12.5)
    assert st.not_produced == 2
    lat = st.latency_ms()
    assert lat["published"] == pytest.approx(20.0)
    assert st.acquisition_rate() == pytest.approx(
        (44 - 9) / 2.5
    )  # frames 9 -> 44 in 2.5 s
    text = st.status_text(now=12.5)
    assert (
        "SR image 5" in text
        and "esrrf=numpy" in text
        and "2 dropped for the viewer" in text
    )
    assert "2 skipped by the pipeline" in text and "raw: not published" in text
    # the subscriber drained 1 of the 2 images between 5 and 8: 1 never arrived
    st.record_sr(decode_result(sr_parts(8, img, t_acq=14.0)), now=14.0, drained=1)
    assert (st.missed, st.dropped) == (3, 1)
    assert StreamStats().status_text().startswith("waiting")
    assert math.isnan(StreamStats().acquisition_rate())


def test_stream_stats_shows_the_newest_error_map_and_resolution() -> None:
    """Issue 18: the widget shows the RSP of the newest error map (--error-map) and
    the newest live resolution, each naming the image it measured."""
    st = StreamStats(window_s=100.0)
    img = np.ones((4, 4), np.float32)
    head = dict(decode_result(sr_parts(3, img, t_acq=10.0)).header)
    head["error_map"] = {"method": "squirrel", "rsp": 0.9312, "rse": 12.5,
                         "alpha": 1.0, "beta": 0.0, "sigma_px": 2.0, "image_index": 1}
    head["resolution"] = {"method": "decorrelation", "value_px": 3.1, "value_nm": 84.0,
                          "resolved": True, "image_index": 2}
    st.record_sr(decode_result([json.dumps(head).encode(), img.tobytes()]), now=10.1)
    # a later image without fresh analyses keeps showing the newest ones
    st.record_sr(decode_result(sr_parts(4, img, t_acq=10.5)), now=10.6)
    text = st.status_text(now=10.6)
    assert "error map (image 1): RSP 0.9312, RSE 12.5" in text
    assert "resolution 84 nm (image 2)" in text


def test_viewer_unavailable_without_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    reason = viewer_unavailable_reason()
    assert reason is not None and ("DISPLAY" in reason or "not installed" in reason)


def test_manifest_is_valid_and_points_at_callables() -> None:
    npe2 = pytest.importorskip("npe2", reason="npe2 comes with napari (livesr[viewer])")
    import importlib

    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "livesr"
    ids = {c.id: c.python_name for c in pm.contributions.commands}
    for python_name in ids.values():
        mod, _, attr = python_name.partition(":")
        assert callable(getattr(importlib.import_module(mod), attr)), python_name
    assert pm.contributions.readers[0].accepts_directories
    assert pm.contributions.widgets[0].command in ids


CONFIG = """
[esrrf]
window = 10
stride = 10
magnification = 2
geometry = "corrected"

[drift]
enabled = true
block = 10

[stream]
latency_budget_ms = 100000.0
ring_mb = 1.0

[sim]
seed = 3
[sim.camera]
shape = [24, 20]
interval_ms = 2.0
exposure_ms = 2.0
"""


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``livesr run`` output folder (40 frames of 24x20, 4 SR images)."""
    from livesr.stream.cli import main

    tmp = tmp_path_factory.mktemp("napari-reader")
    cfg = tmp / "run.toml"
    cfg.write_text(CONFIG)
    out = tmp / "out"
    rc = main(
        [
            "run",
            "--config",
            str(cfg),
            "--frames",
            "40",
            "--output",
            str(out),
            "--no-status",
        ]
    )
    assert rc == 0
    return out


def test_reader_on_a_real_output_folder(run_folder: Path) -> None:
    import zarr

    assert reader.get_reader(str(run_folder)) is reader.read_livesr_folder
    assert (
        reader.get_reader(str(run_folder / "summary.json")) is reader.read_livesr_folder
    )
    assert reader.get_reader([str(run_folder)]) is reader.read_livesr_folder
    assert reader.get_reader(str(run_folder.parent)) is None
    layers = reader.read_livesr_folder(str(run_folder))
    by_name = {kw["name"]: (data, kw, kind) for data, kw, kind in layers}
    assert list(by_name) == ["raw", "SR", "drift"]
    s = json.loads((run_folder / "summary.json").read_text())
    p = s["pixel_size_um"]
    raw, raw_kw, _ = by_name["raw"]
    assert raw.shape == (40, 1, 1, 24, 20)
    assert raw_kw["scale"][-2:] == pytest.approx([p, p])
    assert raw_kw["scale"][0] == pytest.approx(s["frame_interval_s"])
    sr, sr_kw, _ = by_name["SR"]
    assert sr.shape == (s["windows_published"], 1, 1, 48, 40)
    assert sr_kw["scale"][-2:] == pytest.approx([p / 2, p / 2])
    assert sr_kw["scale"][-1] == pytest.approx(s["sr_pixel_size_um"])
    assert sr_kw["translate"][-2:] == pytest.approx(
        [sr_transform(p, 2, "corrected")[1]] * 2
    )
    assert sr_kw["translate"][0] == pytest.approx(
        9 * s["frame_interval_s"]
    )  # first window ends at frame 9
    expected = zarr.open_group(str(run_folder / "sr.ome.zarr"), mode="r")["0"][:]
    np.testing.assert_array_equal(np.asarray(sr[:]), expected)
    drift, drift_kw, kind = by_name["drift"]
    assert (
        kind == "shapes"
        and drift_kw["shape_type"] == "path"
        and drift[0].shape == (4, 2)
    )


def test_reader_rejects_a_folder_without_summary(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no summary.json"):
        reader.read_livesr_folder(str(tmp_path))
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="no raw.ome.zarr, raw.ome.tif or sr.ome.zarr"):
        reader.read_livesr_folder(str(tmp_path))
