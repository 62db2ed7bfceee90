"""Window scheduling rules (pure logic): holes, budget-driven skips, accounting."""

from __future__ import annotations

import pytest

from livesr.stream._schedule import (
    newest_scheduled,
    plan_budget_skip,
    predicted_latency_s,
    scheduled_at_or_after,
    windows_between,
)


@pytest.mark.parametrize(
    ("nxt", "stride", "newest", "want"),
    [
        (49, 10, 48, None),
        (49, 10, 49, 49),
        (49, 10, 58, 49),
        (49, 10, 59, 59),
        (49, 1, 70, 70),
    ],
)
def test_newest_scheduled(nxt: int, stride: int, newest: int, want: int | None) -> None:
    assert newest_scheduled(nxt, stride, newest) == want


def test_scheduled_at_or_after_keeps_the_phase() -> None:
    # window 50, stride 10, next end 49: a hole before 75 -> first window starting
    # at/after 75 ends at 124 (75 + 49), and ends stay on 49 + 10 k
    assert scheduled_at_or_after(75, 49, 50, 10) == 129
    assert (129 - 49) % 10 == 0 and 129 - 50 + 1 >= 75
    assert scheduled_at_or_after(0, 49, 50, 10) == 49
    assert scheduled_at_or_after(80, 49, 50, 10) == 129
    assert scheduled_at_or_after(81, 49, 50, 10) == 139


def test_windows_between_counts_skipped_windows() -> None:
    assert windows_between(49, 49, 10) == 0
    assert windows_between(49, 89, 10) == 4
    assert windows_between(49, 30, 10) == 0


def test_predicted_latency() -> None:
    assert predicted_latency_s(oldest=10, end=19, age_s=0.1, cost_per_frame_s=0.01) == (
        pytest.approx(0.2)
    )


def _plan(**kw):  # type: ignore[no-untyped-def]
    base = {
        "oldest": 0,
        "newest": 199,
        "nxt": 49,
        "window": 50,
        "stride": 10,
        "cost_per_frame_s": 0.01,
        "budget_s": 0.5,
        "age_of_next_s": 0.0,
        "filling_after_skip": False,
    }
    base.update(kw)
    return plan_budget_skip(**base)


def test_no_skip_within_budget() -> None:
    # the image of frame 49 needs 50 frames x 10 ms = 0.5 s: exactly the budget
    assert _plan() is None
    assert _plan(age_of_next_s=0.3, cost_per_frame_s=0.004) is None


def test_skip_to_the_newest_complete_window() -> None:
    plan = _plan(age_of_next_s=0.2)
    assert plan is not None
    # newest scheduled end <= 199 is 199 itself (49 + 15 x 10); window from 150
    assert plan.target == 199 and plan.start == 150
    assert plan.windows_skipped == 15
    assert plan.predicted_s == pytest.approx(0.2 + 50 * 0.01)
    assert "budget 500 ms" in plan.reason


@pytest.mark.parametrize(
    "kw",
    [
        {"filling_after_skip": True},  # the restarted window must come out first
        {"cost_per_frame_s": 0.0},  # cost unknown yet
        {"age_of_next_s": None},  # the next image's frame has not arrived
        {"nxt": 249, "age_of_next_s": 5.0},  # next end after the newest frame
        {"newest": 55, "age_of_next_s": 5.0},  # the newest window needs every frame
    ],
)
def test_no_skip_cases(kw: dict) -> None:  # type: ignore[type-arg]
    assert _plan(**kw) is None


def test_accounting_identity_over_a_random_run() -> None:
    """published + skipped == scheduled windows whatever the skips."""
    import random

    rng = random.Random(3)
    window, stride, n = 20, 7, 1000
    nxt = window - 1
    published = skipped = 0
    seq = 0
    while seq < n:
        if rng.random() < 0.05:  # a skip or a hole: restart at a later window
            first_start = min(n, seq + rng.randint(1, 80))
            target = scheduled_at_or_after(first_start, nxt, window, stride)
            skipped += windows_between(nxt, target, stride)
            nxt = target
            seq = target - window + 1
            continue
        if seq == nxt:
            published += 1
            nxt += stride
        seq += 1
    # scheduled ends < n that were neither published nor skipped: the tail
    tail = max(0, (n - 1 - nxt) // stride + 1) if n - 1 >= nxt else 0
    assert published + skipped + tail == (n - window) // stride + 1
