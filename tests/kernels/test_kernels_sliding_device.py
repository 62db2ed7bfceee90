"""GPU-resident sliding window (CUDA) against the host SlidingEsrrf.

Skips where CuPy has no CUDA device (CI); fails instead with
``LIVESR_REQUIRE_BACKENDS=cupy``.  Run on the GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.engine import probe
from livesr.engine.testing import skip_backend

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cupy():
    availability = probe("cupy")
    if not availability.ok:
        skip_backend("cupy", availability.reason)
    import cupy

    return cupy


@pytest.fixture(scope="module")
def stack():
    from livesr.sim import CameraConfig, DriftConfig, Microscope, SimConfig

    cfg = SimConfig(
        camera=CameraConfig(shape=(48, 40)),
        drift=DriftConfig(velocity_um_per_s=(0.3, -0.2)),
        seed=5,
    )
    frames, truths = Microscope(cfg).acquire(130)
    shifts = np.array([t.displacement_px for t in truths])
    return frames, shifts


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _host(window, stride, temporal, **kw):
    from livesr.kernels import SlidingEsrrf
    from livesr.kernels.esrrf_map import kernel

    def cupy_map(frame, params, *, shift=(0.0, 0.0), out=None):
        img = kernel.using("cupy")(
            np.ascontiguousarray(frame, np.float32),
            params.magnification,
            params.radius,
            params.sensitivity,
            params.intensity_weighting,
            shift=tuple(shift),
        )
        if out is None:
            return img
        out[...] = img
        return out

    return SlidingEsrrf(window, stride, temporal=temporal, frame_map=cupy_map, **kw)


def _cupy_map(host, dev, params, shift, deadline_s):
    """The CuPy esrrf_map on the device frame, never another implementation."""
    from livesr.kernels.esrrf_map._cupy import esrrf_map_cupy

    return esrrf_map_cupy(
        dev,
        params.magnification,
        params.radius,
        params.sensitivity,
        params.intensity_weighting,
        shift=tuple(shift),
    )


@pytest.mark.parametrize("temporal", ["avg", "var", "tac2"])
@pytest.mark.parametrize(("window", "stride"), [(2, 1), (10, 7), (10, 10), (25, 30)])
def test_device_window_equals_host_window(cupy, stack, window, stride, temporal):
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, shifts = stack
    kw = {"magnification": 3, "radius": 1.5}
    dev = DeviceSlidingEsrrf(
        window, stride, temporal=temporal, frame_map=_cupy_map, **kw
    )
    host = _host(window, stride, temporal, **kw)
    got = dev.push_many(frames, shifts)
    want = host.push_many(frames, shifts)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert (g.first_frame, g.last_frame, g.n_frames) == (
            w.first_frame,
            w.last_frame,
            w.n_frames,
        )
        assert _max_rel(g.image, w.image) <= 1e-5
    assert dev.maps_uploaded == 0  # every map stayed on the device


def test_device_window_does_not_drift_over_many_frames(cupy, stack):
    from livesr.kernels import esrrf
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, _ = stack
    rng = np.random.default_rng(1)
    n = 3000  # 300 windows of additions and removals
    noisy = frames[np.arange(n) % len(frames)].astype(np.float32)
    noisy += rng.poisson(5.0, noisy.shape).astype(np.float32)
    dev = DeviceSlidingEsrrf(
        10, 10, magnification=2, temporal="var", frame_map=_cupy_map
    )
    results = dev.push_many(noisy)
    assert len(results) == n // 10
    last = results[-1]
    assert (last.first_frame, last.last_frame) == (n - 10, n - 1)
    batch = esrrf(noisy[n - 10 :], magnification=2, temporal="var")
    assert _max_rel(last.image, batch) <= 1e-5


@pytest.mark.parametrize("recompute", [True, False])
def test_device_window_set_params_matches_host(cupy, stack, recompute):
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, shifts = stack
    dev = DeviceSlidingEsrrf(10, 5, magnification=2, frame_map=_cupy_map)
    host = _host(10, 5, "avg", magnification=2)
    got, want = [], []
    for k in range(len(frames)):
        if k == 37:
            for s in (dev, host):
                s.set_params(recompute=recompute, radius=2.0, window=12, stride=4)
        if k == 80:
            for s in (dev, host):
                s.set_params(recompute=recompute, temporal="tac2")
        got.append(dev.push(frames[k], shift=shifts[k]))
        want.append(host.push(frames[k], shift=shifts[k]))
        assert dev.next_emission == host.next_emission
    assert [g is None for g in got] == [w is None for w in want]
    pairs = [(g, w) for g, w in zip(got, want, strict=True) if g is not None]
    assert len(pairs) > 15
    for g, w in pairs:
        assert (g.first_frame, g.last_frame) == (w.first_frame, w.last_frame)
        assert _max_rel(g.image, w.image) <= 1e-5


def test_device_window_through_the_engine_survives_cpu_maps(cupy, stack):
    # The default map is the engine's: while it explores (or the delay agent flees
    # a busy GPU) some maps come from CPU implementations and are uploaded; the
    # images must not depend on which implementation ran.
    from livesr.kernels.sliding import DeviceSlidingEsrrf

    frames, shifts = stack
    dev = DeviceSlidingEsrrf(10, 7, magnification=3, temporal="tac2")
    host = _host(10, 7, "tac2", magnification=3)
    got = dev.push_many(frames, shifts)
    want = host.push_many(frames, shifts)
    assert len(got) == len(want) > 10
    for g, w in zip(got, want, strict=True):
        assert _max_rel(g.image, w.image) <= 1e-5


@pytest.mark.parametrize("temporal", ["avg", "var"])
def test_device_quality_equals_the_host_metric(cupy, stack, temporal):
    """The GPU window computes each image's quality metric on the device; it equals
    the host metric of the downloaded image (float64 vs float32 BLAS sums)."""
    from livesr.kernels.sliding import DeviceSlidingEsrrf
    from livesr.stream._quality import quality_metric

    frames, shifts = stack
    dev = DeviceSlidingEsrrf(
        20, 10, frame_shape=frames.shape[1:], magnification=3, temporal=temporal
    )
    results = dev.push_many(frames[:60], shifts[:60])
    assert len(results) == 5
    for r in results:
        assert r.quality is not None
        assert r.quality == pytest.approx(quality_metric(r.image), rel=1e-4)
