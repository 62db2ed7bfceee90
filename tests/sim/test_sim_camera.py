"""sCMOS noise model: flat-field mean and variance, Poisson sampler, quantisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from livesr.sim import CameraConfig, Microscope, SampleConfig, SimConfig
from livesr.sim._camera import background_adu_sampler, poisson_sampler, to_adu

EMPTY = {"n_filaments": 0, "n_rings": 0, "n_clusters": 0}


def _predicted(cam: CameraConfig, photons: float) -> tuple[float, float]:
    mean = cam.offset + cam.gain * cam.qe * photons
    var = cam.gain**2 * (cam.qe * photons + cam.read_noise_e**2) + 1.0 / 12.0
    return mean, var


@pytest.mark.parametrize(
    ("photons", "gain", "read_noise", "qe"),
    [(20.0, 2.0, 1.5, 0.8), (3.0, 1.0, 2.0, 0.9), (150.0, 0.47, 1.1, 0.72)],
)
def test_flat_field_mean_and_variance_match_the_noise_model(
    photons, gain, read_noise, qe
):
    cam = CameraConfig(
        shape=(64, 64), gain=gain, read_noise_e=read_noise, qe=qe, offset=100.0
    )
    sample = SampleConfig(**EMPTY, background_photons=photons)
    stack, _ = Microscope(SimConfig(sample=sample, camera=cam, seed=11)).acquire(100)
    f = stack.astype(np.float64)
    mean, var = _predicted(cam, photons)
    pix_mean = f.mean(axis=0)  # per pixel, over frames
    pix_var = f.var(axis=0, ddof=1)
    assert pix_mean.mean() == pytest.approx(mean, rel=0.02)
    assert pix_var.mean() == pytest.approx(var, rel=0.02)
    # per-pixel variance is unbiased and spread as a chi-square with 99 dof
    assert np.median(pix_var) == pytest.approx(var, rel=0.05)


def test_signal_path_has_poisson_statistics():
    # emitter light goes through Generator.poisson on the lit pixels
    cam = CameraConfig(shape=(64, 64), gain=1.5, read_noise_e=1.0, qe=0.85)
    signal = np.full((64, 64), 37.0)
    rng = np.random.default_rng(1)
    table = background_adu_sampler(cam.qe * 5.0, cam)
    out = np.empty((64, 64), np.uint16)
    frames = []
    for _ in range(60):
        to_adu(signal.copy(), 5.0, cam, rng, table, out)
        frames.append(out.astype(np.float64))
    f = np.stack(frames)
    mean, var = _predicted(cam, 42.0)
    assert f.mean() == pytest.approx(mean, rel=0.02)
    assert f.var(axis=0, ddof=1).mean() == pytest.approx(var, rel=0.02)


@pytest.mark.parametrize("lam", [0.0, 0.3, 4.0, 16.0, 250.0])
def test_poisson_table_matches_the_poisson_distribution(lam):
    n = 200_000
    k = poisson_sampler(lam).sample(np.random.default_rng(2), n)
    if lam == 0:
        assert not k.any()
        return
    assert k.mean() == pytest.approx(lam, rel=4 * np.sqrt(lam / n) / lam + 1e-3)
    assert k.var() == pytest.approx(lam, rel=0.02)
    # chi-square goodness of fit over the bulk of the distribution
    lo, hi = stats.poisson.ppf([0.001, 0.999], lam).astype(int)
    edges = np.arange(lo, hi + 2)
    obs = np.histogram(k, bins=edges - 0.5)[0]
    expct = n * stats.poisson.pmf(edges[:-1], lam)
    keep = expct > 20
    chi2 = (((obs - expct) ** 2) / expct)[keep].sum()
    assert chi2 < stats.chi2.ppf(0.999, keep.sum() - 1)


@pytest.mark.parametrize(
    ("lam", "gain", "read_noise", "offset"),
    [
        (16.0, 2.0, 1.5, 100.0),
        (0.4, 0.47, 1.1, 100.0),
        (5.0, 3.0, 0.0, 100.0),
        (30.0, 2.0, 1.0, 3.0),
    ],
)
def test_background_table_is_the_direct_model_distribution(
    lam, gain, read_noise, offset
):
    """The tabulated ADU law of a background pixel equals direct sampling of
    rint(offset + gain * (Poisson + read noise)) clipped (chi-square, 200k draws)."""
    cam = CameraConfig(gain=gain, read_noise_e=read_noise, offset=offset)
    table = background_adu_sampler(lam, cam)
    assert table is not None
    rng = np.random.default_rng(5)
    n = 200_000
    e = rng.poisson(lam, n) + read_noise * rng.standard_normal(n)
    direct = np.clip(np.rint(offset + gain * e), 0, 65535).astype(np.int64)
    assert table.pmf @ table.values == pytest.approx(direct.mean(), rel=2e-3)
    expct = n * table.pmf
    obs = np.array([(direct == v).sum() for v in table.values])
    keep = expct > 20
    assert obs[~keep].sum() < 200 + 5 * expct[~keep].sum()
    chi2 = ((obs[keep] - expct[keep]) ** 2 / expct[keep]).sum()
    assert chi2 < stats.chi2.ppf(0.999, keep.sum() - 1)


def test_table_and_direct_paths_agree_on_lit_frames():
    cam = CameraConfig(shape=(64, 64), gain=2.0, read_noise_e=1.5, qe=0.8)
    signal = np.zeros((64, 64))
    signal[:, :32] = 40.0  # half lit
    rng = np.random.default_rng(8)
    table = background_adu_sampler(cam.qe * 10.0, cam)
    out = np.empty((64, 64), np.uint16)
    frames = {"table": [], "direct": []}
    for _ in range(50):
        for name, tab in (("table", table), ("direct", None)):
            to_adu(signal.copy(), 10.0, cam, rng, tab, out)
            frames[name].append(out.astype(np.float64))
    for name, f in frames.items():
        f = np.stack(f)
        for cols, ph in ((slice(0, 32), 50.0), (slice(32, 64), 10.0)):
            mean, var = _predicted(cam, ph)
            assert f[:, :, cols].mean() == pytest.approx(mean, rel=0.02), name
            assert f[:, :, cols].var(axis=0, ddof=1).mean() == pytest.approx(
                var, rel=0.03
            ), name


def test_noise_free_frame_is_the_quantised_expected_value():
    cam = CameraConfig(shape=(16, 16), noise=False, gain=2.0, qe=0.5, offset=100.0)
    sample = SampleConfig(**EMPTY, background_photons=7.3)
    frame, _ = Microscope(SimConfig(sample=sample, camera=cam)).next_frame()
    assert (frame == np.rint(100.0 + 2.0 * 0.5 * 7.3)).all()


def test_saturation_clips_to_uint16_range():
    cam = CameraConfig(shape=(8, 8), gain=100.0, qe=1.0)
    sample = SampleConfig(**EMPTY, background_photons=1000.0)
    frame, _ = Microscope(SimConfig(sample=sample, camera=cam)).next_frame()
    assert frame.dtype == np.uint16 and (frame == 65535).all()


def test_exposure_scales_photons():
    cam = CameraConfig(
        shape=(8, 8), noise=False, gain=1.0, qe=1.0, offset=0.0, exposure_ms=10.0
    )
    sample = SampleConfig(**EMPTY, background_photons=100.0)
    scope = Microscope(SimConfig(sample=sample, camera=cam))
    assert (scope.next_frame()[0] == 100).all()
    scope.set_exposure_ms(25.0)
    assert scope.exposure_ms == 25.0
    frame, truth = scope.next_frame()
    assert (frame == 250).all()
    _, t2 = scope.next_frame()
    assert t2.time_s - truth.time_s == pytest.approx(
        0.025
    )  # interval grows to the exposure
    with pytest.raises(ValueError, match="exposure_ms"):
        scope.set_exposure_ms(0.0)


def test_stamp_index_writes_low_and_high_words():
    cam = CameraConfig(shape=(8, 8), stamp_index=True)
    scope = Microscope(SimConfig(sample=SampleConfig(**EMPTY), camera=cam))
    for i in range(3):
        frame, t = scope.next_frame()
        assert (int(frame[0, 0]), int(frame[0, 1])) == (i, 0) and t.index == i
    # high word: jump the counter (private state; publicly it takes 65536 frames)
    scope._index = 0x12345
    frame, t = scope.next_frame()
    assert int(frame[0, 0]) | (int(frame[0, 1]) << 16) == 0x12345 == t.index
