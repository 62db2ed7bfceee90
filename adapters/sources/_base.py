"""The thread boilerplate every pushing source shares: :class:`ThreadedSource`.

A source implements :meth:`ThreadedSource.run` (acquire and send over a
:class:`livesr.stream.SourceLink` until done or ``stop_event`` is set; return the link
summary); this base class gives it the rest of the :class:`livesr.stream.Source`
protocol: :meth:`start` (run on a daemon thread), :meth:`stop`, :meth:`join`, and the
``summary`` / ``error`` attributes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Self

__all__ = ["ThreadedSource"]

logger = logging.getLogger(__name__)


class ThreadedSource:
    """Base of the sources that push frames on their own thread (``livesr.stream.Source``).

    Parameters
    ----------
    stop_event : threading.Event, optional
        Acquisition stops when it is set (e.g. the pipeline's ``stop_requested``);
        a new one when None.

    Attributes
    ----------
    summary : dict or None
        The link summary of the last :meth:`run` (None until it ended).
    error : BaseException or None
        What ended a background run (:meth:`start`), if it failed.
    """

    #: name of the background thread
    thread_name = "livesr-source"
    #: how the source is named in the failure log
    label = "source"
    #: log a background failure with its traceback (False: the message only)
    log_traceback = True

    def __init__(self, stop_event: threading.Event | None = None) -> None:
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self._thread: threading.Thread | None = None
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> dict[str, Any]:
        """Acquire and send (blocking); returns the link summary."""
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    def stop(self) -> None:
        """Ask the acquisition to stop after the current frame."""
        self.stop_event.set()

    def start(self) -> Self:
        """Run :meth:`run` on a background (daemon) thread; returns self."""
        self._thread = threading.Thread(
            target=self._run_thread, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def _run_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported by join() / .error
            self.error = exc
            if self.log_traceback:
                logger.exception("%s failed", self.label)
            else:
                logger.error("%s failed: %s", self.label, exc)

    def join(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for the background run; the link summary (None while still running)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        return self.summary
