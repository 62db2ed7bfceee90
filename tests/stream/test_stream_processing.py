"""The processing thread on its own: batches equal frame-by-frame, deadlines mean the
camera's frame interval (and the remaining latency budget for a window's last frame),
and a backlog the budget cannot absorb skips to the newest complete window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from livesr.kernels.framemap import MapStage
from livesr.sim import Microscope, SimConfig
from livesr.stream._config import LivesrConfig
from livesr.stream._latency import Timestamps
from livesr.stream._processing import Processor
from livesr.stream._ring import ProcessingRing


def _frames(
    n: int, shape: tuple[int, int] = (32, 32), drift: bool = True
) -> np.ndarray:
    from livesr.sim import DriftConfig

    sim = SimConfig.blinking(
        shape=shape, seed=5, drift=DriftConfig.linear() if drift else None
    )
    stack, _truth = Microscope(sim).acquire(n)
    return np.asarray(stack, dtype=np.uint16)


class _Collect:
    def __init__(self) -> None:
        self.heads: list[dict[str, Any]] = []
        self.images: list[np.ndarray] = []
        self.stamps: list[Timestamps] = []

    def __call__(
        self, head: dict[str, Any], image: np.ndarray, stamps: Timestamps
    ) -> None:
        self.heads.append(dict(head))
        self.images.append(np.array(image))
        self.stamps.append(stamps)


def _run(
    frames: np.ndarray,
    cfg: LivesrConfig,
    *,
    frame_map: Any = None,
    t_acq: np.ndarray | None = None,
    interval_s: float | None = None,
    setup: Callable[[Processor], None] | None = None,
) -> tuple[Processor, _Collect]:
    """Offer every frame to a ring, then process it all (synchronously)."""
    ring = ProcessingRing(
        frames.shape[1:], frames.dtype, frames[0].nbytes * (len(frames) + 1)
    )
    now = time.time()
    for i, f in enumerate(frames):
        t = float(t_acq[i]) if t_acq is not None else now
        assert ring.offer(i, f, t, t)
    ring.close()
    out = _Collect()
    proc = Processor(cfg, MapStage(frame_map), out, user_map=frame_map is not None)
    proc.interval_s = interval_s
    if setup is not None:
        setup(proc)
    done = threading.Event()
    worker = threading.Thread(
        target=proc.run,
        args=(
            lambda: ring,
            lambda: True,
            threading.Event(),
            lambda: len(frames) - 1,
            lambda: 0,
        ),
        daemon=True,
    )
    worker.start()
    worker.join(240)
    assert not worker.is_alive(), "processing did not finish within 240 s"
    done.set()
    assert proc.error is None, proc.error
    return proc, out


@pytest.mark.parametrize("drift", [False, True])
@pytest.mark.parametrize(("window", "stride"), [(10, 5), (6, 6), (4, 9)])
def test_batched_equals_frame_by_frame(
    drift: bool, window: int, stride: int, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    frames = _frames(60, drift=drift)
    one, out1 = _run(
        frames,
        pipeline_config(
            drift_block=5, window=window, stride=stride, max_batch=1, drift=drift
        ),
    )
    many, out32 = _run(
        frames,
        pipeline_config(
            drift_block=5, window=window, stride=stride, max_batch=32, drift=drift
        ),
    )
    assert one.c["batches"] == 60 and many.c["batches"] < 60  # batches really formed
    assert many.batch_peak > 1
    assert len(out1.images) == len(out32.images) == (60 - window) // stride + 1
    for a, b, ha, hb in zip(
        out1.images, out32.images, out1.heads, out32.heads, strict=True
    ):
        assert (ha["first_frame"], ha["last_frame"]) == (
            hb["first_frame"],
            hb["last_frame"],
        )
        assert np.max(np.abs(a - b)) <= 1e-6 * np.max(np.abs(a))
        if drift:
            assert ha["drift"]["dy"] == pytest.approx(hb["drift"]["dy"], abs=1e-9)
            assert ha["drift"]["dx"] == pytest.approx(hb["drift"]["dx"], abs=1e-9)
    assert one.c["windows_skipped"] == many.c["windows_skipped"] == 0


def _recording_map(log: list[float | None]) -> Any:
    from livesr.kernels import esrrf_frame

    def fmap(
        frame: Any,
        params: Any,
        *,
        shift: Any = (0.0, 0.0),
        out: Any = None,
        deadline_s: float | None = None,
    ) -> np.ndarray:
        if np.shape(frame) != (16, 16):  # not the warm-up's synthetic frames
            log.append(deadline_s)
        return esrrf_frame(frame, params, shift=shift, out=out)

    return fmap


def test_deadline_is_the_frame_interval(
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    """Throughput: every map call gets the camera's frame interval as its deadline
    (a budget far larger than the interval leaves the window ends the same)."""
    frames = _frames(30, drift=False)
    log: list[float | None] = []
    _run(
        frames,
        pipeline_config(drift_block=5, window=10, stride=5, max_batch=8, drift=False),
        frame_map=_recording_map(log),
        interval_s=0.004,
    )
    assert len(log) == 30
    assert all(d == pytest.approx(0.004) for d in log)


def test_late_frames_keep_the_throughput_deadline(
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    """A window whose frames are already older than the budget gets the frame
    interval, never a zero or negative deadline (every call a "miss" otherwise)."""
    frames = _frames(20, drift=False)
    log: list[float | None] = []
    old = np.full(20, time.time() - 100.0)
    _run(
        frames,
        pipeline_config(
            drift_block=5,
            window=20,
            stride=20,
            max_batch=32,
            drift=False,
            budget_ms=500,
        ),
        frame_map=_recording_map(log),
        t_acq=old,
        interval_s=0.004,
    )
    assert len(log) == 20
    assert all(d == pytest.approx(0.004) for d in log)


def test_deadline_of_a_window_end_is_the_remaining_budget(
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    """A window's last frame must also finish within what is left of the budget:
    the step that ends a window shares the remaining budget among its frames."""
    frames = _frames(10, drift=False)
    log: list[float | None] = []
    # stamped 50 s ahead of this clock: 50 s + 50 ms of budget are left, shared by
    # the 10 frames of the one step (max_batch 16) that ends the window -> ~5 s
    # each, under the 100 s frame interval
    ahead = np.full(10, time.time() + 50.0)
    _run(
        frames,
        pipeline_config(
            drift_block=5, window=10, stride=5, max_batch=16, drift=False, budget_ms=50
        ),
        frame_map=_recording_map(log),
        t_acq=ahead,
        interval_s=100.0,
    )
    assert len(log) == 10
    assert all(d is not None and 4.0 < d <= 5.006 for d in log)


def test_no_deadline_without_a_nominal_interval(
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    frames = _frames(12, drift=False)
    log: list[float | None] = []
    _run(
        frames,
        pipeline_config(drift_block=5, window=6, stride=6, max_batch=4, drift=False),
        frame_map=_recording_map(log),
        interval_s=None,
    )
    assert log == [None] * 12


def test_budget_skip_goes_to_the_newest_complete_window(
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    """A backlog older than the budget: processing restarts at the newest window whose
    frames are all waiting, skips are counted, and the accounting identity holds."""
    n, window, stride = 200, 10, 10
    frames = _frames(n, drift=False)
    t0 = time.time() - 30.0  # everything acquired 30 s ago at 100 frames/s
    t_acq = t0 + np.arange(n) * 0.01
    proc, out = _run(
        frames,
        pipeline_config(
            drift_block=5,
            window=window,
            stride=stride,
            max_batch=16,
            drift=False,
            budget_ms=100,
        ),
        t_acq=t_acq,
        interval_s=0.01,
    )
    scheduled = (n - window) // stride + 1
    assert proc.c["windows_published"] + proc.c["windows_skipped"] == scheduled
    assert proc.c["windows_skipped"] > 0
    # the skip went straight to the newest complete window (frames 190-199)
    budget_skips = [e for e in proc.skips if "budget" in e["reason"]]
    assert budget_skips and budget_skips[0]["next_image_at"] == n - 1
    assert out.heads[-1]["last_frame"] == n - 1
    assert proc.c["frames_dropped_for_processing"] == sum(
        e["frames_dropped"] for e in proc.skips
    )
    assert proc.c["frames_processed"] + proc.c["frames_dropped_for_processing"] == n


def test_live_frc_takes_the_halves_from_the_window(
    pipeline_config: Callable[..., LivesrConfig],
) -> None:
    """With the engine's map, the window sums the FRC's even/odd halves from its
    stored maps: no frame is mapped again, and each estimate is the FRC of that
    window's raw frames with their drift shifts, recomputed offline."""
    from livesr.stream._frc_live import LiveFrc, frc_of_window

    frames = _frames(40, shape=(40, 40))

    def in_thread_frc(proc: Processor) -> None:
        assert proc.frc is not None
        proc.frc = LiveFrc(proc.frc.esrrf, background=False, cpu_share=1.0)

    cfg = pipeline_config(drift_block=5, window=10, stride=5, drift=True)
    proc, out = _run(frames, cfg, setup=in_thread_frc)
    assert proc.frc is not None and proc._halves_from_window()
    assert len(out.heads) == 7 and proc.frc.estimates == 7
    assert proc.frc.frames_mapped == 0  # nothing mapped again
    e = cfg.esrrf
    for h in out.heads:
        got = h["frc"]
        assert got is not None and got["image_index"] == h["index"]
        first, last = h["first_frame"], h["last_frame"]
        shifts = proc.drift.shifts_for(first, last - first + 1)
        ref = frc_of_window(
            frames[first : last + 1].astype(np.float32), np.asarray(shifts), h["index"],
            magnification=e.magnification, radius=e.radius, sensitivity=e.sensitivity,
            intensity_weighting=e.intensity_weighting, geometry=e.geometry,
            macro_pixel_correction=e.macro_pixel_correction, temporal=e.temporal,
        )
        assert got["resolved"] is ref.resolved
        if ref.value_px is None:
            assert got["value_px"] is None
        else:  # the window's maps come from the batch map: its last bits may differ
            assert got["value_px"] == pytest.approx(ref.value_px, rel=1e-4)


