"""`python -m control_plane deploy SPEC`: deploy a twin and show its progress per layer.

SPEC is a twin.json file or a folder in the original project's layout. Without `--url` the
control plane runs in this process (a local host, pointed at a sandbox started here, or at
`--sandbox DIR`); with `--url URL --key KEY` a running control plane does the work. Prints the
outputs (secrets redacted) at the end; `--json` prints the final deployment view instead.
Exit codes: 0 deployed, 1 the deployment failed, 2 invalid input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from twin_cli.commands.engine_client import (
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
    parser = subparsers.add_parser("deploy", help="deploy a twin spec and follow its progress",
                                   description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    parser.add_argument("spec", metavar="SPEC", help="a twin.json file or an original-layout folder")
    parser.add_argument("--no-prune", action="store_true",
                        help="keep recorded resources that the spec no longer has (default: delete them)")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def read_spec(path: str) -> Any:
    """The spec as the JSON the API takes (an original-layout folder is converted), read with the
    same strict JSON reading the API applies to bodies (`shared.loaders.parse_json_document`)."""
    from shared.loaders import DocumentError, load_spec, parse_json_document
    from shared.validation import SpecError

    source = Path(path)
    if source.is_dir():
        try:
            return load_spec(source).model_dump(mode="json", by_alias=True, exclude_none=True)
        except SpecError as exc:
            raise CliError("\n".join(f"{p.path or '(root)'}: {p.message}" for p in exc.problems)) from exc
    try:
        return parse_json_document(source.read_bytes(), what=source.name)
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from exc
    except DocumentError as exc:
        raise CliError("\n".join(str(p) for p in exc.problems)) from exc


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        spec = read_spec(args.spec)
        with open_target(args, console) as target:
            status, body = target.call("POST", "deployments?prune=false" if args.no_prune else "deployments", spec)
            if status == 400:
                print_errors(console, body)
                return EXIT_INVALID
            if status == 409:
                print_errors(console, body)
                return EXIT_FAILED
            if status != 202:
                raise CliError(f"POST /api/deployments answered {status}: {body}")
            code, view = follow(target, body["id"], console, args.json)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    print_outcome(Console() if not args.json else console, view, args.json)
    return code
