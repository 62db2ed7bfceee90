"""Deferred window sums: the AVG of the stored maps summed at emission.

With the ``"maps"`` strategy and AVG, :class:`SlidingEsrrf` sums the stored maps
when it emits (``kernels._window.window_mean``) instead of adding and removing one
map per frame.  These tests hold it to the per-frame running sums (same images, bit
for bit, on both sum backends), to a float64 reference, and through the settings
changes that need the running sums again.
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels import SlidingEsrrf
from livesr.kernels._window import WindowMoments, window_mean

BACKENDS = ["numpy", "numba"]


def _maps(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Maps whose brightness spans 1e-3 .. 1e5 (float32 rounding matters)."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(np.log(1e-3), np.log(1e5), size=(n, 1, 1)))
    return (rng.gamma(2.0, 1.0, size=(n, *shape)) * scale).astype(np.float32)


class _Lookup:
    """A frame map that returns precomputed maps: frame k is filled with k."""

    def __init__(self, maps: np.ndarray) -> None:
        self.maps = maps

    def __call__(self, frame, params, *, shift=(0.0, 0.0), out=None):
        x = self.maps[int(frame[0, 0])]
        if out is None:
            return x.copy()
        out[...] = x
        return out


def _stream(n: int, h: int = 4) -> np.ndarray:
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, h, h)).copy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_mean_equals_running_sums(backend: str) -> None:
    """window_mean over a ring = WindowMoments after the same adds and removes."""
    ring = _maps(13, (40, 70), seed=1)
    mom = WindowMoments.for_mode((40, 70), "avg", backend)
    for j in range(2, 13):
        mom.append(ring[j], None)
    for j in range(0, 3):  # the ring wraps: slots 0..2 hold the newest maps
        mom.pop_first(ring[j + 2], None)
        mom.append(ring[j], None)
    slots = np.array([*range(5, 13), 0, 1, 2])
    got = window_mean(ring, slots, backend)
    np.testing.assert_array_equal(got, mom.combine("avg"))
    exact = ring[slots].astype(np.float64).mean(axis=0)
    assert np.abs(got - exact).max() <= 1e-6 * np.abs(exact).max()


def test_window_mean_backends_agree_and_multithreaded_path() -> None:
    ring = _maps(9, (300, 300), seed=2)  # 90 000 px: the multi-threaded kernel
    slots = np.array([4, 5, 6, 7, 8, 0, 1])
    np.testing.assert_array_equal(
        window_mean(ring, slots, "numba"), window_mean(ring, slots, "numpy")
    )


def test_window_mean_rejects_bad_input() -> None:
    ring = _maps(3, (4, 4), seed=3)
    with pytest.raises(ValueError, match="float32"):
        window_mean(ring.astype(np.float64), np.arange(3))
    with pytest.raises(ValueError, match="non-empty"):
        window_mean(ring, np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="backend"):
        window_mean(ring, np.arange(3), "cuda")


def _pair(backend: str, window: int, stride: int, maps: np.ndarray, **kw):
    """A deferred window and one forced to the per-frame running sums."""
    fast = SlidingEsrrf(window, stride, magnification=2, frame_map=_Lookup(maps),
                        strategy="maps", sums_backend=backend, **kw)
    slow = SlidingEsrrf(window, stride, magnification=2, frame_map=_Lookup(maps),
                        strategy="maps", sums_backend=backend, **kw)
    slow.DEFERRED_MAX_RATIO = 0  # never deferred
    return fast, slow


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("window", "stride"), [(10, 2), (12, 3), (5, 5), (6, 7)])
def test_deferred_equals_per_frame_sums(backend: str, window: int, stride: int) -> None:
    n = 60
    maps = _maps(n, (8, 8), seed=window + stride)
    fast, slow = _pair(backend, window, stride, maps, macro_pixel_correction=False)
    frames = _stream(n)
    got = fast.push_many(frames)
    want = slow.push_many(frames)
    assert fast._stale and not slow._stale  # the deferred path really ran
    assert [r.last_frame for r in got] == [r.last_frame for r in want]
    assert len(got) == len(range(window - 1, n, stride)) > 3
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        exact = maps[a.first_frame : a.last_frame + 1].astype(np.float64).mean(axis=0)
        assert np.abs(a.image - exact).max() <= 1e-6 * np.abs(exact).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_deferred_through_settings_changes(backend: str) -> None:
    """set_params rebuilds the running sums first: VAR, a new window, back to AVG."""
    n = 120
    maps = _maps(n, (8, 8), seed=9)
    fast, slow = _pair(backend, 10, 5, maps)
    frames = _stream(n)
    steps = [
        (0, 33, {}),
        (33, 51, {"temporal": "var"}),  # needs Q: rebuilt from the stored maps
        (51, 70, {"temporal": "avg", "window": 15}),
        (70, 90, {"stride": 1}),  # 15 > 8 * 1: per-frame sums again
        (90, n, {"stride": 6}),
    ]
    for a, b, change in steps:
        if change:
            fast.set_params(**change)
            slow.set_params(**change)
        got = fast.push_many(frames[a:b])
        want = slow.push_many(frames[a:b])
        assert [r.last_frame for r in got] == [r.last_frame for r in want]
        for x, y in zip(got, want, strict=True):
            np.testing.assert_array_equal(x.image, y.image)
    assert fast._stale  # deferred again at the end (AVG, 15 <= 8 * 6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deferred_after_reset(backend: str) -> None:
    """A reset mid-stream: the window restarts the same way with deferred sums."""
    n = 80
    maps = _maps(n, (8, 8), seed=4)
    fast, slow = _pair(backend, 8, 4, maps)
    frames = _stream(n)
    out = []
    for sr in (fast, slow):
        res = sr.push_many(frames[:30])
        sr.reset()
        res += sr.push_many(frames[30:])
        out.append(res)
    assert len(out[0]) == len(out[1]) > 10
    for x, y in zip(*out, strict=True):
        assert (x.first_frame, x.last_frame) == (y.first_frame, y.last_frame)
        np.testing.assert_array_equal(x.image, y.image)


# ------------------------------------------------------------- even/odd halves
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mpc", [True, False], ids=["mpc", "nompc"])
def test_halves_equal_the_frc_half_windows(backend: str, mpc: bool) -> None:
    """SlidingResult.halves (summed from the stored maps) are the images the live
    FRC made by mapping the window's even and odd frames again (window_halves)."""
    from livesr.kernels import esrrf_frame
    from livesr.stream._frc_live import window_halves

    rng = np.random.default_rng(5)
    frames = rng.poisson(50.0, size=(30, 12, 12)).astype(np.float32)
    shifts = rng.uniform(-0.6, 0.6, size=(30, 2))
    kw = {"magnification": 2, "macro_pixel_correction": mpc}
    sr = SlidingEsrrf(9, 4, strategy="maps", sums_backend=backend,
                      frame_map=esrrf_frame, frame_shape=(12, 12), **kw)
    assert sr.can_make_halves
    sr.want_halves = True
    results = sr.push_many(frames, shifts)
    assert len(results) == 6
    for r in results:
        assert r.halves is not None
        sl = slice(r.first_frame, r.last_frame + 1)
        even, odd = window_halves(frames[sl], shifts[sl], frame_map=esrrf_frame,
                                  sums_backend=backend, **kw)
        np.testing.assert_array_equal(r.halves[0], even)
        np.testing.assert_array_equal(r.halves[1], odd)
    sr.want_halves = False
    assert all(r.halves is None for r in sr.push_many(frames[:8], shifts[:8]))


