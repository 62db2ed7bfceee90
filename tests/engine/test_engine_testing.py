"""The registry-driven test machinery itself, on a toy kernel package in tmp_path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from livesr.engine.testing import kernel_impl_params, resolve

# "cupy is not installed", on every machine (a GPU box has it)
NO_CUPY = 'raise ModuleNotFoundError("No module named \'cupy\'", name="cupy")\n'

REPO = Path(__file__).resolve().parents[2]

TOY_INIT = """
def _cases():
    import numpy as np
    x = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    return [Case("small", (x,), {"factor": 2.0}), Case("single", (x[:1],), {"factor": -1.0})]
"""
TOY_KWARGS = (
    "reference='numpy', tolerance=Tolerance(rtol=1e-6, atol=1e-7), cases=_cases"
)
TOY_MODULES = {
    "_numpy": """
        @implementation(NAME, backend="numpy")
        def scale(x, factor=2.0):
            return x * factor
    """,
    "_numba": """
        @implementation(NAME, backend="numba")
        def scale(x, factor=2.0):
            return (x.astype("float64") * factor).astype("float32")
    """,
    "_cython_impl": """
        @implementation(NAME, backend="cython", variant="wrong")
        def scale(x, factor=2.0):
            return x * factor + 1e-3
    """,
    "_cupy": NO_CUPY,
}


def test_params_ids_and_skip_reasons(toy_package, monkeypatch):
    monkeypatch.delenv("LIVESR_REQUIRE_BACKENDS", raising=False)
    name = toy_package(modules=TOY_MODULES, init=TOY_INIT, kernel_kwargs=TOY_KWARGS)
    params = kernel_impl_params([name])
    assert [p.id for p in params] == [
        f"{name}-{i}" for i in ("cupy", "cython-wrong", "numba", "numpy")
    ]
    (cupy_marks, *others) = [p.marks for p in params]
    assert [m.name for m in cupy_marks] == ["skip"]
    assert (
        cupy_marks[0].kwargs["reason"]
        == f"{name}-cupy: cupy: not installed (pip install livesr[gpu])"
    )
    assert all(m == () for m in others)
    with pytest.raises(pytest.skip.Exception, match="cupy: not installed"):
        resolve(params[0].values[0])


def test_required_backend_turns_skip_into_failure(toy_package, monkeypatch):
    monkeypatch.setenv("LIVESR_REQUIRE_BACKENDS", "cupy,opencl")
    name = toy_package(modules=TOY_MODULES, init=TOY_INIT, kernel_kwargs=TOY_KWARGS)
    params = kernel_impl_params([name])
    assert all(p.marks == () for p in params)
    with pytest.raises(
        pytest.fail.Exception, match="LIVESR_REQUIRE_BACKENDS requires cupy"
    ):
        resolve(params[0].values[0])


def _run_pytest(tmp_path: Path, package: str, root: Path, require: str = "") -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    env["LIVESR_TEST_KERNEL_PACKAGES"] = package
    env["LIVESR_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("LIVESR_REQUIRE_BACKENDS", None)
    if require:
        env["LIVESR_REQUIRE_BACKENDS"] = require
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rfs",
            "-p",
            "no:cacheprovider",
            "tests/engine/test_engine_equivalence.py",
            "-k",
            package,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout + out.stderr


def test_generated_equivalence_tests_end_to_end(toy_package, tmp_path):
    name = toy_package(modules=TOY_MODULES, init=TOY_INIT, kernel_kwargs=TOY_KWARGS)
    root = tmp_path / "toy_kernels"  # where the toy_package fixture writes
    out = _run_pytest(tmp_path, name, root)
    summary = out.strip().splitlines()[-1]
    assert re.search(r"1 failed, 2 passed, (\d+ deselected, )?1 skipped", summary), out
    assert (
        f"FAILED tests/engine/test_engine_equivalence.py::test_matches_reference[{name}-cython-wrong]"
        in out
    )
    assert "on case 'small'" in out
    assert f"{name}-cupy: cupy: not installed" in out
    out = _run_pytest(tmp_path, name, root, require="cupy")
    # the required-but-unavailable one fails at setup (an error: CI goes red either way)
    assert re.search(r"1 failed, 2 passed, (\d+ deselected, )?1 error", out.strip().splitlines()[-1]), out
    assert "is unavailable (cupy: not installed" in out


def test_a_broken_kernel_package_fails_its_own_param_only(toy_package):
    good = toy_package(modules=TOY_MODULES, init=TOY_INIT, kernel_kwargs=TOY_KWARGS)
    bad = toy_package(init="raise ImportError('needs libfoo')")
    params = kernel_impl_params([bad, good])
    assert params[0].id == f"{bad}-import"
    assert len(params) == 5
    with pytest.raises(
        pytest.fail.Exception, match=f"{bad} failed to load: ImportError"
    ):
        resolve(params[0].values[0])


def test_skip_backend_skips_unless_the_backend_is_required(monkeypatch):
    from livesr.engine.testing import skip_backend

    monkeypatch.delenv("LIVESR_REQUIRE_BACKENDS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="opencl: no usable device"):
        skip_backend("opencl", "no usable device")
    monkeypatch.setenv("LIVESR_REQUIRE_BACKENDS", "cupy,opencl")
    with pytest.raises(pytest.fail.Exception, match="opencl required"):
        skip_backend("opencl", "no usable device")
    with pytest.raises(pytest.skip.Exception):  # a variant counts as its backend
        skip_backend("cython-guided", "not built")
    monkeypatch.setenv("LIVESR_REQUIRE_BACKENDS", "all")
    with pytest.raises(pytest.fail.Exception, match="cython-guided required"):
        skip_backend("cython-guided", "not built")
