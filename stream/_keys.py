"""CURVE keys for links that leave the host: create, load, apply.

Layout written by :func:`create_keys` (``livesr keys DIR``)::

    DIR/                         (0700)
        server.key               server public key  (give to every client)
        server.key_secret        server secret key  (0600; stays on the pipeline host)
        CLIENT.key               client public key
        CLIENT.key_secret        client secret key  (0600; goes to that client)
        authorized_clients/      allow-list: public keys the server accepts
            CLIENT.key

The server side (the bound ingest) loads :func:`load_server_keys` and starts a ZAP
authenticator (:func:`start_authenticator`) that accepts only the public keys found in
``authorized_clients/``; the client side loads :func:`load_client_keys`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

logger = logging.getLogger(__name__)

SERVER_NAME = "server"
ALLOW_DIR = "authorized_clients"
ZAP_DOMAIN = "livesr"
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_Z85_RE = re.compile(rb"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


class KeyFileError(ValueError):
    """Missing, malformed or unsafe key files."""


def _check_z85(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes) or not _Z85_RE.match(key):
        raise KeyFileError(f"{what} must be a 40-character Z85 CURVE key, got {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class CurveServerKeys:
    """Keys of a bound (server) socket.

    Attributes
    ----------
    public, secret
        The server keypair (Z85, 40 bytes each).
    authorized_dir
        Folder of client public key files (``*.key``) the server accepts.
    """

    public: bytes
    secret: bytes
    authorized_dir: Path

    def __post_init__(self) -> None:
        _check_z85(self.public, "CurveServerKeys.public")
        _check_z85(self.secret, "CurveServerKeys.secret")
        if not Path(self.authorized_dir).is_dir():
            raise KeyFileError(
                f"CurveServerKeys.authorized_dir={str(self.authorized_dir)!r} is not "
                "a folder; "
                "create it with 'livesr keys DIR'"
            )

    def __repr__(self) -> str:  # never print the secret
        allow = str(self.authorized_dir)
        return f"CurveServerKeys(public={self.public!r}, authorized_dir={allow!r})"


@dataclass(frozen=True, slots=True)
class CurveClientKeys:
    """Keys of a connecting (client) socket: its keypair and the server's public key."""

    public: bytes
    secret: bytes
    server_public: bytes

    def __post_init__(self) -> None:
        _check_z85(self.public, "CurveClientKeys.public")
        _check_z85(self.secret, "CurveClientKeys.secret")
        _check_z85(self.server_public, "CurveClientKeys.server_public")

    def __repr__(self) -> str:
        pub, server = self.public, self.server_public
        return f"CurveClientKeys(public={pub!r}, server_public={server!r})"


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """Paths written by :func:`create_keys`."""

    directory: Path
    server_public: Path
    server_secret: Path
    clients: tuple[tuple[Path, Path], ...]
    authorized_dir: Path


