"""kernels/frc: Fourier ring correlation of two half-images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from livesr.kernels.frc import (
    FRC_THRESHOLD,
    decorrelation_resolution,
    frc_curve,
    frc_resolution,
)


def _pair(sigma: float, noise: float, seed: int = 0, n: int = 128):
    rng = np.random.default_rng(seed)
    obj = np.zeros((n, n))
    idx = rng.integers(0, n, size=(400, 2))
    obj[idx[:, 0], idx[:, 1]] = 1.0
    img = gaussian_filter(obj, sigma)
    img /= img.max()
    return img + noise * rng.standard_normal(
        img.shape
    ), img + noise * rng.standard_normal(img.shape)


def test_kernels_frc_identical_images_reach_nyquist():
    a, _ = _pair(1.0, 0.01)
    freq, frc = frc_curve(a, a)
    assert freq[0] > 0 and freq[-1] == pytest.approx(0.5)
    assert np.allclose(frc, 1.0)
    assert frc_resolution(a, a, pixel_size=20.0) == pytest.approx(40.0)


def test_kernels_frc_independent_noise_has_no_resolution():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    freq, frc = frc_curve(a, b)
    assert np.abs(frc[4:]).max() < 0.5
    r = frc_resolution(a, b, pixel_size=1.0, smooth=5)
    assert math.isnan(r) or r > 20.0  # nothing near the pixel scale


def test_kernels_frc_resolution_follows_blur():
    res = [
        frc_resolution(*_pair(s, 0.05, seed=2), pixel_size=10.0)
        for s in (1.0, 2.0, 4.0)
    ]
    assert res[0] < res[1] < res[2]
    # the crossing of a Gaussian-blurred object scales with the blur
    assert res[2] / res[1] == pytest.approx(2.0, rel=0.35)


def test_kernels_frc_more_signal_better_resolution():
    noisy = frc_resolution(*_pair(2.0, 0.2, seed=3), pixel_size=1.0)
    clean = frc_resolution(*_pair(2.0, 0.02, seed=3), pixel_size=1.0)
    assert clean < noisy


def test_kernels_frc_validation():
    a = np.zeros((16, 16))
    with pytest.raises(ValueError, match="same shape"):
        frc_curve(a, np.zeros((16, 17)))
    with pytest.raises(ValueError, match="finite"):
        frc_curve(a, np.full((16, 16), np.nan))
    with pytest.raises(ValueError, match="pixel_size"):
        frc_resolution(a, a, pixel_size=0.0)
    with pytest.raises(ValueError, match="threshold"):
        frc_resolution(a, a, threshold=1.5)
    with pytest.raises(ValueError, match="smooth"):
        frc_resolution(a, a, smooth=2)
    assert 0 < FRC_THRESHOLD < 0.15


def test_kernels_frc_decorrelation_single_image():
    res = []
    for s in (1.0, 2.0, 4.0):
        a, b = _pair(s, 0.02, seed=2)
        r = decorrelation_resolution(a, pixel_size=10.0)
        # same scale as the two-image FRC (a different criterion: within 1.5x)
        assert r == pytest.approx(frc_resolution(a, b, pixel_size=10.0), rel=0.5)
        res.append(r)
    assert res[0] < res[1] < res[2]
    rng = np.random.default_rng(0)
    assert math.isnan(decorrelation_resolution(rng.standard_normal((64, 64))))
    with pytest.raises(ValueError, match="side >= 16"):
        decorrelation_resolution(np.zeros((8, 8)))
