"""OpenMP threads that sleep between parallel regions in the live commands.

The compiled eSRRF maps (Cython ``prange``, numba's ``omp`` threading layer) run on
OpenMP.  By default libgomp's worker threads *spin* for a while after every parallel
region, waiting for the next one.  A live pipeline runs a short region every few
milliseconds (one batch of frames), so its idle worker spun almost without pause:
on the 2-core VM the quick start (``livesr run``, 64x64 at 100 frames/s) used 29.5
s of CPU for 22.7 s of acquisition, 0.8 of a core of it in one spinning worker
thread, CPU that the ingest, the viewer and the analyses needed.  With passive
waiting the same run used 18.3 s (p50 latency 5.3 -> 7.9 ms, p99 61 -> 23 ms, 0
windows skipped either way).

libgomp reads ``OMP_WAIT_POLICY`` once, when the first OpenMP library loads, so
:func:`prefer_passive_openmp` must run before any kernel is imported: the CLI calls
it for ``run`` and ``replay`` before the command starts
(:data:`livesr.stream.cli.LIVE_COMMANDS`).  A value the user set is kept.
"""

from __future__ import annotations

import logging
import os

__all__ = ["WAIT_POLICY_ENV", "openmp_loaded", "prefer_passive_openmp"]

logger = logging.getLogger(__name__)

#: the standard OpenMP environment variable
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def openmp_loaded() -> bool:
    """Whether an OpenMP runtime (libgomp, libomp, libiomp) is already loaded here
    (Linux: ``/proc/self/maps``; elsewhere unknown: False)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return any(
                lib in line for line in fh for lib in ("libgomp", "libomp", "libiomp")
            )
    except OSError:
        return False


def prefer_passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; whether the
    policy in effect is passive (False when a runtime was loaded before this call:
    it read the environment already, and nothing changes)."""
    chosen = os.environ.get(WAIT_POLICY_ENV)
    if chosen is not None:
        logger.debug("%s=%s kept (set by the user)", WAIT_POLICY_ENV, chosen)
        return chosen.strip().upper() == "PASSIVE"
    if openmp_loaded():
        logger.debug("an OpenMP runtime is loaded already: its wait policy stays")
        return False
    os.environ[WAIT_POLICY_ENV] = "PASSIVE"
    return True
