"""``livesr sim``: write a simulated acquisition and its ground truth (placeholder)."""

from __future__ import annotations

import argparse

NAME = "sim"
HELP = "write a simulated acquisition and its ground truth to a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("livesr sim is being written")
