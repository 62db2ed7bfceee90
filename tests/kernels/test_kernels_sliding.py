"""Tests of livesr.kernels.sliding.SlidingEsrrf against batch eSRRF.

Frames are tiny (8x8 at M=2) so the real per-frame map is cheap. Each distinct frame's
map is computed once by :func:`esrrf_frame` and memoised (``_CachedMap``), so the
stream and the references share bit-identical maps; windows are checked against
``esrrf()`` itself (the batch function) on the last window of every configuration and
against the same temporal step + macro-pixel correction on the cached maps for every
emitted window.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesr.kernels import SlidingEsrrf, esrrf, esrrf_frame
from livesr.kernels._params import EsrrfParams
from livesr.kernels.macro_pixel import macro_pixel_correction
from livesr.kernels.sliding import SlidingConfig, SlidingResult, estimate_memory
from livesr.kernels.temporal import TemporalAccumulator

M = 2
TOL = 1e-5


class _CachedMap:
    """esrrf_frame memoised on (frame bytes, params, shift); counts real calls."""

    def __init__(self) -> None:
        self.cache: dict[tuple, np.ndarray] = {}
        self.calls = 0

    def __call__(self, frame, params, *, shift=(0.0, 0.0), out=None):
        self.calls += 1
        f32 = np.ascontiguousarray(frame, dtype=np.float32)
        key = (f32.tobytes(), f32.shape, params, (float(shift[0]), float(shift[1])))
        hit = self.cache.get(key)
        if hit is None:
            hit = esrrf_frame(f32, params, shift=shift)
            self.cache[key] = hit
        if out is None:
            return hit.copy()
        out[...] = hit
        return out


_MAP = _CachedMap()


class _Counting:
    """Counts the calls of the shared cached map (real-call counts of a stream)."""

    def __init__(self) -> None:
        self.calls = 0
        self.allocating = 0  # calls without an ``out`` buffer

    def __call__(self, frame, params, *, shift=(0.0, 0.0), out=None):
        self.calls += 1
        self.allocating += out is None
        return _MAP(frame, params, shift=shift, out=out)


def _frames(n: int, seed: int = 0, size: int = 8) -> np.ndarray:
    """Blinking emitters on a background, Poisson noise: strong changes in time."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    pos = rng.uniform(1.5, size - 2.5, size=(4, 2))
    psf = np.exp(
        -(
            (yy[None] - pos[:, 0, None, None]) ** 2
            + (xx[None] - pos[:, 1, None, None]) ** 2
        )
        / 2.0
    )
    on = rng.random((n, 4)) < 0.4
    lam = 20.0 + 400.0 * np.einsum("te,eyx->tyx", on, psf)
    return rng.poisson(lam).astype(np.float32)


def _reference(maps: list[np.ndarray], mode: str, mpc: bool) -> np.ndarray:
    """What esrrf() does after the per-frame maps (its accumulator and corrector)."""
    acc = TemporalAccumulator(mode, maps[0].shape)
    for x in maps:
        acc.add(x)
    image = acc.result()
    return macro_pixel_correction(image, M) if mpc else image


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


FRAMES = _frames(320)
PARAMS = EsrrfParams(magnification=M)


def _stream_maps(frames: np.ndarray, params: EsrrfParams = PARAMS) -> list[np.ndarray]:
    return [_MAP(f, params) for f in frames]