def test_no_halves_without_stored_maps_or_for_var() -> None:
    frames = np.random.default_rng(6).poisson(50.0, size=(12, 8, 8)).astype(np.float32)
    for kw in ({"strategy": "raw"}, {"strategy": "maps", "temporal": "var"}):
        sr = SlidingEsrrf(6, 3, magnification=2, **kw)
        sr.want_halves = True
        res = sr.push_many(frames)
        assert not sr.can_make_halves and res and all(r.halves is None for r in res)


def test_warm_up_chooses_a_macro_pixel_implementation_with_the_same_images() -> None:
    """warm_up(frame_shape) picks the engine's fastest macro-pixel correction; the
    images equal those of the numpy reference (to float32 rounding)."""
    rng = np.random.default_rng(7)
    frames = rng.poisson(50.0, size=(24, 16, 16)).astype(np.float32)
    warm = SlidingEsrrf(8, 4, magnification=2, strategy="maps")
    warm.warm_up((16, 16))
    assert warm._mpc is not None
    cold = SlidingEsrrf(8, 4, magnification=2, strategy="maps")
    a, b = warm.push_many(frames), cold.push_many(frames)
    assert len(a) == len(b) == 5
    for x, y in zip(a, b, strict=True):
        assert np.abs(x.image - y.image).max() <= 1e-6 * np.abs(y.image).max()
