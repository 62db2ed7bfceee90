"""livesr inside a running pymmcore-plus session (real pymmcore-plus, no mocks):

- :func:`livesr.adapters.mda_output` as the output handler of a real
  ``core.mda.run`` on the shipped simulated configuration;
- :func:`livesr.adapters.attach` / ``MMCoreSource(attach=True)`` on a continuous
  sequence acquisition someone else started: not started or stopped by livesr,
  frames the circular buffer overwrote reported as gaps (in the pipeline summary).
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

pytest.importorskip("pymmcore_plus")
useq = pytest.importorskip("useq")

from livesr.adapters import attach, mda_output  # noqa: E402
from livesr.adapters.sources.mm_config import load_mm_config  # noqa: E402
from livesr.adapters.sources.mm_devices import SIM_CFG  # noqa: E402
from livesr.adapters.sources.mmcore import MMCoreSource  # noqa: E402
from livesr.kernels import esrrf  # noqa: E402
from livesr.sim import shutdown_core  # noqa: E402
from livesr.stream._config import LivesrConfig  # noqa: E402


def _cfg(window: int) -> LivesrConfig:
    return (
        LivesrConfig()
        .replace("esrrf", window=window, stride=window, magnification=2)
        .replace("drift", enabled=False)
        # a burst must not skip windows on a loaded 2-core machine (every window is
        # compared with batch eSRRF)
        .replace("stream", latency_budget_ms=60_000.0)
    )


@pytest.fixture
def core() -> Iterator[Any]:
    c = load_mm_config(SIM_CFG, buffer_mb=16)
    try:
        yield c
    finally:
        shutdown_core(c)  # stops acquisition (joins the camera thread), unloads


def _raw(out: Path) -> np.ndarray:
    return zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]


def _check_sr_equals_batch(out: Path, raw: np.ndarray, n_windows: int) -> None:
    sr = zarr.open_group(str(out / "sr.ome.zarr"), mode="r")["0"][:, 0, 0]
    with open(out / "windows.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sr.shape[0] == n_windows
    for img, r in zip(sr, rows, strict=True):
        a, b = int(r["first_frame"]), int(r["last_frame"])
        np.testing.assert_allclose(
            img, esrrf(raw[a : b + 1], magnification=2), rtol=1e-5, atol=1e-5
        )


def test_mda_output_reconstructs_a_real_mda_run(core: Any, tmp_path: Path) -> None:
    n, window = 24, 8
    seen: list[np.ndarray] = []
    record = lambda img, event, meta: seen.append(np.array(img))  # noqa: E731
    core.mda.events.frameReady.connect(record)
    handler = mda_output(tmp_path / "out", _cfg(window))
    seq = useq.MDASequence(time_plan={"interval": 0, "loops": n})
    try:
        core.mda.run(seq, output=handler)  # blocks; handlers relayed and joined
    finally:
        core.mda.events.frameReady.disconnect(record)
    assert handler.error is None
    s = handler.summary
    assert s is not None and handler.frames_sent == n == len(seen)
    assert s["frames_acquired"] == s["frames_persisted"] == n
    assert s["frames_in_gaps"] == 0 and s["windows_published"] == n // window
    raw = _raw(tmp_path / "out")
    np.testing.assert_array_equal(raw, np.stack(seen))  # every frame, in order
    _check_sr_equals_batch(tmp_path / "out", raw, n // window)
    assert handler.close() is s  # idempotent


def test_mda_output_refuses_an_output_with_results_and_says_why(
    core: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    handler = mda_output(out, _cfg(4))
    seq = useq.MDASequence(time_plan={"interval": 0, "loops": 4})
    core.mda.run(seq, output=handler)
    assert handler.summary is None and handler.frames_sent == 0
    assert "already holds results" in str(handler.error)
    assert (out / "summary.json").read_text() == "{}"


def test_attach_streams_a_running_acquisition_without_stopping_it(
    core: Any, tmp_path: Path
) -> None:
    core.startContinuousSequenceAcquisition(0)
    listener = attach(core, tmp_path / "out", _cfg(10))
    deadline = time.monotonic() + 60
    while listener.source.frames_sent < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    s = listener.close()
    assert core.isSequenceRunning()  # livesr detached; the acquisition goes on
    core.stopSequenceAcquisition()
    cam = listener.source.camera
    assert cam["gaps"] == [] and s["frames_in_gaps"] == 0
    n = listener.source.frames_sent
    assert n >= 40 and s["frames_acquired"] == s["frames_persisted"] == n
    assert cam["frames_delivered"] == cam["frames_acquired"] == n
    assert s["windows_published"] == n // 10
    _check_sr_equals_batch(tmp_path / "out", _raw(tmp_path / "out"), n // 10)


def test_attach_refuses_a_core_that_is_not_acquiring(core: Any, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no sequence acquisition is running"):
        attach(core, tmp_path / "out")
    with pytest.raises(RuntimeError, match="no sequence acquisition is running"):
        MMCoreSource(core, attach=True).start()


def test_overwritten_frames_are_gaps_in_the_pipeline_summary(
    core: Any, tmp_path: Path
) -> None:
    """A listener that stalls longer than the circular buffer holds (1 MiB = 128
    frames of 64 x 64 uint16 at 100 frames/s): the continuous acquisition overwrites
    frames; they reach the pipeline as a gap, and every ImageNumber is accounted."""
    core.setCircularBufferMemoryFootprint(1)
    capacity = core.getBufferTotalCapacity()
    assert 0 < capacity <= 128
    core.startContinuousSequenceAcquisition(0)
    numbers: list[int] = []

    def slow(seq: int, frame: np.ndarray, meta: dict[str, Any]) -> None:
        numbers.append(seq)
        if len(numbers) == 5:
            time.sleep(1.2 * capacity * 0.010 + 0.5)  # outlast the buffer

    listener = attach(core, tmp_path / "out", _cfg(10), on_frame=slow)
    deadline = time.monotonic() + 60
    while listener.source.frames_sent < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    s = listener.close()
    assert core.isSequenceRunning()
    core.stopSequenceAcquisition()
    cam = listener.source.camera
    lost = sum(b - a + 1 for a, b in cam["gaps"])
    assert lost > 0, "the stall did not overflow the buffer"
    # every ImageNumber from the first taken to the last is delivered or in a gap
    in_gaps = {i for a, b in cam["gaps"] for i in range(a, b + 1)}
    assert not in_gaps & set(numbers)
    assert sorted(in_gaps | set(numbers)) == list(range(numbers[0], numbers[-1] + 1))
    assert cam["frames_acquired"] == len(numbers) + lost
    # the pipeline counts them: acquired == persisted + in gaps
    assert s["frames_in_gaps"] == lost
    assert s["frames_persisted"] == len(numbers) == listener.source.frames_sent
    assert s["frames_acquired"] == len(numbers) + lost


def test_mmcoresource_attach_detaches_on_close_and_ends_when_acquisition_stops(
    core: Any,
) -> None:
    core.startContinuousSequenceAcquisition(0)
    src = MMCoreSource(core, attach=True, timeout_s=5.0)
    got: list[int] = []
    done = threading.Event()

    def consume() -> None:
        for seq, _frame, _meta in src:
            got.append(seq)
        done.set()

    t = threading.Thread(target=consume, name="test-attach-consumer", daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    core.stopSequenceAcquisition()  # someone else stops it: iteration ends
    assert done.wait(10.0)
    t.join(5.0)
    assert not t.is_alive()
    assert len(got) >= 10 and got == list(range(got[0], got[0] + len(got)))
    assert src.gaps == [] and src.frames_acquired == src.frames_delivered == len(got)
    src.close()  # idempotent, no acquisition to stop
