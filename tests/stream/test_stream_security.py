"""Security: CURVE allow-list (R7), non-loopback refused without keys, keys CLI."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest
import zmq

from livesr.stream._endpoints import EndpointError
from livesr.stream._keys import (
    CurveClientKeys,
    KeyFileError,
    create_keys,
    load_client_keys,
    load_server_keys,
)
from livesr.stream._transport import Ingest, IngestConfig, SourceLink, SourceLinkConfig
from livesr.stream.cli import main

SHAPE = (32, 32)
N = 50


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys") / "k"
    files = create_keys(root, ("cam", "intruder"))
    os.remove(
        files.authorized_dir / "intruder.key"
    )  # a valid keypair the server does not know
    return root


def _deliver(endpoint: str, curve: CurveClientKeys | None, wait_s: float) -> dict:
    link = SourceLink(
        SourceLinkConfig(
            endpoint=endpoint, stream="cam0", shape=SHAPE, ring_frames=N, curve=curve
        )
    ).start()
    for seq in range(N):
        link.send(np.full(SHAPE, seq, np.uint16))
    return link.close(timeout=wait_s)


@pytest.fixture
def curve_ingest(keydir):
    got: list[int] = []
    cfg = IngestConfig(endpoint="tcp://127.0.0.1:*", curve=load_server_keys(keydir))
    ingest = Ingest(cfg, lambda h, f: got.append(h.seq)).start()
    yield ingest, got
    ingest.close()


def test_authorised_key_delivers_every_frame(keydir, curve_ingest):
    ingest, got = curve_ingest
    summary = _deliver(ingest.endpoint, load_client_keys(keydir, "cam"), wait_s=30)
    assert got == list(range(N))
    assert summary["frames_acked"] == N and summary["end_acked"]


@pytest.mark.parametrize("client", ["unknown key", "no key (NULL)", "wrong server key"])
def test_unauthorised_clients_deliver_nothing(keydir, curve_ingest, client):
    ingest, got = curve_ingest
    cam = load_client_keys(keydir, "cam")
    curve = {
        "unknown key": load_client_keys(keydir, "intruder"),
        "no key (NULL)": None,
        "wrong server key": CurveClientKeys(
            public=cam.public, secret=cam.secret, server_public=zmq.curve_keypair()[0]
        ),
    }[client]
    summary = _deliver(ingest.endpoint, curve, wait_s=0.5)
    assert got == []
    assert summary["frames_acked"] == 0 and summary["handshakes"] == 0
    assert summary["frames_unacked"] == N and not summary["end_acked"]
    isum = ingest.summary()
    assert isum["streams"] == {}  # not even a hello got through
    # the refused handshakes are counted (and logged, rate-limited)
    failures = {k: v for k, v in isum.items() if k.startswith("handshake_failed")}
    kind = {
        "unknown key": "auth",
        # libzmq reports a NULL-vs-CURVE mismatch as either a protocol or an
        # "other" handshake failure, depending on which side notices first
        "no key (NULL)": ("other", "protocol"),
        "wrong server key": "protocol",
    }[client]
    deadline = time.monotonic() + 20  # the monitor event may still be on its way
    kinds = kind if isinstance(kind, tuple) else (kind,)

    def refused() -> int:
        summary = ingest.summary()
        return sum(summary[f"handshake_failed_{k}"] for k in kinds)

    while refused() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refused() >= 1, failures
    # and the authorised client still gets through afterwards
    ok = _deliver(ingest.endpoint, cam, wait_s=30)
    assert ok["frames_acked"] == N and got == list(range(N))


@pytest.mark.parametrize(
    "endpoint", ["tcp://0.0.0.0:5599", "tcp://*:5599", "tcp://10.1.2.3:5599"]
)
def test_non_loopback_bind_refused_without_keys(endpoint, keydir):
    with pytest.raises(EndpointError, match="without CURVE keys"):
        IngestConfig(endpoint=endpoint)
    IngestConfig(
        endpoint=endpoint, curve=load_server_keys(keydir)
    )  # allowed with keys (not bound)


def test_non_loopback_connect_refused_without_keys(keydir):
    with pytest.raises(EndpointError, match="livesr keys DIR"):
        SourceLinkConfig(endpoint="tcp://scope-pc.lab:5599", stream="c", shape=SHAPE)
    SourceLinkConfig(
        endpoint="tcp://scope-pc.lab:5599",
        stream="c",
        shape=SHAPE,
        curve=load_client_keys(keydir, "cam"),
    )


def test_keys_cli_writes_private_secrets(tmp_path, capsys):
    d = tmp_path / "keys"
    assert main(["keys", str(d), "--client", "cam1", "--client", "viewer"]) == 0
    out = capsys.readouterr().out
    assert "server.key_secret" in out and "authorized_clients" in out
    for name in ("server", "cam1", "viewer"):
        assert stat.S_IMODE((d / f"{name}.key_secret").stat().st_mode) == 0o600
        assert (d / f"{name}.key").is_file()
    assert sorted(p.name for p in (d / "authorized_clients").iterdir()) == [
        "cam1.key",
        "viewer.key",
    ]
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    server = load_server_keys(d)
    assert server.secret.decode() not in repr(server)  # never printed
    assert load_client_keys(d, "cam1").server_public == server.public

    assert main(["keys", str(d)]) == 1  # refuses to overwrite
    assert "already exist" in capsys.readouterr().err
    assert main(["keys", str(d), "--force"]) == 0
    assert load_server_keys(d).public != server.public
    assert main(["keys", str(d), "--client", "bad name"]) == 1
    assert "not valid" in capsys.readouterr().err


def test_loading_refuses_readable_secret_and_missing_files(tmp_path):
    files = create_keys(tmp_path / "k")
    os.chmod(files.server_secret, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_server_keys(tmp_path / "k")
    with pytest.raises(KeyFileError, match="not found.*livesr keys"):
        load_client_keys(tmp_path / "k", "nobody")
    with pytest.raises(KeyFileError, match="40-character"):
        CurveClientKeys(public=b"short", secret=b"x" * 40, server_public=b"y" * 40)


def test_curve_results_fanout_shares_the_ingest_authenticator(keydir):
    """A CURVE PUB on the ingest's context reuses its ZAP handler (same allow-list)."""
    from livesr.stream._pubsub import LatestSubscriber, ResultPublisher

    ctx = zmq.Context()
    server = load_server_keys(keydir)
    ingest = Ingest(
        IngestConfig(endpoint="tcp://127.0.0.1:*", curve=server),
        lambda h, f: None,
        context=ctx,
    ).start()
    pub = ResultPublisher("tcp://127.0.0.1:*", curve=server, context=ctx).start()
    good = LatestSubscriber(pub.endpoint, curve=load_client_keys(keydir, "cam")).start()
    bad = LatestSubscriber(
        pub.endpoint, curve=load_client_keys(keydir, "intruder")
    ).start()
    try:
        got = None
        for i in range(300):
            pub.publish([b"%d" % i, b"result"])
            got = got or good.latest(timeout_ms=10)
            if got is not None:
                break
        assert got is not None
        for i in range(20):
            pub.publish([b"%d" % i, b"result"])
        assert bad.latest(timeout_ms=200) is None and bad.received == 0
    finally:
        good.close()
        bad.close()
        pub.close()
        ingest.close()
        ctx.term()
    with pytest.raises(EndpointError, match="without CURVE"):
        ResultPublisher("tcp://0.0.0.0:5601")
