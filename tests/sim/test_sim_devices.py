"""The simulated camera, XY and Z stages as UniMMCore devices."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from livesr.sim import CameraConfig, SampleConfig, SimConfig

pytest.importorskip("pymmcore_plus")
useq = pytest.importorskip("useq")

from livesr.sim._core import SimCore, make_core, shutdown_core  # noqa: E402
from livesr.sim._devices import (  # noqa: E402
    KEY_FRAME_INDEX,
    TRUTH_KEYS,
    FramePacer,
    StageLimits,
    truth_from_metadata,
)

INTERVAL_MS = 2.0


def _counting_config(shape: tuple[int, int] = (64, 64)) -> SimConfig:
    """Small stamped camera at 2 ms / frame, few emitters (cheap to render)."""
    return SimConfig(
        sample=SampleConfig(n_filaments=2, n_rings=1, n_clusters=1),
        camera=CameraConfig(
            shape=shape,
            interval_ms=INTERVAL_MS,
            exposure_ms=INTERVAL_MS,
            stamp_index=True,
        ),
    )


def _stamp(img: np.ndarray) -> int:
    return int(img[0, 0]) | (int(img[0, 1]) << 16)


def _pop(
    core: SimCore, n: int, timeout_s: float = 30.0
) -> list[tuple[np.ndarray, dict]]:
    """Pop exactly ``n`` frames (image, metadata dict) or fail after ``timeout_s``."""
    out: list[tuple[np.ndarray, dict]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        if core.getRemainingImageCount():
            img, md = core.popNextImageAndMD()
            out.append((img, dict(md)))
        elif time.monotonic() > deadline:
            pytest.fail(f"only {len(out)} of {n} frames arrived within {timeout_s} s")
        else:
            time.sleep(0.0005)
    return out


def _grab(core: SimCore) -> tuple[np.ndarray, object]:
    """One frame by a 1-frame sequence acquisition: (image, MetadataTruth)."""
    core.startSequenceAcquisition(1, 0, True)
    [(img, md)] = _pop(core, 1)
    return img.astype(np.float64), truth_from_metadata(md)


def _snap(core: SimCore) -> tuple[np.ndarray, object]:
    """One frame by snapImage: (image, MetadataTruth from the camera)."""
    core.snapImage()
    img = core.getImage().astype(np.float64)
    return img, truth_from_metadata(core.camera.last_metadata)


def _measure_shift(ref: np.ndarray, img: np.ndarray) -> tuple[float, float]:
    """(dy, dx) px such that ``img(r) ~ ref(r - d)``.

    Integer part: peak of the windowed phase correlation. Fraction: the two
    images are cropped to their overlap at the integer shift, then the peak of
    their (Hann-windowed) cross-correlation is located on a 0.01 px grid by a
    matrix DFT (Guizar-Sicairos upsampling) and refined by a parabola.
    """
    h, w = ref.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    fa = np.fft.fft2((ref - ref.mean()) * win)
    fb = np.fft.fft2((img - img.mean()) * win)
    cross = fb * np.conj(fa)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-12)).real
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    iy = iy - h if iy > h // 2 else iy
    ix = ix - w if ix > w // 2 else ix
    a = ref[max(0, -iy) : h - max(0, iy), max(0, -ix) : w - max(0, ix)]
    b = img[max(0, iy) : h - max(0, -iy), max(0, ix) : w - max(0, -ix)]
    hh, ww = a.shape
    win = np.outer(np.hanning(hh), np.hanning(ww))
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    cross = fb * np.conj(fa)
    u = np.arange(-100, 101) / 100.0  # -1 .. 1 px, 0.01 px steps
    ky = np.fft.fftfreq(hh)
    kx = np.fft.fftfreq(ww)
    ey = np.exp(2j * np.pi * np.outer(u, ky))  # (U, hh)
    ex = np.exp(2j * np.pi * np.outer(kx, u))  # (ww, U)
    cc = (ey @ cross @ ex).real
    py, px = np.unravel_index(int(np.argmax(cc)), cc.shape)

    def parabola(c0: float, c1: float, c2: float) -> float:
        den = c0 - 2 * c1 + c2
        return 0.0 if den == 0 else 0.5 * (c0 - c2) / den

    fy = u[py] + 0.01 * parabola(cc[py - 1, px], cc[py, px], cc[py + 1, px])
    fx = u[px] + 0.01 * parabola(cc[py, px - 1], cc[py, px], cc[py, px + 1])
    return (iy + fy, ix + fx)


# ----------------------------------------------------------------------------- setup
def test_make_core_loads_devices_and_pixel_size():
    cfg = SimConfig(camera=CameraConfig(shape=(48, 80), pixel_size_um=0.065))
    with make_core(cfg, buffer_mb=4) as core:
        assert isinstance(core, SimCore)
        assert core.getCameraDevice() == "SimCamera"
        assert core.getXYStageDevice() == "SimXY"
        assert core.getFocusDevice() == "SimZ"
        assert core.getPixelSizeUm() == pytest.approx(0.065, abs=1e-12)
        assert (core.getImageHeight(), core.getImageWidth()) == (48, 80)
        assert core.getExposure() == 10.0
        assert core.getXYPosition() == (0.0, 0.0)
        assert core.getPosition() == 0.0
        core.snapImage()
        img = core.getImage()
        assert img.shape == (48, 80) and img.dtype == np.uint16
        assert core.camera.last_metadata[KEY_FRAME_INDEX] == 0
        assert core.microscope.frame_index == 1


def test_make_core_default_is_256_square_and_logs_no_error(caplog):
    with make_core(buffer_mb=4) as core:
        assert (core.getImageHeight(), core.getImageWidth()) == (256, 256)
        assert core.getPixelSizeUm() == pytest.approx(0.1, abs=1e-12)
    # no "Could not find a compatible Micro-Manager installation" (Python devices)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []


def test_make_core_rejects_foreign_config():
    from livesr.sim import Microscope

    scope = Microscope(_counting_config((16, 16)))
    with pytest.raises(ValueError, match="both config and a microscope"):
        make_core(_counting_config((16, 16)), microscope=scope)
    with make_core(microscope=scope, buffer_mb=4) as core:
        assert core.microscope is scope


def test_lazy_export_does_not_import_pymmcore_plus_until_used():
    code = (
        "import sys, livesr.sim as s\n"
        "before = 'pymmcore_plus' in sys.modules\n"
        "f = s.make_core\n"
        "print(before, 'pymmcore_plus' in sys.modules, f.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.split() == ["False", "True", "livesr.sim._core"]


# ----------------------------------------------------------------------------- counting
def test_sequence_500_frames_none_lost_and_paced():
    n = 500
    with make_core(_counting_config(), buffer_mb=16) as core:
        core.startSequenceAcquisition(n, 0, True)
        frames = _pop(core, n)
        assert not core.isBufferOverflowed()
        assert core.getRemainingImageCount() == 0
    stamps = [_stamp(img) for img, _ in frames]
    assert stamps == list(range(n))
    assert [int(md[KEY_FRAME_INDEX]) for _, md in frames] == stamps
    assert [int(md["ImageNumber"]) for _, md in frames] == list(range(n))
    # simulated time: exactly one interval per frame (float accumulation only)
    times = np.array([float(md["livesr_time_s"]) for _, md in frames])
    expected = np.arange(n) * INTERVAL_MS / 1000.0
    np.testing.assert_allclose(times, expected, rtol=0, atol=1e-12)
    # wall clock (the only timed check, loose): mean interval from the core's stamps
    elapsed_ms = np.array([float(md["ElapsedTime-ms"]) for _, md in frames])
    mean_ms = (elapsed_ms[-1] - elapsed_ms[0]) / (n - 1)
    assert 0.7 * INTERVAL_MS <= mean_ms <= 1.3 * INTERVAL_MS, mean_ms


def test_mda_100_frames_none_lost():
    n = 100
    got: list[tuple[int, int, dict, bool]] = []
    with make_core(_counting_config(), buffer_mb=16) as core:

        def on_frame(img: np.ndarray, event: object, meta: dict) -> None:
            cam_md, hw = meta["camera_metadata"], meta["hardware_triggered"]
            got.append((_stamp(img), event.index["t"], cam_md, hw))

        core.mda.events.frameReady.connect(on_frame)
        core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": n}))
    assert len(got) == n
    assert [g[0] for g in got] == list(range(n))
    assert [g[1] for g in got] == list(range(n))
    assert [int(g[2][KEY_FRAME_INDEX]) for g in got] == list(range(n))
    assert all(g[3] for g in got)  # the engine merged them into one camera sequence
    times = [truth_from_metadata(g[2]).time_s for g in got]
    expected = np.arange(n) * INTERVAL_MS / 1000.0
    np.testing.assert_allclose(times, expected, rtol=0, atol=1e-12)


def test_mda_positions_move_the_field_of_view():
    # per-frame (snap) path: each frame's truth comes from the camera
    seq = useq.MDASequence(
        time_plan={"interval": 0, "loops": 2},
        stage_positions=[(1.5, -2.0, 0.0), (-3.25, 0.5, 0.4)],
        axis_order="tp",
    )
    got = []
    with make_core(_counting_config((32, 32)), buffer_mb=4) as core:

        def on_frame(img: np.ndarray, event: object, meta: dict) -> None:
            got.append((_stamp(img), truth_from_metadata(core.camera.last_metadata)))

        core.mda.events.frameReady.connect(on_frame)
        core.mda.run(seq)
    assert [s for s, _ in got] == [0, 1, 2, 3]
    assert [t.index for _, t in got] == [0, 1, 2, 3]
    expected_xyz = [(1.5, -2.0, 0.0), (-3.25, 0.5, 0.4)] * 2
    for (_, t), (x, y, z) in zip(got, expected_xyz, strict=True):
        assert t.stage_xy_um == pytest.approx((x, y), abs=1e-12)
        assert t.stage_z_um == pytest.approx(z, abs=1e-12)
        # stage +x -> sample -x/pixel: displacement (dy, dx) = (-y, -x) / 0.1 px
        assert t.displacement_px == pytest.approx((-y / 0.1, -x / 0.1), abs=1e-9)


# ----------------------------------------------------------------------------- stage
def test_stage_moves_shift_the_image_by_the_commanded_amount():
    cfg = SimConfig.static_bright(shape=(96, 96), noise=False)
    with make_core(cfg, buffer_mb=8) as core:
        ref, t0 = _snap(core)
        assert t0.displacement_px == (0.0, 0.0)

        core.setXYPosition(0.73, -0.41)
        img, t1 = _snap(core)
        assert core.getXYPosition() == pytest.approx((0.73, -0.41), abs=1e-12)
        assert t1.stage_xy_um == pytest.approx((0.73, -0.41), abs=1e-12)
        assert t1.displacement_px == pytest.approx((4.1, -7.3), abs=1e-9)
        assert t1.displacement_um == pytest.approx((0.41, -0.73), abs=1e-12)
        dy, dx = _measure_shift(ref, img)
        assert abs(dy - 4.1) <= 0.05 and abs(dx + 7.3) <= 0.05, (dy, dx)

        core.setRelativeXYPosition(-0.25, 0.12)  # -> (0.48, -0.29)
        img2, t2 = _grab(core)  # sequence path, metadata through popNextImageAndMD
        assert core.getXYPosition() == pytest.approx((0.48, -0.29), abs=1e-12)
        assert t2.displacement_px == pytest.approx((2.9, -4.8), abs=1e-9)
        dy, dx = _measure_shift(ref, img2)
        assert abs(dy - 2.9) <= 0.05 and abs(dx + 4.8) <= 0.05, (dy, dx)


def test_focus_moves_defocus_the_image():
    cfg = SimConfig.static_bright(shape=(64, 64), noise=False)
    with make_core(cfg, buffer_mb=8) as core:
        ref, t0 = _snap(core)
        core.setPosition(0.6)  # one defocus range: sigma grows by sqrt(2)
        img, t1 = _snap(core)
    assert t1.stage_z_um == 0.6 and t1.focus_offset_um == -0.6
    assert t1.displacement_px == (0.0, 0.0)
    assert t1.sigma_px == pytest.approx(t0.sigma_px * math.sqrt(2.0), rel=1e-12)

    def grad_energy(a: np.ndarray) -> float:
        a = a - a.mean()
        return float((np.diff(a, axis=0) ** 2).sum() + (np.diff(a, axis=1) ** 2).sum())

    # a blurred copy of the same structure: far less gradient energy, same photons
    assert grad_energy(img) < 0.6 * grad_energy(ref)
    assert img.sum() == pytest.approx(ref.sum(), rel=0.02)


BAD_XY = [
    ((math.nan, 0.0), r"x=nan is not finite"),
    ((0.0, math.inf), r"y=inf is not finite"),
    ((10000.5, 0.0), r"x=10000\.5 um is outside the travel range \[-10000, 10000\] um"),
    ((0.0, -20000.0), r"y=-20000 um is outside the travel range \[-10000, 10000\] um"),
]


def test_bad_stage_commands_are_refused_and_nothing_moves():
    with make_core(_counting_config((16, 16)), buffer_mb=4) as core:
        core.setXYPosition(12.5, -3.0)
        core.setPosition(4.0)
        for args, msg in BAD_XY:
            with pytest.raises(ValueError, match=msg):
                core.setXYPosition(*args)
        with pytest.raises(ValueError, match=r"x=10012\.5 um is outside"):
            core.setRelativeXYPosition(10000.0, 0.0)
        with pytest.raises(ValueError, match=r"dy=nan is not finite"):
            core.setRelativeXYPosition(0.0, math.nan)
        msg = r"z=100\.5 um is outside .*\[-100, 100\] um"
        with pytest.raises(ValueError, match=msg):
            core.setPosition(100.5)
        with pytest.raises(ValueError, match=r"z=-inf is not finite"):
            core.setPosition(-math.inf)
        with pytest.raises(ValueError, match=r"z=-196 um is outside"):
            core.setRelativePosition(-200.0)
        with pytest.raises(TypeError, match=r"x='left' is not a number"):
            core.setXYPosition("left", 0.0)
        assert core.getXYPosition() == (12.5, -3.0)
        assert core.getPosition() == 4.0
        _, t = _snap(core)
        assert t.stage_xy_um == (12.5, -3.0) and t.stage_z_um == 4.0


def test_custom_limits_and_invalid_limits():
    limits = StageLimits(x_um=(0.0, 50.0), y_um=(-5.0, 5.0), z_um=(0.0, 10.0))
    with make_core(_counting_config((16, 16)), limits=limits, buffer_mb=4) as core:
        core.setXYPosition(50.0, 5.0)  # inclusive bounds
        msg = r"x=-1 um is outside the travel range \[0, 50\]"
        with pytest.raises(ValueError, match=msg):
            core.setXYPosition(-1.0, 0.0)
        msg = r"z=-0\.5 um is outside the travel range \[0, 10\]"
        with pytest.raises(ValueError, match=msg):
            core.setPosition(-0.5)
        assert core.getXYPosition() == (50.0, 5.0)
        assert core.getPosition() == 0.0
    with pytest.raises(ValueError, match=r"StageLimits.x_um=\(5\.0, 1\.0\) is invalid"):
        StageLimits(x_um=(5.0, 1.0))
    with pytest.raises(ValueError, match=r"StageLimits.z_um=.* is invalid"):
        StageLimits(z_um=(0.0, math.inf))


def test_origin_shifts_coordinates_not_the_sample():
    with make_core(_counting_config((16, 16)), buffer_mb=4) as core:
        core.setXYPosition(3.0, 4.0)
        core.setOriginXY()
        assert core.getXYPosition() == (0.0, 0.0)
        core.setXYPosition(1.0, -1.0)
        assert core.microscope.get_xy_um() == (4.0, 3.0)
        core.setPosition(2.0)
        core.setAdapterOrigin(10.0)  # current z reads 10
        assert core.getPosition() == 10.0 and core.microscope.get_z_um() == 2.0


def test_core_signals_are_emitted_for_accepted_commands_only():
    events: list[tuple] = []
    with make_core(_counting_config((16, 16)), buffer_mb=4) as core:
        core.events.XYStagePositionChanged.connect(lambda *a: events.append(("xy", *a)))
        core.events.stagePositionChanged.connect(lambda *a: events.append(("z", *a)))
        core.events.exposureChanged.connect(lambda *a: events.append(("exp", *a)))
        core.setXYPosition(1.5, -2.0)
        core.setRelativeXYPosition(0.5, 0.5)
        with pytest.raises(ValueError):
            core.setXYPosition(math.nan, 0.0)
        core.setPosition(3.0)
        with pytest.raises(ValueError):
            core.setPosition(1e6)
        core.setExposure(4.0)
    assert events == [
        ("xy", "SimXY", 1.5, -2.0),
        ("xy", "SimXY", 2.0, -1.5),
        ("z", "SimZ", 3.0),
        ("exp", "SimCamera", 4.0),
    ]


# ----------------------------------------------------------------------------- exposure
def test_exposure_sets_the_frame_period():
    with make_core(_counting_config((16, 16)), buffer_mb=4) as core:
        core.setExposure(5.0)
        assert core.getExposure() == 5.0
        assert core.microscope.exposure_ms == 5.0
        assert float(core.getProperty("SimCamera", "ActualInterval-ms")) == 5.0
        with pytest.raises(ValueError, match="exposure_ms=-1.0 is out of range"):
            core.setExposure(-1.0)
        assert core.getExposure() == 5.0
        core.startSequenceAcquisition(4, 0, True)
        frames = _pop(core, 4)
    times = [float(md["livesr_time_s"]) for _, md in frames]
    np.testing.assert_allclose(np.diff(times), 0.005, rtol=0, atol=1e-12)


def test_stop_ends_a_long_frame_wait():
    with make_core(_counting_config((16, 16)), buffer_mb=4) as core:
        core.setExposure(3000.0)  # 3 s period: longer than UniMMCore's 2 s join
        core.startContinuousSequenceAcquisition(0)
        threads = threading.enumerate()
        [thread] = [t for t in threads if type(t).__name__ == "AcquisitionThread"]
        deadline = time.monotonic() + 30
        while core.microscope.frame_index < 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # the camera renders frame 0, then waits 3 s
        core.stopSequenceAcquisition()
        assert not thread.is_alive()
        assert core.getRemainingImageCount() == 0
        assert core.microscope.frame_index == 1  # one frame rendered, none delivered


# ----------------------------------------------------------------------------- pacer
class _FakeClock:
    def __init__(self, overshoot: float = 0.0) -> None:
        self.t = 100.0
        self.overshoot = overshoot
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s + self.overshoot


def test_pacer_deadlines_do_not_drift_with_sleep_overshoot():
    clock = _FakeClock(overshoot=0.0003)
    pacer = FramePacer(0.002, clock=clock, sleep=clock.sleep)
    deadlines = [pacer.wait() for _ in range(1000)]
    expected = 100.0 + 0.002 * np.arange(1, 1001)
    np.testing.assert_allclose(deadlines, expected, rtol=0, atol=1e-9)
    # each wait slept once, for the period less the previous overshoot
    assert len(clock.sleeps) == 1000
    assert clock.sleeps[1] == pytest.approx(0.0017, abs=1e-12)
    assert pacer.restarts == 0


def test_pacer_catches_up_small_lags_and_restarts_after_big_ones():
    clock = _FakeClock()
    pacer = FramePacer(0.01, max_lag_s=0.5, clock=clock, sleep=clock.sleep)
    assert pacer.wait() == pytest.approx(100.01)
    clock.t += 0.1  # 0.1 s stall: deadlines stay on the grid, delivered at once
    d = [pacer.wait() for _ in range(3)]
    assert d == pytest.approx([100.02, 100.03, 100.04])
    assert clock.t == pytest.approx(100.11)  # no sleeping while behind
    clock.t += 2.0  # beyond max_lag: restart from now
    t_now = clock.t
    assert pacer.wait() == pytest.approx(t_now)
    assert pacer.wait() == pytest.approx(t_now + 0.01)
    assert pacer.restarts == 1


def test_pacer_period_change_is_anchored_at_the_last_deadline():
    clock = _FakeClock()
    pacer = FramePacer(0.01, clock=clock, sleep=clock.sleep)
    assert [pacer.wait() for _ in range(3)] == pytest.approx([100.01, 100.02, 100.03])
    pacer.set_period(0.025)
    assert [pacer.wait() for _ in range(2)] == pytest.approx([100.055, 100.08])
    with pytest.raises(ValueError, match="period_s=0 is out of range"):
        pacer.set_period(0)


def test_exposure_change_during_a_sequence_changes_the_pace():
    with make_core(_counting_config((16, 16)), buffer_mb=4) as core:
        core.startContinuousSequenceAcquisition(0)
        first = _pop(core, 3)
        core.setExposure(6.0)
        later = _pop(core, 30)
        core.stopSequenceAcquisition()
    times = [float(md["livesr_time_s"]) for _, md in first + later]
    steps = np.round(np.diff(times) * 1000, 9)
    # frames rendered before the change step 2 ms, after it 6 ms, nothing else
    assert set(steps.tolist()) <= {2.0, 6.0} and steps[-1] == 6.0 and steps[0] == 2.0
    # (the wall-clock pace follows the period: test_pacer_period_change_...)


def test_pacer_returns_none_once_stopped():
    stop = threading.Event()
    clock = _FakeClock()
    pacer = FramePacer(0.01, clock=clock, sleep=clock.sleep, stop=stop)
    stop.set()
    assert pacer.wait() is None
    assert clock.sleeps == []


def test_pacer_anchors_a_slow_first_frame():
    clock = _FakeClock()
    pacer = FramePacer(0.01, clock=clock, sleep=clock.sleep)
    clock.t += 0.25  # first render slow
    assert pacer.wait() == pytest.approx(100.25)
    assert pacer.wait() == pytest.approx(100.26)
    assert pacer.restarts == 0


# ----------------------------------------------------------------------------- metadata
def test_truth_from_metadata_parses_strings_and_names_missing_keys():
    with make_core(_counting_config((16, 16)), buffer_mb=4) as core:
        core.setXYPosition(0.2, 0.3)
        core.startSequenceAcquisition(2, 0, True)
        frames = _pop(core, 2)
    md = frames[1][1]
    assert set(TRUTH_KEYS) <= set(md)
    assert all(isinstance(md[k], str) for k in TRUTH_KEYS)  # popNextImageAndMD strings
    t = truth_from_metadata(md)
    assert t.index == 1 and t.time_s == 0.002
    assert t.stage_xy_um == (0.2, 0.3)
    assert t.displacement_px == pytest.approx((-3.0, -2.0), abs=1e-12)
    assert t.pixel_size_um == 0.1
    with pytest.raises(KeyError, match="livesr_time_s"):
        truth_from_metadata({k: v for k, v in md.items() if k != "livesr_time_s"})


# ----------------------------------------------------------------------------- shutdown
def test_context_manager_shuts_down_and_is_idempotent():
    from livesr.sim import _core

    core = make_core(_counting_config((16, 16)), buffer_mb=4)
    assert core in _core._OPEN
    with core:
        core.startContinuousSequenceAcquisition(0)
        _pop(core, 5)
        assert core.isSequenceRunning()
    assert core.closed
    assert not core.isSequenceRunning()
    assert core not in _core._OPEN
    assert "SimCamera" not in core.getLoadedDevices()
    shutdown_core(core)  # second time: no error
    core.close()
