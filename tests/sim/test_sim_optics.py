"""PSF width from NA and wavelength, defocus blur, photon conservation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesr.sim import CameraConfig, Microscope, OpticsConfig, SampleConfig, SimConfig
from livesr.sim._render import render_expected


def _single(point_um, optics=None, shape=(48, 48), photons=1e5) -> Microscope:
    optics = optics if optics is not None else OpticsConfig()
    sample = SampleConfig(
        n_filaments=0,
        n_rings=0,
        n_clusters=0,
        points_um=(point_um,),
        on_rate_hz=1.0,
        off_rate_hz=0.0,
        bleach_rate_hz=0.0,
        photons_per_frame=photons,
        background_photons=0.0,
    )
    cam = CameraConfig(shape=shape, noise=False, offset=0.0, gain=1.0, qe=1.0)
    return Microscope(SimConfig(sample=sample, optics=optics, camera=cam))


def _moment_sigma(img: np.ndarray) -> tuple[float, float]:
    """Per-axis sigma from second moments, minus the pixel box's 1/12 px^2."""
    f = img.astype(np.float64)
    yy, xx = np.mgrid[: f.shape[0], : f.shape[1]]
    s = f.sum()
    cy, cx = (f * yy).sum() / s, (f * xx).sum() / s
    vy = (f * (yy - cy) ** 2).sum() / s - 1 / 12
    vx = (f * (xx - cx) ** 2).sum() / s - 1 / 12
    return float(np.sqrt(vy)), float(np.sqrt(vx))


@pytest.mark.parametrize(
    ("na", "wl", "point"),
    [
        (1.1, 0.68, (2.4, 2.4)),
        (1.3, 0.67, (2.433, 2.371)),
        (1.49, 0.52, (2.45, 2.402)),
        (0.8, 0.6, (2.4, 2.46)),
    ],
)
def test_psf_sigma_matches_na_and_wavelength(na, wl, point):
    optics = OpticsConfig(na=na, wavelength_um=wl)
    img, truth = _single(point, optics).next_frame()
    expected = 0.21 * wl / na / 0.1
    assert truth.sigma_px == pytest.approx(expected)
    sy, sx = _moment_sigma(img)
    assert sy == pytest.approx(expected, rel=0.05)
    assert sx == pytest.approx(expected, rel=0.05)


def test_default_psf_is_about_1p3_px():
    cfg = SimConfig()
    assert cfg.psf_sigma_px == pytest.approx(1.298, abs=0.001)


@pytest.mark.parametrize("z", [0.3, -0.6, 1.2])
def test_defocus_broadens_the_psf_as_configured(z):
    optics = OpticsConfig(defocus_range_um=0.6)
    scope = _single((2.4, 2.4), optics, shape=(64, 64))
    scope.set_z_um(z)
    img, truth = scope.next_frame()
    # the Z drive is the focus: sample at drift_z = 0 is z from the focal plane
    assert truth.focus_offset_um == pytest.approx(-z)
    expected = optics.psf_sigma_um * np.sqrt(1 + (z / 0.6) ** 2) / 0.1
    assert truth.sigma_px == pytest.approx(expected)
    sy, sx = _moment_sigma(img)
    assert sy == pytest.approx(expected, rel=0.05) and sx == pytest.approx(
        expected, rel=0.05
    )


def test_render_conserves_photons_and_is_exact_at_subpixel_positions():
    pos = np.array([[10.0, 10.0], [20.37, 5.81], [-0.4, 12.2]])
    img = render_expected(pos, 1000.0, (32, 32), 1.3)
    # the first two are far from the border: all but the < 5e-4 tail beyond 3.5 sigma
    inside = render_expected(pos[:2], 1000.0, (32, 32), 1.3)
    assert inside.sum() == pytest.approx(2000.0, rel=5e-4)
    # the third sits 0.1 px inside the top edge (y = -0.5): the fraction
    # 1 - Phi(-0.1 / 1.3) of its light is in the image
    from scipy.stats import norm

    assert img.sum() - inside.sum() == pytest.approx(
        1000.0 * norm.sf(-0.1 / 1.3), rel=1e-4
    )
    # exact pixel integral: brute-force 1D integrals along x at the emitter row
    from scipy.special import erf

    x = np.arange(32)
    col = (
        1000.0
        * 0.25
        * (
            erf((x + 0.5 - 5.81) / (np.sqrt(2) * 1.3))
            - erf((x - 0.5 - 5.81) / (np.sqrt(2) * 1.3))
        )
    )
    row = 20
    wy = 0.5 * (
        erf((row + 0.5 - 20.37) / (np.sqrt(2) * 1.3))
        - erf((row - 0.5 - 20.37) / (np.sqrt(2) * 1.3))
    )
    # patch: rint(5.81) +- ceil(3.5 * 1.3) = columns 1..11
    np.testing.assert_allclose(inside[row, 1:12], (2 * col * wy)[1:12], rtol=1e-10)
    assert inside[row, 0] == 0.0 and (inside[row, 12:] == 0.0).all()


def test_bincount_and_sparse_accumulation_agree():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-6, 70, (400, 2))
    ph = rng.uniform(10, 1000, 400)
    a = render_expected(pos, ph, (64, 60), 1.7, method="bincount")
    b = render_expected(pos, ph, (64, 60), 1.7, method="sparse")
    assert a.sum() > 1e4
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="method='fft'"):
        render_expected(pos, ph, (64, 60), 1.7, method="fft")


@settings(max_examples=40, deadline=None)
@given(
    iy=st.integers(15, 32),
    ix=st.integers(15, 32),
    fy=st.floats(-0.45, 0.45),
    fx=st.floats(-0.45, 0.45),
    sigma=st.floats(0.6, 2.5),
    shift=st.tuples(st.integers(-5, 5), st.integers(-5, 5)),
)
def test_render_centroid_and_integer_shift_equivariance(iy, ix, fy, fx, sigma, shift):
    # fractional parts away from 0.5 keep rint (and so the patch window) unambiguous
    y, x = iy + fy, ix + fx
    # patches (<= 9 px half-width) stay inside the 48 x 48 image before and after
    img = render_expected(np.array([[y, x]]), 1.0, (48, 48), sigma)
    yy, xx = np.mgrid[:48, :48]
    # truncation is symmetric about rint(p), so the centroid is off by far less
    # than the tail mass times the patch radius
    assert (img * yy).sum() / img.sum() == pytest.approx(y, abs=2e-3)
    assert (img * xx).sum() / img.sum() == pytest.approx(x, abs=2e-3)
    moved = render_expected(
        np.array([[y + shift[0], x + shift[1]]]), 1.0, (48, 48), sigma
    )
    np.testing.assert_allclose(
        moved, np.roll(img, shift, axis=(0, 1)), rtol=1e-12, atol=1e-15
    )
