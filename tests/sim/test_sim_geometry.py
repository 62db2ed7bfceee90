"""Ground-truth displacement and stage moves vs the shift measured in the frames."""

from __future__ import annotations

import numpy as np
import pytest

from livesr.sim import DriftConfig, Microscope, SampleConfig, SimConfig
from livesr.sim._config import CameraConfig


def _hann(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def measure_shift(
    ref: np.ndarray, img: np.ndarray, up: int = 200
) -> tuple[float, float]:
    """(dy, dx) such that img(y, x) ~ ref(y - dy, x - dx): windowed cross-correlation,
    integer peak, then an upsampled matrix DFT (Guizar-Sicairos 2008) over +-1 px
    and a parabolic fit on the fine grid."""
    win = _hann(ref.shape)
    a = (ref - ref.mean()) * win
    b = (img - img.mean()) * win
    r = np.conj(np.fft.fft2(a)) * np.fft.fft2(b)
    cc = np.fft.ifft2(r).real
    n, m = ref.shape
    py, px = np.unravel_index(np.argmax(cc), cc.shape)
    py = py - n if py > n // 2 else py
    px = px - m if px > m // 2 else px
    offs = np.arange(-up, up + 1) / up  # +-1 px around the integer peak
    fy = np.fft.fftfreq(n)
    fx = np.fft.fftfreq(m)
    ey = np.exp(2j * np.pi * np.outer(py + offs, fy))  # (k, n)
    ex = np.exp(2j * np.pi * np.outer(fx, px + offs))  # (m, k)
    fine = (ey @ r @ ex).real
    iy, ix = np.unravel_index(np.argmax(fine), fine.shape)

    def parab(v: np.ndarray, i: int) -> float:
        if 0 < i < len(v) - 1:
            d = v[i - 1] - 2 * v[i] + v[i + 1]
            return 0.0 if d == 0 else 0.5 * (v[i - 1] - v[i + 1]) / d
        return 0.0

    dy = py + offs[iy] + parab(fine[:, ix], iy) / up
    dx = px + offs[ix] + parab(fine[iy, :], ix) / up
    return float(dy), float(dx)


def measure_shift_two_pass(
    ref: np.ndarray, img: np.ndarray, margin: int = 12
) -> tuple[float, float]:
    """Coarse shift on the full frames, then the sub-pixel rest on the overlapping
    crops (so the fixed window does not bias large shifts)."""
    cy, cx = (int(round(v)) for v in measure_shift(ref, img))
    h, w = ref.shape
    if max(abs(cy), abs(cx)) >= margin:
        raise ValueError("shift too large for the margin")
    a = ref[margin : h - margin, margin : w - margin]
    b = img[margin + cy : h - margin + cy, margin + cx : w - margin + cx]
    ry, rx = measure_shift(a, b)
    return cy + ry, cx + rx


def _bright(**kw) -> SimConfig:
    return SimConfig.static_bright(shape=(128, 128), **kw)


def test_measure_shift_helper_recovers_a_known_fourier_shift():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64))
    ky = np.fft.fftfreq(64)[:, None]
    kx = np.fft.fftfreq(64)[None, :]
    shifted = np.fft.ifft2(
        np.fft.fft2(img) * np.exp(-2j * np.pi * (ky * 1.3 + kx * -0.27))
    ).real
    dy, dx = measure_shift(img, shifted)
    assert abs(dy - 1.3) < 0.02 and abs(dx + 0.27) < 0.02


def test_drift_truth_equals_measured_shift():
    # linear + oscillation + random walk, fast enough for several pixels in 40 frames
    drift = DriftConfig(
        velocity_um_per_s=(0.6, -0.9),
        random_walk_um=0.004,
        oscillation_amplitude_um=(0.03, 0.05),
        oscillation_period_s=0.2,
    )
    scope = Microscope(_bright(drift=drift, seed=3))
    stack, truths = scope.acquire(40)
    ref = stack[0].astype(np.float64)
    errs = []
    for k in range(1, 40, 3):
        dy, dx = measure_shift_two_pass(ref, stack[k].astype(np.float64))
        ty, tx = truths[k].displacement_px
        errs.append(max(abs(dy - ty), abs(dx - tx)))
    assert abs(truths[-1].displacement_px[0]) > 2.0  # really moved
    assert max(errs) <= 0.05, errs


