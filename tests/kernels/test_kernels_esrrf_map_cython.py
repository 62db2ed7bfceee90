"""The Cython map's reused scratch and its ``out=`` path (``kernels/esrrf_map/_cython.pyx``).

The map keeps its gradient grid and parity planes per thread between calls and
can write into a given array (one frame of a batch).  Both must leave the result
bit-identical to a fresh call, whatever the call order, shape changes and
threads.  The numerical parity with NanoPyx and the numpy reference is in
``test_kernels_esrrf_map_backends.py``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from livesr.engine.testing import skip_backend

try:
    from livesr.kernels.esrrf_map import _cython as cy
except ImportError as exc:  # the extension is not built: the tests skip, or fail
    cy = None  # when LIVESR_REQUIRE_BACKENDS names cython
    _why = str(exc)

SCHEDULES = ("static", "guided", "dynamic")


@pytest.fixture(autouse=True)
def _needs_cython() -> None:
    if cy is None:
        skip_backend("cython", f"extension not importable: {_why}")


def _frames(shape: tuple[int, int], n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(50.0, (n, *shape)).astype(np.float32)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_reused_scratch_gives_the_same_maps_across_shapes(schedule):
    """Alternating shapes and shifts: every map equals the one made first, alone."""
    a, b = _frames((24, 31), 2, seed=1), _frames((17, 20), 2, seed=2)
    calls = [
        (a[0], (0.3, -0.2)),
        (b[0], (0.0, 0.0)),
        (a[1], (1.1, 0.4)),
        (b[1], (-0.7, 0.9)),
    ]
    want = [cy.esrrf_map_cython(f, 3, 1.5, 2.0, True, s, schedule) for f, s in calls]
    for _ in range(2):
        for (f, s), w in zip(reversed(calls), reversed(want), strict=True):
            np.testing.assert_array_equal(
                cy.esrrf_map_cython(f, 3, 1.5, 2.0, True, s, schedule), w
            )
    # the scratch was reused: the map must not hand it out as its result
    assert not np.shares_memory(cy.esrrf_map_cython(a[0], 3, 1.5, 2.0, True), want[0])


def test_writes_into_out_including_the_zero_border():
    frame = _frames((20, 22), 1)[0]
    want = cy.esrrf_map_cython(frame, 4, 1.5, 1.0, True, (0.25, -0.5))
    out = np.full((80, 88), np.nan, dtype=np.float32)
    got = cy.esrrf_map_cython(frame, 4, 1.5, 1.0, True, (0.25, -0.5), out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    margin = int(1.5 * 4)
    assert not out[:margin].any() and not out[:, -margin:].any()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((40, 44), np.float32),  # wrong shape
        np.zeros((80, 88), np.float64),  # wrong dtype
        np.zeros((88, 80), np.float32).T,  # not C-contiguous
    ],
    ids=["shape", "dtype", "layout"],
)
def test_rejects_an_unusable_out(bad):
    frame = _frames((20, 22), 1)[0]
    with pytest.raises(ValueError, match="out must be"):
        cy.esrrf_map_cython(frame, 4, 1.5, 1.0, True, out=bad)


def test_threads_keep_their_own_scratch():
    """Two threads mapping different shapes at once get the single-thread maps."""
    stacks = {"a": _frames((32, 28), 6, seed=3), "b": _frames((21, 40), 6, seed=4)}
    want = {
        k: [
            cy.esrrf_map_cython(f, 2, 2.0, 1.0, True, (0.1 * i, -0.05 * i))
            for i, f in enumerate(s)
        ]
        for k, s in stacks.items()
    }
    got: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    start = threading.Barrier(2, timeout=30)

    def work(key: str) -> None:
        start.wait()
        for _ in range(5):
            got[key] = [
                cy.esrrf_map_cython(f, 2, 2.0, 1.0, True, (0.1 * i, -0.05 * i))
                for i, f in enumerate(stacks[key])
            ]

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in stacks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a mapping thread did not finish within 60 s"
    for key in stacks:
        assert len(got[key]) == 6
        for g, w in zip(got[key], want[key], strict=True):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_batch_written_in_place_equals_frame_by_frame(schedule):
    """``esrrf_map_batch`` (Cython) writes each map into its batch slot: equal
    to the per-frame maps, also into a non-contiguous ``out`` (copied path)."""
    from livesr.kernels.esrrf_map_batch._cython import variant

    batch = variant(schedule)
    frames = _frames((18, 26), 4, seed=5)
    shifts = np.array([[0.0, 0.0], [0.5, -0.25], [-1.0, 0.75], [0.1, 0.2]])
    want = np.stack(
        [
            cy.esrrf_map_cython(f, 2, 1.5, 1.0, True, tuple(s), schedule)
            for f, s in zip(frames, shifts, strict=True)
        ]
    )
    out = np.full((4, 36, 52), np.nan, dtype=np.float32)
    assert batch(frames, 2, 1.5, 1.0, True, shifts, out=out) is out
    np.testing.assert_array_equal(out, want)
    strided = np.full((4, 36, 104), np.nan, dtype=np.float32)[:, :, ::2]
    batch(frames, 2, 1.5, 1.0, True, shifts, out=strided)
    np.testing.assert_array_equal(strided, want)


def test_schedules_are_the_extensions():
    assert cy.SCHEDULES == SCHEDULES
