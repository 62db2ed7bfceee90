"""Results fan-out: the publisher never blocks; the subscriber keeps only the newest."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from livesr.stream._endpoints import EndpointError
from livesr.stream._pubsub import LatestSubscriber, ResultPublisher

IMAGE = np.zeros((256, 256), np.float32)  # 256 KiB: sent zero-copy


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def endpoint(tmp_path):
    return f"ipc://{tmp_path}/results.ipc"


def _seq(parts) -> int:
    return int(parts[0].bytes)


def _connected(pub, sub) -> None:
    """Publish until the subscriber sees something (slow-joiner), then drain."""
    for _ in range(500):
        pub.publish([b"-1", b"x"])
        if sub.latest(timeout_ms=10) is not None:
            break
    else:  # pragma: no cover
        raise AssertionError("subscriber never connected")
    while sub.latest(timeout_ms=20) is not None:
        pass
    sub.received = sub.dropped = pub.published = 0


def test_publish_with_no_reader_never_blocks(endpoint, context):
    with ResultPublisher(endpoint, hwm=2, context=context) as pub:
        for i in range(5000):
            pub.publish([b"%d" % i, IMAGE])
        assert pub.published == 5000  # returned every time: nothing waits for a reader


def test_slow_subscriber_never_blocks_publisher_and_sees_newest(endpoint, context):
    n = 2000
    with (
        ResultPublisher(endpoint, hwm=2, context=context) as pub,
        LatestSubscriber(endpoint, hwm=2, context=context) as sub,
    ):
        _connected(pub, sub)
        seen: list[int] = []
        returns = 0

        def latest(timeout_ms):
            nonlocal returns
            parts = sub.latest(timeout_ms=timeout_ms)
            returns += parts is not None
            return parts

        for i in range(n):
            pub.publish(
                [b"%d" % i, IMAGE]
            )  # the subscriber reads only every 100th time
            if i % 100 == 99:
                parts = latest(0)
                if parts is not None:
                    seen.append(_seq(parts))
                    assert (
                        parts[1].buffer.nbytes == IMAGE.nbytes
                    )  # whole multipart message
        assert pub.published == n
        # after the burst: one more result; draining ends on it
        while latest(50) is not None:
            pass
        pub.publish([b"%d" % n, IMAGE])
        last = None
        for _ in range(100):
            parts = latest(50)
            if parts is not None:
                last = _seq(parts)
                if last == n:
                    break
        assert last == n
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        assert sub.received < n  # most were dropped by the PUB for the slow reader
        assert sub.dropped == sub.received - returns  # every skipped message is counted


def test_latest_returns_newest_of_queued(endpoint, context):
    with (
        ResultPublisher(endpoint, hwm=4, context=context) as pub,
        LatestSubscriber(endpoint, hwm=4, context=context) as sub,
    ):
        _connected(pub, sub)
        for i in range(3):
            pub.publish([b"%d" % i, b"small"])
        got = []
        for _ in range(100):
            parts = sub.latest(timeout_ms=50)
            if parts is not None:
                got.append(_seq(parts))
                if got[-1] == 2:
                    break
        assert got[-1] == 2
        assert sub.received == 3 and sub.dropped == 3 - len(got)


def test_pubsub_validation(endpoint):
    with pytest.raises(ValueError, match=r"hwm=0 .*\[1, 64\]"):
        ResultPublisher(endpoint, hwm=0)
    with pytest.raises(EndpointError, match="without CURVE"):
        ResultPublisher("tcp://0.0.0.0:5600")
    with pytest.raises(EndpointError):
        LatestSubscriber("tcp://nohost")
    pub = ResultPublisher(endpoint)
    with pytest.raises(RuntimeError, match="start"):
        pub.publish([b"x"])
