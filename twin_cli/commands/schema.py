"""`python -m control_plane schema`: print the JSON Schema of the deployment spec.

`docs/spec.schema.json` is this command's output (`--write docs/spec.schema.json` refreshes it;
`--check` exits 1 when the file is out of date, for CI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "docs" / "spec.schema.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="print the JSON Schema of the deployment spec")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="write the schema to FILE instead of printing it")
    group.add_argument(
        "--check",
        metavar="FILE",
        nargs="?",
        const=str(DEFAULT_FILE),
        help="exit 1 if FILE (default: docs/spec.schema.json) differs from the current schema",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared.spec import render_json_schema

    text = render_json_schema()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        return 0
    if args.check:
        path = Path(args.check)
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{path}: cannot read ({exc.strerror})", file=sys.stderr)
            return 1
        if current != text:
            print(
                f"{path} is out of date; run: python -m control_plane schema --write {path}",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0
