"""OpenMP workers that sleep between parallel regions on small machines.

The compiled eSRRF maps (Cython ``prange``, numba's ``omp`` threading layer) run on
OpenMP.  By default libgomp's worker threads *spin* for a while after every parallel
region, waiting for the next one.  A live pipeline runs a short region every few
milliseconds (one batch of frames), so its idle worker spun almost without pause:
on the 2-core VM the quick start (``livesr run``, 64x64 at 100 frames/s) used 29.5
s of CPU for 22.7 s of acquisition, 0.8 of a core of it in one spinning worker
thread, CPU that the ingest, the viewer and the analyses needed.  With passive
waiting the same run used 18.3 s (p50 latency 5.3 -> 7.9 ms, p99 61 -> 23 ms, 0
windows skipped either way).

Only where cores are scarce (at most :data:`PASSIVE_MAX_CPUS` usable CPUs): there a
spinning worker takes a core that the pipeline's other threads need.  On a many-core
host the spin only uses idle cores and saves a futex wake-up of every worker per
parallel region (16 threads on the H100 host, where the drift's numba kernels run
short regions every frame), so libgomp's default is kept: on that host a
`livesr bench --e2e` trial at 256², 2000 frames/s published 2286 windows with the
code before this module existed and 1407 with it (one trial each, same machine,
2026-12-08; other changes lie between the two, so the share due to the wait policy
is not measured).

libgomp reads ``OMP_WAIT_POLICY`` once, when the first OpenMP library loads, so
:func:`prefer_passive_openmp` must run before any kernel is imported: the CLI calls
it for ``run`` and ``replay`` before the command starts
(:data:`livesr.stream.cli.LIVE_COMMANDS`).  A value the user set is kept.
"""

from __future__ import annotations

import logging
import os

__all__ = [
    "PASSIVE_MAX_CPUS",
    "WAIT_POLICY_ENV",
    "openmp_loaded",
    "prefer_passive_openmp",
    "usable_cpus",
]

logger = logging.getLogger(__name__)

#: the standard OpenMP environment variable
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"

#: passive waiting is asked for on machines with at most this many usable CPUs
PASSIVE_MAX_CPUS = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


def prefer_passive_openmp(cpus: int | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` on a small machine unless the user chose a
    policy; whether the policy in effect is passive.

    Parameters
    ----------
    cpus : int, optional
        Usable CPUs (default :func:`usable_cpus`); above :data:`PASSIVE_MAX_CPUS`
        nothing is set (module docstring).

    Returns
    -------
    bool
        False as well when a runtime was loaded before this call (it read the
        environment already, and nothing changes).
    """
    chosen = os.environ.get(WAIT_POLICY_ENV)
    if chosen is not None:
        logger.debug("%s=%s kept (set by the user)", WAIT_POLICY_ENV, chosen)
        return chosen.strip().upper() == "PASSIVE"
    n = usable_cpus() if cpus is None else int(cpus)
    if n > PASSIVE_MAX_CPUS:
        logger.debug(
            "%d CPUs: OpenMP's own wait policy kept (passive only up to %d)",
            n,
            PASSIVE_MAX_CPUS,
        )
        return False
    if openmp_loaded():
        logger.debug("an OpenMP runtime is loaded already: its wait policy stays")
        return False
    os.environ[WAIT_POLICY_ENV] = "PASSIVE"
    return True
