"""Feedback safety: limits no hook can exceed; submit never blocks the pipeline."""

from __future__ import annotations

import logging
import math
import threading

import pytest

from livesr.adapters.feedback import (
    FeedbackLimits,
    HookRunner,
    LimitError,
    MicroscopeController,
    Result,
)
from livesr.sim import SimConfig, make_core


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def core():
    with make_core(SimConfig.blinking(shape=(16, 16), seed=1)) as c:
        yield c


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def ctl(core, clock):
    core.setXYPosition(0.0, 0.0)
    core.setPosition(0.0)
    limits = FeedbackLimits(
        max_step_xy_um=2.0,
        max_step_z_um=1.0,
        x_range_um=(-50.0, 50.0),
        y_range_um=(-50.0, 50.0),
        z_range_um=(-10.0, 10.0),
        max_moves_per_s=5.0,
    )
    c = MicroscopeController(core, limits, clock=clock)
    yield c
    c.close()


def _where(core):
    return core.getXYPosition(), core.getPosition(), core.microscope.get_xy_um()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_step_xy_um", 0.0),
        ("max_step_xy_um", math.nan),
        ("max_step_z_um", -1.0),
        ("max_moves_per_s", math.inf),
        ("x_range_um", (5.0, -5.0)),
        ("z_range_um", (0.0, math.nan)),
        ("max_events_per_call", 0),
    ],
)
def test_adapters_feedback_limits_validated(field, value):
    with pytest.raises(ValueError, match=field):
        FeedbackLimits(**{field: value})


@pytest.mark.parametrize(
    ("method", "args", "match"),
    [
        ("move_xy_by", (1e6, 0.0), "travel range"),
        ("move_xy_by", (10.0, 0.0), "max_step_xy_um"),
        ("move_xy_by", (1.5, 1.5), "max_step_xy_um"),  # 2.12 um diagonal
        ("move_xy_by", (math.nan, 0.0), "not a finite"),
        ("move_xy_by", (0.0, math.inf), "not a finite"),
        ("move_xy_by", ("far", 0.0), "not a finite"),
        ("move_xy_to", (60.0, 0.0), "travel range"),
        ("move_z_by", (5.0,), "max_step_z_um"),
        ("move_z_to", (-1.5,), "max_step_z_um"),
        ("move_z_to", (math.nan,), "not a finite"),
        ("move_z_by", (-1e300,), "travel range"),
        ("move_xy_by", (0.0, -1e300), "travel range"),
    ],
)
def test_adapters_feedback_refused_command_does_not_move(
    ctl, core, caplog, method, args, match
):
    before = _where(core)
    with caplog.at_level(
        logging.WARNING, logger="livesr.adapters.feedback._controller"
    ):
        with pytest.raises(LimitError, match=match):
            getattr(ctl, method)(*args)
    assert _where(core) == before
    assert ctl.refusals == 1
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert len(ctl.history) == 0


def test_adapters_feedback_travel_range_reached_by_steps(ctl, core, clock):
    for _ in range(25):
        ctl.move_xy_by(2.0, 0.0)
        clock.t += 1.0
    assert core.getXYPosition() == pytest.approx((50.0, 0.0))
    with pytest.raises(LimitError, match="travel range"):
        ctl.move_xy_by(0.5, 0.0)
    assert core.getXYPosition() == pytest.approx((50.0, 0.0))
    assert core.microscope.get_xy_um() == pytest.approx((50.0, 0.0))


def test_adapters_feedback_rate_limit(ctl, core, clock):
    ctl.move_xy_by(0.1, 0.0)
    for _ in range(20):  # a burst: no time passes
        with pytest.raises(LimitError, match="max_moves_per_s"):
            ctl.move_xy_by(0.1, 0.0)
    with pytest.raises(LimitError, match="max_moves_per_s"):
        ctl.move_z_by(0.1)  # Z shares the rate
    clock.t += 0.199
    with pytest.raises(LimitError):
        ctl.move_xy_by(0.1, 0.0)
    clock.t += 0.002
    ctl.move_xy_by(0.1, 0.0)
    assert core.getXYPosition() == pytest.approx((0.2, 0.0))
    assert ctl.refusals == 22
    assert [c.kind for c in ctl.history] == ["xy", "xy"]


def test_adapters_feedback_accepted_moves_reach_the_stage(ctl, core, clock):
    ctl.move_xy_by(0.5, -0.25)
    clock.t += 1
    ctl.move_z_by(0.75)
    assert core.microscope.get_xy_um() == pytest.approx((0.5, -0.25))
    assert core.microscope.get_z_um() == pytest.approx(0.75)
    assert ctl.position_z() == pytest.approx(0.75)


