"""How a live pipeline starts its ingest: in its own process (ipc/tcp endpoints) or as a thread, with CURVE keys from [security]."""

# mypy: disable-error-code="attr-defined,has-type"

from __future__ import annotations

import logging
from typing import Any


class _PipelineIngest:
    """Part of :class:`Pipeline` (see its module)."""

    _ingest: Any
    _persist: Any

    def _server_keys(self) -> Any:
        """The CURVE server keys of ``[security] keys`` (None: no keys)."""
        if not self.config.security.keys:
            return None
        from livesr.stream._keys import load_server_keys

        return load_server_keys(self.config.security.keys)

    def _ingest_in_process(self) -> bool:
        """Whether the ingest runs in its own process (``[stream] ingest``)."""
        mode = self.config.stream.ingest
        if mode == "thread":
            return False
        endpoint = self._endpoint or ""
        unfit = endpoint.startswith("inproc://") or self._raw_arg is not None
        if mode == "process" and unfit:
            raise ValueError(
                "[stream] ingest = \"process\" cannot serve an inproc:// endpoint or a "
                "raw store given as an object; use ingest = \"auto\" or \"thread\""
            )
        return not unfit

    def _start_ingest_process(self, endpoint: str) -> None:
        from livesr.stream._ingest_process import IngestProcess, IngestProcessSpec

        level = logging.getLogger("livesr").getEffectiveLevel()
        ingest = IngestProcess(
            IngestProcessSpec(
                endpoint=endpoint,
                curve=self._server_keys(),
                credit=self.config.stream.credit,
                raw_format=self.config.stream.raw_format,
                output=str(self.output),
                log_level=level,
            ),
            plan_ring=self._plan_stream_ring,
            on_store_error=self._on_store_error,
            on_end=self._on_source_end,
            stop_event=self.stop_requested,
        )
        self._persist = ingest.persist  # type: ignore[assignment]
        self._ingest = ingest
        ingest.start()

    def _start_ingest_thread(self, endpoint: str, curve: Any) -> None:
        """The ingest as a thread of this process, its Persister writing the raw
        store (``[stream] ingest = "thread"``, inproc endpoints, raw store objects)."""
        from livesr.stream._ingest import Ingest, IngestConfig

        p = self._persist
        assert p is not None
        self._ingest = Ingest(
            IngestConfig(endpoint=endpoint, window=self.config.stream.credit, curve=curve),
            p.on_frame,
            on_gap=p.on_gap,
            on_end=p.on_end,
            context=self._ctx,
            stop_event=self.stop_requested,  # a stop tells remote sources too
        )
        self._ingest.start()
