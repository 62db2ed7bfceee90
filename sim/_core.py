"""A ready ``UniMMCore`` with the simulated microscope loaded, and its clean shutdown.

>>> from livesr.sim import SimConfig, make_core
>>> with make_core(SimConfig(seed=1)) as core:       # doctest: +SKIP
...     core.setXYPosition(1.0, 0.0)
...     core.snapImage(); img = core.getImage()

Shutdown (ECOSYSTEM.md §1.8): MMCore delivers queued notifications into Python
from a C++ thread; if one is still queued while CPython finalises, glibc aborts
with "FATAL: exception not rethrown". :func:`shutdown_core` stops MDA and
sequence acquisition, unloads the devices and unregisters the notification
callback. A :class:`SimCore` does it on ``__exit__``/``close()``, and at
interpreter exit (``atexit``, before finalisation) for every core still open.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from pymmcore_plus import CMMCorePlus
from pymmcore_plus.experimental.unicore import UniMMCore

from livesr.sim._config import SimConfig
from livesr.sim._devices import SimCamera, SimFocusStage, SimXYStage, StageLimits
from livesr.sim._microscope import Microscope

__all__ = [
    "CAMERA_LABEL",
    "FOCUS_LABEL",
    "PIXEL_CONFIG",
    "XY_LABEL",
    "SimCore",
    "make_core",
    "shutdown_core",
]

logger = logging.getLogger(__name__)

CAMERA_LABEL = "SimCamera"
XY_LABEL = "SimXY"
FOCUS_LABEL = "SimZ"
PIXEL_CONFIG = "livesr-sim"

_OPEN: weakref.WeakSet[SimCore] = weakref.WeakSet()
_ATEXIT_LOCK = threading.Lock()
_atexit_registered = False


class SimCore(UniMMCore):
    """``UniMMCore`` holding the simulated devices; a context manager.

    Use :func:`make_core` to build one. ``with make_core() as core:`` (or
    :meth:`close`) runs :func:`shutdown_core` on exit; the core is unusable
    afterwards.

    Attributes
    ----------
    microscope : Microscope
        The simulator all three devices share (ground truth, direct access).
    camera : SimCamera
    xy_stage : SimXYStage
    focus_stage : SimFocusStage
        The loaded device objects.
    """

    def __init__(
        self, microscope: Microscope, limits: StageLimits, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.microscope = microscope
        self.camera = SimCamera(microscope)
        self.xy_stage = SimXYStage(microscope, limits)
        self.focus_stage = SimFocusStage(microscope, limits)
        self._livesr_closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` (or :func:`shutdown_core`) has run."""
        return self._livesr_closed

    def close(self, timeout_s: float = 5.0) -> None:
        """Shut down cleanly (idempotent); see :func:`shutdown_core`."""
        shutdown_core(self, timeout_s=timeout_s)

    def stopSequenceAcquisition(self, cameraLabel: str | None = None) -> None:
        """Stop sequence acquisition; the camera stops mid-wait, not after a period."""
        if cameraLabel in (None, "", CAMERA_LABEL):
            self.camera.request_stop()
        super().stopSequenceAcquisition(cameraLabel)

    def __enter__(self) -> SimCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_core(
    config: SimConfig | None = None,
    *,
    microscope: Microscope | None = None,
    limits: StageLimits | None = None,
    buffer_mb: int | None = None,
) -> SimCore:
    """Build a ``UniMMCore`` with the simulated camera, XY stage and focus stage.

    The devices are loaded as ``"SimCamera"``, ``"SimXY"``, ``"SimZ"``,
    initialised and made the current camera, XY stage and focus device; the
    pixel size config ``"livesr-sim"`` (the simulator's pixel size, um) is
    defined and active. Auto-shutter is off (there is no shutter device).
    pymmcore-plus's "Could not find a compatible Micro-Manager installation"
    error is not logged: all devices are Python devices.

    Parameters
    ----------
    config : SimConfig, optional
        Simulator configuration; default ``SimConfig()`` (256 x 256 camera,
        0.1 um pixels). Ignored when ``microscope`` is given, and then must be
        None or ``microscope.config``.
    microscope : Microscope, optional
        An existing simulator to drive (e.g. to read its ground truth).
    limits : StageLimits, optional
        Stage travel range; default +-10 mm XY, +-100 um Z.
    buffer_mb : int, optional
        Sequence-buffer size, MiB (default: pymmcore-plus's, 1024 MiB or
        250 MiB under CI/pytest).

    Returns
    -------
    SimCore
        The ready core (a ``UniMMCore``); use it as a context manager or call
        :meth:`SimCore.close` / :func:`shutdown_core`. Cores left open are shut
        down at interpreter exit.
    """
    if (
        microscope is not None
        and config is not None
        and config is not microscope.config
    ):
        raise ValueError(
            "make_core got both config and a microscope built from another config; "
            "pass one of them"
        )
    scope = microscope if microscope is not None else Microscope(config)
    if not isinstance(scope, Microscope):
        raise TypeError(
            f"microscope must be a livesr.sim.Microscope, got {type(scope).__name__}"
        )
    limits = limits if limits is not None else StageLimits()
    with _no_mm_discovery_error():
        core = SimCore(scope, limits)
    try:
        core.loadPyDevice(CAMERA_LABEL, core.camera)
        core.loadPyDevice(XY_LABEL, core.xy_stage)
        core.loadPyDevice(FOCUS_LABEL, core.focus_stage)
        core.initializeAllDevices()
        core.setCameraDevice(CAMERA_LABEL)
        core.setXYStageDevice(XY_LABEL)
        core.setFocusDevice(FOCUS_LABEL)
        core.definePixelSizeConfig(PIXEL_CONFIG)
        core.setPixelSizeUm(PIXEL_CONFIG, scope.pixel_size_um)
        core.setPixelSizeConfig(PIXEL_CONFIG)
        # no shutter device: with auto-shutter on, the MDA engine's per-frame
        # (snap) path calls setShutterOpen("") and fails
        core.setAutoShutter(False)
        if buffer_mb is not None:
            core.setCircularBufferMemoryFootprint(int(buffer_mb))
    except BaseException:
        shutdown_core(core)
        raise
    _track(core)
    h, w = scope.shape
    logger.debug("sim core ready: %dx%d camera, %.4g um/px", w, h, scope.pixel_size_um)
    return core


