"""Configuration of the pipeline end of the lossless frame path (:class:`IngestConfig`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesr.stream._endpoints import parse_endpoint, require_secure
from livesr.stream._keys import CurveServerKeys
from livesr.stream._link_base import check_range
from livesr.stream._wire import MAX_HEADER_BYTES, FrameHeader

OnFrame = Callable[[FrameHeader, np.ndarray], "bool | None"]  # False: not written (a gap)
OnGap = Callable[[str, int, int], None]
OnEnd = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestConfig:
    """Configuration of an :class:`Ingest`.

    Parameters
    ----------
    endpoint
        Where to bind (``ipc://PATH``, ``tcp://127.0.0.1:PORT`` or ``:*``, ``inproc://``).
        A non-loopback TCP endpoint requires ``curve``.
    window
        Credit window: frames a source may have in flight (1..1024; 8-16 recommended).
    ack_every
        Send an ACK at least every this many persisted frames (0: ``window // 2``);
        ACKs are also sent whenever the socket has nothing more to read.
    max_frame_bytes
        Largest frame payload accepted (a HELLO declaring more is rejected).
    max_message_bytes
        ``ZMQ_MAXMSGSIZE`` (0: ``1.5 * max_frame_bytes + 4 KiB``); a peer sending a
        larger message part is disconnected by ZeroMQ.
    curve
        Server CURVE keys and allow-list; required for non-loopback TCP.
    linger_ms, heartbeat_ivl_ms, heartbeat_timeout_ms, rcvhwm
        ZeroMQ socket options (``rcvhwm`` 0: ``4 * window + 64``).
    log_interval_s
        Minimum seconds between two log lines about the same kind of rejection, and
        between two INFO summaries.
    takeover_after_s
        A ``hello`` with a new session id for a stream whose current session has not
        ended is refused (``session-conflict``) while that session's connection is
        still up and has sent something within the last ``takeover_after_s`` seconds;
        once it disconnected or fell silent that long, the new session replaces it.
    """

    endpoint: str
    window: int = 16
    ack_every: int = 0
    max_frame_bytes: int = 2048 * 2048 * 2
    max_message_bytes: int = 0
    curve: CurveServerKeys | None = None
    linger_ms: int = 100
    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 3000
    rcvhwm: int = 0
    log_interval_s: float = 5.0
    takeover_after_s: float = 10.0

    def __post_init__(self) -> None:
        name = "IngestConfig"
        ep = parse_endpoint(self.endpoint, for_bind=True)
        require_secure(ep, curve=self.curve is not None, role="bind")
        check_range(name, "window", self.window, 1, 1024)
        check_range(name, "ack_every", self.ack_every, 0, self.window)
        check_range(name, "max_frame_bytes", self.max_frame_bytes, 1, 2**40)
        check_range(name, "max_message_bytes", self.max_message_bytes, 0, 2**41)
        if (
            self.max_message_bytes
            and self.max_message_bytes < self.max_frame_bytes + MAX_HEADER_BYTES
        ):
            raise ValueError(
                f"{name}.max_message_bytes={self.max_message_bytes} is smaller than "
                f"max_frame_bytes + {MAX_HEADER_BYTES}; raise it or leave it 0 "
                "(automatic)"
            )
        check_range(name, "linger_ms", self.linger_ms, 0, 600_000)
        check_range(name, "heartbeat_ivl_ms", self.heartbeat_ivl_ms, 0, 600_000)
        check_range(name, "heartbeat_timeout_ms", self.heartbeat_timeout_ms, 0, 600_000)
        check_range(name, "rcvhwm", self.rcvhwm, 0, 1_000_000)
        check_range(name, "log_interval_s", self.log_interval_s, 0.0, 3600)
        check_range(name, "takeover_after_s", self.takeover_after_s, 0.0, 86400)

    @property
    def effective_ack_every(self) -> int:
        return self.ack_every or max(1, self.window // 2)

    @property
    def effective_max_message_bytes(self) -> int:
        return (
            self.max_message_bytes or int(1.5 * self.max_frame_bytes) + MAX_HEADER_BYTES
        )
