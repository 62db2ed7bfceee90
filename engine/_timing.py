"""Timing of one implementation call, always to device completion."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from livesr.engine._backends import synchronize
from livesr.engine._registry import Registration

Clock = Callable[[], float]


def timed_call(
    reg: Registration,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    clock: Clock = time.perf_counter,
) -> tuple[Any, float]:
    """Run ``reg`` on ``args``/``kwargs``; return ``(result, seconds)``.

    The clock stops only after the implementation's own ``sync`` hook and the
    backend's :func:`~livesr.engine._backends.synchronize`, so asynchronous GPU work
    is timed to completion.
    """
    start = clock()
    result = reg.func(*args, **kwargs)
    if reg.sync is not None:
        reg.sync()
    synchronize(reg.backend)
    return result, clock() - start
