"""Importing livesr starts nothing and pulls in no heavy optional backend."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = [
    "livesr.stream",
    "livesr.stream.cli",
    "livesr.engine",
    "livesr.kernels",
    "livesr.adapters",
    "livesr.sim",
]
FORBIDDEN = [
    "cupy",
    "numba",
    "pyopencl",
    "napari",
    "qtpy",
    "PyQt6",
    "PyQt5",
    "PySide6",
    "sklearn",
    "torch",
    "nanopyx",
    "pymmcore_plus",
    "dask",
]

SCRIPT = """
import json, sys, threading
before = set(threading.enumerate())
import {modules}
loaded = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})
threads = [t.name for t in threading.enumerate() if t not in before]
print(json.dumps({{"loaded": loaded, "threads": threads}}))
"""


def test_import_has_no_side_effects(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(home / "c")}
    code = SCRIPT.format(modules=", ".join(MODULES), forbidden=FORBIDDEN)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], f"heavy modules imported: {report['loaded']}"
    assert report["threads"] == [], f"threads started at import: {report['threads']}"
    # nothing written to the (fresh) home directory or cache
    assert list(home.iterdir()) == []


WALK_SCRIPT = """
import importlib, json, pkgutil, sys, threading
before = set(threading.enumerate())
import livesr.stream, livesr.engine, livesr.kernels, livesr.adapters, livesr.sim
names = []
for pkg in (livesr.stream, livesr.engine, livesr.kernels, livesr.adapters, livesr.sim):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        names.append(info.name)
failed = {{}}
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:  # an optional backend that is not installed here
        failed[name] = str(exc)
loaded = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})
threads = [t.name for t in threading.enumerate() if t not in before]
print(json.dumps({{"n": len(names), "loaded": loaded, "threads": threads, "failed": failed}}))
"""

#: Importing *any* livesr module, backend modules included, must not load these.
GPU_GUI = ["cupy", "pyopencl", "napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "torch",
           "vispy"]


def test_every_module_imports_without_gpu_or_gui(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(home / "c")}
    out = subprocess.run(
        [sys.executable, "-c", WALK_SCRIPT.format(forbidden=GPU_GUI)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["n"] > 5
    assert report["loaded"] == [], f"GPU/GUI modules imported: {report['loaded']}"
    assert report["threads"] == [], f"threads started at import: {report['threads']}"
    # (pymmcore-plus, imported by the Micro-Manager modules, writes its own log under
    # ~/.local/share; that is the library's behaviour, so HOME is not checked here)
