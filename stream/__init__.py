"""livesr.stream: transport, ring buffer, pipeline, latency accounting and the CLI.

Importing this package starts nothing and imports no optional backend.
"""

from __future__ import annotations

__all__: list[str] = []
