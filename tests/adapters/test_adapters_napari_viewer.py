"""The napari sink with real napari, shown under Xvfb: a real tiny pipeline with the
simulated microscope updates the SR layer, a slow GUI never backs up the publisher,
the dock widget connects, ``run_viewer`` opens a connected viewer."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip(
    "napari", reason='napari is not installed (pip install "livesr[viewer]")'
)
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from livesr.adapters.sinks._napari_widget import make_live_widget  # noqa: E402
from livesr.adapters.sinks.napari_viewer import (  # noqa: E402
    DRIFT_LAYER,
    SR_LAYER,
    LiveViewerSink,
    run_viewer,
    sr_transform,
)
from livesr.stream._config import LivesrConfig  # noqa: E402
from livesr.stream._pubsub import ResultPublisher  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("display"),
]


@pytest.fixture
def viewer(display: str, make_napari_viewer):
    """A shown napari viewer (a hidden canvas is never drawn: black screenshots)."""
    return make_napari_viewer(show=True)


def sr_parts(
    index: int, image: np.ndarray, *, raw_px: float = 0.1, m: int = 2, stride: int = 5
) -> list:
    last = 9 + index * stride
    now = time.time()
    head = {
        "v": 1,
        "kind": "sr",
        "stream": "t",
        "index": index,
        "first_frame": last - 9,
        "last_frame": last,
        "shape": list(image.shape),
        "dtype": "float32",
        "pixel_size_um": raw_px / m,
        "drift": {
            "dy": 0.02 * index,
            "dx": 0.01 * index,
            "sigma_px": 0.01,
            "rejected": False,
        },
        "quality": {"metric": "q", "value": 1.0},
        "implementation": {"esrrf": "numpy"},
        "params": {"window": 10, "stride": stride, "magnification": m},
        "timestamps": {
            "acquired": now - 0.01,
            "received": now - 0.009,
            "processed": now - 0.001,
            "published": now,
        },
    }
    return [json.dumps(head).encode(), np.ascontiguousarray(image, dtype=np.float32)]


def _ipc(tmp_path: Path, name: str) -> str:
    return f"ipc://{tmp_path}/{name}.ipc"


def _background_fraction(shot: np.ndarray) -> float:
    rgb = shot[..., :3].astype(int)
    bg = rgb[0, 0]
    return float(np.mean(np.any(np.abs(rgb - bg) > 8, axis=-1)))


def test_sr_layer_follows_a_real_pipeline_run(viewer, qtbot, tmp_path: Path) -> None:
    import zarr

    cfg = (
        LivesrConfig()
        .replace("drift", enabled=True, block=10)
        .replace("stream", latency_budget_ms=100000.0, ring_mb=1.0)
        .replace(
            "sim",
            seed=4,
            # 3 s of stream: long enough for the GUI to draw several images while it
            # runs on a loaded 2-core CI machine (at 8 ms a frame, a 1 s run once
            # ended after a single image was drawn)
            camera={"shape": [32, 32], "interval_ms": 25.0, "exposure_ms": 25.0},
        )
    )
    widget = make_live_widget(viewer)
    viewer.window.add_dock_widget(widget, name="livesr")
    demo = widget.start_demo(
        output=tmp_path / "run",
        frames=120,
        config=cfg,
        esrrf={"window": 10, "stride": 5, "magnification": 2},
    )
    sink = widget.sink
    assert sink is not None and sink.running
    try:
        # updates while the stream runs: several images drawn before the run ends
        qtbot.waitUntil(
            lambda: sink.stats.shown >= 3 or not demo.running, timeout=30000
        )
        shown_while_running = sink.stats.shown
        # keep the event loop running (a blocked GUI would let ZeroMQ drop the newest)
        qtbot.waitUntil(lambda: not demo.running, timeout=60000)
        summary = demo.summary
        assert summary is not None and demo.error is None, demo.error
        n = summary["windows_published"]
        assert n == (120 - 10) // 5 + 1
        # the final image reaches the viewer even when its queue was full at the
        # moment it was published: the publisher re-sends it at close without
        # dropping (XPUB_NODROP) and lingers until it has left
        qtbot.waitUntil(
            lambda: sink.stats.last is not None and sink.stats.last.index == n - 1,
            timeout=20000,
        )
    finally:
        widget.stop_demo()
    assert shown_while_running >= 2
    shown = sink.stats.last.index
    assert shown == n - 1, f"viewer ends at image {shown} of {n}"
    layer = viewer.layers[SR_LAYER]
    # the layer shows exactly the last published image ...
    sr = zarr.open_group(str(tmp_path / "run" / "sr.ome.zarr"), mode="r")["0"]
    np.testing.assert_array_equal(np.asarray(layer.data), sr[shown, 0, 0])
    # ... at the SR pixel size, raw pixel / M, translated by the half-pixel mapping
    p = summary["pixel_size_um"]
    assert tuple(layer.scale) == pytest.approx((p / 2, p / 2))
    assert tuple(layer.scale) == pytest.approx((summary["sr_pixel_size_um"],) * 2)
    assert tuple(layer.translate) == pytest.approx(
        (sr_transform(p, 2, "nanopyx")[1],) * 2
    )
    # the drift trace: one vertex per image drawn, flushed by an idle timer tick within 1 s
    qtbot.waitUntil(lambda: not sink.layers._trace_pending, timeout=5000)
    drift = viewer.layers[DRIFT_LAYER]
    assert drift.shape_type == ["path"]
    np.testing.assert_allclose(drift.data[0], sink.layers.drift_path_um())
    assert len(drift.data[0]) == sink.stats.shown
    text = widget.status.text()
    assert (
        f"SR image {shown}" in text
        and re.search(r"implementation: drift=numpy, esrrf=[a-z-]+", text) is not None
    )
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert _background_fraction(shot) > 0.05, "the screenshot shows no SR image"


def test_slow_gui_never_backs_up_the_publisher(viewer, qtbot, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16), dtype=np.float32)
    pub = ResultPublisher(_ipc(tmp_path, "slow")).start()
    slow = threading.Event()

    def slow_draw(_text: str) -> None:
        if slow.is_set():
            time.sleep(0.03)  # a GUI that draws ~30 images/s at most

    sink = LiveViewerSink(
        viewer, pub.endpoint, interval_ms=10_000, on_status=slow_draw
    ).start()
    try:
        # slow joiner: publish until the subscription is through
        for _ in range(500):
            pub.publish(sr_parts(0, images[0]))
            if sink.poll():
                break
            time.sleep(0.01)
        assert sink.stats.shown >= 1
        slow.set()
        total = 400
        done = threading.Event()

        def publish_all() -> None:
            for i in range(1, total + 1):
                pub.publish(sr_parts(i, images[i % 4]))  # never blocks
                time.sleep(0.001)
            done.set()

        t = threading.Thread(target=publish_all)
        t.start()
        while not done.is_set():
            sink.poll()
            qtbot.wait(1)
        t.join()
        qtbot.wait(100)
        # what was still queued from the burst goes in a few drains (ZeroMQ and socket
        # buffers hold a handful of messages), not in one draw per message published
        drains = 0
        while sink.poll():
            drains += 1
            assert drains <= 10, "a backlog builds up in front of the viewer"
        st = sink.stats
        shown_in_burst = st.shown
        # the viewer saw only a fraction; the rest was dropped (ZeroMQ HWM, drain),
        # and the publisher was never held back: it handed every message to ZeroMQ
        assert pub.published >= total + 1
        assert shown_in_burst < total / 2
        assert st.missed + st.dropped > total / 2
        # (ZeroMQ drops the *newest* message for a full subscriber queue, so the image
        # drawn last in a burst can be older than the last one published; the next one
        # published at a pace the GUI keeps up with is drawn, below)
        # at a rate the GUI keeps up with, every drawn image is the newest one published
        for i in range(total + 1, total + 6):
            pub.publish(sr_parts(i, images[i % 4]))
            qtbot.waitUntil(
                lambda i=i: (sink.poll() or True) and st.last.index == i, timeout=5000
            )
            np.testing.assert_array_equal(
                np.asarray(viewer.layers[SR_LAYER].data), images[i % 4]
            )
    finally:
        sink.stop()
        pub.close()


def test_widget_connects_and_reports_errors(viewer, qtbot, tmp_path: Path) -> None:
    widget = make_live_widget(viewer)
    viewer.window.add_dock_widget(widget, name="livesr")
    widget.endpoint_edit.setText(
        "tcp://10.1.2.3:5555"
    )  # non-loopback without CURVE keys
    widget.connect_button.click()
    assert widget.sink is None and "cannot connect" in widget.status.text()
    with ResultPublisher(_ipc(tmp_path, "widget")) as pub:
        widget.endpoint_edit.setText(pub.endpoint)
        widget.connect_button.click()
        assert widget.sink is not None and widget.connect_button.text() == "Disconnect"
        img = np.outer(np.arange(8), np.ones(8)).astype(np.float32)

        def got() -> bool:
            pub.publish(sr_parts(7, img, raw_px=0.2, m=2))
            return widget.sink.stats.shown > 0

        qtbot.waitUntil(got, timeout=10000)  # the QTimer draws it
        assert "SR image 7" in widget.status.text()
        assert tuple(viewer.layers[SR_LAYER].scale) == pytest.approx((0.1, 0.1))
        widget.connect_button.click()
        assert widget.sink is None and widget.connect_button.text() == "Connect"
    widget.shutdown()


@pytest.fixture
def fixture_viewers(
    display: str, make_napari_viewer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``napari.Viewer(...)`` inside ``run_viewer`` made by ``make_napari_viewer``
    (napari's test set-up of plugins and app model; closed and leak-checked after)."""
    monkeypatch.setattr(
        napari, "Viewer", lambda **kw: make_napari_viewer(show=True, **kw)
    )


