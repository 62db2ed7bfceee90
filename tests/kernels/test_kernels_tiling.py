"""Tiled per-frame eSRRF (livesr.kernels.tiling): tiled == untiled.

Exactness: with the default map the stitched map is compared *bitwise*
(``np.array_equal``) with the numpy reference stages run on the whole frame
(``_reference_map`` below: what ``esrrf_frame`` computes on its numpy path).
A user ``map_fn`` is applied to cut-out tiles (translation), which is equal only
up to float32 coordinate rounding; that path is checked with a stated tolerance.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livesr.kernels._params import EsrrfParams
from livesr.kernels.catmull_rom import magnify, upsample_gradient
from livesr.kernels.macro_pixel import macro_pixel_correction
from livesr.kernels.rgc import radial_gradient_convergence
from livesr.kernels.roberts_cross import roberts_cross
from livesr.kernels.temporal import TemporalAccumulator
from livesr.kernels.tiling import (
    Halo,
    Tile,
    TiledFrameMap,
    esrrf_frame_tiled,
    esrrf_tiled,
    halo,
    plan_tiles,
    verify_tile,
)


def _reference_map(frame, params, *, shift=(0.0, 0.0), out=None):
    """Untiled numpy reference stages (esrrf_frame's numpy path)."""
    f = np.ascontiguousarray(frame, dtype=np.float32)
    m, geo = params.magnification, params.geometry
    sh = (float(shift[0]), float(shift[1]))
    inten = (
        magnify(f, m, shift=sh, geometry=geo) if params.intensity_weighting else None
    )
    gx, gy = roberts_cross(f)
    gx2 = upsample_gradient(gx, m, shift=sh, geometry=geo)
    gy2 = upsample_gradient(gy, m, shift=sh, geometry=geo)
    res = radial_gradient_convergence(gx2, gy2, inten, params)
    if out is None:
        return res
    out[...] = res
    return out


def _frame(shape, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random(shape, dtype=np.float32) * 100
    base[shape[0] // 2, shape[1] // 3] += 400  # a bright spot
    return base


GEOMETRIES = ("nanopyx", "corrected")


@pytest.mark.parametrize(
    ("m", "r", "geometry", "shift"),
    list(
        itertools.product(
            (1, 2, 5), (1.0, 1.5, 2.0, 3.0), GEOMETRIES, ((0.0, 0.0), (0.37, -1.6))
        )
    ),
)
def test_tiled_bitwise_equal_untiled(m, r, geometry, shift):
    params = EsrrfParams(magnification=m, radius=r, geometry=geometry)
    frame = _frame((17, 13), seed=m)
    ref = _reference_map(frame, params, shift=shift)
    # odd frame, tiles that do not divide it, and tiles smaller than the halo
    for tile in ((5, 4), (2, 13)):
        got = esrrf_frame_tiled(frame, params, tile=tile, shift=shift)
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert np.array_equal(got, ref), (tile, np.abs(got - ref).max())


@pytest.mark.parametrize(("m", "r"), [(1, 1.0), (2, 3.0), (5, 1.5)])
def test_one_pixel_tiles_smaller_than_halo(m, r):
    params = EsrrfParams(magnification=m, radius=r)
    frame = _frame((9, 7), seed=2)
    ref = _reference_map(frame, params, shift=(0.2, -0.9))
    got = esrrf_frame_tiled(frame, params, tile=(1, 1), shift=(0.2, -0.9), workers=2)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize(
    ("m", "r", "shift"),
    [
        (1, 1.0, (0.0, 0.0)),
        (2, 2.0, (0.37, -1.6)),
        (5, 1.5, (0.0, 0.0)),
        (5, 3.0, (-2.2, 0.8)),
    ],
)
def test_numba_backend_bitwise_equal_untiled_numba(m, r, shift):
    """Fused numba kernels on re-based global taps == the whole-frame kernel."""
    from livesr.kernels.esrrf_map._numba import esrrf_map_numba

    params = EsrrfParams(magnification=m, radius=r, sensitivity=1.5)
    frame = _frame((29, 23), seed=7)
    ref = esrrf_map_numba(frame, m, r, 1.5, True, shift)
    for tile, workers in (((9, 7), 2), ((2, 23), 1), ((1, 3), 4)):
        got = esrrf_frame_tiled(
            frame, params, tile=tile, shift=shift, backend="numba", workers=workers
        )
        assert np.array_equal(got, ref), tile
    with pytest.raises(ValueError, match="nanopyx"):
        esrrf_frame_tiled(
            frame, EsrrfParams(geometry="corrected"), tile=4, backend="numba"
        )
    with pytest.raises(ValueError, match="backend"):
        esrrf_frame_tiled(frame, params, tile=4, backend="opencl")


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_thread_pool_bitwise(workers):
    params = EsrrfParams(magnification=3, radius=1.5, sensitivity=2.0)
    frame = _frame((21, 18), seed=3)
    ref = _reference_map(frame, params, shift=(-0.6, 1.25))
    got = esrrf_frame_tiled(
        frame, params, n_tiles=(3, 2), workers=workers, shift=(-0.6, 1.25)
    )
    assert np.array_equal(got, ref)


@pytest.mark.parametrize(
    "kw",
    [
        {"intensity_weighting": False},
        {"sensitivity": 3.0},
        {"radius": 0.3},
        {"radius": 2.6, "magnification": 4},
    ],
)
def test_other_parameters_bitwise(kw):
    params = EsrrfParams(**{"magnification": 2, **kw})
    frame = _frame((15, 16), seed=5)
    ref = _reference_map(frame, params)
    assert np.array_equal(esrrf_frame_tiled(frame, params, n_tiles=(2, 3)), ref)


def test_large_shift_and_single_pixel_frames():
    params = EsrrfParams(magnification=2, radius=1.5)
    frame = _frame((19, 11), seed=9)
    for shift in ((6.3, -4.2), (-7.0, 0.5), (2.5, 2.5)):
        ref = _reference_map(frame, params, shift=shift)
        got = esrrf_frame_tiled(frame, params, tile=(4, 3), shift=shift)
        assert np.array_equal(got, ref), shift
    for shape in ((1, 1), (1, 9), (7, 1)):
        f = _frame(shape, seed=1)
        ref = _reference_map(f, params)
        assert np.array_equal(esrrf_frame_tiled(f, params, tile=(1, 2)), ref)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    h=st.integers(1, 22),
    w=st.integers(1, 22),
    th=st.integers(1, 12),
    tw=st.integers(1, 12),
    m=st.integers(1, 4),
    r=st.floats(0.2, 3.2),
    geometry=st.sampled_from(GEOMETRIES),
    dy=st.floats(-3.0, 3.0),
    dx=st.floats(-3.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_property_random_shapes_and_tiles(h, w, th, tw, m, r, geometry, dy, dx, seed):
    params = EsrrfParams(magnification=m, radius=r, geometry=geometry)
    frame = _frame((h, w), seed=seed)
    ref = _reference_map(frame, params, shift=(dy, dx))
    got = esrrf_frame_tiled(frame, params, tile=(th, tw), shift=(dy, dx))
    assert np.array_equal(got, ref)


# ------------------------------------------------------------------------ planning
def test_plan_partitions_frame_and_slices_agree():
    params = EsrrfParams(magnification=5, radius=1.5)
    tiles = plan_tiles((23, 17), params, tile=(6, 5))
    assert len(tiles) == 4 * 4
    cover = np.zeros((23, 17), dtype=int)
    for t in tiles:
        assert isinstance(t, Tile)
        cover[t.core] += 1
        (a, b), (c, d) = t.input, t.core
        assert a.start <= c.start and c.stop <= a.stop
        assert b.start <= d.start and d.stop <= b.stop
        out_h = (
            t.output[0].stop - t.output[0].start,
            t.output[1].stop - t.output[1].start,
        )
        crop_h = (t.crop[0].stop - t.crop[0].start, t.crop[1].stop - t.crop[1].start)
        assert out_h == crop_h == ((c.stop - c.start) * 5, (d.stop - d.start) * 5)
        assert t.crop[0].stop <= t.input_shape[0] * 5
    assert (cover == 1).all()


def test_halo_values():
    p = EsrrfParams(magnification=5, radius=1.5)
    assert halo(p) == Halo(4, 3, 4, 3)
    assert halo(p, (0.3, -1.7)) == Halo(4, 3, 6, 2)
    assert halo(EsrrfParams(magnification=5, radius=1.5, geometry="corrected")) == Halo(
        4, 4, 4, 4
    )
    assert halo(EsrrfParams(magnification=1, radius=3.0)) == Halo(5, 5, 5, 5)
    # a large positive shift needs (almost) nothing above, more below
    hl = halo(p, (10.0, 0.0))
    assert hl.top == 2 and hl.bottom == 13


def test_n_tiles_int_makes_strips_and_caps():
    params = EsrrfParams(magnification=2)
    tiles = plan_tiles((10, 8), params, n_tiles=3)
    assert [t.index for t in tiles] == [(0, 0), (1, 0), (2, 0)]
    assert all(t.core[1] == slice(0, 8) for t in tiles)
    assert len(plan_tiles((3, 2), params, n_tiles=(10, 10))) == 6


def test_halo_is_needed():
    """A tile without its halo fails the exact stencil check."""
    params = EsrrfParams(magnification=2, radius=1.5)
    bare = Tile(
        index=(0, 0),
        core=(slice(5, 10), slice(0, 12)),
        input=(slice(3, 12), slice(0, 12)),
        output=(slice(10, 20), slice(0, 24)),
        crop=(slice(4, 14), slice(0, 24)),
    )
    with pytest.raises(AssertionError, match="rows"):
        verify_tile(bare, (20, 12), params)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({}, ValueError, "exactly one"),
        ({"tile": 4, "n_tiles": 2}, ValueError, "exactly one"),
        ({"tile": 0}, ValueError, "integers >= 1"),
        ({"tile": (2, "a")}, ValueError, "integers >= 1"),
        ({"tile": 4, "workers": 0}, ValueError, "workers"),
        ({"tile": 4, "devices": []}, ValueError, "devices"),
        ({"tile": 4, "devices": [0, 0]}, ValueError, "devices"),
        ({"tile": 4, "out": np.zeros((3, 3), np.float32)}, ValueError, "out must"),
    ],
)
def test_errors(kw, exc, match):
    params = EsrrfParams(magnification=2)
    with pytest.raises(exc, match=match):
        esrrf_frame_tiled(np.ones((8, 8)), params, **kw)


def test_devices_need_cupy_and_nanopyx_geometry():
    params = EsrrfParams(magnification=2)
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="CuPy"):
            esrrf_frame_tiled(np.ones((8, 8)), params, tile=4, devices=[0])
    corrected = EsrrfParams(magnification=2, geometry="corrected")
    with pytest.raises(ValueError, match="nanopyx"):
        esrrf_frame_tiled(np.ones((8, 8)), corrected, tile=4, devices=[0])
    with pytest.raises(ValueError, match="not both"):
        esrrf_frame_tiled(
            np.ones((8, 8)), params, tile=4, devices=[0], map_fn=_reference_map
        )


# ------------------------------------------------------------ map_fn: translation
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_map_fn_translation_within_float32_rounding(geometry):
    """Cut-out tiles through a per-frame map: equal up to coordinate rounding.

    NanoPyx samples output pixel k at float32(k)/float32(M), not translation
    invariant, so this path is not bitwise; bound: 1e-5 of the map maximum.
    """
    params = EsrrfParams(magnification=5, radius=1.5, geometry=geometry)
    frame = _frame((26, 22), seed=4)
    ref = _reference_map(frame, params, shift=(0.4, -0.3))
    got = esrrf_frame_tiled(
        frame, params, tile=(7, 9), shift=(0.4, -0.3), map_fn=_reference_map, workers=2
    )
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(ref.max()))


