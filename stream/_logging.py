"""Logging set-up for the command line.  The library itself never installs handlers."""

from __future__ import annotations

import logging
import os

LEVELS = ("debug", "info", "warning", "error", "critical")


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
    if not any(getattr(h, "_livesr", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
        handler._livesr = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
