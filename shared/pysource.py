"""Parsing Python source safely from several threads.

CPython 3.11's `ast.parse` is not thread-safe (gh-106905: "AST constructor recursion depth
mismatch" when threads parse at once). Activities build packages in parallel and the sandbox
indexes deployed apps on its own threads, so every parse in the project goes through one lock.
"""

from __future__ import annotations

import ast
import threading

_PARSE_LOCK = threading.Lock()


def parse_python(source: str | bytes, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse`, serialised process-wide; raises SyntaxError like it."""
    with _PARSE_LOCK:
        return ast.parse(source, filename=filename)
