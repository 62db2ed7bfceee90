"""The ``livesr`` command line: one entry point, one subcommand per module.

Each subcommand lives in its own module listed in :data:`COMMANDS`; the module
provides ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when the parser is built (never at ``import livesr``).

This package is the composition root: it is the one place allowed to wire
``livesr.adapters`` and ``livesr.sim`` into the pipeline (the import-linter
contracts in ``pyproject.toml`` say so).  Its modules are the commands and what
only they use (the report, the end-to-end benchmark); ``python -m
livesr.stream.cli`` runs :func:`main` (:mod:`livesr.stream.cli.__main__`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from livesr.stream._logging import LEVELS, configure_logging
from livesr.stream._version import livesr_version

logger = logging.getLogger(__name__)

#: Subcommand modules, in the order ``livesr --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "livesr.stream.cli._cmd_run",
    "livesr.stream.cli._cmd_replay",
    "livesr.stream.cli._cmd_sweep",
    "livesr.sim._cli",
    "livesr.stream.cli._cmd_keys",
    "livesr.stream.cli._cmd_ctl",
    "livesr.stream.cli._cmd_bench",
    "livesr.stream.cli._cmd_backends",
)

#: commands that stream live: on small machines their OpenMP threads wait passively between batches
#: (:mod:`livesr.stream._openmp`), set before any kernel loads OpenMP
LIVE_COMMANDS = ("run", "replay")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors raise instead of exiting the interpreter."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def _load(name: str) -> ModuleType:
    return importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser (imports the subcommand modules, not their backends)."""
    parser = _Parser(
        prog="livesr",
        description="Real-time super-resolution (eSRRF) for light microscopes.",
    )
    parser.add_argument("--version", action="version", version=livesr_version())
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LEVELS,
        default=None,
        help="logging level (default: $LIVESR_LOG_LEVEL or warning)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = _load(name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        p.add_argument(
            "--log-level",
            type=str.lower,
            choices=LEVELS,
            default=argparse.SUPPRESS,
            help="logging level (default: $LIVESR_LOG_LEVEL or warning)",
        )
        module.add_arguments(p)
        if module.NAME in ("run", "replay"):  # every default in --help
            from livesr.stream.cli._run_args import show_defaults

            p.formatter_class = argparse.RawDescriptionHelpFormatter
            show_defaults(p)
        p.set_defaults(_run=module.run)
    return parser


def _sigterm_as_interrupt() -> Any:
    """Treat SIGTERM like Ctrl-C (a clean stop: sources told to stop, every file
    completed, the summary written) instead of dying mid-write.  Main thread only;
    returns the previous handler (None when it could not be installed)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        logger.warning("SIGTERM: stopping as on Ctrl-C")
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # pragma: no cover - exotic embedding
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 success, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{exc}\n")
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    configure_logging(getattr(args, "log_level", None))
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    if args.command in LIVE_COMMANDS:  # before any kernel loads OpenMP
        from livesr.stream._openmp import prefer_passive_openmp

        prefer_passive_openmp()
    previous = _sigterm_as_interrupt()
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        logger.warning("interrupted")
        return 130
    except (ValueError, OSError) as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"livesr: error: {exc}\n")
        return 1
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)
