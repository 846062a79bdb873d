"""`python -m control_plane deploy SPEC`: deploy a twin and show its progress per layer.

SPEC is a twin.json file, or a folder: a `twin.json` or the original project's layout, sent with
the users' code beside it (processors, event actions) as a bundle (`application/zip`). Without
`--url` the control plane runs in this process (a local host, pointed at a sandbox started here, or at
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
    """A spec file as the JSON the API takes, read with the same strict JSON reading the API
    applies to bodies (`shared.loaders.parse_json_document`)."""
    from shared.loaders import DocumentError, parse_json_document

    source = Path(path)
    try:
        return parse_json_document(source.read_bytes(), what=source.name)
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from exc
    except DocumentError as exc:
        raise CliError("\n".join(str(p) for p in exc.problems)) from exc


def read_bundle(path: str) -> bytes:
    """A folder as the bundle the API takes (`shared.bundle.zip_folder`), checked here first so
    a bad folder is reported without starting anything (the API checks it again)."""
    from shared.bundle import open_bundle, zip_folder
    from shared.validation import SpecError

    try:
        data = zip_folder(Path(path))
        open_bundle(data)
    except SpecError as exc:
        raise CliError("\n".join(f"{p.path or '(root)'}: {p.message}" for p in exc.problems)) from exc
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from exc
    return data


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        route = "deployments?prune=false" if args.no_prune else "deployments"
        bundle = read_bundle(args.spec) if Path(args.spec).is_dir() else None
        spec = read_spec(args.spec) if bundle is None else None
        with open_target(args, console) as target:
            if bundle is not None:
                status, body = target.call("POST", route, raw=bundle, content_type="application/zip")
            else:
                status, body = target.call("POST", route, spec)
            if status in (400, 413):
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
