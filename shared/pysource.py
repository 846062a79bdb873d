"""Parsing Python source safely from several threads.

CPython 3.11's `ast.parse` is not thread-safe (gh-106905: "AST constructor recursion depth
mismatch" when threads parse at once). Activities build packages in parallel and the sandbox
indexes deployed apps on its own threads, so every parse in the project goes through one lock.
"""

from __future__ import annotations

import ast
import threading

_PARSE_LOCK = threading.Lock()
_ATTEMPTS = 3


def parse_python(source: str | bytes, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse`, serialised process-wide; raises SyntaxError like it.

    Libraries parse too, outside this lock (werkzeug compiles URL rules with `ast.parse`), so a
    parse can still meet gh-106905's SystemError; the counter it trips is reset on every parse,
    so the parse is repeated (a few times at most)."""
    with _PARSE_LOCK:
        for _ in range(_ATTEMPTS - 1):
            try:
                return ast.parse(source, filename=filename)
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc):
                    raise
        return ast.parse(source, filename=filename)
