"""Window scheduling for the live pipeline: pure logic, no threads, no I/O.

The pipeline emits an SR image when the frame that ends a window has been processed.
Images end at frames ``e_k = e_0 + k * stride`` (stream sequence numbers); ``nxt``
below is the next scheduled end not yet emitted.  The phase of the schedule never
moves, so ``windows_published + windows_skipped`` equals the number of scheduled
windows (without parameter changes: ``(N - window) // stride + 1`` for ``N`` frames).

Two events restart the sliding window at a later scheduled window:

* a **hole** in the frames (a source gap, frames the full ring refused):
  :func:`scheduled_at_or_after` gives the first scheduled window that lies wholly
  after it;
* a **backlog** the latency budget cannot absorb: :func:`plan_budget_skip` predicts
  when the next image would be published if every waiting frame were processed;
  when that image would be older than the budget, it skips to the *newest complete
  window* waiting in the ring (the newest scheduled end already received), so the
  image published next is as fresh as the data allows.  A skip never restarts a
  window that is still filling after a skip (a window longer than the budget allows
  would otherwise never complete: after a skip the latency is at least ``window`` x
  the cost per frame).

Every function here takes plain integers and floats, so the rules are unit-tested
without a pipeline (``tests/stream/test_stream_schedule.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BudgetSkip",
    "newest_scheduled",
    "plan_budget_skip",
    "predicted_latency_s",
    "scheduled_at_or_after",
    "windows_between",
]


def newest_scheduled(nxt: int, stride: int, newest: int) -> int | None:
    """Newest scheduled window end ``<= newest`` (None if ``newest < nxt``).

    Parameters
    ----------
    nxt : int
        Next scheduled window end (seq).
    stride : int
        Frames between window ends, >= 1.
    newest : int
        Newest frame available (seq).
    """
    if stride < 1:
        raise ValueError(f"stride={stride}; expected >= 1")
    if newest < nxt:
        return None
    return nxt + ((newest - nxt) // stride) * stride


def scheduled_at_or_after(first_start: int, nxt: int, window: int, stride: int) -> int:
    """Smallest scheduled window end (``>= nxt``) whose window starts at or after
    ``first_start``: where the window restarts after a hole before ``first_start``."""
    need = first_start + window - 1
    if need <= nxt:
        return nxt
    return nxt + -(-(need - nxt) // stride) * stride


def windows_between(nxt: int, target: int, stride: int) -> int:
    """Scheduled windows ending in ``[nxt, target)``: skipped when restarting at
    ``target``."""
    if target <= nxt:
        return 0
    return (target - nxt) // stride


def predicted_latency_s(
    *, oldest: int, end: int, age_s: float, cost_per_frame_s: float
) -> float:
    """Latency of the image ending at frame ``end`` if every frame from ``oldest``
    on is processed first: its age now plus the work before it is published, s."""
    return max(0.0, age_s) + (end - oldest + 1) * max(0.0, cost_per_frame_s)


@dataclass(frozen=True, slots=True)
class BudgetSkip:
    """A restart decided by :func:`plan_budget_skip`.

    Attributes
    ----------
    target : int
        Window end of the image published next (seq).
    start : int
        First frame of that window: frames before it are dropped from processing
        (they are persisted; only their processing is skipped).
    windows_skipped : int
        Scheduled windows ending before ``target`` that will never be published.
    predicted_s : float
        Latency the next image would have had without the skip, s.
    reason : str
        One line for the log and ``summary.json`` ``skip_events``.
    """

    target: int
    start: int
    windows_skipped: int
    predicted_s: float
    reason: str


def plan_budget_skip(
    *,
    oldest: int,
    newest: int,
    nxt: int,
    window: int,
    stride: int,
    cost_per_frame_s: float,
    budget_s: float,
    age_of_next_s: float | None,
    filling_after_skip: bool,
) -> BudgetSkip | None:
    """Decide whether to skip to the newest complete window (module docstring).

    Parameters
    ----------
    oldest, newest : int
        Oldest and newest frames waiting for processing (seq).
    nxt : int
        Next scheduled window end.
    window, stride : int
        Frames per window, frames between window ends.
    cost_per_frame_s : float
        Smoothed processing cost of one frame, s (0: unknown yet, never skip).
    budget_s : float
        Latency budget (newest frame acquired -> image published), s.
    age_of_next_s : float or None
        Age now of frame ``nxt`` when it is waiting (None when it has not arrived:
        the next image cannot be late yet).
    filling_after_skip : bool
        The window restarted by the previous skip has not been published yet.

    Returns
    -------
    BudgetSkip or None
    """
    if filling_after_skip or cost_per_frame_s <= 0.0 or age_of_next_s is None:
        return None
    if nxt > newest:
        return None
    predicted = predicted_latency_s(
        oldest=oldest, end=nxt, age_s=age_of_next_s, cost_per_frame_s=cost_per_frame_s
    )
    if predicted <= budget_s:
        return None
    target = newest_scheduled(nxt, stride, newest)
    assert target is not None
    start = target - window + 1
    if start <= oldest:  # nothing to gain: that window needs every waiting frame
        return None
    return BudgetSkip(
        target=target,
        start=start,
        windows_skipped=windows_between(nxt, target, stride),
        predicted_s=predicted,
        reason=(
            f"image of frame {nxt} would be {predicted * 1e3:.0f} ms old (backlog "
            f"{newest - oldest + 1} frames x {cost_per_frame_s * 1e3:.2f} ms) > budget "
            f"{budget_s * 1e3:.0f} ms"
        ),
    )
