"""Incremental sliding-window eSRRF for streams: eSRRF movies from rolling windows.

:class:`SlidingEsrrf` takes camera frames one at a time (or in small batches) and,
every ``stride`` frames, returns the eSRRF image of the last ``window`` frames,
equal to batch :func:`livesr.kernels.esrrf` on those frames (to float32 rounding).

How it works
------------
Each frame's radial-gradient-convergence map (:func:`livesr.kernels.esrrf_frame`,
``(H*M, W*M)`` float32) is computed once when the frame arrives. The temporal
statistic is kept as running sums (:mod:`livesr.kernels._window`): ``S = sum x``
(AVG), ``Q = sum x**2`` (VAR) and ``P = sum x_t x_{t+1}`` over the pairs inside the
window (TAC2), in float64 with error-free compensation, so adding a frame and later
removing it leaves no residue and nothing drifts however long the stream. The cost
per frame does not grow with the window.

Removing the frame that leaves the window needs its map. Two strategies:

``"maps"``
    Keep the maps of the window's frames (``(window + 1) * H*M * W*M * 4`` bytes).
    One map computation per frame.
``"raw"``
    Keep only the raw input frames (M**2 times smaller, half again for 16-bit
    cameras) plus the maps of the first and last frame of the window and two reused
    work maps; when the first frame leaves, the map of the next one is recomputed
    from its raw frame and shift. Two map computations per frame, whatever the
    window. If the map function is not deterministic (e.g. a dispatcher switching
    between implementations that differ in the last bits), a recomputed map differs
    from the one added and removals leave a residue; the *shadow sums* (on by
    default with this strategy, ``shadow_sums``) discard it every ``window`` frames
    by swapping in sums built from additions only -- one more sum update per frame,
    no extra map, no latency spike (tested with a map that is noisy at 1e-3).

Both strategies give bit-identical images (tested). The running sums are updated by
fused numba kernels when numba imports (``sums_backend``), else by numpy; same bits.

``strategy="auto"`` (default) picks ``"maps"`` when its memory estimate fits
``memory_budget_bytes``, else ``"raw"``; :attr:`SlidingEsrrf.strategy` reports the
active one (``None`` until the frame shape is known).

Emission rule
-------------
Frames are numbered from 0 in arrival order (every pushed frame counts, see
:attr:`SlidingEsrrf.frames_seen`). The first image is emitted when frame
``window - 1`` arrives and then every ``stride`` frames: when frame ``e`` arrives with
``e = window - 1 + k * stride`` (k = 0, 1, ...), the image of frames
``e - window + 1 .. e`` is returned. When ``stride > window`` the frames between two
windows (``i mod stride >= window``) belong to no window: they are counted but their
maps are never computed. :meth:`SlidingEsrrf.set_params` may move this schedule (see
there).

Memory
------
Bounded, whatever the stream length (:func:`estimate_memory`): the float64 running
sums (16 bytes per output pixel for AVG, 36 for VAR/TAC2 with the numba kernels; 40 /
76 / 84 with the numpy fallback, which needs work arrays), the stored window
(``window + 1`` maps, or ``window`` raw frames and three maps), and the temporaries
of one emission. NanoPyx holds ``40 * N * H * W * M**2`` bytes per call.
Example, 256x256 frames, M = 5, TAC2, window 100: 793 MB with the maps strategy
(662 MB of maps, 59 MB of sums), 151 MB with the raw one (26 MB of float32 frames);
NanoPyx: 6.6 GB for the same 100 frames.

Package layout
--------------
``_config.py``
    :class:`SlidingConfig`, :class:`SlidingResult`, :func:`estimate_memory`.
``_base.py``
    ``SlidingBase``: the emission schedule, counters, properties, ``push`` /
    ``push_many`` argument checks and ``set_params`` validation shared by both
    windows (written once).
``_host.py``, ``_host_store.py``
    :class:`SlidingEsrrf` (the API, then its storage strategies), :func:`esrrf_movie`.
``_device.py``, ``_device_maps.py``
    :class:`DeviceSlidingEsrrf`, the CUDA (CuPy) window with the same schedule
    and results, and its engine-dispatched batch maps.
The running-sum arithmetic is :mod:`livesr.kernels.window_sums` (numpy, numba
and CUDA implementations, one file each).
"""

from __future__ import annotations

from livesr.kernels.sliding._config import (
    DEFAULT_MEMORY_BUDGET,
    BatchMap,
    FrameMap,
    SlidingConfig,
    SlidingResult,
    estimate_memory,
)
from livesr.kernels.sliding._device import DeviceSlidingEsrrf
from livesr.kernels.sliding._device_maps import (
    device_available,
    engine_device_map,
    engine_device_map_batch,
)
from livesr.kernels.sliding._host import SlidingEsrrf, esrrf_movie

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "BatchMap",
    "DeviceSlidingEsrrf",
    "FrameMap",
    "SlidingConfig",
    "SlidingEsrrf",
    "SlidingResult",
    "device_available",
    "engine_device_map",
    "engine_device_map_batch",
    "esrrf_movie",
    "estimate_memory",
]
