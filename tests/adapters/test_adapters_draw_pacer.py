"""The viewer's draw pacer: it halves the draw rate at each window the pipeline
skips (down to ``min_fps``) and doubles it after each calm period (up to
``max_fps``); nothing but a growing non-negative int counter backs it off."""

from __future__ import annotations

import pytest

from livesr.adapters.sinks._draw_pacer import DrawPacer


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_backs_off_on_each_new_skip_and_recovers_after_calm_periods() -> None:
    clock = _Clock()
    pacer = DrawPacer(10.0, 1.0, calm_s=2.0, clock=clock)
    assert pacer.interval_s == pytest.approx(0.1)
    pacer.observe(0)
    pacer.observe(0)  # no new skip
    assert pacer.fps == 10.0 and pacer.backoffs == 0
    for skipped, fps in ((3, 5.0), (5, 2.5), (9, 1.25), (10, 1.0), (11, 1.0)):
        clock.t += 0.5
        pacer.observe(skipped)
        assert pacer.fps == pytest.approx(fps)
    assert pacer.backoffs == 5
    assert pacer.interval_s == pytest.approx(1.0)
    clock.t += 1.9  # still within the calm period after the last skip
    assert pacer.interval_s == pytest.approx(1.0)
    clock.t += 0.1
    assert pacer.interval_s == pytest.approx(0.5)  # doubled once
    clock.t += 2.0 * 3
    assert pacer.interval_s == pytest.approx(0.1)  # 2 -> 4 -> 8 -> 10 (capped)
    pacer.observe(11)  # the same count: calm
    assert pacer.fps == 10.0


def test_a_skip_during_recovery_halves_again_from_where_it_was() -> None:
    clock = _Clock()
    pacer = DrawPacer(8.0, 0.5, calm_s=1.0, clock=clock)
    pacer.observe(0)
    pacer.observe(4)
    pacer.observe(8)
    assert pacer.fps == 2.0
    clock.t += 1.0
    assert pacer.fps == 2.0 and pacer.interval_s == pytest.approx(0.25)  # now 4
    pacer.observe(9)
    assert pacer.fps == 2.0  # 4 halved
    clock.t += 0.99
    assert pacer.interval_s == pytest.approx(0.5)


@pytest.mark.parametrize("value", [None, "3", 2.5, True, -1, {"n": 1}])
def test_counters_that_are_not_non_negative_ints_are_ignored(value: object) -> None:
    clock = _Clock()
    pacer = DrawPacer(10.0, 1.0, clock=clock)
    pacer.observe(0)
    pacer.observe(value)
    pacer.observe(0)  # the last valid count is still 0: no growth
    assert pacer.fps == 10.0 and pacer.backoffs == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_fps": 0}, ValueError, "max_fps=0"),
        ({"min_fps": -1}, ValueError, "min_fps=-1"),
        ({"calm_s": float("inf")}, ValueError, "calm_s=inf"),
        ({"max_fps": "10"}, TypeError, "max_fps='10'"),
        ({"max_fps": 2.0, "min_fps": 5.0}, ValueError, "above max_fps"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        DrawPacer(**kwargs)  # type: ignore[arg-type]
