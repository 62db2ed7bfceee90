"""livesr.stream: transport, ring buffer, pipeline, latency accounting and the CLI.

Importing this package starts nothing and imports no optional backend: the public
names below are loaded on first access (PEP 562), so ``import livesr.stream`` stays
light while adapters and users import them from here, never from private modules.

Seams (:mod:`livesr.stream._protocols`): :class:`Source`, :class:`Sink`, :class:`Hook`
and the :class:`Result` they receive; :class:`HookRunner` runs hooks off the
processing thread; hooks and their ``[hooks.<table>]`` settings register by name
(:func:`register_hook`, :func:`register_hook_config`).  The results-stream codec:
:func:`encode_result` / :func:`decode_result` (:class:`ResultMessage`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livesr.stream._config import HooksConfig, LivesrConfig, load_config
    from livesr.stream._control import (
        ControlClient,
        ControlUnreachable,
        parse_assignments,
    )
    from livesr.stream._hook_registry import (
        check_hook_name,
        register_hook,
        register_hook_config,
    )
    from livesr.stream._hooks import HookRunner, HookStats
    from livesr.stream._pipeline import READY_TIMEOUT_S, Pipeline
    from livesr.stream._protocols import Hook, Result, Sink, Source
    from livesr.stream._pubsub import LatestSubscriber, ResultPublisher
    from livesr.stream._rawread import (
        CorruptRecordingError,
        Recording,
        RecordingError,
        open_recording,
        parse_range,
        resolve_range,
    )
    from livesr.stream._source_link import (
        RingOverflowError,
        SourceLink,
        SourceLinkConfig,
    )
    from livesr.stream._wire import WireError
    from livesr.stream._wire_result import ResultMessage, decode_result, encode_result

#: public name -> the module that defines it (imported on first access)
_EXPORTS: dict[str, str] = {
    "HooksConfig": "_config",
    "ControlClient": "_control",
    "ControlUnreachable": "_control",
    "parse_assignments": "_control",
    "LivesrConfig": "_config",
    "load_config": "_config",
    "check_hook_name": "_hook_registry",
    "register_hook": "_hook_registry",
    "register_hook_config": "_hook_registry",
    "HookRunner": "_hooks",
    "HookStats": "_hooks",
    "READY_TIMEOUT_S": "_pipeline",
    "Pipeline": "_pipeline",
    "Hook": "_protocols",
    "Result": "_protocols",
    "Sink": "_protocols",
    "Source": "_protocols",
    "LatestSubscriber": "_pubsub",
    "ResultPublisher": "_pubsub",
    "CorruptRecordingError": "_rawread",
    "Recording": "_rawread",
    "RecordingError": "_rawread",
    "open_recording": "_rawread",
    "parse_range": "_rawread",
    "resolve_range": "_rawread",
    "RingOverflowError": "_source_link",
    "SourceLink": "_source_link",
    "SourceLinkConfig": "_source_link",
    "WireError": "_wire",
    "ResultMessage": "_wire_result",
    "decode_result": "_wire_result",
    "encode_result": "_wire_result",
}

__all__ = [
    "ControlClient",
    "ControlUnreachable",
    "CorruptRecordingError",
    "Hook",
    "HookRunner",
    "HookStats",
    "HooksConfig",
    "LatestSubscriber",
    "LivesrConfig",
    "Pipeline",
    "READY_TIMEOUT_S",
    "Recording",
    "RecordingError",
    "Result",
    "ResultMessage",
    "ResultPublisher",
    "RingOverflowError",
    "Sink",
    "Source",
    "SourceLink",
    "SourceLinkConfig",
    "WireError",
    "check_hook_name",
    "decode_result",
    "encode_result",
    "parse_assignments",
    "load_config",
    "open_recording",
    "parse_range",
    "register_hook",
    "register_hook_config",
    "resolve_range",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'livesr.stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"livesr.stream.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
