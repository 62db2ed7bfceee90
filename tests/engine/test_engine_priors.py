"""Input signatures, shape buckets and fuzzy matching of unseen inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from livesr.engine import InputSignature, bucket_dim, default_signature
from livesr.engine._priors import find_prior, load_factory_defaults, parse_defaults


def sig(shape, **params):
    return InputSignature(shape, "float32", params)


def test_bucket_dims():
    assert [bucket_dim(n) for n in (1, 2, 3, 5, 64, 80, 100, 130, 500, 1000)] == [
        1,
        2,
        3,
        6,
        64,
        96,
        96,
        128,
        512,
        1024,
    ]


def test_same_product_is_not_the_same_problem():
    a, b = sig((100, 64, 64)), sig((25, 128, 128))
    assert a.size == b.size  # NanoPyx's product score would call these equal
    assert a.distance(b) == pytest.approx(4.0, abs=0.2)
    assert a.distance(sig((98, 64, 64))) == 0.0
    assert a.distance(sig((50, 64, 64))) == pytest.approx(1.0, abs=0.2)


def test_parameters_and_dtype_count():
    a = sig((10, 64, 64), magnification=5, radius=1.5)
    assert a.distance(sig((10, 64, 64), magnification=4, radius=1.5)) == pytest.approx(
        0.2
    )
    assert a.distance(sig((10, 64, 64), magnification=5)) == 1.0
    assert a.distance(InputSignature((10, 64, 64), "float64", a.params)) == 2.0


def test_key_round_trip_and_validation():
    a = sig((100, 64, 64), magnification=5, mode="avg", pad=False)
    assert json.loads(a.key) == {
        "dtype": "float32",
        "params": {"magnification": 5, "mode": "avg", "pad": False},
        "shape": [96, 64, 64],
    }
    assert InputSignature.from_key(a.exact_key) == a
    with pytest.raises(
        ValueError, match=r"InputSignature.shape=\(0, 4\): every dimension"
    ):
        InputSignature((0, 4))
    with pytest.raises(ValueError, match=r"params\['x'\]=\[1\] \(list\): expected"):
        InputSignature((4,), params={"x": [1]})


def test_default_signature():
    @dataclass(frozen=True)
    class P:
        magnification: int = 5
        radius: float = 1.5

    x = np.zeros((3, 8, 9), np.float32)
    s = default_signature((x, P()), {"doIntensityWeighting": True, "out": None})
    assert s == InputSignature(
        (3, 8, 9),
        "float32",
        {"magnification": 5, "radius": 1.5, "doIntensityWeighting": True},
    )


def test_signature_of_array():
    x = np.zeros((5, 32, 32), np.uint16)
    s = InputSignature.of(x, magnification=np.int64(4), radius=1.5)
    assert s == InputSignature(
        (5, 32, 32), "uint16", {"magnification": 4, "radius": 1.5}
    )
    assert type(dict(s.params)["magnification"]) is int  # numpy scalars become Python


def test_nearest_local_signature_scaled_by_size():
    local = {
        ("numba", sig((25, 128, 128)).key): [4.0] * 5,
        ("numba", sig((50, 64, 64)).key): [1.0] * 5,
        ("numba", sig((200, 64, 64)).key): [9.0] * 2,  # too few runs to be a prior
    }
    prior = find_prior(sig((100, 64, 64)), "numba", local, {}, min_runs=3)
    assert prior is not None
    assert prior.source.startswith("local 48×64×64")
    assert prior.times == pytest.approx([100 / 48] * 5)  # bucketed 50 → 48, scaled


def test_factory_defaults_by_backend_and_penalty():
    defaults = {("opencl", sig((1, 100, 100)).key): [0.024] * 10}
    prior = find_prior(sig((1, 100, 100)), "opencl-wg16", {}, defaults)
    assert prior is not None and prior.source.startswith("factory")
    assert prior.distance == pytest.approx(1.0)  # factory penalty only
    # a local neighbour one octave away beats factory defaults two octaves away
    local = {("opencl-wg16", sig((2, 100, 100)).key): [0.05] * 3}
    prior = find_prior(sig((1, 100, 100)), "opencl-wg16", local, defaults)
    assert prior.source.startswith("local")
    assert find_prior(sig((1, 100, 100)), "numba", {}, defaults) is None


def test_shipped_defaults_parse():
    assert isinstance(load_factory_defaults("no_such_kernel"), dict)
    table = parse_defaults({"format": 1, "kernels": {"k": {"numba": {"s": [1, 2]}}}})
    assert table == {"k": {("numba", "s"): [1.0, 2.0]}}
    with pytest.raises(ValueError, match="format=2: expected 1"):
        parse_defaults({"format": 2})
