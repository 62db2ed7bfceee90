"""The installed livesr version (``livesr`` is a namespace package: no ``__init__``)."""

from __future__ import annotations

from importlib import metadata


def livesr_version() -> str:
    """Return the installed distribution version, or ``"0+unknown"`` from a bare tree."""
    try:
        return metadata.version("livesr")
    except metadata.PackageNotFoundError:  # pragma: no cover - only from a bare checkout
        return "0+unknown"
