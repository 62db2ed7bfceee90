"""Ingest and persistence in their own process (``[stream] ingest = "process"``).

At camera rates the ingest (ZeroMQ receive, checks, raw-frame write, copy into the
processing ring, ACK) and the processing thread fight for one GIL: every time the
ingest thread gives the GIL up for a system call it waits up to a switch interval
to get it back, and the link falls behind (measured on the H100 host at 256² and
2 000 frames/s: ~1 ms of ingest per frame, a transport lag of ~1 s).  This module
moves the :class:`~livesr.stream._ingest.Ingest` and its
:class:`~livesr.stream._persist.Persister` (with the raw store) into a child process;
frames reach the processing process through a shared-memory ring
(:class:`~livesr.stream._shmring.SharedRing`), everything else through one pipe:

child -> parent
    ``("started", endpoint)`` | ``("start_failed", type, text)``; ``("plan", shape,
    dtype, interval_s)`` (the parent sizes the ring: it knows the processing);
    ``("ring", ...)`` once the first frame is accepted; ``("gap", first, last,
    reason)``; ``("state", {...})`` (store error, refusal, restarts, reported
    acquisition); ``("stop_requested", reason)``; ``("end",)``; ``("failed", text)``;
    ``("closed", ingest_summary, state)``.
parent -> child
    ``("plan_reply", ok, payload)``; ``("stop", reason)``; ``("close", stop_reason,
    drain_s)``.

Per-frame counters (received, persisted, not offered, duplicate, newest seq,
on_frame calls) live in a small shared array, read by the parent without messages.
Log records of the child are forwarded to the parent's loggers (same names).  The
child ends when the parent closes it or when the parent's end of the pipe goes away
(the parent was killed): then it closes the raw store cleanly on its own.

:class:`IngestProcess` is the parent's handle; it offers what the pipeline uses of
an :class:`~livesr.stream._ingest.Ingest` (``endpoint``, ``start``, ``close``,
``request_stop``, ``failed``, ``error``) and, as :attr:`IngestProcess.persist`, what
it reads of a :class:`~livesr.stream._persist.Persister`.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livesr.stream._persist import Gaps, MemoryPlan, PersistState

__all__ = ["IngestProcess", "IngestProcessSpec"]

logger = logging.getLogger(__name__)

#: longest the parent waits for the child to bind its endpoint, s
START_TIMEOUT_S = 120.0
# shared per-frame counters
_RECEIVED, _PERSISTED, _NOT_OFFERED, _DUPLICATE, _MAX_SEQ, _CALLS = range(6)
_N_STATS = 8


@dataclass(frozen=True, slots=True)
class IngestProcessSpec:
    """What the child needs to serve (picklable).

    Attributes
    ----------
    endpoint : str
        ZeroMQ endpoint to bind (not ``inproc://``: it cannot cross processes).
    credit : int
        Frames a source may have unacknowledged ([stream] credit).
    raw_format : str
        ``"ome-zarr"`` or ``"ome-tiff"``.
    output : str
        Output folder (exists).
    log_level : int
        Level of the ``livesr`` logger in the parent.
    curve : CurveServerKeys, optional
        Server keys (required for a non-loopback endpoint).
    """

    endpoint: str
    credit: int
    raw_format: str
    output: str
    log_level: int = logging.INFO
    curve: Any = None


class _RawView:
    """What the pipeline reads of the raw store the child writes."""

    reference = None

    def __init__(self) -> None:
        self.path: Path | None = None

    def close(self, **_: Any) -> None:
        """The child closes the real store (at :meth:`IngestProcess.close`)."""


class PersistView(PersistState):
    """The parent's view of the child's :class:`~livesr.stream._persist.Persister`."""

    def __init__(self, stats: np.ndarray) -> None:
        super().__init__()
        self._stats = stats
        self.raw = _RawView()

    @property
    def max_seq(self) -> int:
        return int(self._stats[_MAX_SEQ])

    @property
    def on_frame_calls(self) -> int:
        return int(self._stats[_CALLS])

    @property
    def counts(self) -> dict[str, int]:
        s = self._stats
        return {
            "frames_received": int(s[_RECEIVED]),
            "frames_persisted": int(s[_PERSISTED]),
            "frames_not_offered": int(s[_NOT_OFFERED]),
            "frames_duplicate": int(s[_DUPLICATE]),
        }


class IngestProcess:
    """Parent-side handle of the ingest process (module docstring).

    Parameters
    ----------
    spec : IngestProcessSpec
        What the child serves.
    plan_ring : callable
        ``plan_ring(shape, dtype, interval_s) -> MemoryPlan`` (ValueError refuses
        the stream); called on the parent's event thread at the first frame.
    on_store_error : callable
        ``on_store_error(reason)``: the raw store failed or the stream was refused
        (acquisition is being stopped).
    on_end : callable
        The source ended its stream (every frame is in the ring or persisted).
    stop_event : threading.Event, optional
        When set, every source is told to stop (as :class:`Ingest` ``stop_event``).
    """

    def __init__(
        self,
        spec: IngestProcessSpec,
        *,
        plan_ring: Callable[[tuple[int, int], Any, float | None], MemoryPlan],
        on_store_error: Callable[[str], None],
        on_end: Callable[[], None],
        stop_event: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.endpoint = spec.endpoint
        self._plan_ring = plan_ring
        self._on_store_error = on_store_error
        self._on_end = on_end
        self._stop_event = stop_event
        self._ctx = mp.get_context("spawn")
        self._stats_raw = self._ctx.RawArray("q", _N_STATS)
        stats = np.frombuffer(self._stats_raw, dtype=np.int64)
        stats[_MAX_SEQ] = -1
        self.persist = PersistView(stats)
        self.failed = False
        self.error: str | None = None
        self._proc: Any = None
        self._conn: Any = None
        self._send_lock = threading.Lock()
        self._events: threading.Thread | None = None
        self._closing = threading.Event()
        self._closed_msg: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._stop_sent = False
        self._logq: Any = None
        self._loglistener: logging.handlers.QueueListener | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> IngestProcess:
        """Spawn the child, wait until it is bound; raises what refused the bind."""
        parent, child = self._ctx.Pipe()
        self._logq = self._ctx.Queue()
        self._loglistener = logging.handlers.QueueListener(
            self._logq, _ForwardToLogger(), respect_handler_level=False
        )
        self._loglistener.start()
        self._proc = self._ctx.Process(
            target=_child_main,
            args=(self.spec, child, self._stats_raw, self._logq),
            name="livesr-ingest",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if parent.poll(0.1):
                msg = parent.recv()
                break
            if not self._proc.is_alive() or time.monotonic() > deadline:
                self._reap(0.0)
                raise RuntimeError(
                    f"the ingest process did not start (exit code {self._proc.exitcode}); "
                    "see the log above, or run with [stream] ingest = \"thread\""
                )
        if msg[0] == "start_failed":
            self._reap(10.0)
            if isinstance(msg[1], BaseException):
                raise msg[1]
            raise _rebuild_error(msg[1], msg[2])
        self.endpoint = msg[1]
        self._events = threading.Thread(
            target=self._serve_events, name="livesr-ingest-events", daemon=True
        )
        self._events.start()
        logger.info("ingest process %d serving %s", self._proc.pid, self.endpoint)
        return self

    def request_stop(self, reason: str) -> None:
        """Ask every source to stop acquiring (see :meth:`Ingest.request_stop`)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(
                f"IngestProcess.request_stop(reason={reason!r}): expected a non-empty "
                "string"
            )
        self._send("stop", reason)

    def session(self, stream: str) -> str | None:  # noqa: ARG002 - Ingest's API
        """Sessions are the child's business (its Persister asks its Ingest)."""
        return None

    def close(
        self, *, stop_reason: str | None = None, drain_s: float = 0.0
    ) -> dict[str, Any]:
        """Stop serving (see :meth:`Ingest.close`); the child closes the raw store.

        Returns the ingest summary, with ``process`` (pid, exit code).
        """
        summary: dict[str, Any] = {}
        if self._proc is None:
            return summary
        self._closing.set()
        if self._proc.is_alive() and self._send("close", stop_reason, float(drain_s)):
            try:
                msg = self._closed_msg.get(timeout=float(drain_s) + 60.0)
            except queue.Empty:
                logger.error("the ingest process did not close within %.0f s", drain_s + 60)
            else:
                summary = dict(msg[1])
                self._apply_state(msg[2])
        if self._events is not None:
            self._events.join(10.0)
        self._reap(10.0)
        summary["process"] = {"pid": self._proc.pid, "exitcode": self._proc.exitcode}
        if self._proc.exitcode not in (0, None) and not self.failed:
            self.failed = True
            self.error = f"the ingest process exited with code {self._proc.exitcode}"
        return summary

    def _reap(self, timeout: float) -> None:
        proc = self._proc
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                logger.error("the ingest process did not exit; terminating it")
                proc.terminate()
                proc.join(5.0)
                if proc.is_alive():  # pragma: no cover - a stuck child
                    proc.kill()
                    proc.join(5.0)
        if self._conn is not None:
            self._conn.close()
        if self._loglistener is not None:
            self._loglistener.stop()
            self._loglistener = None
        if self._logq is not None:
            self._logq.close()
            self._logq.join_thread()
            self._logq = None

    def release_ring(self) -> None:
        """Unmap the shared ring (after processing ended)."""
        ring = self.persist.ring
        if ring is not None:
            ring.release(unlink=True)

    # ------------------------------------------------------------------ events
    def _send(self, *msg: Any) -> bool:
        with self._send_lock:
            try:
                self._conn.send(msg)
            except (OSError, ValueError, BrokenPipeError):
                return False
        return True

    def _serve_events(self) -> None:
        conn = self._conn
        while True:
            ev = self._stop_event
            if ev is not None and ev.is_set() and not self._stop_sent:
                self._stop_sent = True
                self._send("stop", "the pipeline stopped acquisition")
            try:
                if not conn.poll(0.05):
                    if not self._proc.is_alive():
                        self._child_died()
                        return
                    continue
                msg = conn.recv()
            except (EOFError, OSError):
                self._child_died()
                return
            try:
                if self._handle(msg):
                    return
            except Exception:  # a bug here must not kill the run silently
                logger.exception("ingest process event %r failed", msg[:1])

    def _child_died(self) -> None:
        if self._closing.is_set():
            self._closed_msg.put(("closed", {}, {}))
            return
        self._proc.join(1.0)
        self.error = f"the ingest process exited with code {self._proc.exitcode}"
        self.failed = True
        logger.error("%s: no frame can arrive any more", self.error)
        ring = self.persist.ring
        if ring is not None:
            ring.close()

    def _handle(self, msg: tuple[Any, ...]) -> bool:
        kind = msg[0]
        p = self.persist
        if kind == "plan":
            _, shape, dtype, interval_s = msg
            try:
                plan = self._plan_ring(tuple(shape), np.dtype(dtype), interval_s)
            except ValueError as exc:
                self._send("plan_reply", False, str(exc))
            else:
                p.memory = plan
                self._send(
                    "plan_reply",
                    True,
                    (plan.frames, plan.frame_bytes, plan.budget, plan.minimum),
                )
        elif kind == "ring":
            _, name, shape, dtype, capacity, info = msg
            from livesr.stream._shmring import SharedRing

            p.stream = info["stream"]
            p.first_seq = info["first_seq"]
            p.pixel_size_um = info["pixel_size_um"]
            p.interval_s = info["interval_s"]
            p.interval_known = info["interval_known"]
            p.raw.path = Path(info["raw_path"]) if info["raw_path"] else None
            p.raw_opened = True
            p.ring = SharedRing.attach(name, tuple(shape), dtype, capacity)
        elif kind == "gap":
            _, first, last, reason = msg
            with p.lock:
                p.gaps.add(first, last, reason)
        elif kind == "state":
            self._apply_state(msg[1])
        elif kind == "stop_requested":
            self._on_store_error(msg[1])
        elif kind == "end":
            p.source_ended.set()
            self._on_end()
        elif kind == "failed":
            self.failed = True
            self.error = msg[1]
        elif kind == "closed":
            self._closed_msg.put(msg)
            return True
        return False

    def _apply_state(self, state: dict[str, Any]) -> None:
        p = self.persist
        for key in ("store_error", "refused", "acquired_reported"):
            if key in state:
                setattr(p, key, state[key])
        if "restarts" in state:
            p.restarts = list(state["restarts"])
        if "gaps" in state:
            with p.lock:
                p.gaps = Gaps()
                for first, last, reason in state["gaps"]:
                    p.gaps.add(first, last, reason)


class _ForwardToLogger(logging.Handler):
    """Hands the child's records to the parent's logger of the same name."""

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)


def _rebuild_error(kind: str, text: str) -> Exception:
    """The child's start error as the parent's exception of the same kind."""
    from livesr.stream._transport import TransportError

    known: dict[str, type[Exception]] = {
        "TransportError": TransportError,
        "ValueError": ValueError,
        "FileExistsError": FileExistsError,
        "PermissionError": PermissionError,
        "OSError": OSError,
    }
    return known.get(kind, RuntimeError)(text)


# ---------------------------------------------------------------------- the child
def _child_main(
    spec: IngestProcessSpec, conn: Any, stats_raw: Any, logq: Any
) -> None:  # pragma: no cover - runs in the child (covered by the pipeline tests)
    from livesr.stream._ingest_child import serve_ingest

    serve_ingest(spec, conn, np.frombuffer(stats_raw, dtype=np.int64), logq)
