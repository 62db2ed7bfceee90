"""Pytest helpers: registry-driven parametrisation of kernel implementations.

Used by ``tests/conftest.py``; importable by any plugin (imports pytest when called).

- :func:`parametrize_kernel_impls` parametrises a test argument ``kernel_impl`` over
  every kernel of the caller's catalogue (``livesr.kernels.KERNEL_PACKAGES``,
  passed in) × its implementations, ids ``<kernel>-<impl>``
  (``esrrf_map-numba``), so ``pytest -k numba`` and ``-k esrrf_map`` work.  An
  unavailable implementation is a skip with its reason.
- ``LIVESR_REQUIRE_BACKENDS=cupy,opencl`` (or ``all``) turns the skips of those
  backends into failures, so a broken GPU install cannot pass as "skipped".
- :func:`resolve` is what the ``kernel_impl`` fixture returns (it fails the test for
  a required, unavailable implementation); :func:`skip_backend` does the same for
  tests that probe a backend themselves.
- :func:`assert_matches` compares two results with a kernel's tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from livesr.engine._catalog import load_kernel
from livesr.engine._kernel import Kernel
from livesr.engine._types import ImplInfo, Tolerance

REQUIRE_ENV = "LIVESR_REQUIRE_BACKENDS"
#: Extra kernel packages to parametrise over (comma separated), e.g. toy kernels.
EXTRA_ENV = "LIVESR_TEST_KERNEL_PACKAGES"
ARGNAME = "kernel_impl"


@dataclass(frozen=True)
class KernelImpl:
    """One (kernel, implementation) pair of the parametrisation."""

    kernel: Kernel
    info: ImplInfo

    @property
    def id(self) -> str:
        return f"{self.kernel.name}-{self.info.id}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run exactly this implementation."""
        return self.kernel.using(self.info.id)(*args, **kwargs)

    def reference(self, *args: Any, **kwargs: Any) -> Any:
        """Run the kernel's reference implementation."""
        return self.kernel.using(self.kernel.reference)(*args, **kwargs)


def required_backends() -> set[str]:
    """Backends named in ``LIVESR_REQUIRE_BACKENDS`` (``all`` = every backend)."""
    raw = os.environ.get(REQUIRE_ENV, "")
    names = {b.strip().lower() for b in raw.split(",") if b.strip()}
    if "all" in names:
        from livesr.engine._types import Backend

        return {b.value for b in Backend}
    return names


def skip_backend(backend: str, reason: str) -> None:
    """Skip the calling test because ``backend`` cannot run here (``reason``), or fail
    it when ``LIVESR_REQUIRE_BACKENDS`` names that backend.

    Backend ids with a variant (``cython-guided``) count as their backend.
    """
    import pytest

    base = backend.split("-", 1)[0].lower()
    if base in required_backends():
        pytest.fail(f"{backend} required ({REQUIRE_ENV}) but unavailable: {reason}")
    pytest.skip(f"{backend}: {reason}" if not reason.startswith(backend) else reason)


def packages_under_test(
    packages: Iterable[str] | None = None, catalogue: Iterable[str] = ()
) -> list[str]:
    """``packages`` if given, else ``catalogue`` (the caller's, e.g.
    ``livesr.kernels.KERNEL_PACKAGES``) plus the ones in ``LIVESR_TEST_KERNEL_PACKAGES``."""
    if packages is not None:
        return list(packages)
    extra = [p.strip() for p in os.environ.get(EXTRA_ENV, "").split(",") if p.strip()]
    return list(dict.fromkeys([*catalogue, *extra]))


def kernel_impl_params(
    packages: Iterable[str] | None = None, catalogue: Iterable[str] = ()
) -> list[Any]:
    """``pytest.param`` objects, one per (kernel, implementation) of
    :func:`packages_under_test`."""
    import pytest

    required = required_backends()
    params = []
    for package in packages_under_test(packages, catalogue):
        try:
            kernel = load_kernel(package)
            infos = kernel.implementations(include_unavailable=True)
        except Exception as exc:  # one broken kernel must not hide the others' tests
            broken = BrokenKernel(package, f"{type(exc).__name__}: {exc}")
            params.append(
                pytest.param(broken, id=f"{package.rsplit('.', 1)[-1]}-import")
            )
            continue
        for info in infos:
            pair = KernelImpl(kernel, info)
            marks: Sequence[Any] = ()
            if not info.available and info.backend.value not in required:
                marks = (pytest.mark.skip(reason=f"{pair.id}: {info.reason}"),)
            params.append(pytest.param(pair, id=pair.id, marks=marks))
    return params


def parametrize_kernel_impls(
    metafunc: Any,
    packages: Iterable[str] | None = None,
    catalogue: Iterable[str] = (),
) -> None:
    """Call from ``pytest_generate_tests``: parametrise ``kernel_impl`` if requested
    (over ``packages``, or ``catalogue`` plus ``LIVESR_TEST_KERNEL_PACKAGES``)."""
    if ARGNAME in metafunc.fixturenames:
        metafunc.parametrize(
            ARGNAME, kernel_impl_params(packages, catalogue), indirect=True
        )


@dataclass(frozen=True)
class BrokenKernel:
    """A kernel package that could not be loaded (its tests fail with the error)."""

    package: str
    error: str


def resolve(pair: KernelImpl | BrokenKernel) -> KernelImpl:
    """The ``kernel_impl`` fixture's value; fails if required but unavailable."""
    import pytest

    if isinstance(pair, BrokenKernel):
        pytest.fail(
            f"kernel package {pair.package} failed to load: {pair.error}", pytrace=False
        )
    if not pair.info.available:
        if pair.info.backend.value in required_backends():
            pytest.fail(
                f"{pair.id} is unavailable ({pair.info.reason}) but {REQUIRE_ENV} requires "
                f"{pair.info.backend.value}; fix the install or unset {REQUIRE_ENV}",
                pytrace=False,
            )
        pytest.skip(f"{pair.id}: {pair.info.reason}")
    return pair


def assert_matches(
    actual: Any, expected: Any, tolerance: Tolerance, what: str = ""
) -> None:
    """``assert_allclose`` with the kernel's tolerance, recursing into tuples/lists/dicts."""
    import numpy as np

    if isinstance(expected, dict):
        assert set(actual) == set(expected), (
            f"{what}: keys {set(actual)} != {set(expected)}"
        )
        for key in expected:
            assert_matches(actual[key], expected[key], tolerance, f"{what}[{key!r}]")
        return
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected), (
            f"{what}: {len(actual)} items != {len(expected)}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, tolerance, f"{what}[{i}]")
        return
    if expected is None:
        assert actual is None, f"{what}: expected None, got {type(actual).__name__}"
        return
    a = _to_numpy(actual)
    e = _to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != reference {e.shape}"
    np.testing.assert_allclose(
        a, e, rtol=tolerance.rtol, atol=tolerance.atol, err_msg=what
    )


def _to_numpy(x: Any) -> Any:
    import numpy as np

    get = getattr(x, "get", None)  # cupy arrays
    if get is not None and type(x).__module__.startswith("cupy"):
        x = get()
    return np.asarray(x)
