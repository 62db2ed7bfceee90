"""The device sweep's CUDA plumbing without a GPU: :class:`CupyStages` driven
through a stand-in ``cupy`` whose kernels are numpy ports of the CUDA sources.

What this checks on a CPU machine: the taps planned once per sweep, the window
tables and the ``-D`` constants given to each pair's ``rgc`` module (the stand-in
reads them back from the options), the argument order of every launch, the unit
gradients, the per-pair slices of the maps buffer and the downloads -- against
the host path of :func:`esrrf_sweep`.  The CUDA code itself is checked on a GPU
by ``test_kernels_sweep_device.py`` (``cupy`` cases).
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from livesr.kernels import _sweep_device, esrrf_sweep

f32 = np.float32


def _catmull_rom(args: tuple[Any, ...]) -> None:
    img, ri, rw, ci, cw, out, k, l_, w = args
    assert img.shape[1] == int(w) and out.shape == (int(k), int(l_))
    g = img.astype(np.float64)[ri[:, :, None, None], ci[None, None, :, :]]
    rows = (rw[:, :, None, None] * g).sum(axis=1)  # (k, l, 4): row taps
    out[...] = (rows * cw[None, :, :]).sum(axis=2).astype(f32)


def _unit(args: tuple[Any, ...]) -> None:
    gx, gy, gxn, gyn, n = args
    assert gx.size == int(n)
    norm = np.sqrt(gx * gx + gy * gy)
    gxn[...] = np.divide(gx, norm, out=np.zeros_like(gx), where=norm > 0)
    gyn[...] = np.divide(gy, norm, out=np.zeros_like(gy), where=norm > 0)


def _rgc(opts: dict[str, str], args: tuple[Any, ...]) -> None:
    """The ``rgc`` CUDA kernel, whole image at once, float32."""
    gxn, gyn, offs, table, inten, out = args
    h, w, m, noff, margin = (int(opts[k]) for k in ("H", "W", "M", "NOFF", "MARGIN"))
    sens = f32(float(opts["SENS"].rstrip("f")))
    hm, wm = h * m, w * m
    assert gxn.shape == (2 * h + 1, 2 * w + 1) and out.shape == (hm, wm)
    y, x = np.arange(hm)[:, None], np.arange(wm)[None, :]
    by, bx = (2 * y + 1) // m, (2 * x + 1) // m
    tab = table.reshape(noff, m, m, 4)[:, y % m, x % m]  # (n, HM, WM, 4)
    offs = offs.reshape(noff, 2)
    rgc = np.zeros((hm, wm), f32)
    wsum = np.zeros((hm, wm), f32)
    for n in range(noff):
        ty, tx = by + offs[n, 0], bx + offs[n, 1]
        ok = (ty > 0) & (ty <= 2 * (hm - 1)) & (tx > 0) & (tx <= 2 * (wm - 1))
        iy, ix = np.minimum(ty, 2 * h), np.minimum(tx, 2 * w)
        gx, gy = gxn[iy, ix], gyn[iy, ix]
        t0, t1, t2 = tab[n, ..., 0], tab[n, ..., 1], tab[n, ..., 2]
        wsum = np.where(ok, wsum + t0, wsum)
        hit = ok & (gx * t1 + gy * t2 < 0)
        rgc = np.where(hit, rgc + (f32(1) - np.abs(gy * t1 - gx * t2)) * t0, rgc)
    rgc = np.divide(rgc, wsum, out=np.zeros_like(rgc), where=wsum > 0)
    if int(opts["APPLY_POW"]):
        rgc = np.where(rgc >= 0, np.abs(rgc) ** sens, rgc)
    rgc = np.maximum(rgc, f32(0))
    if int(opts["WEIGHTED"]):
        rgc = rgc * inten
    inside = (y >= margin) & (y < hm - margin) & (x >= margin) & (x < wm - margin)
    out[...] = np.where(inside, rgc, f32(0))


def _fake_cupy(launches: list[str]) -> SimpleNamespace:
    from livesr.kernels.roberts_cross import roberts_cross

    def module(code: str, options: tuple[str, ...] = ()) -> Any:
        opts = dict(o[2:].split("=", 1) for o in options if o.startswith("-D"))

        def get_function(name: str) -> Any:
            def launch(grid: Any, block: Any, args: tuple[Any, ...]) -> None:
                launches.append(name)
                {"rgc": lambda a: _rgc(opts, a), "unit_gradients": _unit}[name](args)

            return launch

        return SimpleNamespace(get_function=get_function)

    def raw_kernel(code: str, name: str) -> Any:
        assert name == "catmull_rom"
        return lambda grid, block, args: (launches.append(name), _catmull_rom(args))

    def elementwise(*spec: Any) -> Any:
        def run(im: Any, width: Any, gx: Any, gy: Any) -> None:
            launches.append("roberts_cross")
            gx[...], gy[...] = roberts_cross(im)

        return run

    def asarray(a: Any, dtype: Any = None) -> np.ndarray:
        return np.array(a, dtype=dtype)  # a copy, as an upload

    return SimpleNamespace(
        float32=np.float32,
        float64=np.float64,
        asarray=asarray,
        asnumpy=np.asarray,
        ascontiguousarray=np.ascontiguousarray,
        empty=np.empty,
        empty_like=np.empty_like,
        zeros=np.zeros,
        maximum=np.maximum,
        RawModule=module,
        RawKernel=raw_kernel,
        ElementwiseKernel=elementwise,
        cuda=SimpleNamespace(Device=lambda: SimpleNamespace(id=0, mem_info=(1e12, 1e12))),
        get_default_memory_pool=lambda: SimpleNamespace(free_bytes=lambda: 0),
    )


def _clear_kernel_caches() -> None:
    from livesr.kernels.catmull_rom import _cupy as cr
    from livesr.kernels.rgc import _cupy as rg
    from livesr.kernels.roberts_cross import _cupy as rc

    for fn in (cr._kernel, rg._kernel, rc._kernel, _sweep_device._unit_kernel):
        fn.cache_clear()


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch):
    """``cupy`` replaced by the numpy stand-in; the compiled-kernel caches are
    emptied before and after, so no stand-in kernel outlives the test."""
    launches: list[str] = []
    _clear_kernel_caches()
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(launches))
    monkeypatch.setattr(
        _sweep_device,
        "resident_stages",
        lambda impl, shape, params, first: _sweep_device.CupyStages(shape, params),
    )
    yield launches
    _clear_kernel_caches()


@pytest.mark.parametrize(
    "temporal,m,batch,sens,radii",
    [
        ("avg", 2, None, (1.0, 2.0), (1.0, 1.5, 2.0)),
        ("var", 3, 7, (0.5, 2.5), (1.0, 2.0)),
    ],
)
def test_cupy_stages_plumbing_equals_host_path(fake_cupy, temporal, m, batch, sens, radii):
    from livesr.sim import CameraConfig, SimConfig, simulate_stack

    stack = simulate_stack(12, SimConfig(camera=CameraConfig(shape=(14, 17)), seed=9))[0]
    kw = dict(
        magnification=m,
        sensitivities=sens,
        radii=radii,
        temporal=temporal,
        frames_per_batch=batch,
        impl="numpy",
    )
    host = esrrf_sweep(stack, resident=False, **kw)
    ours = esrrf_sweep(stack, **kw)
    assert ours.device_resident and not host.device_resident
    pairs = len(sens) * len(radii)
    assert fake_cupy.count("rgc") == 12 * pairs
    assert fake_cupy.count("catmull_rom") == 3 * 12
    assert fake_cupy.count("roberts_cross") == fake_cupy.count("unit_gradients") == 12
    peak = float(np.abs(host.images).max())
    np.testing.assert_allclose(ours.images, host.images, rtol=1e-5, atol=1e-6 * peak)
    for name in ("rsp", "resolution", "qnr"):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(host, name), rtol=1e-3, atol=1e-3
        )
    assert ours.best == host.best