def test_adapters_feedback_events_checked(ctl, core):
    import useq

    with pytest.raises(LimitError, match="travel range"):
        ctl.queue_events([useq.MDAEvent(z_pos=0.0), useq.MDAEvent(z_pos=11.0)])
    with pytest.raises(LimitError, match="useq.MDAEvent"):
        ctl.queue_events([{"z_pos": 1.0}])
    with pytest.raises(LimitError, match="max_events_per_call"):
        ctl.queue_events([useq.MDAEvent()] * 1001)
    assert not core.mda.is_running()
    assert ctl.refusals == 3


def test_adapters_feedback_stop_refuses_later_events(ctl, core):
    import useq

    ctl.stop_acquisition("test")
    assert ctl.stop_requested.is_set()
    with pytest.raises(LimitError, match="stopped"):
        ctl.queue_events([useq.MDAEvent()])


def _submit_guarded(runner, results, timeout_s=30.0):
    """Submit from another thread; fail (instead of hanging) if submit blocks."""
    done = threading.Event()

    def go():
        for r in results:
            runner.submit(r)
        done.set()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    assert done.wait(timeout_s), "HookRunner.submit blocked"


def test_adapters_feedback_misbehaving_hooks(ctl, core, clock, caplog):
    release = threading.Event()
    entered = threading.Event()
    seen_by_sleeper: list[int] = []
    seen_by_good: list[int] = []

    def sleeper(result, controller):  # "sleeps forever" until the test releases it
        seen_by_sleeper.append(result.index)
        entered.set()
        release.wait(60)

    def raiser(result, controller):
        raise RuntimeError(f"boom {result.index}")

    def huge_step(result, controller):
        controller.move_xy_by(30.0, 0.0)

    def nan_step(result, controller):
        controller.move_z_by(math.nan)

    def burst(result, controller):  # 10 moves at once: the fake clock does not move
        for _ in range(10):
            try:
                controller.move_xy_by(0.001, 0.0)
            except LimitError:
                pass

    def good(result, controller):
        seen_by_good.append(result.index)

    before = _where(core)
    runner = HookRunner(
        [sleeper, raiser, huge_step, nan_step, burst, good], ctl, slow_call_s=0.05
    )
    try:
        with caplog.at_level(logging.WARNING):
            _submit_guarded(runner, [Result(index=0)])
            assert entered.wait(30)
            _submit_guarded(runner, [Result(index=i) for i in range(1, 100)])
            # the stuck hook is reported (polled: the call must outlive slow_call_s)
            for _ in range(3000):
                st = runner.stats()
                if st[0].stuck:
                    break
                threading.Event().wait(0.01)
            assert st[0].stuck and st[0].slow_calls == 1
            assert runner.wait_idle(0.0) is False
            # everyone but the sleeper drains
            for _ in range(3000):
                st = runner.stats()
                if all(s.calls + s.drops == 100 for s in st[1:]):
                    break
                threading.Event().wait(0.01)
        st = runner.stats()
        assert (
            st[0].calls == 0 and st[0].drops == 98
        )  # 1 running, 1 pending, 98 replaced
        for s in st[1:]:
            assert s.calls + s.drops == 100
        assert st[1].failures == st[1].calls and "boom" in st[1].last_error
        assert st[2].failures == st[2].calls and "max_step_xy_um" in st[2].last_error
        assert st[3].failures == st[3].calls and "not a finite" in st[3].last_error
        assert st[4].failures == 0
        assert seen_by_good[-1] == 99
        # exactly one of the burst moves passed the rate limit; nothing else moved
        assert [c.kind for c in ctl.history] == ["xy"]
        assert core.getXYPosition() == pytest.approx(
            (before[0][0] + 0.001, before[0][1])
        )
        assert core.getPosition() == before[1]
        msgs = [r.getMessage() for r in caplog.records]
        assert any("has been running for" in m for m in msgs)
        assert any("failed on result" in m for m in msgs)
        assert any("max_moves_per_s" in m for m in msgs)
    finally:
        release.set()
        final = runner.close(timeout_s=10)
    assert final[0].calls == 2 and seen_by_sleeper == [0, 99]
    assert runner.submitted == 100