def test_truth_displacement_follows_the_drift_model():
    drift = DriftConfig(
        velocity_um_per_s=(0.02, -0.03), oscillation_amplitude_um=(0.0, 0.01)
    )
    cfg = _bright(drift=drift)
    _, truths = Microscope(cfg).acquire(5)
    for t in truths:
        s = np.sin(2 * np.pi * t.time_s / drift.oscillation_period_s)
        assert t.time_s == pytest.approx(t.index * 0.010)
        assert t.displacement_um == pytest.approx(
            (0.02 * t.time_s, -0.03 * t.time_s + 0.01 * s)
        )
        assert t.displacement_px == pytest.approx(
            (t.displacement_um[0] / 0.1, t.displacement_um[1] / 0.1)
        )


def test_stage_move_shifts_the_field_of_view_by_the_commanded_amount():
    scope = Microscope(_bright(seed=5))
    ref, t0 = scope.next_frame()
    assert t0.displacement_px == (0.0, 0.0)
    moves = [(0.137, -0.253), (-0.31, 0.042), (0.0, 0.0), (0.5555, 0.1)]
    for x, y in moves:
        scope.set_xy_um(x, y)
        assert scope.get_xy_um() == (x, y)
        img, t = scope.next_frame()
        # +x stage move => sample moves by -x / pixel_size in the image
        assert t.displacement_px == pytest.approx((-y / 0.1, -x / 0.1))
        dy, dx = measure_shift_two_pass(ref.astype(float), img.astype(float))
        assert abs(dy + y / 0.1) <= 0.05 and abs(dx + x / 0.1) <= 0.05, (x, y, dy, dx)


def test_stage_compensates_drift_closed_loop():
    v = (0.5, 0.2)  # um/s (y, x)
    scope = Microscope(_bright(drift=DriftConfig(velocity_um_per_s=v)))
    for _ in range(10):
        t_next = scope.frame_index * 0.010
        scope.set_xy_um(v[1] * t_next, v[0] * t_next)  # follow the drift exactly
        _, t = scope.next_frame()
        assert t.displacement_um == pytest.approx((0.0, 0.0), abs=1e-12)


def test_positions_px_are_the_emitter_centroids():
    # one emitter, no noise: its intensity centroid is at positions_px
    pt = (1.2345, 2.0711)  # um
    sample = SampleConfig(
        n_filaments=0,
        n_rings=0,
        n_clusters=0,
        points_um=(pt,),
        on_rate_hz=1.0,
        off_rate_hz=0.0,
        bleach_rate_hz=0.0,
        photons_per_frame=2e4,
        background_photons=0.0,
    )
    cam = CameraConfig(shape=(48, 48), roi=(4, 6, 40, 40), noise=False, offset=0.0)
    scope = Microscope(
        SimConfig(
            sample=sample, camera=cam, drift=DriftConfig(velocity_um_per_s=(0.3, 0.7))
        )
    )
    for _ in range(4):
        img, t = scope.next_frame()
        yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
        f = img.astype(float)
        c = (float((f * yy).sum() / f.sum()), float((f * xx).sum() / f.sum()))
        exp = (
            pt[0] / 0.1 - 4 + t.displacement_px[0],
            pt[1] / 0.1 - 6 + t.displacement_px[1],
        )
        assert t.positions_px[0] == pytest.approx(exp)
        assert c == pytest.approx(exp, abs=0.01)


def test_ground_truth_image_mapping():
    pts = ((0.0, 0.0), (1.0, 2.33), (0.96, 0.04))
    sample = SampleConfig(n_filaments=0, n_rings=0, n_clusters=0, points_um=pts)
    scope = Microscope(SimConfig(sample=sample, camera=CameraConfig(shape=(32, 32))))
    u = 4
    gt = scope.ground_truth_image(u)
    assert gt.shape == (128, 128) and gt.dtype == np.float32
    assert gt.sum() == 3
    # (0, 0) um is the centre of pixel (0, 0) = high-res pixels 0..3;
    # the point lands in floor(0.5 * 4) = 2
    assert gt[2, 2] == 1
    # (1.0, 2.33) um -> px (10, 23.3)
    # -> high-res (floor(10.5 * 4), floor(23.8 * 4)) = (42, 95)
    assert gt[42, 95] == 1
    # block sums give the camera-grid counts of rint(position)
    blocks = gt.reshape(32, u, 32, u).sum(axis=(1, 3))
    assert blocks[10, 0] == 1 and blocks[10, 23] == 1 and blocks[0, 0] == 1
    assert np.flatnonzero(gt).size == 3
