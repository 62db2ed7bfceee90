"""Engine test fixtures: an isolated cache directory, a fake clock, toy kernel packages."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from livesr.engine import set_default_store
from livesr.engine._backends import clear_probe_cache
from livesr.engine._registry import unregister


class FakeClock:
    """A clock that only moves when told to (synthetic timings, no sleeps)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIVESR_CACHE_DIR", str(cache))
    monkeypatch.delenv("LIVESR_DISABLE_BACKENDS", raising=False)
    old = set_default_store(None)
    yield cache
    store = set_default_store(old)
    if store is not None:
        store.close()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def toy_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., str]]:
    """Factory: ``toy_package(modules={"_numpy": "...source..."}, init="...")`` -> package name.

    The package's ``__init__`` declares ``kernel = Kernel(NAME, package=__name__, ...)``
    with ``NAME`` the (unique) package name; ``init`` is appended to it.  Everything
    is removed from ``sys.modules`` and the registry afterwards.
    """
    root = tmp_path / "toy_kernels"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    made: list[str] = []

    def make(
        modules: Mapping[str, str] | None = None,
        init: str = "",
        kernel_kwargs: str = "",
    ) -> str:
        name = f"toy_{uuid.uuid4().hex[:8]}"
        pkg = root / name
        pkg.mkdir()
        header = (
            "from livesr.engine import Case, Kernel, Tolerance, implementation\n"
            f"NAME = {name!r}\n"
        )
        body = textwrap.dedent(init)
        decl = f"kernel = Kernel(NAME, package=__name__{', ' + kernel_kwargs if kernel_kwargs else ''})\n"
        (pkg / "__init__.py").write_text(header + body + "\n" + decl)
        for mod, source in (modules or {}).items():
            (pkg / f"{mod}.py").write_text(
                "from livesr.engine import implementation\n"
                f"NAME = {name!r}\n" + textwrap.dedent(source)
            )
        importlib.invalidate_caches()
        made.append(name)
        return name

    yield make
    for name in made:
        unregister(name)
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
    clear_probe_cache()
