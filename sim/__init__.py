"""livesr.sim: a simulated fluctuation / single-molecule microscope with ground truth."""

from __future__ import annotations

__all__: list[str] = []
