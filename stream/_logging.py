"""Logging set-up for the command line.  The library itself never installs handlers."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

LEVELS = ("debug", "info", "warning", "error", "critical")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing to whatever ``sys.stderr`` is at emit time (the
    status line and test harnesses replace it; a handler bound to the old stream
    would write to a closed file)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it
        pass

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record; while a live status line is drawn on this stream, above
        it (:meth:`livesr.stream._status.StatusReporter.write_above`)."""
        from livesr.stream._status import active_status

        status = active_status(self.stream)
        if status is None:
            super().emit(record)
            return
        try:
            text = self.format(record) + self.terminator
        except Exception:  # logging's own contract: report, never raise
            self.handleError(record)
            return
        status.write_above(text)


def configure_logging(level: str | None = None) -> None:
    """Install one stderr handler on the ``livesr`` logger.

    Parameters
    ----------
    level
        One of :data:`LEVELS` (case-insensitive); defaults to ``$LIVESR_LOG_LEVEL`` or
        ``"warning"``.
    """
    name = (level or os.environ.get("LIVESR_LOG_LEVEL") or "warning").lower()
    if name not in LEVELS:
        raise ValueError(
            f"log level {name!r} is not valid; expected one of {', '.join(LEVELS)}"
        )
    logger = logging.getLogger("livesr")
    logger.setLevel(name.upper())
    if name != "debug":
        # tifffile warns on stderr about each damaged tag or page offset (through
        # Python's last-resort handler); livesr reports a damaged file in one line
        logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    if not any(getattr(h, "_livesr", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
        handler._livesr = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
