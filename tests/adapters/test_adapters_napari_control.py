"""The napari widget's parameter controls go through the run's control channel (the
one ``livesr ctl`` uses), shown under Xvfb with a real demo pipeline."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

napari = pytest.importorskip(
    "napari", reason='napari is not installed (pip install "livesr[viewer]")'
)
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from livesr.adapters.sinks._napari_widget import make_live_widget  # noqa: E402
from livesr.stream._config import LivesrConfig  # noqa: E402

pytestmark = [pytest.mark.usefixtures("display")]


def test_widget_applies_parameters_through_the_control_channel(
    make_napari_viewer, qtbot, tmp_path: Path
) -> None:
    viewer = make_napari_viewer(show=True)
    cfg = (
        LivesrConfig()
        .replace("drift", enabled=False)
        .replace("stream", latency_budget_ms=100000.0, ring_mb=1.0)
        .replace("sim", seed=4, camera={"shape": [32, 32], "interval_ms": 8.0,
                                        "exposure_ms": 8.0})
    )
    widget = make_live_widget(viewer)
    viewer.window.add_dock_widget(widget, name="livesr")
    # nothing to talk to yet: said in the widget, nothing raised
    widget.control_edit.setText(f"ipc://{tmp_path}/nobody.ipc")
    assert widget.apply_params("window=12") is None
    assert "parameters not sent" in widget.status.text()
    demo = widget.start_demo(
        output=tmp_path / "run",
        frames=300,
        config=cfg,
        esrrf={"window": 10, "stride": 5, "magnification": 2},
    )
    try:
        assert widget.control_edit.text() == demo.control_endpoint
        sink = widget.sink
        assert sink is not None
        qtbot.waitUntil(lambda: sink.stats.shown >= 2, timeout=60000)
        assert widget.apply_params("window=abc") is None
        assert "expected an integer" in widget.status.text()
        widget.params_edit.setText("window=16 radius=2")
        reply = widget.apply_params()
        assert reply is not None and reply["ok"] is True, reply
        qtbot.waitUntil(lambda: not demo.running, timeout=120000)
    finally:
        widget.stop_demo()
    summary = demo.summary
    assert summary is not None and demo.error is None, demo.error
    (change,) = summary["param_changes"]
    assert change["changes"] == {"window": 16, "radius": 2.0}
    if reply["applied"]:
        assert change["frame_index"] == reply["frame_index"]
    assert summary["frames_persisted"] == summary["frames_acquired"] == 300
    with open(tmp_path / "run" / "windows.csv", newline="") as fh:
        rows = [(int(r["first_frame"]), int(r["last_frame"])) for r in csv.DictReader(fh)]
    f = change["frame_index"]
    assert {b - a + 1 for a, b in rows if b < f} == {10}
    assert {b - a + 1 for a, b in rows if b >= f} == {16}
