"""ProcessingRing: fixed budget, FIFO, refusal when full, discard, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from livesr.stream._ring import ProcessingRing


def _frame(i: int) -> np.ndarray:
    return np.full((4, 6), i, dtype=np.uint16)


def test_capacity_from_budget_and_cap() -> None:
    ring = ProcessingRing((4, 6), "uint16", 48 * 10 + 47, min_frames=3)
    assert ring.capacity == 10
    assert ring.nbytes == 10 * 48
    capped = ProcessingRing((4, 6), "uint16", 48 * 1000, min_frames=3, max_frames=20)
    assert capped.capacity == 20


def test_budget_below_window_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"at least 5 \(the eSRRF window\).*ring_mb"):
        ProcessingRing((4, 6), "uint16", 48 * 4, min_frames=5)


def test_fifo_refuse_when_full_and_discard() -> None:
    ring = ProcessingRing((4, 6), "uint16", 48 * 3)
    assert [ring.offer(i, _frame(i), float(i), float(i) + 0.5) for i in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert (ring.offered, ring.refused, ring.peak, len(ring)) == (3, 2, 3, 3)
    item = ring.peek(0.0)
    assert (
        item is not None and item.seq == 0 and item.t_acq == 0.0 and item.t_recv == 0.5
    )
    assert int(item.frame[0, 0]) == 0
    ring.pop()
    assert not ring.offer(6, _frame(6), 6.0, 6.0)  # refuses until drained completely
    assert ring.discard_before(3) == 2
    assert ring.offer(7, _frame(7), 7.0, 7.0)
    assert ring.newest_seq() == 7
    item = ring.peek(0.0)
    assert item is not None and item.seq == 7 and int(item.frame[3, 5]) == 7
    ring.pop()
    assert ring.peek(0.0) is None and ring.newest_seq() is None
    with pytest.raises(RuntimeError):
        ring.pop()
    assert ring.refused == 3


def test_wrong_shape_rejected() -> None:
    ring = ProcessingRing((4, 6), "uint16", 4800)
    with pytest.raises(ValueError, match=r"shape \(6, 4\).*\(4, 6\)"):
        ring.offer(0, np.zeros((6, 4), np.uint16), 0.0, 0.0)


def test_producer_consumer_threads_keep_order() -> None:
    ring = ProcessingRing((4, 6), "uint16", 48 * 8)
    n = 2000
    got: list[int] = []

    def consume() -> None:
        while True:
            item = ring.peek(1.0)
            if item is None:
                if ring.closed:
                    return
                continue
            assert int(item.frame[0, 0]) == item.seq % 65536
            got.append(item.seq)
            ring.pop()

    t = threading.Thread(target=consume)
    t.start()
    refused = 0
    for i in range(n):
        if not ring.offer(i, _frame(i % 65536), 0.0, 0.0):
            refused += 1
    ring.close()
    t.join(10.0)
    assert not t.is_alive()
    assert refused == ring.refused
    assert len(got) == n - refused
    assert got == sorted(got)