def test_adapters_feedback_hook_cannot_reach_the_raw_core(ctl, core):
    """``ctl.core.setXYPosition(+500 um)`` from a hook moved the stage past the
    limits; the core a hook sees only reads (and may stop a sequence)."""
    seen: list[tuple[float, float]] = []

    def bypass(result, controller):
        seen.append(controller.core.getXYPosition())
        controller.core.setXYPosition(500.0, 0.0)

    def bypass_z(result, controller):
        controller.core.setPosition(9.5)

    def bypass_mda(result, controller):
        controller.core.mda.cancel()

    before = _where(core)
    with HookRunner([bypass, bypass_z, bypass_mda], ctl) as runner:
        runner.submit(Result(index=0))
        assert runner.wait_idle(30)
        st = runner.stats()
    assert _where(core) == before
    assert seen == [before[0]]
    assert [s.failures for s in st] == [1, 1, 1]
    assert "setXYPosition" in st[0].last_error and "move_xy_by" in st[0].last_error
    assert ctl.refusals == 3 and len(ctl.history) == 0
    with pytest.raises(LimitError):
        ctl.core.snapImage()
    with pytest.raises(LimitError):
        ctl.core.setXYPosition = None
    assert not hasattr(ctl.core.getXYPosition, "__self__")
    assert ctl.core.isSequenceRunning() is False
    assert ctl.core.getPosition() == before[1]


def test_adapters_feedback_on_result_objects_and_bad_hooks(ctl):
    class Obs:
        def __init__(self):
            self.got = []

        def on_result(self, result, controller):
            self.got.append((result.index, controller is ctl))

    obs = Obs()
    with HookRunner([obs], ctl) as runner:
        runner.submit(Result(index=3, metrics={"a": 1.0}))
        assert runner.wait_idle(30)
    assert obs.got == [(3, True)]
    runner.submit(Result(index=4))  # after close: ignored
    assert obs.got == [(3, True)]
    with pytest.raises(TypeError, match="on_result"):
        HookRunner([42], ctl)
    with pytest.raises(ValueError, match="slow_call_s"):
        HookRunner([], ctl, slow_call_s=0)


def test_adapters_feedback_result_frozen_and_validated():
    r = Result(index=1, metrics={"x": 1.0}, pixel_size_um=0.1, magnification=4)
    assert r.sr_pixel_size_um == pytest.approx(0.025)
    with pytest.raises(AttributeError):
        r.index = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.metrics["y"] = 2.0  # type: ignore[index]
    with pytest.raises(ValueError, match="index"):
        Result(index=-1)
    with pytest.raises(ValueError, match="magnification"):
        Result(index=0, magnification=0)


def test_default_travel_envelope_comes_from_the_stage_not_10_mm(core, clock) -> None:
    """Issue 14: with no range configured, a hook may move the stage only within
    the stage's own stated limits or a small envelope around where it started, never
    +-10 mm; the report says where each range came from."""
    ctl = MicroscopeController(core, FeedbackLimits(max_step_xy_um=1000.0), clock=clock)
    try:
        x0, y0 = core.getXPosition(), core.getYPosition()
        env = ctl.report()["limits"]["envelope"]
        assert env["x"]["from"] == "start position +- 200 um"
        assert env["x"]["range_um"] == [x0 - 200.0, x0 + 200.0]
        assert env["y"]["range_um"] == [y0 - 200.0, y0 + 200.0]
        dev = core.getFocusDevice()
        if core.hasProperty(dev, "Position") and core.hasPropertyLimits(dev, "Position"):
            assert env["z"]["from"] == "stage limits"
            assert env["z"]["range_um"] == [
                core.getPropertyLowerLimit(dev, "Position"),
                core.getPropertyUpperLimit(dev, "Position"),
            ]
        else:
            z0 = core.getPosition()
            assert env["z"]["range_um"] == [z0 - 50.0, z0 + 50.0]
        with pytest.raises(LimitError, match="outside the feedback travel range"):
            ctl.move_xy_by(500.0, 0.0)  # within the step limit, outside the envelope
        assert (core.getXPosition(), core.getYPosition()) == (x0, y0)
        clock.t += 1.0
        ctl.move_xy_by(150.0, 0.0)  # inside: moves
        assert core.getXPosition() == pytest.approx(x0 + 150.0)
        # a configured range wins
        ctl2 = MicroscopeController(core, FeedbackLimits(x_range_um=(-5.0, 5.0)), clock=clock)
        assert ctl2.envelope["x"] == {"range_um": [-5.0, 5.0], "from": "configuration"}
        ctl2.close()
    finally:
        clock.t += 1.0
        ctl.move_xy_by(-150.0, 0.0)
        ctl.close()
