"""eSRRF numpy reference: geometry vs ground truth, shift registration, validation,
memory-bounded streaming of large stacks. No NanoPyx needed here."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import livesr.kernels as kernels
from livesr.kernels import EsrrfParams, esrrf_frame
from livesr.kernels.esrrf_stack import esrrf
from livesr.sim import (
    CameraConfig,
    DriftConfig,
    SampleConfig,
    SimConfig,
    simulate_stack,
)


def _point_stack(pos_um, shape=(24, 24), n=1):
    """Noise-free always-on single emitters, offset removed -> (stack, truth_px)."""
    cfg = SimConfig(
        sample=SampleConfig(
            n_filaments=0,
            n_rings=0,
            n_clusters=0,
            points_um=tuple(pos_um),
            off_rate_hz=0.0,
            bleach_rate_hz=0.0,
            photons_per_frame=5000.0,
            background_photons=0.0,
        ),
        camera=CameraConfig(shape=shape, noise=False),
        seed=3,
    )
    stack, truths = simulate_stack(n, cfg)
    frames = stack.astype(np.float32) - np.float32(cfg.camera.offset)
    return frames, truths[0].positions_px


def _peak_centroid(img: np.ndarray, m: int) -> np.ndarray:
    """Half-maximum centroid of the brightest SR peak, in input pixels (centres at
    integers: output pixel k is at (k + 0.5)/M - 0.5)."""
    py, px = np.unravel_index(np.argmax(img), img.shape)
    r = 3 * m
    win = img[py - r : py + r + 1, px - r : px + r + 1].astype(np.float64)
    win = np.where(win >= 0.5 * win.max(), win, 0.0)
    yy, xx = np.mgrid[py - r : py + r + 1, px - r : px + r + 1]
    c = np.array([(win * yy).sum(), (win * xx).sum()]) / win.sum()
    return (c + 0.5) / m - 0.5


POSITIONS_UM = [(1.20, 1.20), (1.23, 1.27), (1.25, 1.21), (1.28, 1.24)]


@pytest.mark.parametrize("pos_um", POSITIONS_UM, ids=lambda p: f"{p[0]}-{p[1]}")
@pytest.mark.parametrize("m", [4, 5])
def test_geometry_nanopyx_is_displaced_and_corrected_is_on_truth(pos_um, m):
    stack, truth = _point_stack([pos_um])
    nano = esrrf(stack, magnification=m, macro_pixel_correction=False)
    corr = esrrf(
        stack, magnification=m, macro_pixel_correction=False, geometry="corrected"
    )
    off_nano = _peak_centroid(nano, m) - truth[0]
    off_corr = _peak_centroid(corr, m) - truth[0]
    # NanoPyx's image sits ~+0.45 input px towards +y/+x (ESRRF.md 2.3)
    assert np.all((off_nano >= 0.38) & (off_nano <= 0.55)), off_nano
    assert np.all(np.abs(off_corr) <= 0.1), off_corr


def test_geometry_corrected_rgc_alone_on_truth_nanopyx_half_pixel_off():
    stack, truth = _point_stack([(1.23, 1.27)])
    p_n = EsrrfParams(intensity_weighting=False)
    p_c = EsrrfParams(intensity_weighting=False, geometry="corrected")
    off_n = _peak_centroid(esrrf_frame(stack[0], p_n), 5) - truth[0]
    off_c = _peak_centroid(esrrf_frame(stack[0], p_c), 5) - truth[0]
    assert np.all(np.abs(off_n - 0.5) <= 0.06), off_n
    assert np.all(np.abs(off_c) <= 0.06), off_c


# ------------------------------------------------------------------------ shift ---
@pytest.mark.parametrize("geometry", ["nanopyx", "corrected"])
@pytest.mark.parametrize(
    "d", [(2, 3), (-3, 1), (0, -2)], ids=lambda d: f"d{d[0]}_{d[1]}"
)
def test_shift_by_integer_undoes_integer_displacement(geometry, d):
    big, _ = simulate_stack(1, SimConfig(camera=CameraConfig(shape=(40, 44)), seed=5))
    big = big[0].astype(np.float32)
    h, w, a, b = 24, 26, 8, 9
    frame = big[a : a + h, b : b + w]
    moved = big[
        a - d[0] : a - d[0] + h, b - d[1] : b - d[1] + w
    ]  # moved[y] = frame[y - d]
    params = EsrrfParams(magnification=3, radius=1.5, geometry=geometry)
    ref = esrrf_frame(frame, params)
    got = esrrf_frame(moved, params, shift=d)
    unshifted = esrrf_frame(moved, params)
    edge = params.margin + (max(abs(d[0]), abs(d[1])) + 3) * params.magnification
    sl = (slice(edge, -edge), slice(edge, -edge))
    scale = float(np.abs(ref[sl]).max())
    assert scale > 0
    np.testing.assert_allclose(got[sl], ref[sl], rtol=0, atol=1e-5 * scale)
    # and the comparison is not trivially true: without the shift they differ
    assert float(np.abs(unshifted[sl] - ref[sl]).max()) > 0.05 * scale


def test_fractional_shift_registers_drifting_frames():
    """Frames of a drifting, always-on sample registered with the true displacement
    agree with frame 0 far better than unregistered ones."""
    cfg = SimConfig(
        sample=SampleConfig(
            off_rate_hz=0.0, bleach_rate_hz=0.0, background_photons=0.0
        ),
        camera=CameraConfig(shape=(28, 28), noise=False),
        drift=DriftConfig(velocity_um_per_s=(3.7, -2.3)),  # 0.37, -0.23 px per frame
        seed=7,
    )
    stack, truths = simulate_stack(4, cfg)
    stack = stack.astype(np.float32)
    params = EsrrfParams(
        magnification=4, geometry="corrected", intensity_weighting=False
    )
    ref = esrrf_frame(stack[0], params)
    sl = (slice(30, -30), slice(30, -30))
    for k in (1, 3):
        disp = truths[k].displacement_px
        assert abs(disp[0]) > 0.3  # the test needs real sub-pixel motion
        reg = esrrf_frame(stack[k], params, shift=disp)
        raw = esrrf_frame(stack[k], params)
        r_reg = np.corrcoef(reg[sl].ravel(), ref[sl].ravel())[0, 1]
        r_raw = np.corrcoef(raw[sl].ravel(), ref[sl].ravel())[0, 1]
        assert r_reg >= 0.98, r_reg
        assert r_reg > r_raw + 0.05, (r_reg, r_raw)


# ------------------------------------------------------------------- validation ---
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"magnification": 0}, r"magnification.*>= 1"),
        ({"magnification": 2.5}, r"magnification.*integer"),
        ({"radius": 0.0}, r"radius.*> 0"),
        ({"radius": float("nan")}, r"radius.*> 0"),
        ({"sensitivity": -1.0}, r"sensitivity.*>= 0"),
        ({"geometry": "centre"}, r"geometry.*'nanopyx', 'corrected'"),
        ({"temporal": "mean"}, r"temporal.*'avg', 'var', 'tac2'"),
        ({"frames_per_timepoint": -1}, r"frames_per_timepoint.*>= 0"),
        ({"macro_pixel_correction": "yes"}, r"macro_pixel_correction.*True or False"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_esrrf_rejects_bad_parameters(kwargs, match):
    stack = np.ones((2, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        esrrf(stack, **kwargs)


@pytest.mark.parametrize(
    ("stack", "match"),
    [
        (np.ones((1, 2, 8, 8)), r"2-D.*or 3-D.*\(1, 2, 8, 8\)"),
        (np.ones(8), r"2-D.*or 3-D"),
        (np.ones((0, 8, 8)), r"empty"),
        (np.ones((2, 8, 8), dtype=complex), r"real numeric dtype"),
        (np.where(np.eye(8, dtype=bool), np.nan, 1.0)[None], r"frame 0.*non-finite"),
        (np.full((3, 8, 8), 1e39), r"frame 0.*non-finite"),  # overflows float32
    ],
    ids=["4d", "1d", "empty", "complex", "nan", "overflow"],
)
def test_esrrf_rejects_bad_stacks(stack, match):
    with pytest.raises(ValueError, match=match):
        esrrf(stack, magnification=2)


def test_esrrf_frame_validation():
    p = EsrrfParams(magnification=2)
    with pytest.raises(ValueError, match=r"frame must be a 2-D image.*\(2, 8, 8\)"):
        esrrf_frame(np.ones((2, 8, 8)), p)
    with pytest.raises(ValueError, match="non-finite"):
        esrrf_frame(np.full((8, 8), np.inf), p)
    with pytest.raises(TypeError, match="EsrrfParams"):
        esrrf_frame(np.ones((8, 8)), {"magnification": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shift.*\(dy, dx\)"):
        esrrf_frame(np.ones((8, 8)), p, shift=(1.0,))
    with pytest.raises(ValueError, match=r"shift must be finite"):
        esrrf_frame(np.ones((8, 8)), p, shift=(np.nan, 0.0))
    with pytest.raises(
        ValueError, match=r"out must be a float32 array of shape \(16, 16\)"
    ):
        esrrf_frame(np.ones((8, 8)), p, out=np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"intensity_weighting must be True or False"):
        EsrrfParams(intensity_weighting=1)  # type: ignore[arg-type]


# ------------------------------------------------------------ output contract ---
def test_output_shapes_dtype_and_public_api():
    stack, _ = simulate_stack(9, SimConfig(camera=CameraConfig(shape=(10, 12)), seed=2))
    out0 = kernels.esrrf(stack, magnification=2)  # via the package's lazy export
    assert out0.shape == (20, 24) and out0.dtype == np.float32
    out4 = esrrf(stack, magnification=2, frames_per_timepoint=4)
    assert out4.shape == (3, 20, 24) and out4.dtype == np.float32
    # F > t: one block
    out_all = esrrf(stack, magnification=2, frames_per_timepoint=100)
    assert out_all.shape == (1, 20, 24)
    np.testing.assert_array_equal(out_all[0], out0)
    # 2-D input is one frame
    one = esrrf(stack[0], magnification=2, temporal="VAR", macro_pixel_correction=False)
    assert one.shape == (20, 24) and np.all(one == 0)  # variance of one frame
    np.testing.assert_array_equal(
        esrrf(stack[0], magnification=2), esrrf(stack[:1], magnification=2)
    )


def test_tac2_single_frame_block_is_nan_and_logged(caplog):
    stack, _ = simulate_stack(5, SimConfig(camera=CameraConfig(shape=(8, 8)), seed=2))
    with caplog.at_level(logging.WARNING, logger="livesr.kernels.esrrf_stack"):
        out = esrrf(stack, magnification=2, temporal="tac2", frames_per_timepoint=4)
    assert out.shape == (2, 16, 16)
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    assert "block 1 has 1 frame" in caplog.text


# ------------------------------------------------------------- memory bounded ---
class _FrameOnly:
    """A stack that only allows reading single frames (proves frame-by-frame access)."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise AssertionError(f"esrrf read more than one frame at once: {i!r}")
        self.reads += 1
        return self._data[i]


