"""``livesr backends``: kernels × implementations with status and reason.

Examples::

    livesr backends
    livesr backends --kernel esrrf_map

Probes every backend (CuPy, OpenCL, ...) and imports every implementation module,
which is what a dispatch does lazily; it runs no kernel.
"""

from __future__ import annotations

import argparse
import logging
import sys

NAME = "backends"
HELP = "list kernels × implementations with their status (and why one is unavailable)"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kernel",
        action="append",
        metavar="NAME",
        help="only this kernel (name or package; repeatable)",
    )
    parser.add_argument(
        "--package",
        action="append",
        metavar="PKG",
        help="kernel package to list (repeatable; default: livesr.kernels.KERNEL_PACKAGES)",
    )
    parser.add_argument(
        "--no-store",
        action="store_true",
        help="do not read the benchmark store (the 'runs' column)",
    )


def select_kernels(args: argparse.Namespace) -> list:
    """The kernels named by ``--package``/``--kernel`` (shared with ``livesr bench``)."""
    from livesr.engine import load_kernels
    from livesr.kernels import KERNEL_PACKAGES

    packages = list(args.package or KERNEL_PACKAGES)
    kernels = load_kernels(packages)
    if args.kernel:
        wanted = set(args.kernel)
        chosen = [k for k in kernels if k.name in wanted or k.package in wanted]
        missing = wanted - {k.name for k in chosen} - {k.package for k in chosen}
        if missing:
            known = ", ".join(k.name for k in kernels) or "none"
            raise ValueError(
                f"--kernel {', '.join(sorted(missing))}: no such kernel (known: {known})"
            )
        kernels = chosen
    return kernels


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def run(args: argparse.Namespace) -> int:
    from livesr.engine import default_store, report_header

    out = sys.stdout
    out.write(report_header() + "\n")
    kernels = select_kernels(args)
    if not kernels:
        out.write(
            "no kernels (livesr.kernels.KERNEL_PACKAGES is empty or missing; pass --package)\n"
        )
        return 0
    counts: dict[tuple[str, str], int] = {}
    store_path = ""
    if not args.no_store:
        store = default_store()
        store_path = str(store.path)
        if store.path.exists():
            for (kernel, impl, _sig), n in store.stored_counts().items():
                counts[(kernel, impl)] = counts.get((kernel, impl), 0) + n
    rows = [["kernel", "implementation", "status", "runs", "reason"]]
    for kernel in kernels:
        for info in kernel.implementations(include_unavailable=True):
            rows.append(
                [
                    kernel.name,
                    info.id,
                    "available" if info.available else "unavailable",
                    str(counts.get((kernel.name, info.id), 0)),
                    info.reason,
                ]
            )
    out.write(_table(rows) + "\n")
    if store_path:
        out.write(f"runs: benchmark run times on this machine in {store_path}\n")
    return 0
