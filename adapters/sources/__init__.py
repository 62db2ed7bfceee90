"""livesr.adapters.sources: frame sources that push over the lossless link.

- :mod:`livesr.adapters.sources.simulated` -- the built-in simulated microscope
  (:class:`~livesr.adapters.sources.simulated.SimulatedSource`).

Importing this package starts nothing.
"""

from __future__ import annotations

__all__: list[str] = []
