"""livesr.adapters.sources: frame sources that push over the lossless link.

- :mod:`livesr.adapters.sources.simulated` -- the built-in simulated microscope
  (:class:`~livesr.adapters.sources.simulated.SimulatedSource`).
- :mod:`livesr.adapters.sources.mmcore` / :mod:`~livesr.adapters.sources.mmcore_push`
  -- a pymmcore-plus core: sequence acquisition, an MDA, or a listener on a running
  acquisition (``attach=True``).
- :mod:`livesr.adapters.sources.mm_config` -- a Micro-Manager configuration file
  loaded into ``UniMMCore`` (``livesr run --source mm``);
  :mod:`~livesr.adapters.sources.mm_devices` -- the simulated microscope as Python
  devices for such a file (``livesr_sim.cfg``, shipped here).

All of them derive from :class:`ThreadedSource` (start / stop / join on a daemon
thread: the :class:`livesr.stream.Source` protocol).  Importing this package starts
nothing.
"""

from __future__ import annotations

from livesr.adapters.sources._base import ThreadedSource

__all__: list[str] = ["ThreadedSource"]