def test_tiled_frame_map_plugs_into_sliding():
    from livesr.kernels.sliding import SlidingEsrrf

    frames = np.stack([_frame((12, 10), seed=s) for s in range(5)])
    shifts = [(0.1 * i, -0.2 * i) for i in range(5)]
    kw = {"magnification": 2, "radius": 1.5, "temporal": "var"}
    plain = SlidingEsrrf(3, 1, frame_map=_reference_map, **kw)
    tiled = SlidingEsrrf(3, 1, frame_map=TiledFrameMap(tile=(4, 3), workers=2), **kw)
    a = plain.push_many(frames, shifts)
    b = tiled.push_many(frames, shifts)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image)


def test_tiled_frame_map_reuses_its_plan():
    params = EsrrfParams(magnification=2, radius=1.5)
    fm = TiledFrameMap(n_tiles=(2, 2), backend="numba")
    frame = _frame((13, 12), seed=8)
    a = fm(frame, params, shift=(0.25, 0.0))
    first = fm._cache[0]
    out = np.empty_like(a)
    b = fm(frame + 1, params, shift=(0.25, 0.0), out=out)
    assert b is out and fm._cache[0] is first
    fm(frame, params)  # another shift: new plan
    assert fm._cache[0] is not first
    assert np.array_equal(a, fm(frame, params, shift=(0.25, 0.0)))


