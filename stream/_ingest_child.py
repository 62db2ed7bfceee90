"""The ingest process's side of :mod:`livesr.stream._ingest_process`.

Runs an :class:`~livesr.stream._ingest.Ingest` whose ``on_frame`` is a
:class:`~livesr.stream._persist.Persister` writing the raw store and offering every
persisted frame to a :class:`~livesr.stream._shmring.SharedRing`; reports to the
parent through the pipe (message kinds in :mod:`livesr.stream._ingest_process`).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._persist import MemoryPlan, Persister
from livesr.stream._wire import FrameHeader

logger = logging.getLogger("livesr.stream._ingest_process")

_RECEIVED, _PERSISTED, _NOT_OFFERED, _DUPLICATE, _MAX_SEQ, _CALLS = range(6)
#: longest the ingest thread waits for the parent to size the ring, s
PLAN_TIMEOUT_S = 60.0


class _Link:
    """The pipe to the parent, safe to use from several threads."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self.replies: queue.Queue[tuple[Any, ...]] = queue.Queue()

    def send(self, *msg: Any) -> None:
        with self._lock:
            try:
                self.conn.send(msg)
            except (OSError, ValueError):
                pass  # the parent is gone: the main loop notices and closes


class _ChildPersister(Persister):
    """A Persister that mirrors its counters and rare events to the parent."""

    def __init__(self, raw: Any, link: _Link, stats: np.ndarray, **kw: Any) -> None:
        super().__init__(raw, **kw)
        self._link = link
        self._stats = stats
        self._sent_gaps = 0
        self._sent_restarts = 0

    def on_frame(self, header: FrameHeader, frame: np.ndarray) -> bool:
        try:
            return super().on_frame(header, frame)
        finally:
            s, c = self._stats, self.counts
            s[_RECEIVED] = c["frames_received"]
            s[_PERSISTED] = c["frames_persisted"]
            s[_NOT_OFFERED] = c["frames_not_offered"]
            s[_DUPLICATE] = c["frames_duplicate"]
            s[_MAX_SEQ] = self.max_seq
            s[_CALLS] = self.on_frame_calls
            if len(self.gaps.runs) != self._sent_gaps or len(self.restarts) != self._sent_restarts:
                self.send_state()

    def on_gap(self, stream: str, first: int, last: int) -> None:
        super().on_gap(stream, first, last)
        self._stats[_MAX_SEQ] = self.max_seq
        self.send_state()

    def state(self) -> dict[str, Any]:
        with self.lock:
            gaps = [list(g) for g in self.gaps.runs]
        return {
            "store_error": self.store_error,
            "refused": self.refused,
            "acquired_reported": self.acquired_reported,
            "restarts": list(self.restarts),
            "gaps": gaps,
        }

    def send_state(self) -> None:
        st = self.state()
        self._sent_gaps = len(st["gaps"])
        self._sent_restarts = len(st["restarts"])
        self._link.send("state", st)

    def _first_frame(self, header: FrameHeader) -> None:
        super()._first_frame(header)
        ring = self.ring
        self._link.send(
            "ring",
            ring.name,
            ring.shape,
            str(ring.dtype),
            ring.capacity,
            {
                "stream": self.stream,
                "first_seq": self.first_seq,
                "pixel_size_um": self.pixel_size_um,
                "interval_s": self.interval_s,
                "interval_known": self.interval_known,
                "raw_path": str(getattr(self.raw, "path", "") or ""),
            },
        )


def serve_ingest(spec: Any, conn: Any, stats: np.ndarray, logq: Any) -> None:
    """Main of the ingest process: serve until the parent says close (or is gone).

    Long because it is the process's whole life: set-up, the command loop, and the
    orderly close (ingest, then raw store, then report) in one readable sequence.
    """
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(logq)]
    root.setLevel(spec.log_level)
    from livesr.stream._ingest import Ingest, IngestConfig
    from livesr.stream._rawstore import open_raw_store
    from livesr.stream._shmring import SharedRing

    link = _Link(conn)
    stop_event = threading.Event()
    box: dict[str, Any] = {}

    def plan_ring(shape: tuple[int, int], dtype: Any, interval_s: float | None) -> MemoryPlan:
        link.send("plan", tuple(shape), str(np.dtype(dtype)), interval_s)
        try:
            reply = link.replies.get(timeout=PLAN_TIMEOUT_S)
        except queue.Empty:
            raise ValueError(
                "the processing process did not size the ring within "
                f"{PLAN_TIMEOUT_S:.0f} s"
            ) from None
        if not reply[1]:
            raise ValueError(reply[2])
        return MemoryPlan(*reply[2])

    def on_store_error(reason: str) -> None:
        ingest = box.get("ingest")
        if ingest is not None:
            ingest.request_stop(reason)
        persister.send_state()
        link.send("stop_requested", reason)

    def on_end() -> None:
        persister.send_state()
        link.send("end")

    def make_ring(shape: Any, dtype: Any, budget: int, *, min_frames: int = 1) -> SharedRing:
        ring = SharedRing.create(shape, dtype, budget, min_frames=min_frames)
        box["ring"] = ring
        return ring

    try:
        raw = open_raw_store(spec.raw_format, Path(spec.output))
        persister = _ChildPersister(
            raw,
            link,
            stats,
            plan_ring=plan_ring,
            session_of=lambda stream: box["ingest"].session(stream),
            on_store_error=on_store_error,
            on_end=on_end,
            make_ring=make_ring,
        )
        ingest = Ingest(
            IngestConfig(endpoint=spec.endpoint, window=spec.credit, curve=spec.curve),
            persister.on_frame,
            on_gap=persister.on_gap,
            on_end=persister.on_end,
            stop_event=stop_event,
        )
        box["ingest"] = ingest
        ingest.start()
    except Exception as exc:
        try:  # the same exception in the parent when it pickles, else its text
            import pickle

            pickle.loads(pickle.dumps(exc))
            link.send("start_failed", exc, str(exc))
        except Exception:
            link.send("start_failed", type(exc).__name__, str(exc))
        return
    link.send("started", ingest.endpoint)
    told_failed = False
    stop_reason: str | None = None
    drain_s = 0.0
    while True:
        try:
            if conn.poll(0.1):
                msg = conn.recv()
            else:
                msg = None
        except (EOFError, OSError):
            logger.error("the processing process is gone; closing the raw store")
            stop_reason, drain_s = None, 0.0
            break
        if ingest.failed and not told_failed:
            told_failed = True
            link.send("failed", ingest.error)
        if msg is None:
            continue
        if msg[0] == "plan_reply":
            link.replies.put(msg)
        elif msg[0] == "stop":
            ingest.request_stop(msg[1])
        elif msg[0] == "close":
            stop_reason, drain_s = msg[1], msg[2]
            break
    summary = ingest.close(stop_reason=stop_reason, drain_s=drain_s)
    ring = box.get("ring")
    if ring is not None:
        ring.close()
    if persister.raw_opened:
        try:
            raw.close(gaps=persister.gaps.runs, error=persister.store_error)
        except Exception:
            logger.exception("closing the raw store failed")
    link.send("closed", summary, persister.state())
    if ring is not None:
        ring.release()  # the parent unlinks it once processing is done