def test_run_viewer_opens_a_connected_viewer(
    fixture_viewers, qtbot, tmp_path: Path
) -> None:
    with ResultPublisher(_ipc(tmp_path, "run")) as pub:
        sink = run_viewer(pub.endpoint, title="livesr test", block=False)
        try:
            assert sink.running and sink.viewer.title == "livesr test"
            img = np.ones((6, 6), np.float32)

            def got() -> bool:
                pub.publish(sr_parts(1, img))
                return sink.stats.shown > 0

            qtbot.waitUntil(got, timeout=10000)
            assert SR_LAYER in sink.viewer.layers
        finally:
            sink.stop()
            sink.viewer.close()


READER_CONFIG = """
[esrrf]
window = 10
stride = 10
magnification = 2

[drift]
enabled = true
block = 10

[stream]
latency_budget_ms = 100000.0

[sim.camera]
shape = [24, 20]
interval_ms = 2.0
exposure_ms = 2.0
"""


def test_viewer_opens_a_run_folder_through_the_plugin(
    viewer, npe2pm, tmp_path: Path
) -> None:
    import npe2

    from livesr.stream.cli import main

    cfg = tmp_path / "run.toml"
    cfg.write_text(READER_CONFIG)
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--config",
                str(cfg),
                "--frames",
                "30",
                "--output",
                str(out),
                "--no-status",
            ]
        )
        == 0
    )
    manifest = Path(__file__).parents[2] / "adapters" / "sinks" / "napari.yaml"
    npe2pm.register(npe2.PluginManifest.from_file(manifest))
    layers = viewer.open(str(out), plugin="livesr")
    assert [layer.name for layer in layers] == ["raw", "SR", "drift"]
    s = json.loads((out / "summary.json").read_text())
    p = s["pixel_size_um"]
    assert tuple(viewer.layers["SR"].scale[-2:]) == pytest.approx((p / 2, p / 2))
    assert tuple(viewer.layers["SR"].translate[-2:]) == pytest.approx(
        (sr_transform(p, 2, "nanopyx")[1],) * 2
    )
    assert tuple(viewer.layers["raw"].scale[-2:]) == pytest.approx((p, p))
    assert viewer.layers["SR"].data.shape == (s["windows_published"], 1, 1, 48, 40)
    # the widget contribution: napari builds the live-stream dock widget
    _, widget = viewer.window.add_plugin_dock_widget("livesr", "Live SR stream")
    assert widget.connect_button.text() == "Connect" and widget.sink is None
    widget.shutdown()


