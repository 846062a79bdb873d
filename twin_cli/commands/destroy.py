"""`python -m control_plane destroy TWIN`: delete every recorded resource of a twin (reverse
dependency order) and clear its state. Exit codes: 0 destroyed, 1 failed or not found, 2 invalid input."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from twin_cli.commands.engine_client import add_target_arguments, start_and_follow


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("destroy", help="destroy a twin's resources", description=__doc__)
    parser.add_argument("twin", metavar="TWIN", help="the twin's name")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return start_and_follow(args, "DELETE", f"twins/{urllib.parse.quote(args.twin)}")
