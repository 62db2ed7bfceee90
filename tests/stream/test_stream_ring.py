"""The processing rings (in-process and shared-memory): fixed budget, FIFO, refusal
when full, discard, threads, and (shared memory) a producer in another process."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from livesr.stream._ring import ProcessingRing
from livesr.stream._shmring import SharedRing

_made: list[SharedRing] = []


def _shared(*args, **kw) -> SharedRing:
    ring = SharedRing.create(*args, **kw)
    _made.append(ring)
    return ring


@pytest.fixture(params=["thread", "shared"])
def make_ring(request):
    """ProcessingRing or SharedRing.create (same signature, same contract)."""
    if request.param == "thread":
        yield ProcessingRing
        return
    yield _shared
    while _made:
        _made.pop().release(unlink=True)


def _frame(i: int) -> np.ndarray:
    return np.full((4, 6), i, dtype=np.uint16)


def test_capacity_from_budget_and_cap(make_ring) -> None:
    ring = make_ring((4, 6), "uint16", 48 * 10 + 47, min_frames=3)
    assert ring.capacity == 10
    assert ring.nbytes == 10 * 48
    capped = make_ring((4, 6), "uint16", 48 * 1000, min_frames=3, max_frames=20)
    assert capped.capacity == 20


def test_budget_below_window_is_a_clear_error(make_ring) -> None:
    with pytest.raises(ValueError, match=r"at least 5 \(the eSRRF window\).*ring_mb"):
        make_ring((4, 6), "uint16", 48 * 4, min_frames=5)


def test_fifo_refuse_when_full_and_discard(make_ring) -> None:
    ring = make_ring((4, 6), "uint16", 48 * 3)
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


def test_wrong_shape_rejected(make_ring) -> None:
    ring = make_ring((4, 6), "uint16", 4800)
    with pytest.raises(ValueError, match=r"shape \(6, 4\).*\(4, 6\)"):
        ring.offer(0, np.zeros((6, 4), np.uint16), 0.0, 0.0)


def test_producer_consumer_threads_keep_order(make_ring) -> None:
    ring = make_ring((4, 6), "uint16", 48 * 8)
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


_PRODUCER = """
import sys, time
import numpy as np
from livesr.stream._shmring import SharedRing
name, n = sys.argv[1], int(sys.argv[2])
ring = SharedRing.attach(name, (4, 6), "uint16", 8)
from multiprocessing import resource_tracker
resource_tracker.unregister(ring._shm._name, "shared_memory")  # the test owns it
i = 0
while i < n:
    if ring.offer(i, np.full((4, 6), i % 65536, np.uint16), float(i), float(i)):
        i += 1
    else:
        time.sleep(1e-4)  # full: this test wants every frame, so the producer retries
ring.close()
ring.release()
"""


def test_shared_ring_producer_in_another_process_keeps_every_frame_in_order() -> None:
    import subprocess
    import sys

    ring = SharedRing.create((4, 6), "uint16", 48 * 8)
    n = 3000
    proc = subprocess.Popen([sys.executable, "-c", _PRODUCER, ring.name, str(n)])
    got: list[int] = []
    try:
        while True:
            batch = ring.peek_many(5, 0.5)
            if batch is None:
                if ring.closed and len(ring) == 0:
                    break
                assert proc.poll() is None or ring.closed, "producer died"
                continue
            for k in range(len(batch)):
                assert int(batch.frames[k][0, 0]) == int(batch.seqs[k]) % 65536
                assert batch.t_acq[k] == float(batch.seqs[k])
            got.extend(int(s) for s in batch.seqs)
            ring.pop_many(len(batch))
    finally:
        try:
            proc.wait(30.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
        ring.release(unlink=True)
    assert proc.returncode == 0
    assert got == list(range(n))