def test_live_frc_offer_of_half_images_equals_the_frames_path() -> None:
    """LiveFrc.offer of FrcHalves gives the estimate of the frames it was made from,
    maps nothing, and refuses halves too small for the FRC's rings."""
    from livesr.stream._frc_live import FrcHalves, LiveFrc, window_halves

    frames = _frames(20, shape=(40, 40)).astype(np.float32)
    esrrf = {"magnification": 2}
    by_frames = LiveFrc(esrrf, background=False, cpu_share=1.0)
    by_halves = LiveFrc(esrrf, background=False, cpu_share=1.0)
    assert by_frames.offer(0, frames)
    even, odd = window_halves(frames, **esrrf)
    assert by_halves.offer(0, FrcHalves(even, odd, 20))
    a, b = by_frames.take(), by_halves.take()
    assert a is not None and b is not None and a.value_px is not None
    assert (b.value_px, b.resolved, b.frames) == (a.value_px, a.resolved, a.frames)
    assert by_frames.frames_mapped == 20 and by_halves.frames_mapped == 0
    small = LiveFrc(esrrf, background=False, cpu_share=1.0)
    assert not small.offer(1, FrcHalves(even[:16, :16], odd[:16, :16], 20))
    assert not small.offer(2, FrcHalves(even, odd, 3))  # fewer than 4 frames
