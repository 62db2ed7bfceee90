"""Status line (TTY only, <= 2 refreshes/s, final line always); quality metric."""

from __future__ import annotations

import io
import math

import numpy as np

from livesr.stream._pipeline import MapStage, engine_map, quality_metric
from livesr.stream._status import StatusReporter, format_status

SNAP = {
    "frames_received": 1200,
    "fps": 99.6,
    "windows_published": 57,
    "latency_p50_ms": 41.2,
    "latency_p99_ms": 180.0,
    "windows_skipped": 3,
    "frames_in_gaps": 0,
    "implementation": {"drift": "numpy", "esrrf": "numba"},
}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_status_has_every_field() -> None:
    line = format_status(SNAP)
    assert line == (
        "frames 1200 (100/s) | windows 57 | latency p50 41 p99 180 ms | skipped 3 | "
        "gaps 0 | res - | "
        "drift=numpy,esrrf=numba"
    )
    assert "latency p50 - p99 - ms" in format_status(
        {**SNAP, "latency_p50_ms": math.nan, "latency_p99_ms": None}
    )
    res = {"method": "decorrelation", "value_px": 3.25, "value_nm": 65.04,
           "resolved": True, "image_index": 40}
    assert "| res 65 nm |" in format_status({**SNAP, "resolution": res})
    no_nm = {**res, "value_nm": None}
    assert "| res 3.25 px |" in format_status({**SNAP, "resolution": no_nm})
    floor = {**res, "value_px": 2.0, "value_nm": 40.0, "resolved": False}
    line = format_status({**SNAP, "resolution": floor})
    assert "| res unresolved (Nyquist floor) |" in line and "40 nm" not in line


def test_reporter_draws_only_on_a_tty_and_always_writes_the_final_line() -> None:
    plain = io.StringIO()
    rep = StatusReporter(lambda: SNAP, stream=plain).start()
    rep.draw()
    rep.stop()
    rep.final("livesr run: done")
    assert plain.getvalue() == "livesr run: done\n" and rep.redraws == 0

    tty = _Tty()
    rep = StatusReporter(lambda: SNAP, stream=tty, interval_s=0.01)
    assert rep._interval == 0.5  # never more than 2 refreshes per second
    rep.draw()
    rep.stop()
    assert tty.getvalue().startswith("\rframes 1200") and rep.redraws == 1
    off = StatusReporter(lambda: SNAP, stream=_Tty(), enabled=False)
    off.draw()
    assert off.redraws == 0


def test_quality_metric_values() -> None:
    flat = np.full((8, 8), 5.0, np.float32)
    assert quality_metric(flat) == 0.0
    ramp = (
        np.tile(np.arange(8, dtype=np.float32), (8, 1)) + 1.0
    )  # gx = 1, gy = 0, mean 4.5
    assert abs(quality_metric(ramp) - 1.0 / 4.5**2) < 1e-12
    assert math.isnan(quality_metric(np.zeros((4, 4))))


def test_map_stage_passes_the_deadline_when_accepted() -> None:
    seen: list[float | None] = []

    def engine_like(frame, params, *, shift=(0.0, 0.0), out=None, deadline_s=None):
        seen.append(deadline_s)
        return frame

    def plain(frame, params, *, shift=(0.0, 0.0), out=None):
        return frame

    stage = MapStage(engine_like)
    stage.deadline_s = 0.25
    stage(np.zeros((2, 2)), None)
    assert seen == [0.25] and stage.accepts_deadline and stage.name == "engine_like"
    engine_like.implementation = "numba"  # type: ignore[attr-defined]
    assert MapStage(engine_like).name == "numba"
    assert not MapStage(plain).accepts_deadline
    from livesr.kernels.esrrf_map import kernel as esrrf_map

    ids = {info.id for info in esrrf_map.implementations()}
    # "esrrf_map" before the engine's first decision in this process, else its choice
    assert MapStage().name in {"esrrf_map", *ids}


def test_engine_kernel_adapter_reports_the_decision_and_clamps_the_deadline() -> None:
    from types import SimpleNamespace

    from livesr.kernels import EsrrfParams, esrrf_frame

    calls: list[dict] = []

    class FakeKernel:
        last_decision = None

        def __call__(
            self,
            frame,
            magnification,
            radius,
            sensitivity,
            iw,
            *,
            shift=(0.0, 0.0),
            deadline_s=None,
        ):
            calls.append({"deadline_s": deadline_s, "shift": shift})
            self.last_decision = SimpleNamespace(impl="numba")
            p = EsrrfParams(
                magnification=magnification,
                radius=radius,
                sensitivity=sensitivity,
                intensity_weighting=iw,
            )
            return esrrf_frame(frame, p, shift=shift)

    stage = MapStage(engine_map(FakeKernel()))
    assert stage.accepts_deadline and stage.name == "esrrf_map_stage"
    params = EsrrfParams(magnification=2, radius=1.5)
    frame = np.random.default_rng(0).random((16, 16)).astype(np.float32) * 100
    out = np.empty((32, 32), np.float32)
    stage.deadline_s = (
        0.0  # budget exhausted: the engine still gets a positive deadline
    )
    res = stage(frame, params, shift=(0.25, -0.5), out=out)
    assert res is out
    np.testing.assert_array_equal(out, esrrf_frame(frame, params, shift=(0.25, -0.5)))
    assert calls == [{"deadline_s": 1e-6, "shift": (0.25, -0.5)}]
    assert stage.name == "numba"


def test_status_line_shows_total_and_eta_when_the_length_is_known() -> None:
    """Issue 16: with --frames (or a replay's range) the line shows received/total
    and an ETA from the current rate; without a length, neither."""
    snap = {"frames_received": 120, "fps": 40.0, "windows_published": 3}
    assert format_status(snap).startswith("frames 120 (40/s) |")
    assert format_status({**snap, "frames_total": 200}).startswith(
        "frames 120/200 (40/s, ETA 2 s) |"
    )
    assert "ETA -" in format_status({**snap, "fps": 0.0, "frames_total": 200})
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    rep = StatusReporter(lambda: dict(snap), stream=out, total_frames=400)
    rep.draw()
    assert "frames 120/400 (40/s, ETA 7 s)" in out.getvalue()
