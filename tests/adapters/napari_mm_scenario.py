"""napari + napari-micromanager + the livesr widget, one viewer, in its own process.

Run by ``test_adapters_napari_micromanager.py`` (``python napari_mm_scenario.py OUT``
with ``DISPLAY`` set). A second napari viewer holding napari-micromanager's main
window in one process crashed Qt (``QDockWidget::setVisible`` on a deleted child,
napari-micromanager 0.3.1, napari 0.9.2, PyQt6 6.11): one viewer per process keeps
such a crash out of the test session. Writes ``OUT/scenario.json``: what the viewer
and the follower saw; the test checks it and the run folders.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

M, WINDOW, MDA_FRAMES, LIVE_FRAMES = 2, 10, 40, 40


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.01)


def _offline_icons(out: Path) -> None:
    """pymmcore-widgets' icons come from api.iconify.design: a local blank one."""
    import superqt.iconify

    icon = out / "blank.svg"
    icon.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>')
    superqt.iconify.svg_path = lambda *key, **kw: icon


def _config() -> Any:
    from livesr.stream import LivesrConfig

    return (
        LivesrConfig()
        .replace("esrrf", window=WINDOW, stride=WINDOW, magnification=M)
        .replace("drift", enabled=False)
        # every window is counted: none may be skipped on a loaded 2-core machine
        .replace("stream", latency_budget_ms=60_000.0)
    )


def _run_info(run: Any) -> dict[str, Any]:
    return {
        "kind": run.kind,
        "output": str(run.output),
        "error": run.error,
        "frames_sent": run.frames_sent,
        "summary": run.summary,
    }


def main(out: Path) -> dict[str, Any]:
    # Long because it is one scripted session: open, MDA, live mode, report
    import napari
    import useq

    from livesr.adapters.sinks._napari_widget import make_live_widget
    from livesr.adapters.sinks.napari_viewer import SR_LAYER
    from livesr.adapters.sources.mm_devices import SIM_CFG
    from livesr.sim import shutdown_core

    _offline_icons(out)
    viewer = napari.Viewer(show=True)
    # from its plugin manifest, as a user opens it (Plugins > napari-micromanager)
    _dock, main_window = viewer.window.add_plugin_dock_widget("napari-micromanager")
    widget = make_live_widget(viewer)
    viewer.window.add_dock_widget(widget, name="livesr")
    # no core given: the one of napari-micromanager's window in this viewer
    follower = widget.follow_microscope(output=out / "runs", config=_config())
    res: dict[str, Any] = {"followed_first": follower.core is main_window.core}
    # a #py configuration makes the plugin swap its core for a UniMMCore: the
    # widget moves to the new core
    main_window.core.loadSystemConfiguration(str(SIM_CFG))
    core = main_window.core
    res["camera"] = core.getCameraDevice()
    try:
        _wait(lambda: follower.core is core, 10, "the widget to follow the new core")
        res["follows_plugin_core"] = follower.core is core
        # an MDA as napari-micromanager's MDA widget starts it
        core.run_mda(useq.MDASequence(time_plan={"interval": 0, "loops": MDA_FRAMES}))
        _wait(lambda: len(follower.runs) == 1, 60, "the MDA run")
        run = follower.runs[0]
        _wait(lambda: run.summary is not None or run.error is not None, 120, "the MDA")
        res["mda_running_after"] = core.mda.is_running()
        sink = widget.sink
        last = MDA_FRAMES // WINDOW - 1
        _wait(
            lambda: (
                sink is not None
                and sink.stats.last is not None
                and sink.stats.last.index == last
            ),
            30,
            "the last SR image in the viewer",
        )
        layer = viewer.layers[SR_LAYER]
        np.save(out / "sr_layer.npy", np.asarray(layer.data))
        res["layers"] = {lyr.name: list(lyr.data.shape) for lyr in viewer.layers}
        res["mda"] = _run_info(run)
        # live mode (napari-micromanager's Live button starts exactly this)
        core.startContinuousSequenceAcquisition(0)
        _wait(lambda: len(follower.runs) == 2, 30, "the live run")
        live = follower.runs[1]
        _wait(lambda: live.frames_sent >= LIVE_FRAMES, 60, "live frames")
        res["live_running_while_followed"] = core.isSequenceRunning()
        # the widget's Apply changes the followed run, through its control channel
        _wait(
            lambda: widget.control_edit.text() == live.control_endpoint != "",
            10,
            "the control field to name the live run's channel",
        )
        res["live_apply"] = widget.apply_params(f"window={2 * WINDOW}")
        _wait(lambda: live.frames_sent >= 2 * LIVE_FRAMES, 60, "frames after the change")
        core.stopSequenceAcquisition()  # the user stops live mode: the run ends
        _wait(lambda: live.summary is not None, 60, "the live run to end")
        res["live"] = _run_info(live)
        res["runs_after_stop"] = len(widget.stop_following())
    finally:
        widget.shutdown()
        shutdown_core(core)
        viewer.close()
    return res


if __name__ == "__main__":
    faulthandler.enable()
    out_dir = Path(sys.argv[1])
    result = main(out_dir)
    (out_dir / "scenario.json").write_text(json.dumps(result, indent=1, default=str))