def test_run_viewer_blocks_until_the_window_is_closed(
    fixture_viewers, qtbot, tmp_path: Path
) -> None:
    from qtpy.QtCore import QTimer

    closed: list[bool] = []
    with ResultPublisher(_ipc(tmp_path, "block")) as pub:
        timer = QTimer()

        def tick() -> None:
            pub.publish(sr_parts(2, np.ones((6, 6), np.float32)))
            v = napari.current_viewer()
            if v is not None and SR_LAYER in v.layers:  # drawn: close the window
                timer.stop()
                closed.append(True)
                v.close()

        timer.timeout.connect(tick)
        timer.start(50)
        sink = run_viewer(pub.endpoint, title="livesr block", block=True)
        timer.stop()
    assert closed and not sink.running and sink.stats.shown >= 1


def test_long_drift_trace_is_drawn_decimated_with_its_ends(viewer) -> None:
    """A long run's drift trace is drawn with at most DRIFT_TRACE_DRAWN vertices
    (a napari path re-triangulates all of them on every update): evenly spaced
    trace points, the first and the newest among them; the trace itself is whole."""
    from livesr.adapters.sinks._viewer_layers import (
        DRIFT_TRACE_DRAWN,
        LiveLayers,
        decimate_path,
    )

    layers = LiveLayers(viewer, drift_refresh_s=0.0)
    layers._raw_px, layers._centre = 0.1, (3.0, 3.0)
    n = 5 * DRIFT_TRACE_DRAWN + 7
    for k in range(n):
        layers._trace.append((0.01 * k, -0.02 * k))
    layers._trace_pending = True
    assert layers.flush(now=100.0)
    drawn = np.asarray(viewer.layers[DRIFT_LAYER].data[0])
    full = layers.drift_path_um()
    assert len(full) == n and len(drawn) == DRIFT_TRACE_DRAWN
    np.testing.assert_allclose(drawn[[0, -1]], full[[0, -1]])
    idx = np.rint((drawn[:, 0] - 3.0) / (0.1 * 0.01)).astype(int)
    np.testing.assert_allclose(drawn, full[idx])  # every drawn vertex is a trace point
    assert np.all(np.diff(idx) > 0) and np.diff(idx).max() - np.diff(idx).min() <= 1
    short = full[:10]
    assert decimate_path(short, DRIFT_TRACE_DRAWN) is short


