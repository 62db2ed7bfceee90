"""Merge the timings of chosen implementations from one factory-defaults JSON into another.

Used to add GPU priors (measured with ``livesr bench --write-defaults`` on a GPU machine)
to the CPU-measured ``engine/factory_defaults.json``::

    python bench/merge_defaults.py gpu.json engine/factory_defaults.json --impl cupy
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("target", type=Path)
    ap.add_argument("--impl", action="append", required=True, help="implementation id")
    args = ap.parse_args()
    src = json.loads(args.source.read_text())
    dst = json.loads(args.target.read_text())
    added = 0
    for kernel, impls in src["kernels"].items():
        for impl in args.impl:
            if impl in impls:
                dst["kernels"].setdefault(kernel, {})[impl] = impls[impl]
                added += len(impls[impl])
    dst.setdefault("merged_from", []).append({"machine": src.get("machine"), "impls": args.impl})
    args.target.write_text(json.dumps(dst, indent=1, sort_keys=True) + "\n")
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("merge_defaults").info("%d signatures merged into %s", added, args.target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
