"""`python -m control_plane rotate-token TWIN`: roll out a new inter-cloud token in phases
(receivers accept new and previous, senders switch, receivers drop the previous one after
`--grace-seconds`). Exit codes: 0 rotated, 1 failed or not found, 2 invalid input."""

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
    parser = subparsers.add_parser("rotate-token", help="rotate a twin's inter-cloud token", description=__doc__)
    parser.add_argument("twin", metavar="TWIN", help="the twin's name")
    parser.add_argument("--grace-seconds", type=float, default=None,
                        help="wait this long for in-flight messages before receivers drop the old token")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    body_in = {} if args.grace_seconds is None else {"grace_seconds": args.grace_seconds}
    try:
        with open_target(args, console) as target:
            status, body = target.call("POST", f"twins/{urllib.parse.quote(args.twin)}/tokens/rotate", body_in)
            if status != 202:
                print_errors(console, body)
                return EXIT_INVALID if status == 400 else EXIT_FAILED
            code, view = follow(target, body["id"], console, args.json)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    print_outcome(Console() if not args.json else console, view, args.json)
    return code
