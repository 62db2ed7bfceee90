"""Configuration of the source end of the lossless frame path (:class:`SourceLinkConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livesr.stream._endpoints import parse_endpoint, require_secure
from livesr.stream._keys import CurveClientKeys
from livesr.stream._link_base import check_range
from livesr.stream._wire import _STREAM_RE, FRAME_DTYPES, MAX_SIDE

OVERFLOW_POLICIES = ("stop", "continue")


class RingOverflowError(RuntimeError):
    """The replay ring was full (policy ``stop``): acquisition must stop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceLinkConfig:
    """Configuration of a :class:`SourceLink`.

    Parameters
    ----------
    endpoint
        Ingest endpoint to connect to (``ipc://``, ``tcp://HOST:PORT``, ``inproc://``).
    stream
        Stream id (1-64 of ``[A-Za-z0-9_.:-]``).
    shape, dtype
        Shape and dtype of every frame (the ring is allocated for them).
    pixel_size_um
        Pixel size in the sample plane (written into every header).
    ring_frames
        Replay ring slots: frame rate x longest tolerated outage (1..1_000_000).
    max_ring_bytes
        Refuse a ring larger than this (default 8 GiB).
    overflow
        ``"stop"`` (default, like MMCore ``stopOnOverflow``): the overflowing frame is a
        reported gap and :meth:`SourceLink.send` raises :class:`RingOverflowError` from
        then on; ``"continue"``: frames are dropped while the ring is full and each
        dropped run is reported as one gap.
    curve
        Client CURVE keys; required for a non-loopback endpoint.
    hello_interval_s
        Re-send HELLO this often until the ingest answers READY.
    ack_timeout_s
        With frames in flight and nothing heard for this long, re-handshake (replay).
    zero_copy_min_bytes
        Frames at least this large are sent without copying (default 64 KiB).
    first_seq
        Sequence number of the first frame (default 0).  A restarted acquisition
        process that knows where the camera is (e.g. its frame counter) starts there:
        the ingest then records the frames in between as a gap of the stream.
    linger_ms, heartbeat_ivl_ms, heartbeat_timeout_ms, reconnect_ivl_ms
        ZeroMQ socket options.
    log_interval_s
        Seconds between two INFO summaries of the counters.
    """

    endpoint: str
    stream: str
    shape: tuple[int, int]
    dtype: str = "uint16"
    pixel_size_um: float = 0.1
    ring_frames: int = 256
    max_ring_bytes: int = 8 * 2**30
    overflow: str = "stop"
    curve: CurveClientKeys | None = None
    hello_interval_s: float = 0.1
    ack_timeout_s: float = 5.0
    zero_copy_min_bytes: int = 65536
    linger_ms: int = 0
    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 3000
    reconnect_ivl_ms: int = 50
    log_interval_s: float = 5.0
    first_seq: int = 0

    def __post_init__(self) -> None:
        name = "SourceLinkConfig"
        ep = parse_endpoint(self.endpoint)
        require_secure(ep, curve=self.curve is not None, role="connect to")
        if not isinstance(self.stream, str) or not _STREAM_RE.match(self.stream):
            raise ValueError(
                f"{name}.stream={self.stream!r} is not valid; expected 1-64 "
                "characters of "
                "[A-Za-z0-9_.:-]"
            )
        if (
            not isinstance(self.shape, tuple)
            or len(self.shape) != 2
            or not all(isinstance(s, int) and 1 <= s <= MAX_SIDE for s in self.shape)
        ):
            raise ValueError(
                f"{name}.shape={self.shape!r} is not valid; expected (rows, cols) "
                "ints in "
                f"[1, {MAX_SIDE}]"
            )
        if self.dtype not in FRAME_DTYPES:
            raise ValueError(
                f"{name}.dtype={self.dtype!r} is not valid; expected one of "
                f"{FRAME_DTYPES}"
            )
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"{name}.overflow={self.overflow!r} is not valid; expected one of "
                f"{OVERFLOW_POLICIES}"
            )
        check_range(name, "pixel_size_um", self.pixel_size_um, 1e-9, 1e9)
        check_range(name, "ring_frames", self.ring_frames, 1, 1_000_000)
        check_range(name, "hello_interval_s", self.hello_interval_s, 0.001, 60)
        check_range(name, "ack_timeout_s", self.ack_timeout_s, 0.01, 3600)
        check_range(name, "zero_copy_min_bytes", self.zero_copy_min_bytes, 0, 2**31)
        check_range(name, "linger_ms", self.linger_ms, 0, 600_000)
        check_range(name, "heartbeat_ivl_ms", self.heartbeat_ivl_ms, 0, 600_000)
        check_range(name, "heartbeat_timeout_ms", self.heartbeat_timeout_ms, 0, 600_000)
        check_range(name, "reconnect_ivl_ms", self.reconnect_ivl_ms, 1, 600_000)
        check_range(name, "log_interval_s", self.log_interval_s, 0.1, 3600)
        if not isinstance(self.first_seq, int) or not 0 <= self.first_seq < 2**62:
            raise ValueError(
                f"{name}.first_seq={self.first_seq!r} is not valid; expected an "
                "integer in [0, 2**62)"
            )
        if self.ring_bytes > self.max_ring_bytes:
            raise ValueError(
                f"{name}.ring_frames={self.ring_frames} x {self.frame_bytes} bytes = "
                f"{self.ring_bytes} bytes exceeds "
                f"max_ring_bytes={self.max_ring_bytes}; "
                "lower ring_frames or raise max_ring_bytes"
            )

    @property
    def frame_bytes(self) -> int:
        return int(self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize)

    @property
    def ring_bytes(self) -> int:
        return self.ring_frames * self.frame_bytes
