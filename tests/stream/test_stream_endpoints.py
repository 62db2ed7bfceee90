"""Endpoint parsing and the loopback/CURVE rule."""

from __future__ import annotations

import pytest

from livesr.stream._endpoints import EndpointError, parse_endpoint, require_secure


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "path", "loopback"),
    [
        ("ipc:///tmp/x.ipc", "ipc", "", 0, "/tmp/x.ipc", True),
        ("inproc://frames", "inproc", "", 0, "frames", True),
        ("tcp://127.0.0.1:5555", "tcp", "127.0.0.1", 5555, "", True),
        ("tcp://127.0.0.9:1", "tcp", "127.0.0.9", 1, "", True),
        ("tcp://localhost:65535", "tcp", "localhost", 65535, "", True),
        ("tcp://[::1]:5555", "tcp", "::1", 5555, "", True),
        ("tcp://10.0.0.2:5555", "tcp", "10.0.0.2", 5555, "", False),
        ("tcp://scope.lab.example:5555", "tcp", "scope.lab.example", 5555, "", False),
        ("tcp://[fe80::1]:5555", "tcp", "fe80::1", 5555, "", False),
    ],
)
def test_valid_endpoints_parse(text, scheme, host, port, path, loopback):
    ep = parse_endpoint(text)
    assert (ep.url, ep.scheme, ep.host, ep.port, ep.path) == (
        text,
        scheme,
        host,
        port,
        path,
    )
    assert ep.is_loopback is loopback


def test_bind_only_forms():
    assert parse_endpoint("tcp://127.0.0.1:*", for_bind=True).random_port
    assert not parse_endpoint("tcp://*:5555", for_bind=True).is_loopback
    assert not parse_endpoint("tcp://0.0.0.0:5555", for_bind=True).is_loopback
    with pytest.raises(EndpointError, match="only valid for bind"):
        parse_endpoint("tcp://127.0.0.1:*")
    with pytest.raises(EndpointError, match="only valid for bind"):
        parse_endpoint("tcp://*:5555")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "missing '://'"),
        ("127.0.0.1:5555", "missing '://'"),
        ("udp://127.0.0.1:5555", "transport 'udp' is not supported"),
        ("ipc://", "nothing after"),
        ("ipc://" + "a" * 200, "at most 107"),
        ("ipc://@abstract", "abstract"),
        ("inproc://has space", "whitespace"),
        ("inproc://bad|name", "inproc name"),
        ("tcp://127.0.0.1", "HOST:PORT"),
        ("tcp://:5555", "HOST:PORT"),
        ("tcp://127.0.0.1:0", "outside"),
        ("tcp://127.0.0.1:70000", "outside"),
        ("tcp://127.0.0.1:http", "not a number"),
        ("tcp://[::1:5555", "unbalanced"),
        ("tcp://[zz::1]:5555", "not an IPv6"),
        ("tcp://300.1.1.1:5555", "not an IPv4"),
        ("tcp://bad_host!:5555", "not an IPv4"),
    ],
)
def test_invalid_endpoints_are_rejected_with_reason(text, reason):
    with pytest.raises(EndpointError, match=reason) as info:
        parse_endpoint(text)
    assert "expected ipc://PATH" in str(info.value)


def test_non_string_endpoint():
    with pytest.raises(EndpointError, match="must be a string"):
        parse_endpoint(5555)  # type: ignore[arg-type]


def test_non_loopback_requires_curve():
    require_secure(parse_endpoint("ipc:///tmp/a"), curve=False, role="bind")
    require_secure(parse_endpoint("tcp://127.0.0.1:1"), curve=False, role="bind")
    require_secure(parse_endpoint("tcp://10.0.0.1:1"), curve=True, role="bind")
    with pytest.raises(EndpointError, match="without CURVE keys.*livesr keys DIR"):
        require_secure(parse_endpoint("tcp://10.0.0.1:1"), curve=False, role="bind")