def test_esrrf_streams_2000_frame_memmap(tmp_path):
    """2000 frames = 4 distinct frames repeated 500 times: the VAR (population) of
    the 2000 per-frame maps equals that of the 4 distinct ones (VAR exercises the
    running sums of x and x^2; AVG is the same sum of x)."""
    base, _ = simulate_stack(4, SimConfig(camera=CameraConfig(shape=(16, 16)), seed=4))
    path = tmp_path / "stack.u16"
    mm = np.memmap(path, dtype=np.uint16, mode="w+", shape=(2000, 16, 16))
    mm[:] = np.tile(base, (500, 1, 1))
    mm.flush()
    del mm
    stack = _FrameOnly(np.memmap(path, dtype=np.uint16, mode="r", shape=(2000, 16, 16)))
    kw = {"magnification": 2, "radius": 1.0, "temporal": "var"}
    got = esrrf(stack, **kw)
    assert stack.reads == 2000
    expected = esrrf(base, **kw)
    np.testing.assert_allclose(
        got, expected, rtol=2e-5, atol=2e-6 * np.abs(expected).max()
    )


def test_esrrf_accepts_zarr_array_frame_by_frame():
    zarr = pytest.importorskip("zarr")
    data, _ = simulate_stack(5, SimConfig(camera=CameraConfig(shape=(12, 14)), seed=6))
    z = zarr.create_array(
        store=zarr.storage.MemoryStore(),
        shape=data.shape,
        chunks=(1, 12, 14),
        dtype="uint16",
    )
    z[:] = data
    kw = {"magnification": 3, "temporal": "tac2", "frames_per_timepoint": 3}
    np.testing.assert_array_equal(esrrf(z, **kw), esrrf(data, **kw))