def test_sr_pixels_are_updated_in_place_and_reach_the_canvas(viewer, qtbot) -> None:
    """Same shape: the layer keeps its array (no dimension/extent re-check) and the
    canvas shows the new pixels; a new shape replaces the array; the shown contrast
    limits move only beyond the hysteresis."""
    from livesr.adapters.sinks._viewer_layers import LIMITS_HYSTERESIS, LiveLayers
    from livesr.stream import decode_result

    layers = LiveLayers(viewer)
    rng = np.random.default_rng(3)
    first = rng.random((24, 20), dtype=np.float32) * 100
    layers.show_sr(decode_result(sr_parts(0, first)))
    layer = viewer.layers[SR_LAYER]
    array = layer.data
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer]
    for i in range(1, 4):
        img = rng.random((24, 20), dtype=np.float32) * 100
        layers.show_sr(decode_result(sr_parts(i, img)))
        qtbot.wait(5)
        assert layer.data is array  # in place
        np.testing.assert_array_equal(np.asarray(layer.data), img)
        np.testing.assert_array_equal(np.asarray(visual.node._data), img)
    # the drift trace waits for a tick that draws no image (flush), not redrawn here
    assert layers._trace_pending
    assert layers.flush(now=time.monotonic() + 2.0) and not layers._trace_pending
    assert len(viewer.layers[DRIFT_LAYER].data[0]) == 4
    lo, hi = layer.contrast_limits
    # within the hysteresis: the limits shown stay; beyond it: they follow the image
    small = np.asarray(layer.data).copy()
    small[0, 0], small[0, 1] = lo, hi * (1 + LIMITS_HYSTERESIS / 2)
    layers.show_sr(decode_result(sr_parts(4, small)))
    assert tuple(layer.contrast_limits) == (lo, hi)
    big = small.copy()
    big[0, 1] = hi * 2
    layers.show_sr(decode_result(sr_parts(5, big)))
    assert layer.contrast_limits[1] == pytest.approx(float(big.max()))
    other = rng.random((12, 10), dtype=np.float32)
    layers.show_sr(decode_result(sr_parts(6, other)))
    qtbot.wait(5)
    assert layer.data is not array and layer.data.shape == (12, 10)
    np.testing.assert_array_equal(np.asarray(visual.node._data), other)