def test_tiled_frame_map_validates():
    with pytest.raises(ValueError, match="exactly one"):
        TiledFrameMap()
    with pytest.raises(ValueError, match="workers"):
        TiledFrameMap(tile=3, workers=-1)


# ------------------------------------------------------------------------ stacks
def _reference_esrrf(stack, *, temporal, frames_per_timepoint, mp, **kw):
    params = EsrrfParams(**kw)
    t = stack.shape[0]
    f_per = frames_per_timepoint
    block = t if f_per == 0 or f_per > t else f_per
    outs = []
    for b in range(-(-t // block)):
        acc = None
        for i in range(b * block, min((b + 1) * block, t)):
            mp_map = _reference_map(stack[i], params)
            if acc is None:
                acc = TemporalAccumulator(temporal, mp_map.shape)
            acc.add(mp_map)
        img = acc.result()
        outs.append(macro_pixel_correction(img, params.magnification) if mp else img)
    out = np.stack(outs)
    return out[0] if f_per == 0 else out


@pytest.mark.parametrize(
    ("temporal", "fpt", "mp"),
    [("avg", 0, True), ("var", 2, True), ("tac2", 0, False), ("tac2", 3, True)],
)
def test_stack_tiled_equals_untiled(temporal, fpt, mp):
    stack = np.stack([_frame((14, 11), seed=s) for s in range(5)])
    kw = {"magnification": 3, "radius": 1.5}
    ref = _reference_esrrf(
        stack, temporal=temporal, frames_per_timepoint=fpt, mp=mp, **kw
    )
    got = esrrf_tiled(
        stack,
        tile=(4, 5),
        workers=2,
        temporal=temporal,
        frames_per_timepoint=fpt,
        macro_pixel_correction=mp,
        **kw,
    )
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.array_equal(got, ref, equal_nan=True)


def test_stack_tiled_matches_esrrf_api():
    """Against livesr's own esrrf (whichever per-frame implementation it runs)."""
    from livesr.kernels.esrrf_stack import esrrf

    stack = np.stack([_frame((12, 12), seed=s) for s in range(3)])
    ref = esrrf(stack, magnification=2, radius=1.5)
    got = esrrf_tiled(stack, n_tiles=(2, 2), magnification=2, radius=1.5)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    two_d = esrrf_tiled(stack[0], tile=5, magnification=2, macro_pixel_correction=False)
    assert two_d.shape == (24, 24)


def test_cupy_runner_attributes_still_exist():
    """The GPU path replaces these tap tables of CupyEsrrfMap (no cupy needed)."""
    from pathlib import Path

    import livesr.kernels.esrrf_map as pkg

    src = (Path(pkg.__path__[0]) / "_cupy.py").read_text()
    for name in (
        "r_idx",
        "r_wt",
        "c_idx",
        "c_wt",
        "gr_idx",
        "gr_wt",
        "gc_idx",
        "gc_wt",
    ):
        assert f"self._{name}" in src, name
