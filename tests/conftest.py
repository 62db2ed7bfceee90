"""Shared test fixtures, the backend report header and registry-driven parametrisation.

Any test taking ``kernel_impl`` runs once per kernel of ``livesr.kernels.KERNEL_PACKAGES``
× implementation (ids ``esrrf_map-numba``); unavailable implementations are skipped
with their reason, or fail when their backend is listed in
``LIVESR_REQUIRE_BACKENDS=cupy,opencl``.  See :mod:`livesr.engine.testing`.
"""

from __future__ import annotations

import os

import pytest


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"cpu count: {os.cpu_count()}"]
    try:
        from livesr.engine import report_header

        lines.append(report_header())
    except Exception as exc:  # the header must never break collection
        lines.append(f"backends: unknown ({type(exc).__name__}: {exc})")
    return lines


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
