"""Shared helpers of the spec tests (a plain module, not conftest.py: test folders share one
`conftest` module name, so importing from conftest would pick up another folder's): the examples, the reference template, and a tiny JSON-path
editor for the malformed corpus (paths as `shared.loaders.json_path` writes them)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_NAMES = ("azure-only", "aws-only", "aws-to-azure", "mixed")
# The team's shared folder sits beside the repository (as in CI's clean clone).
TEMPLATE = ROOT.parent / "shared" / "reference" / "seed-template"
MALFORMED = Path(__file__).resolve().parent / "malformed" / "cases.json"

_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def example_dict(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name / "twin.json").read_text())


def split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for index, key in _TOKEN.findall(path):
        parts.append(int(index) if index else key)
    return parts


def _parent(doc: Any, path: str) -> tuple[Any, str | int]:
    parts = split_path(path)
    node = doc
    for part in parts[:-1]:
        if isinstance(part, str) and isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    return node, parts[-1]


def edit(doc: Any, case: dict[str, Any]) -> Any:
    """Apply a corpus case's `set`, `delete` and `append` operations to a copy of `doc`."""
    doc = copy.deepcopy(doc)
    for path, value in case.get("set", []):
        node, key = _parent(doc, path)
        node[key] = value
    for path in case.get("delete", []):
        node, key = _parent(doc, path)
        del node[key]
    for path, value in case.get("append", []):
        node, key = _parent(doc, path)
        node[key].append(value)
    return doc
