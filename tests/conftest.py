"""Shared test fixtures, the backend report header and registry-driven parametrisation.

``nanopyx`` (module scope) is the NanoPyx reference every parity test and benchmark
uses: one place that sets its scratch HOME and turns its OpenCL off.

Any test taking ``kernel_impl`` runs once per kernel of ``livesr.kernels.KERNEL_PACKAGES``
× implementation (ids ``esrrf_map-numba``); unavailable implementations are skipped
with their reason, or fail when their backend is listed in
``LIVESR_REQUIRE_BACKENDS=cupy,opencl``.  See :mod:`livesr.engine.testing`.
"""

from __future__ import annotations

import os

import pytest

# pymmcore-plus picks Qt signals for a core created while a Qt application exists
# (PYMM_SIGNALS_BACKEND=auto); a Qt signal from the MDA thread is then delivered only
# by a running Qt event loop, which the tests that drive a core directly never run:
# their frameReady callbacks never came once the suite's collection (napari,
# pymmcore-widgets) had left a Qt application behind.  The napari tests that need Qt
# signals run their viewer in a child process with the backend set back to "auto".
os.environ.setdefault("PYMM_SIGNALS_BACKEND", "psygnal")


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"cpu count: {os.cpu_count()}"]
    try:
        from livesr.engine import report_header

        lines.append(report_header())
    except Exception as exc:  # the header must never break collection
        lines.append(f"backends: unknown ({type(exc).__name__}: {exc})")
    return lines


@pytest.fixture(scope="module")
def nanopyx(tmp_path_factory: pytest.TempPathFactory):
    """The ``nanopyx`` package, the reference eSRRF and drift implementation.

    Imported with a scratch ``HOME`` (NanoPyx writes its benchmark files there) and
    OpenCL off (``NANOPYX_DISABLE_OPENCL=1``: the threaded CPU reference, the same on
    every machine); both are restored after the test module.  ``nanopyx.core.transform``
    is imported too.  Skipped when NanoPyx is not installed.
    """
    import warnings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("nanopyx_home")))
        mp.setenv("NANOPYX_DISABLE_OPENCL", "1")
        with warnings.catch_warnings():  # its import warns (OpenCL off, old APIs)
            warnings.simplefilter("ignore")
            mod = pytest.importorskip("nanopyx")
            import nanopyx.core.transform  # noqa: F401

        yield mod


@pytest.fixture(autouse=True, scope="session")
def _livesr_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Dispatched kernels record benchmarks: keep them out of the user's cache."""
    from livesr.engine import set_default_store

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIVESR_CACHE_DIR", str(tmp_path_factory.mktemp("livesr-cache")))
        old = set_default_store(None)
        yield
        store = set_default_store(old)
        if store is not None:
            store.close()


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """``@pytest.mark.slow`` tests (soak, long fuzz, repeated fault runs) are skipped
    unless ``LIVESR_SLOW=1`` or a ``-m`` expression names ``slow`` (``-m slow``)."""
    if os.environ.get("LIVESR_SLOW") == "1" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow test: run with LIVESR_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel_impl" in metafunc.fixturenames:
        from livesr.engine.testing import parametrize_kernel_impls
        from livesr.kernels import KERNEL_PACKAGES

        parametrize_kernel_impls(metafunc, catalogue=KERNEL_PACKAGES)


@pytest.fixture
def kernel_impl(request: pytest.FixtureRequest):
    """One (kernel, implementation) pair; see the module docstring."""
    from livesr.engine.testing import resolve

    return resolve(request.param)
