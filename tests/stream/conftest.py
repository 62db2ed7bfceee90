"""Shared fixtures of the stream tests.

``pipeline_config`` is the one factory of pipeline configurations
(:class:`~livesr.stream._config.LivesrConfig`) for these tests: a test states the
eSRRF window, stride and whatever else it depends on; everything else keeps the
library's defaults (so a changed default reaches every test the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from livesr.stream._config import (
    DriftCorrectionConfig,
    EsrrfConfig,
    LivesrConfig,
    StreamConfig,
)


def make_pipeline_config(
    output: str | Path = "unused",
    *,
    window: int,
    stride: int,
    magnification: int = 2,
    radius: float | None = None,
    drift: bool = False,
    drift_block: int | None = None,
    budget_ms: float | None = 1e7,
    **stream: Any,
) -> LivesrConfig:
    """A pipeline configuration for a stream test.

    Parameters
    ----------
    output
        ``StreamConfig.output`` (results directory; ``"unused"`` where nothing is
        written).
    window, stride, magnification, radius
        ``EsrrfConfig`` fields (``radius``: the library's default when ``None``).
    drift, drift_block
        ``DriftCorrectionConfig.enabled`` and ``.block`` (default block when ``None``).
    budget_ms
        ``StreamConfig.latency_budget_ms``; the default 1e7 ms means "never skip a
        window for lateness", ``None`` keeps the library's default.
    **stream
        Further ``StreamConfig`` fields (``ring_mb``, ``max_batch``, ``credit``...).
    """
    esrrf: dict[str, Any] = {}
    if radius is not None:
        esrrf["radius"] = radius
    drift_kw: dict[str, Any] = {"enabled": drift}
    if drift_block is not None:
        drift_kw["block"] = drift_block
    if budget_ms is not None:
        stream["latency_budget_ms"] = budget_ms
    return LivesrConfig(
        esrrf=EsrrfConfig(
            window=window, stride=stride, magnification=magnification, **esrrf
        ),
        drift=DriftCorrectionConfig(**drift_kw),
        stream=StreamConfig(output=str(output), **stream),
    )


@pytest.fixture
def pipeline_config() -> Callable[..., LivesrConfig]:
    """:func:`make_pipeline_config`, the factory of pipeline configurations."""
    return make_pipeline_config
