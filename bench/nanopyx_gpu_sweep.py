#!/usr/bin/env python3
"""NanoPyx 2.1.5's parameter sweep on the GPU machine, beside livesr's, same data.

    python bench/nanopyx_gpu_sweep.py [sweep_bench.py arguments]

The GPU image has numpy, scipy and CuPy; NanoPyx and the packages its sweep
runs on (liquid_engine, pyopencl, scikit-learn for liquid_engine's agent, tqdm,
mako, pyyaml) travel as wheels (``bench/gpu_nanopyx.sh``).  NanoPyx also
imports, at import time, packages its parameter sweep never calls (OpenCV,
scikit-image, lmfit, matplotlib: drift correction, channel registration,
plots; dask and transonic are optional there).  Those would not fit the device tool's 64 MiB carry, so this script
puts stand-in modules in their place before importing NanoPyx: any attribute
of a stand-in is a placeholder that raises ``RuntimeError`` when called, so a
code path that really needed one would fail loudly, not compute something else.
``sweep_bench.py`` then checks NanoPyx's QnR against livesr's on the same stack
(``max_abs_qnr_diff``, ``same_best``).

OpenCL is left on (``NANOPYX_DISABLE_OPENCL=0``), so NanoPyx's Liquid Engine
agent may choose its OpenCL implementation on the GPU.  Before timing, NanoPyx's
sweep runs ``--nanopyx-warmup`` times on the same stack so that the agent has
benchmarked each of its implementations on this input (its first calls try each
one); the run types it chose are counted from its "Agent chose" lines.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import json
import os
import re
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

#: top-level packages NanoPyx imports that its parameter sweep never calls
STAND_INS = ("cv2", "lmfit", "matplotlib", "skimage")


class _Placeholder:
    """Any attribute of a stand-in module: raises when used as a function."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"{self._name} was called, but it is a stand-in (bench/nanopyx_gpu_sweep.py):"
            " this NanoPyx code path needs the real package"
        )

    def __getattr__(self, attr: str) -> _Placeholder:
        return _Placeholder(f"{self._name}.{attr}")

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (object,)  # ``class X(stand_in.Base)`` at import time


class _StandInModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder(f"{self.__name__}.{attr}")


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.split(".")[0] in STAND_INS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install_stand_ins() -> None:
    """Put the stand-in finder first on ``sys.meta_path`` (before any import)."""
    sys.meta_path.insert(0, _StandInFinder())


def _without_json(argv: list[str]) -> list[str]:
    """``argv`` minus ``--json FILE`` (the warm-up's result is not kept)."""
    if "--json" not in argv:
        return list(argv)
    i = argv.index("--json")
    return argv[:i] + argv[i + 2 :]


def main(argv: list[str]) -> int:
    warmup = 2
    if "--nanopyx-warmup" in argv:
        i = argv.index("--nanopyx-warmup")
        warmup = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    install_stand_ins()
    os.environ.setdefault("NANOPYX_DISABLE_OPENCL", "0")  # set it to 1 to time its CPU
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sweep_bench  # type: ignore[import-not-found]

    runs: dict[str, Counter[str]] = {}
    for label, args in (
        ("warm-up", [*_without_json(argv), "--rounds", str(warmup), "--no-memory"]),
        ("timed", argv),
    ):
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            rc = sweep_bench.main(args)
        text = log.getvalue()
        runs[label] = Counter(re.findall(r"Agent chose: (\S+)", text))
    chosen = {k: dict(v) for k, v in runs.items()}
    print(f"nanopyx run types chosen: {chosen}")
    if "--json" in argv:  # the timed run's record: say what NanoPyx's agent chose
        path = Path(argv[argv.index("--json") + 1])
        records = json.loads(path.read_text())
        records[-1]["nanopyx_run_types"] = chosen["timed"]
        records[-1]["nanopyx_warmup_run_types"] = chosen["warm-up"]
        path.write_text(json.dumps(records, indent=2) + "\n")
    start = text.find("{")
    sys.stdout.write(text[start:] if start >= 0 else text)
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
