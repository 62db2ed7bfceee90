"""Registry and lazy discovery: one file per implementation, failures recorded with reasons."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from livesr.engine import Backend, implementation, probe
from livesr.engine._registry import MODULE_PATTERN, registrations

# "cupy is not installed", on every machine (a GPU box has it)
NO_CUPY = 'raise ModuleNotFoundError("No module named \'cupy\'", name="cupy")\n'

NUMPY_IMPL = """
@implementation(NAME, backend="numpy")
def scale(x, factor=2.0):
    return x * factor
"""


def test_discovery_is_lazy_and_records_failures(toy_package):
    name = toy_package(
        modules={
            "_numpy": NUMPY_IMPL,
            "_numba": """
                import numba
                @numba.njit(cache=False)
                def _scale(x, factor):
                    return x * factor
                @implementation(NAME, backend="numba")
                def scale(x, factor=2.0):
                    return _scale(x, factor)
            """,
            "_cupy": NO_CUPY,
            "_cython_impl": f"from {'{'}__package__{'}'} import _cython\n".replace(
                "{__package__}", "."
            ),
            "_spec": "raise RuntimeError('private helpers are never imported by discovery')\n",
            "_opencl_wg16": "raise ValueError('a bug in an implementation module')\n",
        }
    )
    pkg = importlib.import_module(name)
    # declaring the kernel imported nothing of its folder
    assert [m for m in sys.modules if m.startswith(name + ".")] == []
    infos = {i.id: i for i in pkg.kernel.implementations()}
    assert sorted(infos) == ["cupy", "cython", "numba", "numpy", "opencl-wg16"]
    assert infos["numpy"].available and infos["numba"].available
    assert infos["numba"].backend is Backend.NUMBA
    assert infos["cupy"].reason == "cupy: not installed (pip install livesr[gpu])"
    assert not infos["cython"].available
    assert infos["cython"].reason.startswith(
        f"cython: extension {name}._cython not built"
    )
    assert (
        "ValueError: a bug in an implementation module" in infos["opencl-wg16"].reason
    )
    assert f"{name}._spec" not in sys.modules
    available = [i.id for i in pkg.kernel.implementations(include_unavailable=False)]
    assert available == ["numba", "numpy"]


def test_unbuilt_cython_source_is_reported(toy_package, tmp_path):
    name = toy_package(modules={"_numpy": NUMPY_IMPL})
    (tmp_path / "toy_kernels" / name / "_cython.pyx").write_text(
        "# registers in Cython\n"
    )
    kernel = importlib.import_module(name).kernel
    info = {i.id: i for i in kernel.implementations()}["cython"]
    assert not info.available
    assert info.reason.startswith(
        f"cython: extension {name}._cython not built for this Python"
    )


def test_using_runs_exactly_one_implementation(toy_package):
    name = toy_package(
        modules={
            "_numpy": NUMPY_IMPL,
            "_numba": """
                @implementation(NAME, backend="numba", variant="fake")
                def scale(x, factor=2.0):
                    return x * factor + 1000.0
            """,
        }
    )
    kernel = importlib.import_module(name).kernel
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(kernel.using("numpy")(x, factor=3.0), x * 3)
    np.testing.assert_array_equal(
        kernel.using("numba-fake")(x, factor=3.0), x * 3 + 1000
    )
    assert kernel.stats.calls == 0  # using() records nothing by default
    with pytest.raises(
        KeyError, match="no implementation 'cupy'; registered: numba-fake, numpy"
    ):
        kernel.using("cupy")


def test_unavailable_implementation_cannot_be_pinned(toy_package):
    name = toy_package(modules={"_numpy": NUMPY_IMPL, "_cupy": NO_CUPY})
    kernel = importlib.import_module(name).kernel
    with pytest.raises(
        RuntimeError, match=r"'cupy' is unavailable: cupy: not installed"
    ):
        kernel.using("cupy")


def test_disabled_backend_is_unavailable(toy_package, monkeypatch):
    monkeypatch.setenv("LIVESR_DISABLE_BACKENDS", "numpy")
    name = toy_package(modules={"_numpy": NUMPY_IMPL})
    kernel = importlib.import_module(name).kernel
    (info,) = kernel.implementations()
    assert info.reason == "numpy: disabled by LIVESR_DISABLE_BACKENDS"
    with pytest.raises(RuntimeError, match="no available implementation"):
        kernel(np.ones(3, np.float32))


def test_duplicate_id_is_an_error():
    @implementation("dup_kernel_test", backend="numpy")
    def a(x):
        return x

    try:
        with pytest.raises(
            ValueError, match="registered twice.*give one of them a variant"
        ):

            @implementation("dup_kernel_test", backend="numpy")
            def b(x):
                return x

        assert list(registrations("dup_kernel_test")) == ["numpy"]
    finally:
        from livesr.engine._registry import unregister

        unregister("dup_kernel_test")


@pytest.mark.parametrize("bad", ["torch", "CUDA", ""])
def test_backend_is_a_closed_enum(bad):
    with pytest.raises(
        ValueError, match="expected one of: numpy, numba, cython, opencl, cupy"
    ):
        implementation("k", backend=bad)


def test_variant_must_be_id_safe():
    with pytest.raises(ValueError, match="variant='wg 16'"):
        implementation("k", backend="opencl", variant="wg 16")


def test_module_naming_rule():
    names = [
        "_numpy",
        "_numba",
        "_cython_impl",
        "_opencl_wg16",
        "_cupy",
        "_spec",
        "_numbax",
        "numpy",
    ]
    assert [n for n in names if MODULE_PATTERN.match(n)] == [
        "_numpy",
        "_numba",
        "_cython_impl",
        "_opencl_wg16",
        "_cupy",
    ]


def test_probes_name_reasons():
    assert probe("numpy").ok
    cupy = probe("cupy")
    if importlib.util.find_spec("cupy") is None:
        assert cupy.reason == "cupy: not installed (pip install livesr[gpu])"
        assert (
            cupy.summary()
            == "cupy unavailable: not installed (pip install livesr[gpu])"
        )


def test_register_sync_runs_hooks_for_its_backend():
    from livesr.engine import register_sync, synchronize
    from livesr.engine._backends import _sync_hooks

    calls = []

    def hook():
        calls.append("finish")

    register_sync("opencl", hook)
    register_sync("opencl", hook)  # idempotent
    try:
        synchronize("numba")
        assert calls == []
        synchronize("opencl")
        assert calls == ["finish"]
    finally:
        _sync_hooks["opencl"].remove(hook)


def test_report_header_line():
    from livesr.engine import report_header

    header = report_header()
    parts = header.removeprefix("backends: ").split(" | ")
    assert [p.split()[0] for p in parts] == [
        "numpy",
        "numba",
        "cython",
        "opencl",
        "cupy",
    ]
    assert parts[0] == "numpy ok"
