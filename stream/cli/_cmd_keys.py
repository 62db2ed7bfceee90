"""``livesr keys``: create CURVE keys for links that leave the host.

Examples::

    livesr keys ~/.livesr/keys                       # server + one client "client"
    livesr keys keys/ --client cam1 --client viewer  # several clients
    livesr keys keys/ --force                        # replace existing keys

The server (pipeline host) uses ``server.key_secret`` and ``authorized_clients/``; each
client gets its ``NAME.key_secret`` and ``server.key``.
"""

from __future__ import annotations

import argparse
import logging
import sys

NAME = "keys"
HELP = "create CURVE keys (server, clients, allow-list) for non-loopback links"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``livesr keys`` arguments to ``parser``."""
    parser.add_argument(
        "directory",
        metavar="DIR",
        help="folder to write the keys into (created, mode 0700)",
    )
    parser.add_argument(
        "--client",
        action="append",
        dest="clients",
        metavar="NAME",
        help="client name (repeatable; default: one client named 'client')",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace existing key files"
    )


def run(args: argparse.Namespace) -> int:
    """Create the keys; returns 0, or 1 with a message on stderr."""
    from livesr.stream._keys import KeyFileError, create_keys

    clients = tuple(args.clients or ("client",))
    try:
        files = create_keys(args.directory, clients, overwrite=args.force)
    except KeyFileError as exc:
        sys.stderr.write(f"livesr keys: error: {exc}\n")
        return 1
    out = sys.stdout
    out.write(f"server public key : {files.server_public}\n")
    out.write(
        f"server secret key : {files.server_secret}  (0600, keep on the pipeline "
        "host)\n"
    )
    for _pub, sec in files.clients:
        out.write(
            f"client            : {sec}  (0600, give to that client with "
            f"{files.server_public.name})\n"
        )
    out.write(
        f"allow-list        : {files.authorized_dir}/  (client public keys the "
        "server accepts)\n"
    )
    return 0
