"""`python -m control_plane COMMAND ...`: one module per command under `twin_cli.commands`.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the default. Exit codes: 0 success, 1 failed operation, 2 invalid input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order of `--help`.
COMMAND_MODULES = (
    "twin_cli.commands.deploy",
    "twin_cli.commands.status",
    "twin_cli.commands.destroy",
    "twin_cli.commands.rotate_token",
    "twin_cli.commands.refresh",
    "twin_cli.commands.simulate",
    "twin_cli.commands.plan",
    "twin_cli.commands.serve",
    "twin_cli.commands.install",
    "twin_cli.commands.schema",
    "twin_cli.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m control_plane",
        description="Deploy, wire and inspect multi-cloud Digital Twins.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))
