"""``livesr ctl ENDPOINT set|status|stop``: control a running pipeline from outside.

Examples::

    livesr ctl ipc:///tmp/livesr-ctl.ipc status
    livesr ctl ipc:///tmp/livesr-ctl.ipc set window=30 radius=2
    livesr ctl ipc:///tmp/livesr-ctl.ipc stop
    livesr ctl tcp://scope-pc:5570 --keys ~/.livesr/keys status   # another host

ENDPOINT is the run's control channel: ``livesr run --control ENDPOINT`` (or
``[stream] control``), else the automatic one the run prints at its start and writes
to ``summary.json`` ``control_endpoint``.  The reply (JSON) goes to stdout.

``set`` takes live eSRRF parameters (window, stride, radius, sensitivity, temporal) as
``NAME=VALUE``, each parsed as the parameter's type; the reply names the frame index
the change took effect at (or ``"pending": true`` until the processing thread reaches
a batch boundary; ``status`` then lists it).  ``stop`` ends acquisition as Ctrl-C
does in ``livesr run``: every frame acquired is persisted and processed.

Exit status: 0 served; 1 refused by the run (the reply's ``error`` says why); 2 bad
arguments, or no reply within ``--timeout-s`` (nobody serves ENDPOINT).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NAME = "ctl"
HELP = "change parameters of, query or stop a running pipeline (its control channel)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``livesr ctl`` arguments to ``parser``."""
    parser.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        help="the run's control endpoint (livesr run --control, summary.json "
        "control_endpoint)",
    )
    parser.add_argument(
        "cmd", metavar="COMMAND", choices=("set", "status", "stop"),
        help="set NAME=VALUE ..., status or stop",
    )
    parser.add_argument(
        "assignments", nargs="*", metavar="NAME=VALUE",
        help="set: live eSRRF parameters (window, stride, radius, sensitivity, temporal)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=5.0, metavar="S",
        help="longest wait for the reply, s (default 5)",
    )
    parser.add_argument(
        "--keys", metavar="DIR", default=None,
        help="CURVE key folder ('livesr keys DIR') for a run whose control channel "
        "is bound off loopback (with its --keys); not for ipc:// or 127.0.0.1 channels",
    )
    parser.add_argument(
        "--client", metavar="NAME", default="client",
        help="--keys: the client key name (default client)",
    )


def _usage(message: str) -> int:
    sys.stderr.write(f"livesr ctl: error: {message}\n")
    return 2


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON request of the command line (ValueError: what is wrong)."""
    from livesr.stream._control import parse_assignments

    if args.cmd != "set":
        if args.assignments:
            raise ValueError(
                f"{args.cmd} takes no NAME=VALUE arguments, got {' '.join(args.assignments)}"
            )
        return {"cmd": args.cmd}
    return {"cmd": "set", "params": parse_assignments(args.assignments)}


def run(args: argparse.Namespace) -> int:
    """Send the request, print the reply; 0 served, 1 refused, 2 usage/unreachable."""
    from livesr.stream._control import ControlClient, ControlUnreachable
    from livesr.stream._endpoints import EndpointError, parse_endpoint

    if not args.timeout_s > 0:
        return _usage(f"--timeout-s {args.timeout_s:g}: expected a number > 0 (s)")
    try:
        msg = request_of(args)
        parse_endpoint(args.endpoint)
    except (ValueError, EndpointError) as exc:
        return _usage(str(exc))
    curve = None
    if args.keys:  # the run binds its channel with CURVE off loopback only
        from livesr.stream._keys import KeyFileError, load_client_keys

        try:
            curve = load_client_keys(args.keys, args.client)
        except KeyFileError as exc:
            return _usage(str(exc))
    try:
        client = ControlClient(args.endpoint, curve=curve, timeout_s=args.timeout_s)
    except (ValueError, EndpointError) as exc:
        return _usage(str(exc))
    try:
        reply = client.request(msg)
    except ControlUnreachable as exc:
        return _usage(str(exc))
    finally:
        client.close()
    sys.stdout.write(json.dumps(reply, indent=2) + "\n")
    if not reply.get("ok"):
        sys.stderr.write(f"livesr ctl: refused: {reply.get('error')}\n")
        return 1
    return 0
