"""Per-stream bookkeeping of the ingest: :class:`_Stream` and the rejection signals."""

from __future__ import annotations

import time
from typing import Any


class _Stream:
    """Per-stream state at the ingest."""

    __slots__ = (
        "name",
        "session",
        "peer",
        "old_peers",
        "shape",
        "dtype",
        "expected",
        "resumed_from",
        "persisted",
        "lost_at_pipeline",
        "duplicates",
        "out_of_order",
        "gaps",
        "gap_frames",
        "unacked",
        "resync_at",
        "granted",
        "credit_violations",
        "ended",
        "acquired",
        "source_gap_frames",
        "stop_sent",
        "reported_gap_frames",
        "last_seen",
    )

    def __init__(self, name: str, session: str, expected: int) -> None:
        self.name = name
        self.session = session
        self.peer = b""
        self.old_peers: list[bytes] = []
        self.shape: tuple[int, int] = (0, 0)
        self.dtype = ""
        self.expected = expected
        self.resumed_from = expected
        self.persisted = 0
        self.lost_at_pipeline = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.gaps: list[list[int]] = []
        self.gap_frames = 0
        self.unacked = 0
        self.resync_at = -1
        self.granted = -1  # highest seq the source was allowed to send
        self.credit_violations = 0
        self.ended = False
        self.acquired: int | None = None
        self.source_gap_frames: int | None = None
        self.stop_sent = False  # a stop message reached this stream's connection
        self.reported_gap_frames = 0  # frames in gaps the source reported (no restart)
        self.last_seen = time.monotonic()  # last message from this stream's peer

    def summary(self) -> dict[str, Any]:
        acquired = self.acquired
        return {
            "stream": self.name,
            "session": self.session,
            "resumed_from": self.resumed_from,
            "next_seq": self.expected,
            "frames_persisted": self.persisted,
            # acknowledged but not written (the pipeline's raw store failed): a gap
            # of the pipeline's run, never persisted
            "frames_lost_at_pipeline": self.lost_at_pipeline,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "credit_violations": self.credit_violations,
            "gaps": [list(g) for g in self.gaps],
            "frames_in_reported_gaps": self.gap_frames,
            "ended": self.ended,
            "frames_acquired": acquired,
            # everything acquired from resumed_from on is persisted here or in a gap
            "accounting_ok": (
                None
                if acquired is None
                else acquired - self.resumed_from
                == self.persisted + self.gap_frames + self.lost_at_pipeline
            ),
        }


class _Reject(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Stale(Exception):
    """A message from a connection the stream has since replaced (dropped, counted)."""
