"""How a live pipeline serves its control channel (:mod:`livesr.stream._control`):
live parameter changes, status and stop from outside the process."""

# mypy: disable-error-code="attr-defined,has-type"

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livesr.stream._config import EsrrfConfig

logger = logging.getLogger(__name__)


class _PipelineControl:
    """Part of :class:`Pipeline` (see its module): the ``ControlHandler``."""

    _control: Any
    _control_ep: str
    _stop_reason: str | None

    @property
    def control_endpoint(self) -> str:
        """Bound control endpoint (after :meth:`start`; ``livesr ctl ENDPOINT ...``)."""
        return self._control_ep

    def _check_control_endpoint(self) -> None:
        """Refuse a malformed control endpoint, or a non-loopback one without keys,
        before anything is created (an ``EndpointError`` naming ``--keys``)."""
        if not self._control_ep:
            return
        from livesr.stream._endpoints import parse_endpoint, require_secure

        require_secure(
            parse_endpoint(self._control_ep, for_bind=True),
            curve=bool(self.config.security.keys),
            role="bind the control channel to",
        )

    def _start_control(self, curve: Any) -> None:
        """Bind the control channel (``[stream] control`` or automatic ipc)."""
        from livesr.stream._control import ControlServer
        from livesr.stream._endpoints import parse_endpoint

        ep = self._control_ep or self._auto_endpoint("control")
        local = parse_endpoint(ep, for_bind=True).is_loopback
        self._control = ControlServer(
            ep,
            self,
            # like the publisher: a local endpoint stays open to local clients
            curve=curve if curve is not None and not local else None,
            # a context of its own (its ZAP handler apart from the ingest's), except
            # for inproc:// (which only a shared context reaches)
            context=self._ctx if ep.startswith("inproc://") else None,
        ).start()
        self._control_ep = self._control.endpoint

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close()

    def _begin_close(self) -> None:
        """Mark the pipeline closed and close the control channel: no change or
        stop request is served while the run ends."""
        self._closed = True
        self._close_control()

    def control_report(self) -> dict[str, Any] | None:
        """``summary.json`` ``control`` (None: no channel was bound)."""
        return self._control.report() if self._control is not None else None

    # ------------------------------------------------------------------ requests
    def request_stop(self, reason: str) -> None:
        """End acquisition as Ctrl-C does (thread-safe): every source is told to
        stop; what it acquired is persisted and processed before the run ends.

        Parameters
        ----------
        reason : str
            Why (the sources' summaries and ``summary.json`` ``stop_reason``).
        """
        if self._stop_reason is None:
            self._stop_reason = reason
        logger.warning("stop requested: %s", reason)
        if self._ingest is not None:
            self._ingest.request_stop(reason)
        self.stop_requested.set()

    def control_set(self, params: dict[str, Any]) -> dict[str, Any]:
        """Queue a live change (validated); its frame index once applied."""
        from livesr.stream._control import SET_WAIT_S, ControlError, wait_applied

        if self._processing_done.is_set():
            raise ControlError("set: the run's processing has ended; nothing more changes")
        proc = self._proc
        start = len(proc.param_changes)
        try:
            self.set_params(**params)
        except TypeError as exc:
            raise ControlError(f"set: {exc}") from None
        rec = wait_applied(
            proc.param_changes,
            start,
            params,
            SET_WAIT_S,
            alive=lambda: not self._processing_done.is_set(),
        )
        if rec is None:  # processing is inside a long batch, or no frame came yet
            return {"applied": False, "pending": True, "frame_index": None, "params": params}
        return {
            "applied": True,
            "pending": False,
            "frame_index": rec["frame_index"],
            "params": params,
        }

    def control_status(self) -> dict[str, Any]:
        """Parameters in force, pending changes, the changes made, the counters."""
        proc = self._proc
        with proc.lock:
            pending = [dict(p) for p in proc.pending]
        snap = self.snapshot()
        return {
            "params": asdict(self.params),
            "pending": pending,
            "param_changes": [dict(c) for c in proc.param_changes],
            "progress": snap,
            "frames_total": self.config.stream.frames,
            "stopping": self.stop_requested.is_set(),
            "stop_reason": self._stop_reason,
            "source_ended": self.source_ended.is_set(),
            "output": str(self.output),
            "endpoints": {
                "ingest": self._endpoint,
                "results": self._publish_ep,
                "control": self._control_ep,
            },
        }

    def control_stop(self, reason: str) -> dict[str, Any]:
        """Stop acquisition (:meth:`request_stop`); the counters at that moment."""
        self.request_stop(reason)
        return {"stopping": True, "reason": reason, "progress": self.progress()}

    # ------------------------------------------------------------------ params
    def set_params(self, **changes: Any) -> None:
        """Change eSRRF parameters while streaming (thread-safe, between batches).

        Parameters
        ----------
        **changes
            Any of :data:`LIVE_PARAMS`.  Validated now; a window larger than the
            processing ring is refused.  The change is applied before the next frame
            processed and recorded as ``{frame_index, changes}``.
        """
        ring = self._persist.ring if self._persist is not None else None
        self._proc.set_params(ring, **changes)

    @property
    def params(self) -> EsrrfConfig:
        """eSRRF parameters in force now."""
        return self._proc.esrrf
