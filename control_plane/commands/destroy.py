"""`python -m control_plane destroy TWIN`: delete every recorded resource of a twin (reverse
dependency order) and clear its state. Exit codes: 0 destroyed, 1 failed or not found, 2 invalid input."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

from rich.console import Console

from control_plane.commands.engine_client import (
    EXIT_FAILED,
    EXIT_INVALID,
    CliError,
    add_target_arguments,
    follow,
    open_target,
    print_errors,
    print_outcome,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("destroy", help="destroy a twin's resources", description=__doc__)
    parser.add_argument("twin", metavar="TWIN", help="the twin's name")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        with open_target(args, console) as target:
            status, body = target.call("DELETE", f"twins/{urllib.parse.quote(args.twin)}")
            if status != 202:
                print_errors(console, body)
                return EXIT_INVALID if status == 400 else EXIT_FAILED
            code, view = follow(target, body["id"], console, args.json)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    print_outcome(Console() if not args.json else console, view, args.json)
    return code
