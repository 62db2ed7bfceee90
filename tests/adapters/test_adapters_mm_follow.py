"""MicroscopeFollower on a real pymmcore-plus core (no napari): every MDA and live-mode
run someone else starts on the core is reconstructed in its own folder, announced
with its results endpoint; a retargeted follower leaves the old core alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "pymmcore_plus", reason='pymmcore-plus is not installed ("livesr[mm]")'
)
useq = pytest.importorskip("useq")

from livesr.adapters._mm_follow import FollowedRun, MicroscopeFollower  # noqa: E402
from livesr.adapters.sources.mm_config import load_mm_config  # noqa: E402
from livesr.adapters.sources.mm_devices import SIM_CFG  # noqa: E402
from livesr.sim import shutdown_core  # noqa: E402
from livesr.stream._config import LivesrConfig  # noqa: E402

WINDOW = 10


def _cfg() -> LivesrConfig:
    return (
        LivesrConfig()
        .replace("esrrf", window=WINDOW, stride=WINDOW, magnification=2)
        .replace("drift", enabled=False)
        .replace("stream", latency_budget_ms=60_000.0)
    )


@pytest.fixture
def core() -> Iterator[Any]:
    c = load_mm_config(SIM_CFG, buffer_mb=16)
    try:
        yield c
    finally:
        shutdown_core(c)


def _wait(cond: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_follower_reconstructs_each_mda_in_its_own_folder(
    core: Any, tmp_path: Path
) -> None:
    announced: list[FollowedRun] = []
    follower = MicroscopeFollower(core, tmp_path, _cfg(), on_run=announced.append)
    follower.start()
    try:
        for n in (20, 30):
            core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": n}))
        _wait(lambda: len(follower.runs) == 2 and follower.runs[1].summary is not None)
    finally:
        runs = follower.stop()
    assert [r.output.name for r in runs] == ["mda-001", "mda-002"]
    assert announced == runs and all(r.endpoint for r in runs)
    for run, n in zip(runs, (20, 30), strict=True):
        assert run.kind == "mda" and run.error is None, run.error
        s = run.summary
        assert s["frames_acquired"] == s["frames_persisted"] == run.frames_sent == n
        assert s["frames_in_gaps"] == 0 and s["windows_published"] == n // WINDOW
        assert (run.output / "raw.ome.zarr").is_dir()


def test_follower_reconstructs_live_mode_and_leaves_it_running(
    core: Any, tmp_path: Path
) -> None:
    follower = MicroscopeFollower(core, tmp_path, _cfg()).start()
    try:
        core.startContinuousSequenceAcquisition(0)
        _wait(lambda: len(follower.runs) == 1)
        run = follower.runs[0]
        _wait(lambda: run.frames_sent >= 40)
        assert core.isSequenceRunning() and follower.busy
        core.stopSequenceAcquisition()
        _wait(lambda: run.summary is not None)
    finally:
        follower.stop()
    assert run.kind == "live" and run.output.name == "live-001" and run.error is None
    s = run.summary
    assert s["frames_persisted"] == run.frames_sent >= 40
    assert s["frames_acquired"] == s["frames_persisted"] + s["frames_in_gaps"]
    assert s["windows_published"] == run.frames_sent // WINDOW


def test_followed_live_run_takes_parameter_changes_on_its_control_channel(
    core: Any, tmp_path: Path
) -> None:
    """A followed run announces its control channel (the napari widget's Apply and
    ``livesr ctl`` use it): a change sent there while live mode runs takes effect
    at a recorded frame, and the windows after it have the new length."""
    import csv

    from livesr.stream import ControlClient

    announced: list[FollowedRun] = []
    follower = MicroscopeFollower(core, tmp_path, _cfg(), on_run=announced.append)
    follower.start()
    try:
        core.startContinuousSequenceAcquisition(0)
        _wait(lambda: len(announced) == 1)
        run = announced[0]
        assert run.control_endpoint.startswith("ipc://")
        with ControlClient(run.control_endpoint, timeout_s=10.0) as client:
            _wait(
                lambda: client.request({"cmd": "status"})["progress"]["windows_published"]
                >= 1
            )  # a window of the old length first
            reply = client.request({"cmd": "set", "params": {"window": 2 * WINDOW}})
            assert reply["ok"] is True, reply
            _wait(lambda: bool(client.request({"cmd": "status"})["param_changes"]))
            (change,) = client.request({"cmd": "status"})["param_changes"]
        _wait(lambda: run.frames_sent >= change["frame_index"] + 4 * WINDOW)
        core.stopSequenceAcquisition()
        _wait(lambda: run.summary is not None)
    finally:
        follower.stop()
    assert change["changes"] == {"window": 2 * WINDOW}
    assert run.summary["param_changes"] == [change]
    with open(run.output / "windows.csv", newline="") as fh:
        rows = [(int(r["first_frame"]), int(r["last_frame"])) for r in csv.DictReader(fh)]
    frame = change["frame_index"]
    assert {b - a + 1 for a, b in rows if b < frame} == {WINDOW}
    after = [b - a + 1 for a, b in rows if b >= frame]
    assert after and set(after) == {2 * WINDOW}


def test_retargeted_follower_follows_the_new_core_only(
    core: Any, tmp_path: Path
) -> None:
    other = load_mm_config(SIM_CFG, buffer_mb=16)
    follower = MicroscopeFollower(core, tmp_path, _cfg()).start()
    try:
        follower.retarget(other)
        assert follower.core is other
        core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 10}))
        other.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 20}))
        _wait(lambda: len(follower.runs) == 1 and follower.runs[0].summary is not None)
        time.sleep(0.2)
    finally:
        follower.stop()
        shutdown_core(other)
    (run,) = follower.runs
    assert run.summary["frames_persisted"] == 20  # the old core's MDA was not taken
