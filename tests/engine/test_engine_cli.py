"""``livesr backends`` and ``livesr bench`` on a toy kernel package."""

from __future__ import annotations

import json

from livesr.engine import BenchmarkStore
from livesr.engine._priors import parse_defaults
from livesr.stream.cli import main

# "cupy is not installed", on every machine (a GPU box has it)
NO_CUPY = 'raise ModuleNotFoundError("No module named \'cupy\'", name="cupy")\n'

INIT = """
def _bench(size):
    import numpy as np
    n = {"small": 8, "medium": 64, "large": 256}[size]
    return [Case(f"{size}-{n}", (np.ones((n, n), np.float32),), {"factor": 2.0})]
"""
MODULES = {
    "_numpy": """
        @implementation(NAME, backend="numpy")
        def scale(x, factor=2.0):
            return x * factor
    """,
    "_numba": """
        @implementation(NAME, backend="numba", variant="loop")
        def scale(x, factor=2.0):
            return x * factor
    """,
    "_cython_impl": """
        @implementation(NAME, backend="cython")
        def scale(x, factor=2.0):
            raise RuntimeError("no kernel source")
    """,
    "_cupy": NO_CUPY,
}


def test_backends_lists_status_and_reason(toy_package, capsys):
    name = toy_package(modules=MODULES, init=INIT, kernel_kwargs="bench_cases=_bench")
    assert main(["backends", "--package", name]) == 0
    out = capsys.readouterr().out
    assert out.startswith("backends: numpy ok | numba ")
    lines = {
        line.split()[1]: line for line in out.splitlines() if line.startswith(name)
    }
    assert sorted(lines) == ["cupy", "cython", "numba-loop", "numpy"]
    assert (
        "unavailable  0     cupy: not installed (pip install livesr[gpu])"
        in lines["cupy"]
    )
    assert lines["numpy"].split()[2:] == ["available", "0"]


def test_unknown_kernel_is_a_usage_error(toy_package, capsys):
    name = toy_package(modules=MODULES)
    assert main(["backends", "--package", name, "--kernel", "nope"]) == 1
    assert f"--kernel nope: no such kernel (known: {name})" in capsys.readouterr().err


def test_bench_fills_the_store_and_writes_defaults(
    toy_package, capsys, tmp_path, _isolated_cache
):
    name = toy_package(modules=MODULES, init=INIT, kernel_kwargs="bench_cases=_bench")
    target = tmp_path / "defaults.json"
    code = main(
        [
            "bench",
            "--package",
            name,
            "--repeats",
            "3",
            "--size",
            "medium",
            "--write-defaults",
            str(target),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1  # the cython implementation raised: reported, the others still ran
    rows = {line.split()[2]: line for line in out.splitlines() if line.startswith(name)}
    assert "failed: RuntimeError: no kernel source" in rows["cython"]
    assert "unavailable: cupy: not installed" in rows["cupy"]
    assert rows["numpy"].split()[1] == "medium-64"
    counts = BenchmarkStore(_isolated_cache / "benchmarks.sqlite").stored_counts()
    assert {(k, i): n for (k, i, _), n in counts.items()} == {
        (name, "numpy"): 3,
        (name, "numba-loop"): 3,
    }
    table = parse_defaults(json.loads(target.read_text()))[name]
    assert sorted(i for i, _ in table) == ["numba-loop", "numpy"]
    assert all(len(t) == 3 for t in table.values())
    assert main(["bench", "--package", name, "--repeats", "0"]) == 2
