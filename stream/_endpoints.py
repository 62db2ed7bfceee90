"""Endpoint strings: parsing, validation and the loopback/CURVE rule.

livesr accepts three ZeroMQ transports:

``ipc://PATH``       a Unix-domain socket (local to the host; path at most 107 bytes)
``tcp://HOST:PORT``  TCP; HOST is an IPv4 address, ``[IPv6]``, a host name or ``*``;
                     PORT is 1-65535, or ``*`` (bind only: a random free port)
``inproc://NAME``    inside one process (one ZeroMQ context)

An endpoint is *local* when it is ``ipc``, ``inproc`` or TCP on a loopback address
(``127.0.0.0/8``, ``::1``, ``localhost``).  Anything else (``*``, ``0.0.0.0``, a LAN
address, a host name) is reachable from other machines and must use CURVE
(:func:`require_secure`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

SCHEMES = ("ipc", "tcp", "inproc")
#: ``sizeof(sockaddr_un.sun_path) - 1`` on Linux.
MAX_IPC_PATH_BYTES = 107
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*$"
)
_INPROC_RE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,256}$")


class EndpointError(ValueError):
    """An endpoint livesr cannot use; the message says why and what to write."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed, validated endpoint.

    Attributes
    ----------
    url
        The endpoint string to give ZeroMQ (``bind``/``connect``).
    scheme
        ``"ipc"``, ``"tcp"`` or ``"inproc"``.
    host
        TCP host (without IPv6 brackets), else ``""``.
    port
        TCP port (``0`` for ``*``), else ``0``.
    path
        ipc path or inproc name, else ``""``.
    """

    url: str
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_loopback(self) -> bool:
        """True when only this host (or this process) can reach the endpoint."""
        if self.scheme in ("ipc", "inproc"):
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name or "*"
            return False

    @property
    def random_port(self) -> bool:
        """True for ``tcp://HOST:*`` (bind to a random free port)."""
        return self.scheme == "tcp" and self.port == 0


def _fail(text: str, why: str) -> EndpointError:
    return EndpointError(
        f"endpoint {text!r}: {why}; expected ipc://PATH, tcp://HOST:PORT or inproc://NAME"
    )


def parse_endpoint(text: str, *, for_bind: bool = False) -> Endpoint:
    """Parse and validate an endpoint string.

    Parameters
    ----------
    text
        ``ipc://PATH``, ``tcp://HOST:PORT`` or ``inproc://NAME``.
    for_bind
        Allow the bind-only forms ``tcp://HOST:*`` and ``tcp://*:PORT``.

    Returns
    -------
    Endpoint

    Raises
    ------
    EndpointError
        With the reason and the accepted forms.
    """
    if not isinstance(text, str):
        raise EndpointError(f"endpoint must be a string, got {type(text).__name__}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise _fail(text, "missing '://'")
    if scheme not in SCHEMES:
        raise _fail(text, f"transport {scheme!r} is not supported")
    if not rest:
        raise _fail(text, "nothing after '://'")
    if any(ch.isspace() for ch in rest) or "\x00" in rest:
        raise _fail(text, "contains whitespace or NUL")
    if scheme == "ipc":
        if rest.startswith("@"):
            raise _fail(text, "abstract ipc sockets ('@name') are not supported")
        if len(rest.encode()) > MAX_IPC_PATH_BYTES:
            raise _fail(
                text,
                f"ipc path is {len(rest.encode())} bytes; the OS allows at most "
                f"{MAX_IPC_PATH_BYTES} (use a shorter directory)",
            )
        return Endpoint(url=text, scheme="ipc", path=rest)
    if scheme == "inproc":
        if not _INPROC_RE.match(rest):
            raise _fail(
                text, "inproc name must be 1-256 characters of [A-Za-z0-9_.:/-]"
            )
        return Endpoint(url=text, scheme="inproc", path=rest)
    return _parse_tcp(text, rest, for_bind=for_bind)


def _parse_tcp(text: str, rest: str, *, for_bind: bool) -> Endpoint:
    """``tcp://`` + ``rest`` (``HOST:PORT``, IPv6 in brackets); see parse_endpoint."""
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host:
        raise _fail(text, "tcp needs HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]"):
            raise _fail(text, "unbalanced '[' in IPv6 host")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _fail(text, f"{host!r} is not an IPv6 address") from None
    elif host == "*":
        if not for_bind:
            raise _fail(text, "host '*' is only valid for bind")
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if (
                ":" in host
                or not _HOSTNAME_RE.match(host)
                or host.replace(".", "").isdigit()
            ):
                raise _fail(
                    text, f"{host!r} is not an IPv4 address or host name"
                ) from None
    if port_text == "*":
        if not for_bind:
            raise _fail(text, "port '*' is only valid for bind")
        port = 0
    else:
        if not port_text.isdigit():
            raise _fail(text, f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise _fail(text, f"port {port} outside [1, 65535]")
    return Endpoint(url=text, scheme="tcp", host=host, port=port)


def require_secure(endpoint: Endpoint, *, curve: bool, role: str) -> None:
    """Refuse a non-loopback endpoint without CURVE.

    Parameters
    ----------
    endpoint
        The parsed endpoint.
    curve
        Whether CURVE keys were given.
    role
        ``"bind"`` or ``"connect"`` (for the message).

    Raises
    ------
    EndpointError
        When ``endpoint`` is reachable from other hosts and ``curve`` is false.
    """
    if endpoint.is_loopback or curve:
        return
    raise EndpointError(
        f"refusing to {role} {endpoint.url!r} without CURVE keys: it is reachable from "
        "other machines. Use ipc:// or tcp://127.0.0.1 on one host, or create keys "
        "with 'livesr keys DIR' and give --keys DIR (or [security] keys) on both "
        "sides (Python: load_server_keys(DIR) / load_client_keys(DIR))"
    )


def is_loopback_endpoint(endpoint: str) -> bool:
    """Whether ``endpoint`` is reachable from this host only (ipc, inproc, 127.x);
    False for one that does not parse."""
    try:
        return bool(parse_endpoint(endpoint, for_bind=True).is_loopback)
    except ValueError:
        return False