# ---------------------------------------------------------------- batch equality
@pytest.mark.parametrize("mpc", [True, False], ids=["mpc", "nompc"])
@pytest.mark.parametrize("mode", ["avg", "var", "tac2"])
@pytest.mark.parametrize("window", [2, 10, 100])
@pytest.mark.parametrize("stride_kind", ["1", "7", "window"])
def test_sliding_equals_batch_esrrf(
    window: int, stride_kind: str, mode: str, mpc: bool
) -> None:
    stride = window if stride_kind == "window" else int(stride_kind)
    n = min(len(FRAMES), window + 3 * stride + 5)
    frames = FRAMES[:n]
    maps = _stream_maps(frames)
    images = {}
    # maps strategy with the numba sums, raw strategy with the numpy ones
    for strategy, backend in (("maps", "numba"), ("raw", "numpy")):
        sr = SlidingEsrrf(
            window,
            stride,
            magnification=M,
            temporal=mode,
            macro_pixel_correction=mpc,
            strategy=strategy,
            resync_every=0,
            frame_map=_MAP,
            sums_backend=backend,
        )
        results = sr.push_many(frames)
        assert sr.strategy == strategy and sr.sums_backend == backend
        # emission rule: ends at window-1 + k*stride
        ends = list(range(window - 1, n, stride))
        assert [r.last_frame for r in results] == ends
        assert all(r.first_frame == r.last_frame - window + 1 for r in results)
        assert all(r.n_frames == window for r in results)
        assert sr.windows_emitted == len(ends) and sr.frames_seen == n
        for r in results:
            assert r.image.dtype == np.float32 and r.image.shape == (8 * M, 8 * M)
            want = _reference(maps[r.first_frame : r.last_frame + 1], mode, mpc)
            assert _rel(r.image, want) <= TOL, (strategy, r.first_frame)
        images[strategy] = [r.image for r in results]
    # both strategies (and both sums backends) give the same images, bit for bit
    for a, b in zip(images["maps"], images["raw"], strict=True):
        np.testing.assert_array_equal(a, b)
    # the batch function itself on the last window
    last = results[-1]
    batch = esrrf(
        frames[last.first_frame : last.last_frame + 1],
        magnification=M,
        temporal=mode,
        macro_pixel_correction=mpc,
    )
    assert _rel(last.image, batch) <= TOL


def test_cached_reference_is_batch_esrrf() -> None:
    """The cached-map reference used above is esrrf() bit for bit."""
    for mode in ("avg", "var", "tac2"):
        block = FRAMES[5:17]
        got = _reference(_stream_maps(block), mode, True)
        np.testing.assert_array_equal(got, esrrf(block, magnification=M, temporal=mode))


