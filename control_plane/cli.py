"""`python -m control_plane COMMAND ...`: one module per command under `control_plane.commands`.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the default. Exit codes: 0 success, 1 failed operation, 2 invalid input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order of `--help`.
COMMAND_MODULES = (
    "control_plane.commands.deploy",
    "control_plane.commands.status",
    "control_plane.commands.destroy",
    "control_plane.commands.rotate_token",
    "control_plane.commands.refresh",
    "control_plane.commands.simulate",
    "control_plane.commands.plan",
    "control_plane.commands.serve",
    "control_plane.commands.schema",
    "control_plane.commands.demo",
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
