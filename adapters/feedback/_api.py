"""Feedback-hook API, defined in stream (the layer that runs hooks) and re-exported here
so user hooks keep importing it from :mod:`livesr.adapters.feedback`:
:class:`Result` and the :class:`Hook` protocol (:mod:`livesr.stream._protocols`),
:class:`HookRunner` and :class:`HookStats` (:mod:`livesr.stream._hooks`).
"""

from __future__ import annotations

from livesr.stream import Hook, HookRunner, HookStats, Result

__all__ = ["Hook", "HookRunner", "HookStats", "Result"]
