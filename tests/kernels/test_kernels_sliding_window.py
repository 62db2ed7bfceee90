"""Unit tests of livesr.kernels._window: compensated sums and sliding window moments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesr.kernels._window import CompensatedSum, WindowMoments
from livesr.kernels.temporal import temporal_two_pass


def _two_pass64(maps: np.ndarray, mode: str) -> np.ndarray:
    """Exact-ish float64 two-pass statistic (the definition)."""
    x = np.asarray(maps, dtype=np.float64)
    m = x.mean(axis=0)
    if mode == "avg":
        return m
    if mode == "var":
        return ((x - m) ** 2).mean(axis=0)
    return ((x[:-1] - m) * (x[1:] - m)).mean(axis=0)


def test_compensated_sum_keeps_what_plain_float64_loses() -> None:
    big = np.array([1e16, -1e16, 3.0], dtype=np.float64)
    small = np.array([1.0, 1.0, 1e-17], dtype=np.float64)
    comp = CompensatedSum((3,))
    plain = np.zeros(3)
    for term in (big, small, -big):
        comp.add(term)
        plain += term
    # plain float64 loses the 1 next to 1e16; the compensated sum keeps it exactly
    assert plain[0] == 0.0 and plain[1] == 0.0
    np.testing.assert_array_equal(comp.value(), [1.0, 1.0, 1e-17])


def test_compensated_sum_add_then_subtract_leaves_exact_zero() -> None:
    rng = np.random.default_rng(1)
    terms = [
        (rng.standard_normal(64) * 10.0 ** rng.integers(-8, 9, 64)).astype(np.float32)
        for _ in range(300)
    ]
    comp = CompensatedSum((64,))
    for t in terms:
        comp.add(t)
    for t in terms:
        comp.subtract(t)
    np.testing.assert_array_equal(comp.value(), np.zeros(64))
    comp.add(np.full(64, 2.5, dtype=np.float32))
    np.testing.assert_array_equal(comp.value(), np.full(64, 2.5))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("mode", ["avg", "var", "tac2"])
def test_window_moments_sliding_equals_two_pass(mode: str, backend: str) -> None:
    rng = np.random.default_rng(2)
    maps = (
        rng.gamma(2.0, 50.0, size=(60, 5, 7)) * rng.uniform(0.1, 10, (60, 1, 1))
    ).astype(np.float32)
    window = 9
    mom = WindowMoments.for_mode((5, 7), mode, backend=backend)
    assert mom.backend == backend
    for t in range(len(maps)):
        if mom.n == window:
            if t % 2:
                mom.pop_first(maps[t - window], maps[t - window + 1])
                mom.append(maps[t], maps[t - 1])
            else:
                mom.slide(maps[t - window], maps[t - window + 1], maps[t], maps[t - 1])
        else:
            mom.append(maps[t], maps[t - 1] if t > 0 else None)
        if t >= window - 1:
            block = maps[t - window + 1 : t + 1]
            got = mom.combine(mode, first=block[0], last=block[-1])
            want = _two_pass64(block, mode)
            scale = np.abs(want).max()
            assert np.abs(got - want).max() <= 2e-7 * scale
            # and NanoPyx's float32 two-pass to its own rounding
            assert np.abs(got - temporal_two_pass(block, mode)).max() <= 1e-5 * scale


def test_window_moments_identical_images_give_exact_zero_variance() -> None:
    img = np.full((4, 4), 12345.678, dtype=np.float32)
    for mode in ("var", "tac2"):
        mom = WindowMoments.for_mode((4, 4), mode)
        for _ in range(5):
            mom.append(img, img)
        mom.pop_first(img, img)
        np.testing.assert_array_equal(mom.combine(mode, first=img, last=img), 0.0)


def test_window_moments_errors_and_drop() -> None:
    mom = WindowMoments.for_mode((2, 2), "avg")
    with pytest.raises(RuntimeError, match="empty window"):
        mom.combine("avg")
    with pytest.raises(RuntimeError, match="empty window"):
        mom.pop_first(np.zeros((2, 2), np.float32), None)
    with pytest.raises(ValueError, match="shape"):
        mom.append(np.zeros((3, 2), np.float32), None)
    mom.append(np.ones((2, 2), np.float32), None)
    with pytest.raises(ValueError, match="does not keep"):
        mom.combine("var")
    with pytest.raises(ValueError, match="one of"):
        mom.combine("median")
    tac = WindowMoments.for_mode((2, 2), "tac2")
    a, b = np.ones((2, 2), np.float32), np.full((2, 2), 3.0, np.float32)
    tac.append(a, None)
    with pytest.raises(ValueError, match="at least 2"):
        tac.combine("tac2", first=a, last=a)
    tac.append(b, a)
    # dropping TAC2's lag sum keeps AVG exact (centred sums plus the reference)
    tac.drop_unneeded("avg")
    assert not tac.supports("tac2")
    np.testing.assert_array_equal(tac.combine("avg"), 2.0)
    # the estimate matches what is allocated once every code path has run
    img = np.arange(4, dtype=np.float32).reshape(2, 2)
    for backend in ("numpy", "numba"):
        for mode in ("avg", "var", "tac2"):
            mom = WindowMoments.for_mode((2, 2), mode, backend=backend)
            mom.append(img, None)
            mom.append(img + 1, img)
            mom.slide(img, img + 1, img + 2, img + 1)
            mom.combine(mode, img + 1, img + 2)
            need = WindowMoments.bytes_needed((2, 2), mode, backend=backend)
            assert mom.nbytes == need
    assert WindowMoments.bytes_needed((10, 10), "tac2", "numba") == 3600
    assert WindowMoments.bytes_needed((10, 10), "tac2", "numpy") == 8400


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    window=st.integers(2, 6),
    n=st.integers(2, 30),
    mode=st.sampled_from(["avg", "var", "tac2"]),
    log_scale=st.integers(-6, 6),
)
def test_window_moments_property(
    seed: int, window: int, n: int, mode: str, log_scale: int
) -> None:
    rng = np.random.default_rng(seed)
    scale = 10.0**log_scale
    maps = (rng.standard_normal((n, 3, 3)) * scale + rng.uniform(-1, 1) * scale).astype(
        np.float32
    )
    mom = WindowMoments.for_mode((3, 3), mode)
    for t in range(n):
        if mom.n == window:
            mom.pop_first(maps[t - window], maps[t - window + 1])
        mom.append(maps[t], maps[t - 1] if t > 0 else None)
    block = maps[max(0, n - window) :]
    if mode == "tac2" and len(block) < 2:
        return
    got = mom.combine(mode, first=block[0], last=block[-1])
    want = _two_pass64(block, mode)
    # float64 sums are exact to ~1e-16 of the squared magnitudes; the float32
    # output rounding dominates: 1e-6 of the data scale squared (or scale for avg)
    mag = float(np.abs(maps).max()) ** (1 if mode == "avg" else 2)
    assert np.abs(got - want).max() <= 1e-6 * mag


@pytest.mark.parametrize("mode", ["avg", "var", "tac2"])
def test_window_moments_numba_and_numpy_give_the_same_bits(mode: str) -> None:
    rng = np.random.default_rng(4)
    maps = (
        rng.standard_normal((40, 6, 6)) * 10.0 ** rng.integers(-3, 5, (40, 1, 1))
    ).astype(np.float32)
    window = 7
    moms = {
        b: WindowMoments.for_mode((6, 6), mode, backend=b) for b in ("numpy", "numba")
    }
    for t in range(len(maps)):
        for mom in moms.values():
            if mom.n == window:
                mom.slide(maps[t - window], maps[t - window + 1], maps[t], maps[t - 1])
            else:
                mom.append(maps[t], maps[t - 1] if t > 0 else None)
        if t >= 1:
            block = maps[max(0, t - window + 1) : t + 1]
            a, b = (
                m.combine(mode, first=block[0], last=block[-1]) for m in moms.values()
            )
            np.testing.assert_array_equal(a, b)
    for name in ("s", "q", "p"):
        acc_a, acc_b = getattr(moms["numpy"], name), getattr(moms["numba"], name)
        if acc_a is not None:
            np.testing.assert_array_equal(acc_a.hi, acc_b.hi)
            np.testing.assert_array_equal(acc_a.lo, acc_b.lo)
    # non-float32 input falls back to numpy on the numba object, same result
    mom = WindowMoments.for_mode((6, 6), mode, backend="numba")
    ref = WindowMoments.for_mode((6, 6), mode, backend="numpy")
    for t in range(5):
        mom.append(
            maps[t].astype(np.float64), maps[t - 1].astype(np.float64) if t else None
        )
        ref.append(maps[t], maps[t - 1] if t else None)
    np.testing.assert_array_equal(
        mom.combine(mode, maps[0], maps[4]), ref.combine(mode, maps[0], maps[4])
    )
    with pytest.raises(ValueError, match="backend must be one of"):
        WindowMoments.for_mode((6, 6), mode, backend="cuda")
    if mode == "tac2":
        with pytest.raises(ValueError, match="previous image"):
            mom.append(maps[5], None)


def test_window_moments_parallel_kernels_match_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The multi-threaded kernels (from PARALLEL_MIN_PIXELS on) give the same bits."""
    import livesr.kernels._window as window_mod

    monkeypatch.setattr(window_mod, "PARALLEL_MIN_PIXELS", 1)
    rng = np.random.default_rng(6)
    maps = (rng.gamma(2.0, 30.0, size=(12, 9, 11))).astype(np.float32)
    for mode in ("avg", "var", "tac2"):
        par = WindowMoments.for_mode((9, 11), mode, backend="numba")
        ref = WindowMoments.for_mode((9, 11), mode, backend="numpy")
        assert par._serial == 0 and par.backend == "numba"
        for t in range(len(maps)):
            for mom in (par, ref):
                if mom.n == 4:
                    mom.slide(maps[t - 4], maps[t - 3], maps[t], maps[t - 1])
                else:
                    mom.append(maps[t], maps[t - 1] if t else None)
        block = maps[-4:]
        np.testing.assert_array_equal(
            par.combine(mode, block[0], block[-1]),
            ref.combine(mode, block[0], block[-1]),
        )
