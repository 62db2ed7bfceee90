"""The device-resident sweep (:mod:`livesr.kernels._sweep_device`) against the
host path of :func:`livesr.kernels.esrrf_sweep`, on seeded simulator stacks.

Parametrised over the array module: ``numpy`` runs the resident orchestration
(stacked running sums, uploaded blocks, halves, batches, downloads) with the
engine's numpy kernels, so it must equal the host path bit for bit; ``cupy`` runs
the real GPU path (``impl="cupy"``) and must equal the host numpy path to 1e-5
(images) and 1e-3 (RSP, resolution, QnR) with the same best pair, and the per-call
CuPy path (``resident=False``) likewise.  Without a CUDA device the ``cupy`` case
skips (``LIVESR_REQUIRE_BACKENDS=cupy`` makes it fail).
"""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels import _sweep_device, esrrf_sweep
from livesr.kernels import sweep as sweep_mod

SENS = (1.0, 2.5)
RADII = (1.0, 1.5, 2.0)

# (temporal, magnification, frames_per_batch, upload block)
CASES = [
    ("avg", 2, None, None),
    ("var", 2, None, None),
    ("avg", 3, 7, 3),  # batches 7, 7, 6; blocks 3, 3, 1 (halves start odd)
    ("var", 2, 6, 4),  # batches 6, 6, 6, 2
    ("var", 2, 19, None),  # last batch of one frame: VAR constant, NaN parts
]


def _stack(t: int, side: int, seed: int) -> np.ndarray:
    from livesr.sim import CameraConfig, SampleConfig, SimConfig, simulate_stack

    cfg = SimConfig(
        camera=CameraConfig(shape=(side, side)),
        sample=SampleConfig(labelling_density_per_um=20.0).scaled_to_field(
            (side, side)
        ),
        seed=seed,
    )
    return simulate_stack(t, cfg)[0]


def _use_numpy_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the sweep take the resident path with the engine's numpy kernels."""

    def stages(impl, shape, params, first_stages):
        m = params[0].magnification
        return _sweep_device.HostStages(sweep_mod._FrameMaps(m, "numpy"), params, "numpy")

    monkeypatch.setattr(_sweep_device, "resident_stages", stages)


def _cupy_or_skip() -> None:
    from livesr.engine import probe
    from livesr.engine.testing import skip_backend

    availability = probe("cupy")
    if not availability.ok:
        skip_backend("cupy", availability.reason)


def _sweep(stack: np.ndarray, case: tuple, **kw: object):
    temporal, m, batch, _ = case
    return esrrf_sweep(
        stack,
        magnification=m,
        sensitivities=SENS,
        radii=RADII,
        temporal=temporal,
        frames_per_batch=batch,
        **kw,
    )


