"""Packaging glue that TOML cannot express.

The five code folders at the repository root install as subpackages of the single
import name ``livesr`` (``stream/`` -> ``livesr.stream`` ...).  ``livesr`` itself is
an implicit namespace package.  Cython sources named ``kernels/<kernel>/_cython.pyx``
are compiled with OpenMP during ``pip install``; a new kernel folder or a new Cython
backend needs no edit here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup

ROOTS = ("stream", "engine", "kernels", "adapters", "sim")
HERE = Path(__file__).parent

package_dir: dict[str, str] = {}
packages: list[str] = []
for root in ROOTS:
    package_dir[f"livesr.{root}"] = root
    packages.append(f"livesr.{root}")
    for sub in find_packages(root):
        packages.append(f"livesr.{root}.{sub}")


def _extensions() -> list[Extension]:
    pyx = sorted(HERE.glob("kernels/*/_cython*.pyx"))
    if not pyx:
        return []
    from Cython.Build import cythonize

    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    exts = [
        Extension(
            "livesr." + str(p.relative_to(HERE).with_suffix("")).replace(os.sep, "."),
            [str(p.relative_to(HERE))],
            extra_compile_args=["-O3", *openmp],
            extra_link_args=openmp,
        )
        for p in pyx
    ]
    return cythonize(exts, compiler_directives={"language_level": "3"}, quiet=True)


setup(package_dir=package_dir, packages=packages, ext_modules=_extensions())