# --------------------------------------------------------- long-stream rounding
def _long_stream(n: int, seed: int) -> np.ndarray:
    """Frame indices into a pool whose brightness spans 1e-2 .. 1e4 times the base."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 48, size=n)
    idx[-40:] = rng.integers(0, 8, size=40)  # the final windows: the dimmest frames
    return idx


def _pool() -> np.ndarray:
    base = _frames(48, seed=7)
    scales = np.repeat([1e-2, 1.0, 1e2, 1e4], 12).astype(np.float32)
    return (base * scales[:, None, None]).astype(np.float32)


@pytest.mark.parametrize(
    ("mode", "strategy"),
    [("avg", "maps"), ("var", "maps"), ("tac2", "maps"), ("tac2", "raw")],
)
def test_sliding_no_drift_after_10000_frames(mode: str, strategy: str) -> None:
    pool = _pool()
    seq = _long_stream(10_000, seed=11)
    window, stride = 10, 111  # 9999 = 9 + 90 * 111: the last frame closes a window
    sr = SlidingEsrrf(
        window,
        stride,
        magnification=M,
        temporal=mode,
        strategy=strategy,
        resync_every=0,
        frame_map=_MAP,
    )
    last = None
    for k in seq:
        r = sr.push(pool[k])
        if r is not None:
            last = r
    assert sr.frames_seen == 10_000
    assert last is not None and last.last_frame == 9999 and sr.windows_emitted == 91
    block = pool[seq[last.first_frame : last.last_frame + 1]]
    batch = esrrf(block, magnification=M, temporal=mode)
    assert _rel(last.image, batch) <= TOL
    if mode == "avg":
        # the data are hard: a float32 running sum is far off on the same maps
        maps = [_MAP(pool[k], PARAMS) for k in seq[: last.last_frame + 1]]
        s32 = np.zeros_like(maps[0])
        for t, x in enumerate(maps):
            s32 += x
            if t >= window:
                s32 -= maps[t - window]
        naive = macro_pixel_correction(s32 / np.float32(window), M)
        assert _rel(naive, batch) > 1e-3


def test_resync_keeps_results() -> None:
    frames = FRAMES[:60]
    a = SlidingEsrrf(
        10, 3, magnification=M, temporal="tac2", resync_every=0, frame_map=_MAP
    )
    b = SlidingEsrrf(
        10, 3, magnification=M, temporal="tac2", resync_every=4, frame_map=_MAP
    )
    for ra, rb in zip(a.push_many(frames), b.push_many(frames), strict=True):
        assert (ra.first_frame, ra.last_frame) == (rb.first_frame, rb.last_frame)
        assert _rel(ra.image, rb.image) <= 1e-6
    assert SlidingConfig(window=10, stride=1).resync_every == 0  # off by default


# ----------------------------------------------------------- schedule and cost
def test_stride_larger_than_window_skips_frames_without_computing_them() -> None:
    counter = _Counting()
    sr = SlidingEsrrf(
        3, 5, magnification=M, macro_pixel_correction=False, frame_map=counter
    )
    results = sr.push_many(FRAMES[:20])
    assert [(r.first_frame, r.last_frame) for r in results] == [
        (0, 2),
        (5, 7),
        (10, 12),
        (15, 17),
    ]
    # frames 3,4, 8,9, 13,14, 18,19 belong to no window (next is 20..22): never mapped
    assert counter.calls == 12
    assert sr.frames_seen == 20 and sr.windows_emitted == 4 and sr.next_emission == 22
    for r in results:
        want = _reference(
            _stream_maps(FRAMES[r.first_frame : r.last_frame + 1]), "avg", False
        )
        assert _rel(r.image, want) <= TOL


@pytest.mark.parametrize("strategy", ["maps", "raw"])
def test_map_calls_per_frame_do_not_grow_with_window(strategy: str) -> None:
    calls = {}
    for window in (3, 40):
        counter = _Counting()
        sr = SlidingEsrrf(
            window,
            1,
            magnification=M,
            temporal="tac2",
            strategy=strategy,
            resync_every=0,
            frame_map=counter,
        )
        sr.push_many(FRAMES[:100])
        counter.calls = counter.allocating = 0
        sr.push_many(FRAMES[100:200])
        calls[window] = counter.calls
        # steady state: every map is written into a ring slot or a reused buffer
        assert counter.allocating == 0
    per_frame = 1 if strategy == "maps" else 2
    assert calls == {3: 100 * per_frame, 40: 100 * per_frame}


def test_push_returns_result_only_on_schedule_and_counts() -> None:
    sr = SlidingEsrrf(4, 2, magnification=M, frame_map=_MAP)
    out = [sr.push(f) for f in FRAMES[:9]]
    assert [r is not None for r in out] == [
        False,
        False,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    r = out[3]
    assert isinstance(r, SlidingResult) and (
        r.first_frame,
        r.last_frame,
        r.n_frames,
    ) == (0, 3, 4)
    with pytest.raises(AttributeError):
        r.n_frames = 3  # type: ignore[misc]
    sr.reset()
    assert sr.frames_seen == 0 and sr.windows_emitted == 0 and sr.strategy is None
    assert sr.push_many(FRAMES[:4])[0].last_frame == 3


def test_shift_is_applied_inside_the_magnification() -> None:
    rng = np.random.default_rng(3)
    shifts = rng.uniform(-0.7, 0.7, size=(12, 2))
    frames = FRAMES[:12]
    for strategy in ("maps", "raw"):
        sr = SlidingEsrrf(5, 3, magnification=M, temporal="var", strategy=strategy)
        results = sr.push_many(frames, shifts=shifts)
        assert len(results) == 3
        for r in results:
            sl = slice(r.first_frame, r.last_frame + 1)
            maps = [
                esrrf_frame(f, PARAMS, shift=tuple(s))
                for f, s in zip(frames[sl], shifts[sl], strict=False)
            ]
            want = _reference(maps, "var", True)
            assert _rel(r.image, want) <= TOL
            unshifted = _reference(_stream_maps(frames[sl]), "var", True)
            assert _rel(r.image, unshifted) > 1e-2  # the shift did something


def test_uint16_frames_stored_compactly_give_same_images() -> None:
    a = SlidingEsrrf(6, 2, magnification=M, strategy="raw", frame_map=_MAP)
    b = SlidingEsrrf(6, 2, magnification=M, strategy="raw", frame_map=_MAP)
    ra = a.push_many(FRAMES[:20].astype(np.uint16))
    rb = b.push_many(FRAMES[:20])
    assert a._raw is not None and a._raw.dtype == np.uint16
    for x, y in zip(ra, rb, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
    # a float frame that uint16 cannot hold: the stored frames become float32, intact
    odd = FRAMES[20] + np.float32(0.25)
    later = range(21, 40)
    ra = a.push_many([odd] + [FRAMES[k].astype(np.uint16) for k in later])
    rb = b.push_many([odd] + [FRAMES[k] for k in later])
    assert a._raw.dtype == np.float32 and len(ra) == 10
    for x, y in zip(ra, rb, strict=True):
        np.testing.assert_array_equal(x.image, y.image)


# --------------------------------------------------------------------- memory
def test_strategy_chosen_from_budget_and_memory_bounded() -> None:
    kw = {"window": 50, "frame_shape": (8, 8), "magnification": M, "temporal": "tac2"}
    need_maps = estimate_memory("maps", **kw)
    need_raw = estimate_memory("raw", shadow_sums=True, **kw)  # shadow on with raw
    assert need_raw < need_maps
    big = SlidingEsrrf(
        50,
        1,
        magnification=M,
        temporal="tac2",
        frame_map=_MAP,
        memory_budget_bytes=need_maps,
        frame_shape=(8, 8),
    )
    small = SlidingEsrrf(
        50,
        1,
        magnification=M,
        temporal="tac2",
        frame_map=_MAP,
        memory_budget_bytes=need_maps - 1,
    )
    assert big.strategy == "maps" and small.strategy is None
    assert big.sums_backend == "numba" and small.sums_backend is None
    assert "strategy='maps'" in repr(big)
    small.push(FRAMES[0])
    assert small.strategy == "raw"
    for sr, need in ((big, need_maps), (small, need_raw)):
        sr.push_many(FRAMES[1:60])
        held = sr.memory_bytes
        sr.push_many(FRAMES[60:300])
        assert sr.memory_bytes == held  # does not grow with the stream
        assert held <= need
    with pytest.raises(ValueError, match="memory_budget_bytes=1000 is too small"):
        SlidingEsrrf(
            50, 1, magnification=M, memory_budget_bytes=1000, frame_shape=(8, 8)
        )
    with pytest.raises(ValueError, match="too small"):
        SlidingEsrrf(
            50,
            1,
            magnification=M,
            strategy="maps",
            memory_budget_bytes=need_raw,
            frame_shape=(8, 8),
            temporal="tac2",
        )


# ------------------------------------------------------------------ set_params
def _check_against_maps(results, frames, params, mode="avg", mpc=True) -> None:
    for r in results:
        maps = [_MAP(f, params) for f in frames[r.first_frame : r.last_frame + 1]]
        assert _rel(r.image, _reference(maps, mode, mpc)) <= TOL


@pytest.mark.parametrize("strategy", ["maps", "raw"])
def test_set_params_temporal(strategy: str) -> None:
    frames = FRAMES[:40]
    sr = SlidingEsrrf(8, 4, magnification=M, strategy=strategy, frame_map=_MAP)
    sr.push_many(frames[:10])  # emitted at 7; next at 11
    sr.set_params(temporal="var")
    res = sr.push_many(frames[10:24])
    if strategy == "maps":
        # rebuilt from stored maps: schedule unchanged
        assert [r.last_frame for r in res] == [11, 15, 19, 23]
    else:
        # raw strategy without recompute: restart at frame 10
        assert [r.last_frame for r in res] == [17, 21]
    _check_against_maps(res, frames, PARAMS, "var")
    sr.set_params(temporal="tac2", recompute=True)
    res = sr.push_many(frames[24:40])
    assert res[0].last_frame == res[0].first_frame + 7
    _check_against_maps(res, frames, PARAMS, "tac2")
    nxt = sr.next_emission
    sr.set_params(temporal="avg", macro_pixel_correction=False)  # dropping sums is free
    assert sr.next_emission == nxt
    more = _frames(nxt + 1 - sr.frames_seen, seed=9)
    res = sr.push_many(more)
    assert len(res) == 1 and res[0].last_frame == nxt
    allf = np.concatenate([frames, more])
    _check_against_maps(res, allf, PARAMS, "avg", mpc=False)


@pytest.mark.parametrize("strategy", ["maps", "raw"])
def test_set_params_map_settings_restart_or_recompute(strategy: str) -> None:
    frames = FRAMES[:60]
    sr = SlidingEsrrf(6, 3, magnification=M, strategy=strategy, frame_map=_MAP)
    sr.push_many(frames[:10])  # emissions at 5, 8; next at 11
    sr.set_params(radius=2.0, sensitivity=2.0)
    new = EsrrfParams(magnification=M, radius=2.0, sensitivity=2.0)
    res = sr.push_many(frames[10:25])
    assert res[0].first_frame == 10 and res[0].last_frame == 15  # window restarted
    _check_against_maps(res, frames, new)
    sr.set_params(radius=1.0, recompute=True)  # window carries on
    newer = EsrrfParams(magnification=M, radius=1.0, sensitivity=2.0)
    res = sr.push_many(frames[25:40])
    assert res[0].last_frame == 27 and res[0].first_frame == 22
    _check_against_maps(res, frames, newer)
    sr.set_params(magnification=3, recompute=True)
    res = sr.push_many(frames[40:46])
    assert res[0].image.shape == (24, 24) and res[0].first_frame == 37
    p3 = EsrrfParams(magnification=3, radius=1.0, sensitivity=2.0)
    for r in res:
        maps = [_MAP(f, p3) for f in frames[r.first_frame : r.last_frame + 1]]
        acc = TemporalAccumulator("avg", maps[0].shape)
        for x in maps:
            acc.add(x)
        assert _rel(r.image, macro_pixel_correction(acc.result(), 3)) <= TOL


@pytest.mark.parametrize("strategy", ["maps", "raw"])
def test_set_params_window_and_stride(strategy: str) -> None:
    frames = FRAMES[:80]
    sr = SlidingEsrrf(
        10, 5, magnification=M, temporal="tac2", strategy=strategy, frame_map=_MAP
    )
    first = sr.push_many(frames[:17])  # emissions at 9, 14; next at 19
    assert [r.last_frame for r in first] == [9, 14]
    sr.set_params(window=4, stride=2)  # shrink: next at max(17, 14 + 2) = 17
    assert sr.next_emission == 17 and sr.n_stored == 3
    res = sr.push_many(frames[17:30])
    assert [r.last_frame for r in res] == [17, 19, 21, 23, 25, 27, 29]
    assert all(r.n_frames == 4 for r in res)
    _check_against_maps(res, frames, PARAMS, "tac2")
    sr.set_params(window=12)  # grow: stored 26..29, the window fills at 26 + 11 = 37
    assert sr.next_emission == 37
    res = sr.push_many(frames[30:45])
    assert [r.last_frame for r in res] == [37, 39, 41, 43]
    _check_against_maps(res, frames, PARAMS, "tac2")
    sr.set_params(stride=30)  # next = last emission + 30 = 73, window 62..73
    res = sr.push_many(frames[45:80])
    assert [r.last_frame for r in res] == [73]
    _check_against_maps(res, frames, PARAMS, "tac2")


def test_set_params_window_switches_maps_to_raw_when_over_budget() -> None:
    frames = FRAMES[:80]
    kw = {"frame_shape": (8, 8), "magnification": M, "temporal": "avg"}
    budget = max(
        estimate_memory("maps", window=10, **kw),
        estimate_memory("raw", window=30, shadow_sums=True, **kw),
    )
    assert estimate_memory("maps", window=30, **kw) > budget
    sr = SlidingEsrrf(
        10, 3, magnification=M, memory_budget_bytes=budget, frame_map=_MAP
    )
    sr.push_many(frames[:20])
    assert sr.strategy == "maps"
    sr.set_params(window=30)
    assert sr.strategy == "raw" and sr.memory_bytes <= budget
    res = sr.push_many(frames[20:80])
    assert sr.shadow_swaps >= 1  # shadow sums switched on with the raw strategy
    assert res and all(r.n_frames == 30 for r in res)
    _check_against_maps(res, frames, PARAMS)


def test_set_params_before_first_frame_and_errors() -> None:
    sr = SlidingEsrrf(5, 1, magnification=M, frame_map=_MAP)
    sr.set_params(window=3, stride=2)
    assert [r.last_frame for r in sr.push_many(FRAMES[:8])] == [2, 4, 6]
    with pytest.raises(ValueError, match="unsupported setting"):
        sr.set_params(colour="red")
    with pytest.raises(ValueError, match="unsupported setting"):
        sr.set_params(strategy="raw")
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        sr.set_params(window=0)
    with pytest.raises(ValueError, match="radius"):
        sr.set_params(radius=-1.0)
    with pytest.raises(ValueError, match="nothing was changed"):
        sr.set_params(window=300, memory_budget_bytes=10_000)
    assert sr.window == 3 and sr.params.radius == 1.5  # a failed change changes nothing
    assert sr.config.memory_budget_bytes == 512 * 2**20
    assert [r.last_frame for r in sr.push_many(FRAMES[8:12])] == [8, 10]


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0, "stride": 1}, "window must be an integer >= 1"),
        ({"window": 3, "stride": 0}, "stride must be an integer >= 1"),
        ({"window": 3, "stride": True}, "stride must be an integer"),
        ({"window": 1, "stride": 1, "temporal": "tac2"}, "needs window >= 2"),
        ({"window": 3, "stride": 1, "temporal": "median"}, "temporal must be one of"),
        ({"window": 3, "stride": 1, "magnification": 0}, "magnification"),
        ({"window": 3, "stride": 1, "memory_budget_bytes": 0}, "memory_budget_bytes"),
        ({"window": 3, "stride": 1, "strategy": "disk"}, "strategy must be one of"),
        ({"window": 3, "stride": 1, "resync_every": -1}, "resync_every"),
        ({"window": 3, "stride": 1, "frame_shape": (0, 4)}, "frame_shape"),
        ({"window": 3, "stride": 1, "sums_backend": "cuda"}, "sums_backend"),
    ],
)
def test_constructor_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SlidingEsrrf(**kwargs)


def test_push_errors() -> None:
    sr = SlidingEsrrf(3, 1, magnification=M, frame_map=_MAP)
    with pytest.raises(ValueError, match="2-D image"):
        sr.push(FRAMES[:2])
    sr.push(FRAMES[0])
    with pytest.raises(ValueError, match=r"shape \(9, 8\), expected \(8, 8\)"):
        sr.push(np.zeros((9, 8), np.float32))
    bad = FRAMES[1].copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sr.push(bad)
    with pytest.raises(ValueError, match="shift"):
        sr.push(FRAMES[1], shift=(0.0, np.inf))
    with pytest.raises(ValueError, match=r"shifts must have shape \(2, 2\)"):
        sr.push_many(FRAMES[:2], shifts=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        sr.push_many(FRAMES[0])
    assert sr.frames_seen == 1  # rejected frames are not counted
    with pytest.raises(RuntimeError, match="expected float32"):
        SlidingEsrrf(3, 1, magnification=M, frame_map=lambda f, p, shift, out: f).push(
            FRAMES[0]
        )


def test_logs_restart(caplog: pytest.LogCaptureFixture) -> None:
    sr = SlidingEsrrf(4, 1, magnification=M, frame_map=_MAP)
    sr.push_many(FRAMES[:5])
    with caplog.at_level(logging.INFO, logger="livesr.kernels.sliding"):
        sr.set_params(radius=2.0)
    assert "window restarts at frame 5" in caplog.text


# --------------------------------------------------------- model-based property
def _cheap_map(frame, params, *, shift=(0.0, 0.0), out=None):
    """Deterministic stand-in: depends on the frame, shift, magnification and radius."""
    m = params.magnification
    x = np.kron(
        np.asarray(frame, np.float32) * np.float32((1.0 + shift[0]) * params.radius),
        np.ones((m, m), np.float32),
    )
    if out is None:
        return x
    out[...] = x
    return out


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(1, 12)),
            st.tuples(st.just("window"), st.integers(2, 9)),
            st.tuples(st.just("stride"), st.integers(1, 12)),
            st.tuples(st.just("temporal"), st.sampled_from(["avg", "var", "tac2"])),
            st.tuples(st.just("radius"), st.sampled_from([1.0, 1.5, 2.0])),
            st.tuples(st.just("magnification"), st.sampled_from([1, 2, 3])),
            st.tuples(st.just("reset"), st.none()),
        ),
        min_size=1,
        max_size=14,
    ),
    strategy=st.sampled_from(["maps", "raw"]),
    recompute=st.booleans(),
)
def test_sliding_model(ops: list, strategy: str, recompute: bool) -> None:
    """Any mix of pushes and setting changes: every image is its window's statistic."""
    frames = _frames(120, seed=5, size=4)
    sr = SlidingEsrrf(
        3,
        2,
        magnification=M,
        strategy=strategy,
        frame_map=_cheap_map,
        macro_pixel_correction=False,
    )
    pos = 0  # index into frames of the next frame; frames_seen counts since reset
    offset = 0  # frames index of frame 0 of the current stream (after a reset)
    last_end = None
    for op, arg in ops:
        if op == "push":
            results = sr.push_many(frames[pos : pos + arg])
            for k, r in enumerate(results):
                assert r.n_frames == sr.window == r.last_frame - r.first_frame + 1
                if last_end is not None:
                    assert r.last_frame > last_end
                if k > 0:  # no change in between: exactly one stride apart
                    assert r.last_frame - results[k - 1].last_frame == sr.stride
                last_end = r.last_frame
                block = frames[offset + r.first_frame : offset + r.last_frame + 1]
                maps = [_cheap_map(f, sr.params) for f in block]
                acc = TemporalAccumulator(sr.temporal, maps[0].shape)
                for x in maps:
                    acc.add(x)
                assert r.image.shape == maps[0].shape
                assert _rel(r.image, acc.result()) <= TOL
            pos += arg
        elif op == "reset":
            sr.reset()
            offset, last_end = pos, None
        else:
            sr.set_params(recompute=recompute, **{op: arg})
        # the schedule never stalls
        assert sr.frames_seen <= sr.next_emission
        assert sr.next_emission <= sr.frames_seen + sr.window + sr.stride
    assert sr.frames_seen == pos - offset


