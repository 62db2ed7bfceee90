"""livesr.adapters (see the package README section).  Importing it starts nothing."""

from __future__ import annotations

__all__: list[str] = []
