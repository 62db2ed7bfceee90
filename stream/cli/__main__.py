"""``python -m livesr.stream.cli`` is the ``livesr`` console script (the end-to-end
benchmark and the tests spawn it this way)."""

from __future__ import annotations

import sys

from livesr.stream.cli import main

if __name__ == "__main__":
    sys.exit(main())
