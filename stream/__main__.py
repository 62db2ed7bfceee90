"""``python -m livesr.stream`` is the same as the ``livesr`` console script."""

from __future__ import annotations

import sys

from livesr.stream.cli import main

if __name__ == "__main__":
    sys.exit(main())
