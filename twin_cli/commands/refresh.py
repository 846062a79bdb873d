"""`python -m control_plane refresh TWIN`: re-read the twin's producers and propagate every output
that changed outside a deployment (e.g. the Digital Twins instance recreated with a new host
name). Read-only on the clouds except the consumers of changed outputs.
Exit codes: 0 refreshed, 1 failed or not found, 2 invalid input."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from twin_cli.commands.engine_client import add_target_arguments, start_and_follow


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("refresh", help="notice and propagate output changes made outside a deployment",
                                   description=__doc__)
    parser.add_argument("twin", metavar="TWIN", help="the twin's name")
    parser.add_argument("--resource", action="append", default=None, metavar="ID",
                        help="only read this producer (a resource id such as azure/L4/digital-twins); repeatable")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    body = {} if not args.resource else {"resources": list(args.resource)}
    return start_and_follow(args, "POST", f"twins/{urllib.parse.quote(args.twin)}/refresh", body)
