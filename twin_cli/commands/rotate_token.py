"""`python -m control_plane rotate-token TWIN`: roll out a new inter-cloud token in phases
(receivers accept new and previous, senders switch, receivers drop the previous one after
`--grace-seconds`). Exit codes: 0 rotated, 1 failed or not found, 2 invalid input."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from twin_cli.commands.engine_client import add_target_arguments, start_and_follow


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("rotate-token", help="rotate a twin's inter-cloud token", description=__doc__)
    parser.add_argument("twin", metavar="TWIN", help="the twin's name")
    parser.add_argument("--grace-seconds", type=float, default=None,
                        help="wait this long for in-flight messages before receivers drop the old token")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    body = {} if args.grace_seconds is None else {"grace_seconds": args.grace_seconds}
    return start_and_follow(args, "POST", f"twins/{urllib.parse.quote(args.twin)}/tokens/rotate", body)
