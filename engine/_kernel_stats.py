"""Per-kernel counters and deadline accounting (what ``kernel.stats`` shows)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

from livesr.engine._agent import Decision
from livesr.engine._types import DeadlineMiss

#: The dispatcher's logger: these lines are the kernel's, whichever module keeps count.
logger = logging.getLogger("livesr.engine._kernel")


@dataclass
class KernelStats:
    """Counters of one kernel in this process (read them, do not write)."""

    calls: int = 0
    recorded: int = 0
    warmup_calls: int = 0
    failures: int = 0
    deadline_calls: int = 0
    deadline_misses: int = 0
    predicted_misses: int = 0
    by_impl: Counter[str] = field(default_factory=Counter)


class DeadlineAccount:
    """Counts one kernel's calls under a deadline and their misses in its
    :class:`KernelStats`, keeps the last :class:`DeadlineMiss`, and logs a warning
    at the first miss of a run of misses and an info line when deadlines are met
    again (a miss the agent predicted does not end such a run)."""

    def __init__(self, name: str, stats: KernelStats) -> None:
        self.name = name
        self.stats = stats
        self.missing = False
        self.last_miss: DeadlineMiss | None = None

    def account(
        self,
        impl: str,
        seconds: float,
        deadline_s: float,
        decision: Decision | None,
    ) -> None:
        """Account one call of ``impl`` that took ``seconds`` under ``deadline_s``."""
        self.stats.deadline_calls += 1
        predicted = bool(decision and decision.predicted_miss)
        if predicted:
            self.stats.predicted_misses += 1
        if seconds <= deadline_s:
            if self.missing and not predicted:
                self.missing = False
                logger.info(
                    "%s: meeting the %.3g ms deadline again",
                    self.name,
                    deadline_s * 1e3,
                )
            return
        self.stats.deadline_misses += 1
        miss = DeadlineMiss(
            self.name,
            impl,
            deadline_s,
            decision.expected_s
            if decision and decision.expected_s is not None
            else math.nan,
            seconds,
            decision.p_meet if decision and decision.p_meet is not None else math.nan,
            predicted,
        )
        self.last_miss = miss
        if not self.missing:
            self.missing = True
            logger.warning(
                "%s: %s took %.3g ms, over the %.3g ms deadline (%s; %d of %d calls missed)",
                self.name,
                impl,
                seconds * 1e3,
                deadline_s * 1e3,
                "no implementation was expected to meet it"
                if predicted
                else "unexpected",
                self.stats.deadline_misses,
                self.stats.deadline_calls,
            )
        else:
            logger.debug("%s: deadline miss %s %.3g ms", self.name, impl, seconds * 1e3)
