"""Compiled kernels release the GIL while they run.

The pipeline runs them on its processing thread while the ingest thread receives
and persists frames; a kernel that held the GIL for milliseconds per frame starved
the ingest (on a 256² @ 200 frames/s run the source's ring overflowed).  Here a
Python thread counts loop iterations during one long kernel call: with the GIL held
it cannot run at all during the call.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest


def _progress_during(call) -> int:
    """Iterations a pure-Python thread completes in the first half of ``call()``.

    Only the first half counts: when the call returns, a thread that was waiting
    for the GIL runs at once, before the caller could read any counter.
    """
    stamps: list[float] = []
    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        started.set()
        while not stop.is_set():
            stamps.append(time.perf_counter())

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    started.wait()
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    stop.set()
    t.join()
    mid = t0 + (t1 - t0) / 2
    return sum(t0 < s < mid for s in stamps)


@pytest.mark.parametrize("serial", [True, False], ids=["serial-kernel", "parallel-kernel"])
def test_window_sums_release_the_gil(serial, monkeypatch):
    # Without nogil=True the serial kernel (images below PARALLEL_MIN_PIXELS) held
    # the GIL: 0 iterations in 5 of 5 calls, against ~20 000-40 000 with it.
    # (numba's parallel kernels release it in their parallel region either way.)
    # The serial kernel is forced onto a 2048^2 image so that the first half of one
    # call lasts ~10 ms: beside a CPU hog on 2 cores (3 runnable threads) the OS
    # took longer than the ~3 ms half of a 1024^2 call to run the waiting thread
    # once the GIL was free (0 iterations in 2 of 5 calls, GIL released).
    from livesr.kernels import _window
    from livesr.kernels._window import WindowMoments, numba_kernels

    if numba_kernels() is None:  # numba is a dependency: fails when required
        from livesr.engine.testing import skip_backend

        skip_backend("numba", "numba unavailable")
    if serial:
        monkeypatch.setattr(_window, "PARALLEL_MIN_PIXELS", 1 << 40)
    shape = (2048, 2048)
    mom = WindowMoments.for_mode(shape, "tac2", "numba")
    assert mom._serial == (2 if serial else 0)
    rng = np.random.default_rng(0)
    a, b = (rng.random(shape, dtype=np.float32) for _ in range(2))
    mom.append(a, None)  # compile + first call outside the measurement
    mom.append(b, a)
    # the parallel kernel on one numba thread: with a thread on every core (2 here)
    # the counting thread found no core in the first half of a ~1.6 ms call, GIL
    # or not (the serial and parallel kernels shared numba's disk cache until
    # window_sums/_numba.py named them apart, so this case used to run serially)
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        # one call (a Python loop of calls would let the thread in between calls)
        progress = [_progress_during(lambda: mom.slide(a, b, a, b)) for _ in range(5)]
    finally:
        numba.set_num_threads(threads)
    assert sum(p > 0 for p in progress) >= 4, progress
