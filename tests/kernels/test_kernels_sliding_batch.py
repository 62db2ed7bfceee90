"""Batched sliding windows: ``push_many`` equals frame-by-frame ``push``.

Host :class:`SlidingEsrrf` with a ``batch_map`` (the engine's ``esrrf_map_batch``
pinned to one implementation, the per-frame map the same implementation of
``esrrf_map``) and the GPU-resident :class:`DeviceSlidingEsrrf` (skips without a
CUDA device, fails with ``LIVESR_REQUIRE_BACKENDS=cupy``), over window / stride /
temporal mode, batch sizes 1 .. 3 x stride (windows completing mid-batch),
``set_params`` between batches and ``reset``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from livesr.engine import probe
from livesr.engine.testing import skip_backend

TOL = 1e-6  # of the image maximum
CASES = [(2, 1), (5, 3), (4, 7), (6, 6)]  # (window, stride); stride > window skips
MODES = ["avg", "var", "tac2"]


def _impl_ids() -> list[str]:
    from livesr.kernels.esrrf_map_batch import kernel

    return sorted(i.id for i in kernel.implementations(include_unavailable=True))


def _usable(impl: str) -> None:
    """Skip (with the reason) an implementation that cannot run here."""
    from livesr.kernels.esrrf_map_batch import kernel

    info = {i.id: i for i in kernel.implementations(include_unavailable=True)}[impl]
    backend = impl.split("-", 1)[0]
    if not info.available:
        skip_backend(backend, info.reason)
    case = kernel.cases()[0]
    try:
        kernel.using(impl)(*case.args, **case.kwargs)
    except Exception as exc:  # e.g. an OpenCL platform that cannot build
        skip_backend(backend, f"{impl} does not run here: {type(exc).__name__}: {exc}")


def _maps(impl: str):
    """(per-frame map, batch map) of one implementation, for SlidingEsrrf."""
    from livesr.kernels.esrrf_map import kernel as one
    from livesr.kernels.esrrf_map_batch import kernel as many

    run_one, run_many = one.using(impl), many.using(impl)

    def frame_map(frame, params, *, shift=(0.0, 0.0), out=None):
        img = np.asarray(
            _host(run_one(frame, params.magnification, params.radius,
                          params.sensitivity, params.intensity_weighting,
                          shift=tuple(shift)))
        )
        if out is None:
            return img
        out[...] = img
        return out

    def batch_map(frames, params, shifts, deadline_s):
        return np.asarray(
            _host(run_many(frames, params.magnification, params.radius,
                           params.sensitivity, params.intensity_weighting,
                           shifts=shifts))
        )

    return frame_map, batch_map


def _host(x):
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x


@pytest.fixture(scope="module")
def movie():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:12, 0:14]
    frames = np.empty((40, 12, 14), np.uint16)
    for t in range(40):
        img = np.zeros((12, 14))
        for cy, cx in ((4 + 0.05 * t, 5.0), (8.0, 9 - 0.03 * t)):
            img += 400 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
        frames[t] = rng.poisson(img + 20)
    shifts = np.cumsum(rng.normal(0, 0.05, (40, 2)), axis=0)
    return frames, shifts


def _chunks(n: int, size: int):
    return [(c, min(n, c + size)) for c in range(0, n, size)]


def _assert_same(got, want):
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert (g.first_frame, g.last_frame, g.n_frames) == (
            w.first_frame,
            w.last_frame,
            w.n_frames,
        )
        scale = max(float(np.abs(w.image).max()), 1e-30)
        assert float(np.abs(g.image - w.image).max()) <= TOL * scale


@pytest.mark.parametrize("impl", _impl_ids())
def test_host_push_many_equals_push(impl, movie):
    from livesr.kernels import SlidingEsrrf

    _usable(impl)
    frames, shifts = movie
    frame_map, batch_map = _maps(impl)
    kw = {"magnification": 2, "radius": 1.5}
    for (window, stride), temporal in itertools.product(CASES, MODES):
        for size in sorted({1, 2, stride, stride + 1, 3 * stride}):
            one = SlidingEsrrf(window, stride, temporal=temporal, frame_map=frame_map,
                               **kw)
            many = SlidingEsrrf(window, stride, temporal=temporal, frame_map=frame_map,
                                batch_map=batch_map, **kw)
            want = [one.push(frames[i], shift=shifts[i]) for i in range(len(frames))]
            got = []
            for a, b in _chunks(len(frames), size):
                got += many.push_many(frames[a:b], shifts[a:b])
            _assert_same(got, [w for w in want if w is not None])
            assert many.frames_seen == one.frames_seen == len(frames)


@pytest.mark.parametrize("strategy", ["maps", "raw"])
def test_host_push_many_set_params_and_reset_between_batches(movie, strategy):
    from livesr.kernels import SlidingEsrrf

    _usable("numpy")
    frames, shifts = movie
    frame_map, batch_map = _maps("numpy")
    one = SlidingEsrrf(6, 3, magnification=2, frame_map=frame_map, strategy=strategy)
    many = SlidingEsrrf(6, 3, magnification=2, frame_map=frame_map,
                        batch_map=batch_map, strategy=strategy)
    want, got = [], []
    changes = {10: {"radius": 2.0, "window": 5}, 20: {"temporal": "tac2", "stride": 4}}
    for a, b in _chunks(len(frames), 5):
        if a in changes:
            for s in (one, many):
                s.set_params(recompute=True, **changes[a])
        if a == 30:
            one.reset()
            many.reset()
        want += [one.push(frames[i], shift=shifts[i]) for i in range(a, b)]
        got += many.push_many(frames[a:b], shifts[a:b])
    _assert_same(got, [w for w in want if w is not None])


def test_host_push_many_rejects_bad_batches(movie):
    from livesr.kernels import SlidingEsrrf

    frames, shifts = movie
    _, batch_map = _maps("numpy")
    sl = SlidingEsrrf(3, 1, magnification=2, batch_map=batch_map)
    with pytest.raises(ValueError, match="shifts must have shape"):
        sl.push_many(frames[:4], shifts[:3])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        sl.push_many(frames[0], shifts[:1])


# ----------------------------------------------------------------- device window
@pytest.fixture(scope="module")
def cupy():
    availability = probe("cupy")
    if not availability.ok:
        skip_backend("cupy", availability.reason)
    import cupy

    return cupy


def _cupy_batch(host, dev, params, shifts, deadline_s, out=None):
    """The CuPy batch map on the device frames, never another implementation."""
    from livesr.kernels.esrrf_map_batch._cupy import esrrf_map_batch_cupy

    return esrrf_map_batch_cupy(dev, params.magnification, params.radius,
                                params.sensitivity, params.intensity_weighting,
                                shifts=shifts, out=out)


@pytest.mark.gpu
def test_device_push_many_equals_push(cupy, movie):
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, shifts = movie
    kw = {"magnification": 3, "radius": 1.5, "batch_map": _cupy_batch}
    for (window, stride), temporal in itertools.product(CASES, MODES):
        for size in sorted({1, 2, stride, stride + 1, 3 * stride}):
            one = DeviceSlidingEsrrf(window, stride, temporal=temporal, **kw)
            many = DeviceSlidingEsrrf(window, stride, temporal=temporal, max_batch=8,
                                      **kw)
            want = [one.push(frames[i], shift=shifts[i]) for i in range(len(frames))]
            got = []
            for a, b in _chunks(len(frames), size):
                got += many.push_many(frames[a:b], shifts[a:b])
            _assert_same(got, [w for w in want if w is not None])


@pytest.mark.gpu
def test_device_push_many_equals_host_window(cupy, movie):
    from livesr.kernels import SlidingEsrrf
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, shifts = movie
    frame_map, batch_map = _maps("cupy")
    for (window, stride), temporal in itertools.product(CASES, MODES):
        dev = DeviceSlidingEsrrf(window, stride, temporal=temporal, magnification=3,
                                 batch_map=_cupy_batch, max_batch=8, result_buffers=3)
        host = SlidingEsrrf(window, stride, temporal=temporal, magnification=3,
                            frame_map=frame_map)
        got = []
        for a, b in _chunks(len(frames), 7):
            got += [_copy(r) for r in dev.push_many(frames[a:b], shifts[a:b])]
        want = host.push_many(frames, shifts)
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            assert (g.first_frame, g.last_frame) == (w.first_frame, w.last_frame)
            assert np.abs(g.image - w.image).max() <= 1e-5 * np.abs(w.image).max()
        assert dev.maps_uploaded == 0


def _copy(r):
    from dataclasses import replace

    return replace(r, image=np.array(r.image))  # pinned buffers are reused


@pytest.mark.gpu
def test_device_push_many_set_params_reset_and_warm_up(cupy, movie):
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, shifts = movie
    kw = {"magnification": 2, "batch_map": _cupy_batch}
    one = DeviceSlidingEsrrf(6, 3, **kw)
    many = DeviceSlidingEsrrf(6, 3, max_batch=4, **kw)
    many.warm_up(frames.shape[1:], 4)
    assert many.frames_seen == 0 and many.windows_emitted == 0
    want, got = [], []
    changes = {10: {"radius": 2.0, "window": 5}, 20: {"temporal": "tac2", "stride": 4}}
    for a, b in _chunks(len(frames), 5):
        if a in changes:
            for s in (one, many):
                s.set_params(recompute=True, **changes[a])
        if a == 30:
            one.reset()
            many.reset()
        want += [one.push(frames[i], shift=shifts[i]) for i in range(a, b)]
        got += many.push_many(frames[a:b], shifts[a:b])
    _assert_same(got, [w for w in want if w is not None])


@pytest.mark.gpu
def test_device_window_through_the_engine_batch(cupy, movie):
    """The default batch map is the engine's esrrf_map_batch (CuPy gets the device
    frames); images equal the host window within 1e-5 whichever implementation ran."""
    from livesr.kernels import SlidingEsrrf
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, shifts = movie
    frame_map, _ = _maps("numpy")
    dev = DeviceSlidingEsrrf(8, 4, magnification=3, temporal="tac2")
    host = SlidingEsrrf(8, 4, magnification=3, temporal="tac2", frame_map=frame_map)
    got = []
    for a, b in _chunks(len(frames), 6):
        got += dev.push_many(frames[a:b], shifts[a:b], deadline_s=0.05)
    want = host.push_many(frames, shifts)
    assert len(got) == len(want) > 5
    for g, w in zip(got, want, strict=True):
        assert np.abs(g.image - w.image).max() <= 1e-5 * np.abs(w.image).max()