def create_keys(
    directory: str | os.PathLike[str],
    clients: tuple[str, ...] = ("client",),
    *,
    overwrite: bool = False,
) -> KeyFiles:
    """Create a server keypair, client keypairs and the server's allow-list.

    Parameters
    ----------
    directory
        Folder to write (created with mode 0700 if missing).
    clients
        Client names (``[A-Za-z0-9_-]``, 1-64 characters, not ``"server"``).
    overwrite
        Replace existing key files; without it, existing files are an error.

    Raises
    ------
    KeyFileError
        Bad client name, or key files already present and ``overwrite`` is false.
    """
    if not clients:
        raise KeyFileError("clients must name at least one client")
    for name in clients:
        if not _NAME_RE.match(name) or name == SERVER_NAME:
            raise KeyFileError(
                f"client name {name!r} is not valid; use 1-64 characters of "
                "[A-Za-z0-9_-], "
                f"not {SERVER_NAME!r}"
            )
    if len(set(clients)) != len(clients):
        raise KeyFileError(f"client names must be unique, got {list(clients)}")
    root = Path(directory)
    names = (SERVER_NAME, *clients)
    existing = [
        p
        for n in names
        for p in (root / f"{n}.key", root / f"{n}.key_secret")
        if p.exists()
    ]
    if existing and not overwrite:
        raise KeyFileError(
            f"key files already exist: {', '.join(map(str, existing))}; "
            "pass overwrite=True (livesr keys --force) to replace them"
        )
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    allow = root / ALLOW_DIR
    allow.mkdir(mode=0o700, exist_ok=True)
    written: list[tuple[Path, Path]] = []
    for name in names:
        pub, sec = zmq.auth.create_certificates(root, name)
        os.chmod(sec, 0o600)
        os.chmod(pub, 0o644)
        written.append((Path(pub), Path(sec)))
    for (client_pub, _), name in zip(written[1:], clients, strict=True):
        shutil.copyfile(client_pub, allow / f"{name}.key")
    logger.info(
        "wrote CURVE keys for server and %d client(s) to %s", len(clients), root
    )
    return KeyFiles(
        directory=root,
        server_public=written[0][0],
        server_secret=written[0][1],
        clients=tuple(written[1:]),
        authorized_dir=allow,
    )


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeyFileError(
            f"key file {str(path)!r} not found; create keys with 'livesr keys DIR'"
        )
    if secret and os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"secret key file {str(path)!r} has mode {mode:o}; it must be "
                "readable by its "
                f"owner only: run 'chmod 600 {path}'"
            )
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise KeyFileError(f"cannot read key file {str(path)!r}: {exc}") from None
    if secret and secret_key is None:
        raise KeyFileError(
            f"{str(path)!r} holds no secret key; expected a '.key_secret' file"
        )
    return public, secret_key


def load_server_keys(directory: str | os.PathLike[str]) -> CurveServerKeys:
    """Load ``DIR/server.key_secret`` and the allow-list ``DIR/authorized_clients``."""
    root = Path(directory)
    public, secret = _load(root / f"{SERVER_NAME}.key_secret", secret=True)
    assert secret is not None
    return CurveServerKeys(
        public=public, secret=secret, authorized_dir=root / ALLOW_DIR
    )


def load_client_keys(
    directory: str | os.PathLike[str],
    name: str = "client",
    *,
    server_public_file: str | os.PathLike[str] | None = None,
) -> CurveClientKeys:
    """Load ``DIR/NAME.key_secret`` and the server public key (``DIR/server.key``)."""
    root = Path(directory)
    public, secret = _load(root / f"{name}.key_secret", secret=True)
    assert secret is not None
    server_file = (
        Path(server_public_file) if server_public_file else root / f"{SERVER_NAME}.key"
    )
    server_public, _ = _load(server_file, secret=False)
    return CurveClientKeys(public=public, secret=secret, server_public=server_public)


def start_authenticator(context: zmq.Context[Any], keys: CurveServerKeys) -> Any:
    """Start a ZAP handler on ``context`` accepting only the allow-listed client keys.

    Returns the :class:`zmq.auth.thread.ThreadAuthenticator`; call ``.stop()`` before
    terminating the context.
    """
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(context, log=logging.getLogger(__name__ + ".zap"))
    try:
        auth.start()
    except zmq.ZMQError:  # e.g. EADDRINUSE: a ZAP handler already runs on context
        auth.stop()
        raise
    auth.configure_curve(domain=ZAP_DOMAIN, location=str(keys.authorized_dir))
    return auth


def apply_server_keys(sock: zmq.Socket[Any], keys: CurveServerKeys) -> None:
    """Make ``sock`` a CURVE server (call before ``bind``)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN.encode()


def secure_server(
    context: zmq.Context[Any], sock: zmq.Socket[Any], keys: CurveServerKeys
) -> Any:
    """Make ``sock`` a CURVE server with a ZAP handler on ``context`` (call before
    ``bind``).  Returns the authenticator it started, or None when one already runs
    on ``context`` (another server socket of the same context started it)."""
    auth = None
    try:
        auth = start_authenticator(context, keys)
    except zmq.ZMQError as exc:  # a ZAP handler already runs on the context
        if exc.errno != zmq.EADDRINUSE:
            raise
    apply_server_keys(sock, keys)
    return auth


def apply_client_keys(sock: zmq.Socket[Any], keys: CurveClientKeys) -> None:
    """Make ``sock`` a CURVE client of ``keys.server_public`` (before ``connect``)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public
