"""``--hook event-trigger`` through the real ``livesr run`` entry point.

``livesr run --source mm-sim --hook event-trigger --config X.toml``: the simulated
microscope as Micro-Manager devices, the trigger's MDA run by the controller on the
same core while the stream goes on; the triggered frames land in their own OME-Zarr
store beside the run and ``summary.json`` says what fired, why and where the frames
are. Plus the ``[hooks.event_trigger]`` validation and the metric values.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livesr.adapters.feedback import EventTriggerConfig, TriggeredAcquisition
from livesr.adapters.feedback._triggered import metric_value
from livesr.stream import Result
from livesr.stream.cli import main

pytest.importorskip(
    "pymmcore_plus", reason='pymmcore-plus is not installed ("livesr[mm]")'
)
pytest.importorskip("useq")

TOML = """
[esrrf]
window = 10
stride = 10
magnification = 2
[drift]
enabled = false
[stream]
latency_budget_ms = 60000.0
[hooks]
enabled = ["event-trigger"]
[hooks.event_trigger]
metric = "peak"
above = {above}
frames = 6
cooldown_s = 0.0
max_triggers = 1
"""


def _run(tmp_path: Path, above: float, frames: str) -> tuple[int, Path]:
    cfg = tmp_path / "run.toml"
    cfg.write_text(textwrap.dedent(TOML.format(above=above)))
    out = tmp_path / "out"
    rc = main(
        ["run", "--source", "mm-sim", "--config", str(cfg), "-o", str(out),
         "--frames", frames, "--no-status"]
    )  # fmt: skip
    return rc, out


def _report(out: Path) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_text())
    (entry,) = [h for h in summary["hooks"]["hooks"] if h["name"] == "event_trigger"]
    assert entry["failures"] == 0, entry["last_error"]
    return entry["report"]


def test_event_trigger_saves_the_triggered_frames_and_says_why(tmp_path: Path) -> None:
    import zarr

    # every image's peak-to-mean is > 0: fires on the first image; the 3000 frames (30 s)
    # only bound the run if the trigger never came
    rc, out = _run(tmp_path, 0.0, "3000")
    assert rc == 0
    rep = _report(out)
    assert rep["metric"] == "peak" and rep["above"] == 0.0
    assert rep["fired"] == 1 and len(rep["triggers"]) == 1  # max_triggers
    summary = json.loads((out / "summary.json").read_text())
    windows = summary["windows_published"]
    assert windows >= 1
    for k, trig in enumerate(rep["triggers"]):
        assert trig["index"] == k and trig["error"] is None, trig["error"]
        assert 0 <= trig["window"] < windows
        assert trig["value"] > 0.0 and trig["threshold"] == 0.0
        assert trig["reason"] == f"peak {trig['value']:.6g} > 0"
        assert trig["frames_requested"] == trig["frames"] == 6
        assert trig["path"] == f"triggered/trigger-{k:03d}.ome.zarr"
        a, b = trig["frame_range"]
        assert b - a + 1 == 10
        group = zarr.open_group(str(out / trig["path"]), mode="r")
        frames = group["0"][:]
        assert frames.shape == (6, 1, 1, 64, 64) and frames.dtype == np.uint16
        assert (frames.reshape(6, -1).max(axis=1) > 0).all()  # real camera frames
        scale = group.attrs["ome"]["multiscales"][0]["datasets"][0]
        assert scale["coordinateTransformations"][0]["scale"][-1] == pytest.approx(0.1)
    # the triggered MDA took the camera (pymmcore-plus stops the stream's sequence
    # acquisition first): the stream ended after the window that fired, losslessly
    trig = rep["triggers"][0]
    assert trig["frame_range"][1] < summary["frames_acquired"] < 3000
    assert summary["frames_persisted"] == summary["frames_acquired"]
    assert summary["frames_in_gaps"] == 0


def test_event_trigger_below_threshold_never_fires(tmp_path: Path) -> None:
    rc, out = _run(tmp_path, 1e12, "60")
    assert rc == 0
    rep = _report(out)
    assert rep["fired"] == 0 and rep["triggers"] == []
    assert not (out / "triggered").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_persisted"] == summary["frames_acquired"] == 60


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--hook", "event-trigger"], "needs a source through a pymmcore-plus core"),
        (
            ["--source", "mm-sim", "--hook", "event-trigger"],
            "needs a threshold for --hook event-trigger",
        ),
    ],
)
def test_event_trigger_cli_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    rc = main(["run", "-o", str(tmp_path / "x"), "--frames", "5", *flags])
    assert rc == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('metric = "brightness"\nabove = 1.0', "event_trigger.metric='brightness'"),
        ("above = 1.0\nbelow = 0.5", "one threshold"),
        ("above = 1.0\nframes = 0", "event_trigger.frames=0"),
        ("above = 1.0\ncooldown_s = -1.0", "event_trigger.cooldown_s=-1.0"),
        ("above = 1.0\nmax_triggers = 0", "event_trigger.max_triggers=0"),
        ("above = 1.0\nexposure_ms = 0.0", "event_trigger.exposure_ms=0.0"),
        ("above = 1.0\nframes_n = 3", "unknown key hooks.event_trigger.frames_n"),
    ],
)
def test_event_trigger_config_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, message: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[hooks]\nenabled = []\n[hooks.event_trigger]\n{table}\n")
    rc = main(["run", "--config", str(cfg), "-o", str(tmp_path / "x"), "--frames", "5"])
    assert rc == 2
    assert message in capsys.readouterr().err


class _Recorder:
    """A controller stand-in recording what the hook queues (no hardware)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def queue_events(
        self, events: Any, *, start: bool = True, on_frame: Any = None
    ) -> int:
        evs = list(events)
        self.calls.append(len(evs))
        for i, ev in enumerate(evs):  # frames arrive for these events
            on_frame(np.full((8, 8), i + 1, np.uint16), ev, {})
        return len(evs)


