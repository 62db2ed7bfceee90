"""The frame-map glue (``livesr.kernels.framemap``): deadlines, the window choice,
the window factory and the map stage."""

from __future__ import annotations

import numpy as np
import pytest

from livesr.kernels._params import EsrrfParams


def test_batch_deadline_is_n_frame_intervals():
    from livesr.kernels.framemap import MIN_DEADLINE_S, batch_deadline

    assert batch_deadline(8, 0.0005) == pytest.approx(0.004)
    assert batch_deadline(1, 0.01) == pytest.approx(0.01)
    assert batch_deadline(3, None) is None
    assert batch_deadline(2, 0.0) == MIN_DEADLINE_S
    with pytest.raises(ValueError, match="n >= 1"):
        batch_deadline(0, 0.01)


class _FakeKernel:
    """Stands for an engine kernel whose fastest implementation is ``best``."""

    name = "esrrf_map_batch"

    def __init__(self, best: str) -> None:
        self.best = best
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def fastest(self, *args, record=False, **kwargs):
        self.calls.append((args[0].shape, record))
        return self.best


@pytest.mark.parametrize(("best", "where"), [("cupy", "device"), ("numba", "host"),
                                             ("cython-guided", "host")])
def test_choose_window_follows_the_engine(best, where, monkeypatch):
    from livesr.kernels.framemap import choose_window

    monkeypatch.delenv("LIVESR_DEVICE_WINDOW", raising=False)
    k = _FakeKernel(best)
    assert choose_window(k, (20, 24), EsrrfParams(magnification=2), batch=4) == where
    assert k.calls == [((4, 20, 24), True)]  # timed on the batch shape, recorded


def test_choose_window_off_switch_and_corrected_geometry(monkeypatch):
    from livesr.kernels.framemap import choose_window

    k = _FakeKernel("cupy")
    monkeypatch.setenv("LIVESR_DEVICE_WINDOW", "off")
    assert choose_window(k, (8, 8), EsrrfParams()) == "host"
    monkeypatch.delenv("LIVESR_DEVICE_WINDOW")
    assert choose_window(k, (8, 8), EsrrfParams(geometry="corrected")) == "host"
    assert k.calls == []


def test_choose_window_times_real_implementations_through_the_engine(monkeypatch):
    from livesr.kernels.esrrf_map_batch import kernel
    from livesr.kernels.framemap import choose_window

    monkeypatch.delenv("LIVESR_DEVICE_WINDOW", raising=False)
    kernel.forget_fastest()
    where = choose_window(kernel, (10, 12), EsrrfParams(magnification=2), batch=2)
    cupy_ok = any(
        i.id == "cupy" and i.available for i in kernel.implementations()
    )
    assert where in ("host", "device")
    if not cupy_ok:
        assert where == "host"


def test_new_window_host_batches_through_the_engine():
    from livesr.kernels import SlidingEsrrf
    from livesr.kernels.framemap import new_window

    params = EsrrfParams(magnification=2, radius=1.5)
    sl = new_window(params, 4, 2, (10, 12), prefer="host", temporal="var")
    assert isinstance(sl, SlidingEsrrf)
    assert (sl.window, sl.stride, sl.temporal) == (4, 2, "var")
    sl.warm_up((10, 12), 3)
    rng = np.random.default_rng(0)
    frames = rng.poisson(80, (9, 10, 12)).astype(np.uint16)
    shifts = rng.uniform(-0.5, 0.5, (9, 2))
    got = sl.push_many(frames[:5], shifts[:5]) + sl.push_many(frames[5:], shifts[5:])
    assert [(r.first_frame, r.last_frame) for r in got] == [(0, 3), (2, 5), (4, 7)]
    ref = SlidingEsrrf(4, 2, magnification=2, temporal="var", frame_map=None)
    want = ref.push_many(frames, shifts)
    for g, w in zip(got, want, strict=True):
        # engine implementations differ from the pinned fastest by float32 rounding
        assert np.abs(g.image - w.image).max() <= 1e-4 * np.abs(w.image).max()


def test_new_window_rejects_unknown_preference():
    from livesr.kernels.framemap import new_window

    with pytest.raises(ValueError, match="prefer"):
        new_window(EsrrfParams(), 4, 2, (8, 8), prefer="gpu")  # type: ignore[arg-type]


def test_map_stage_passes_the_deadline():
    from livesr.kernels.framemap import MapStage

    seen = []

    def fn(frame, params, *, shift, out, deadline_s=None):
        seen.append(deadline_s)
        return np.zeros((2, 2), np.float32)

    stage = MapStage(fn, name="toy")
    stage(np.zeros((1, 1), np.float32), EsrrfParams(magnification=2))
    stage.deadline_s = -1.0  # behind: "as fast as possible"
    stage(np.zeros((1, 1), np.float32), EsrrfParams(magnification=2))
    assert seen == [None, MapStage.MIN_DEADLINE_S]
    assert stage.name == "toy" and stage.calls == 2
