"""`python -m control_plane status TARGET`: a twin's recorded resources and outputs, or one
operation's view when TARGET is an operation id (`twin:NAME:deploy:...`). Secrets are redacted.
Exit codes: 0 found, 1 not found, 2 invalid input."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from rich.console import Console
from rich.table import Table

from twin_cli.commands.engine_client import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    CliError,
    add_target_arguments,
    open_target,
    print_errors,
    print_outcome,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="show a twin or an operation", description=__doc__)
    parser.add_argument("target", metavar="TARGET", help="a twin name or an operation id")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    is_operation = args.target.startswith("twin:")
    route = (f"deployments/{urllib.parse.quote(args.target, safe=':')}" if is_operation
             else f"twins/{urllib.parse.quote(args.target)}")
    try:
        if not args.url:
            args.no_sandbox = args.no_sandbox or not args.sandbox  # reading state needs no cloud
        with open_target(args, console) as target:
            status, body = target.call("GET", route)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    if status != 200:
        print_errors(console, body)
        return EXIT_INVALID if status == 400 else EXIT_FAILED
    if args.json:
        print(json.dumps(body, indent=2))
    elif is_operation:
        print_outcome(Console(), body, False)
    else:
        out = Console()
        table = Table(title=f"twin {body['twin']}")
        for column in ("resource", "layer", "provider", "state", "action"):
            table.add_column(column)
        for r in body["resources"]:
            table.add_row(r["id"], r["layer"] or "", r["provider"] or "", r["state"] or "", r["action"] or "")
        out.print(table)
        print_outcome(out, {"outputs": body["outputs"]}, False)
    return EXIT_OK