@pytest.mark.parametrize(
    "kw",
    [
        {"geometry": "corrected"},
        {"intensity_weighting": False, "radius": 2.0},
        {"sensitivity": 2.0, "magnification": 3},
    ],
    ids=["corrected", "rgc-only-r2", "s2-m3"],
)
def test_map_settings_pass_through_to_batch(kw: dict) -> None:
    """The real esrrf_frame path (no cache) with non-default settings equals esrrf()."""
    kw = {"magnification": M, **kw}
    frames = FRAMES[:9]
    sr = SlidingEsrrf(4, 5, temporal="var", **kw)
    results = sr.push_many(frames)
    assert [(r.first_frame, r.last_frame) for r in results] == [(0, 3), (5, 8)]
    for r in results:
        batch = esrrf(frames[r.first_frame : r.last_frame + 1], temporal="var", **kw)
        assert r.image.shape == batch.shape
        assert _rel(r.image, batch) <= TOL


def test_realistic_size_uses_parallel_kernels_and_equals_batch() -> None:
    """64x64 at M=5: 320x320 maps, above PARALLEL_MIN_PIXELS (multi-threaded sums)."""
    from livesr.kernels._window import PARALLEL_MIN_PIXELS

    assert 320 * 320 >= PARALLEL_MIN_PIXELS
    frames = _frames(8, seed=12, size=64)
    images = {}
    for strategy in ("maps", "raw"):
        sr = SlidingEsrrf(4, 2, magnification=5, temporal="tac2", strategy=strategy)
        results = sr.push_many(frames)
        assert sr.sums_backend == "numba" and sr._moments._serial == 0
        assert [r.last_frame for r in results] == [3, 5, 7]
        images[strategy] = results
    for a, b in zip(images["maps"], images["raw"], strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    last = images["maps"][-1]
    batch = esrrf(frames[4:8], magnification=5, temporal="tac2")
    assert _rel(last.image, batch) <= TOL


def test_esrrf_movie_equals_batch_per_window() -> None:
    from livesr.kernels.sliding import esrrf_movie

    stack = FRAMES[:23].astype(np.uint16)
    shifts = np.random.default_rng(8).uniform(-0.5, 0.5, size=(23, 2))
    images, frames = esrrf_movie(
        stack, 6, 4, shifts=shifts, magnification=M, temporal="tac2", frame_map=_MAP
    )
    assert images.shape == (5, 16, 16) and images.dtype == np.float32
    np.testing.assert_array_equal(frames, [[0, 5], [4, 9], [8, 13], [12, 17], [16, 21]])
    for img, (a, b) in zip(images, frames, strict=True):
        maps = [
            esrrf_frame(f, PARAMS, shift=tuple(s))
            for f, s in zip(stack[a : b + 1], shifts[a : b + 1], strict=True)
        ]
        assert _rel(img, _reference(maps, "tac2", True)) <= TOL
    # no shift: the batch function itself
    images, frames = esrrf_movie(stack, 6, 4, magnification=M)
    for img, (a, b) in zip(images, frames, strict=True):
        assert _rel(img, esrrf(stack[a : b + 1], magnification=M)) <= TOL
    empty, none = esrrf_movie(stack[:5], 6, 1, magnification=M)
    assert empty.shape == (0, 16, 16) and none.shape == (0, 2)
    with pytest.raises(ValueError, match="3-D"):
        esrrf_movie(stack[0], 2, 1, magnification=M)
    with pytest.raises(ValueError, match=r"shifts must have shape \(23, 2\)"):
        esrrf_movie(stack, 6, 4, shifts=np.zeros((2, 2)), magnification=M)


def test_warm_up_compiles_before_the_first_frame() -> None:
    from livesr.kernels._window import numba_kernels

    sr = SlidingEsrrf(3, 1, magnification=M, frame_map=_MAP)
    sr.warm_up()
    kernels = numba_kernels()
    assert kernels is not None and all(len(k.signatures) >= 1 for k in kernels)
    SlidingEsrrf(3, 1, magnification=M, sums_backend="numpy").warm_up()  # no-op


class _NoisyMap:
    """A non-deterministic map: every call scales the map by 1 + 1e-3 * N(0, 1).

    Models a dispatcher switching between implementations that differ slightly: under
    the raw strategy the map removed with a frame is not the one added with it.
    """

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, frame, params, *, shift=(0.0, 0.0), out=None):
        x = _cheap_map(frame, params)
        x *= np.float32(1.0 + 1e-3 * self.rng.standard_normal())
        if out is None:
            return x
        out[...] = x
        return out


@pytest.mark.parametrize("mode", ["avg", "var"])
def test_shadow_sums_bound_the_residue_of_a_non_deterministic_map(mode: str) -> None:
    frames = _frames(40, seed=3, size=4)
    seq = np.random.default_rng(1).integers(0, 40, 3000)
    errors = {}
    for shadow in (True, False):
        sr = SlidingEsrrf(
            10,
            3,
            magnification=M,
            strategy="raw",
            temporal=mode,
            shadow_sums=shadow,
            frame_map=_NoisyMap(),
            macro_pixel_correction=False,
        )
        last = None
        for k in seq:
            last = sr.push(frames[k]) or last
        assert sr.shadow_swaps == (300 if shadow else 0)  # one per `window` frames
        ideal = [
            _cheap_map(f, PARAMS)
            for f in frames[seq[last.first_frame : last.last_frame + 1]]
        ]
        acc = TemporalAccumulator(mode, ideal[0].shape)
        for x in ideal:
            acc.add(x)
        errors[shadow] = _rel(last.image, acc.result())
    # with the shadow sums the error is that of the last window's own maps (~1e-3);
    # without, residues of 3000 removals pile up
    assert errors[True] < 3e-3
    assert errors[False] > 5 * errors[True]