def _assert_same(ours, ref, exact: bool) -> None:
    assert ours.qnr.shape == ref.qnr.shape == (len(SENS), len(RADII))
    np.testing.assert_array_equal(ours.raw_mean, ref.raw_mean)
    if exact:
        for name in ("images", "rsp", "resolution", "qnr"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(ref, name))
    else:
        peak = float(np.abs(ref.images).max())
        np.testing.assert_allclose(ours.images, ref.images, rtol=1e-5, atol=1e-6 * peak)
        for name in ("rsp", "resolution", "qnr"):
            np.testing.assert_allclose(
                getattr(ours, name), getattr(ref, name), rtol=1e-3, atol=1e-3
            )
    assert ours.best == ref.best


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("xp", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_resident_sweep_equals_host_path(xp, case, monkeypatch):
    stack = _stack(19, 20, 4)
    if case[3] is not None:
        monkeypatch.setattr(_sweep_device.ResidentAccumulators, "block", case[3])
    host = _sweep(stack, case, impl="numpy")
    assert not host.device_resident
    if xp == "numpy":
        _use_numpy_stages(monkeypatch)
        ours = _sweep(stack, case, impl="numpy")
        assert ours.device_resident
        _assert_same(ours, host, exact=True)
        return
    _cupy_or_skip()
    ours = _sweep(stack, case, impl="cupy")
    assert ours.device_resident
    _assert_same(ours, host, exact=False)
    per_call = _sweep(stack, case, impl="cupy", resident=False)
    assert not per_call.device_resident
    _assert_same(ours, per_call, exact=False)


def test_resident_sweep_with_decorrelation_and_progress(monkeypatch):
    stack = _stack(10, 24, 6)
    kw = dict(sensitivities=(1, 2), radii=(1.5, 2.0), use_decorr=True, impl="numpy")
    host = esrrf_sweep(stack, **kw)
    _use_numpy_stages(monkeypatch)
    monkeypatch.setattr(_sweep_device.ResidentAccumulators, "block", 4)
    seen: list[int] = []
    ours = esrrf_sweep(stack, progress=seen.append, **kw)
    assert ours.device_resident and sum(seen) == 10
    for name in ("images", "rsp", "resolution", "qnr"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(host, name))
    assert ours.best == host.best


def test_cpu_implementations_keep_the_host_path():
    from livesr.kernels._params import EsrrfParams

    params = [EsrrfParams(magnification=2)]

    def never() -> tuple:
        raise AssertionError("an explicit CPU implementation needs no choice")

    for impl in ("numpy", "auto"):
        assert _sweep_device.resident_stages(impl, (8, 8), params, never) is None
    res = esrrf_sweep(_stack(4, 12, 1), sensitivities=(1,), radii=(1.0,), impl="numpy")
    assert not res.device_resident
    assert 0 < res.scoring_seconds < res.seconds


@pytest.mark.parametrize("mode", ["avg", "var"])
def test_stacked_temporal_equals_temporal_accumulator(mode):
    from livesr.kernels.temporal import TemporalAccumulator

    rng = np.random.default_rng(3)
    maps = rng.random((5, 3, 4, 6), dtype=np.float32) * 100
    stacked = _sweep_device.StackedTemporal(np, mode, (3, 4, 6))
    for rounds in range(2):  # a reset starts over (the batch sums)
        stacked.reset()
        singles = [TemporalAccumulator(mode, (4, 6)) for _ in range(3)]
        for x in maps[rounds:]:
            stacked.add(x.astype(np.float64))
            for acc, xi in zip(singles, x, strict=True):
                acc.add(xi)
        ref = np.stack([acc.result() for acc in singles])
        np.testing.assert_array_equal(stacked.result(), ref)
    with pytest.raises(ValueError, match="'avg' or 'var'"):
        _sweep_device.StackedTemporal(np, "tac2", (1, 2, 2))


@pytest.mark.parametrize("mode", ["avg", "var"])
@pytest.mark.parametrize("batched,halves", [(False, True), (True, True), (True, False)])
def test_device_bytes_counts_the_resident_arrays(mode, batched, halves):
    """The memory estimate that guards the device path equals the running sums
    and maps the resident sweep holds, plus its per-frame temporaries."""
    stages = _sweep_device.HostStages(lambda f: None, [], "numpy")
    accs = _sweep_device.ResidentAccumulators(
        stages, mode, (6, 10), (2, 3), batched, halves
    )
    sums = [accs.whole, *(accs.parity or ())]
    if accs.batch_all is not accs.whole:
        sums.append(accs.batch_all)
    held = accs._maps.nbytes + sum(
        a.nbytes
        for acc in sums
        for a in (acc._s, acc._q, acc._first)
        if a is not None
    )
    temporaries = 6 * 60 * 8 * (1 if mode == "avg" else 3)  # x64 (+ y, y*y)
    need = _sweep_device.device_bytes(mode, 6, (6, 10), batched, halves)
    assert need == held + temporaries
    assert _sweep_device.fits(np, need)