def _result(index: int, image: np.ndarray, quality: float = math.nan) -> Result:
    metrics = {"quality": quality} if math.isfinite(quality) else {}
    return Result(
        index=index,
        image=image,
        metrics=metrics,
        pixel_size_um=0.1,
        magnification=2,
        frame_range=(index * 10, index * 10 + 9),
    )


def test_event_trigger_cooldown_max_triggers_and_below(tmp_path: Path) -> None:
    cfg = EventTriggerConfig(metric="quality", below=0.5, frames=3, cooldown_s=3600.0,
                             max_triggers=5)  # fmt: skip
    hook = TriggeredAcquisition(cfg, tmp_path)
    ctl = _Recorder()
    img = np.ones((16, 16), np.float32)
    hook(_result(0, img, quality=0.9), ctl)  # not below: nothing
    hook(_result(1, img, quality=0.2), ctl)  # fires
    hook(_result(2, img, quality=0.1), ctl)  # inside the cooldown
    hook(_result(3, img), ctl)  # no quality: never fires
    assert ctl.calls == [3] and hook.cooldown_skips == 1
    rep = hook.report()
    (trig,) = rep["triggers"]
    assert trig["window"] == 1 and trig["reason"] == "quality 0.2 < 0.5"
    assert trig["frames"] == 3
    import zarr

    saved = zarr.open_group(str(tmp_path / trig["path"]), mode="r")["0"][:, 0, 0]
    np.testing.assert_array_equal(saved[:, 0, 0], [1, 2, 3])


def test_metric_values() -> None:
    img = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    r = _result(0, img, quality=0.7)
    assert metric_value("quality", r) == pytest.approx(0.7)
    assert metric_value("peak", r) == pytest.approx(float(img.max() / img.mean()))
    assert math.isnan(metric_value("peak", _result(0, np.zeros((8, 8), np.float32))))
    assert math.isnan(metric_value("quality", _result(0, img)))
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    blobs = gaussian_filter(rng.random((128, 128)), 2.0).astype(np.float32)
    res = metric_value("resolution_nm", _result(0, blobs))
    # SR pixel 50 nm; blurred by sigma 2 px: a few SR pixels, well above Nyquist
    assert 100.0 < res < 2000.0


@pytest.mark.parametrize(
    "metrics,expect",
    [
        # the FRC when resolved, before a confirmed decorrelation
        ({"live_frc_nm": 310.0, "live_frc_resolved": True,
          "live_decorr_nm": 290.0, "live_decorr_resolved": True}, 310.0),
        ({"live_frc_nm": 310.0, "live_frc_resolved": False,
          "live_decorr_nm": 290.0, "live_decorr_resolved": True}, 290.0),
        # eSRRF's kernel sharpness, unconfirmed by the FRC: never fires
        ({"live_decorr_nm": 63.0, "live_decorr_resolved": False}, math.nan),
        ({}, math.nan),  # a window that carries no estimate
    ],
)  # fmt: skip
def test_resolution_metric_uses_the_pipelines_trusted_estimate(
    metrics: dict[str, float], expect: float
) -> None:
    """A result from a livesr pipeline (``live_estimates``) is judged by the estimates
    published with it, never by a decorrelation of its eSRRF image."""
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    blobs = gaussian_filter(rng.random((128, 128)), 2.0).astype(np.float32)
    r = Result(
        index=3, image=blobs, pixel_size_um=0.1, magnification=2,
        metrics={"live_estimates": 1.0, **metrics},
    )  # fmt: skip
    got = metric_value("resolution_nm", r)
    assert got == expect or (math.isnan(got) and math.isnan(expect))