def shutdown_core(core: CMMCorePlus, *, timeout_s: float = 5.0) -> None:
    """Shut a core down so that interpreter exit cannot abort (idempotent).

    Cancels a running MDA (waits up to ``timeout_s``), stops sequence
    acquisition (joins the camera thread), unloads all devices and unregisters
    MMCore's notification callback. The core is unusable afterwards. Works for
    any ``CMMCorePlus``/``UniMMCore``.

    Parameters
    ----------
    core : CMMCorePlus
        The core.
    timeout_s : float
        How long to wait for a cancelled MDA to finish, s.
    """
    if getattr(core, "_livesr_closed", False):
        return
    try:
        if core.mda.is_running():
            core.mda.cancel()
            deadline = time.monotonic() + timeout_s
            while core.mda.is_running() and time.monotonic() < deadline:
                time.sleep(0.005)
            if core.mda.is_running():
                logger.warning(
                    "MDA still running %.1f s after cancel; shutting down anyway",
                    timeout_s,
                )
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()
        core.unloadAllDevices()
    finally:
        # stop MMCore's notification thread from calling into Python
        super(CMMCorePlus, core).registerCallback(None)
        if isinstance(core, SimCore):
            core._livesr_closed = True
            _OPEN.discard(core)


_MM_NOT_FOUND = "Could not find a compatible Micro-Manager"


class _DropMMDiscoveryError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_MM_NOT_FOUND)


@contextlib.contextmanager
def _no_mm_discovery_error() -> Iterator[None]:
    """Drop pymmcore-plus's "no Micro-Manager installation" error (irrelevant here)."""
    mm_logger = logging.getLogger("pymmcore-plus")
    drop = _DropMMDiscoveryError()
    mm_logger.addFilter(drop)
    try:
        yield
    finally:
        mm_logger.removeFilter(drop)


def _track(core: SimCore) -> None:
    """Remember ``core`` (weakly) so that it is shut down at interpreter exit."""
    global _atexit_registered
    with _ATEXIT_LOCK:
        if not _atexit_registered:
            atexit.register(_shutdown_open_cores)
            _atexit_registered = True
        _OPEN.add(core)


def _shutdown_open_cores() -> None:
    for core in list(_OPEN):
        try:
            shutdown_core(core)
        except Exception:  # at exit: report, keep shutting the others down
            logger.exception("shutting down %r at exit failed", core)
