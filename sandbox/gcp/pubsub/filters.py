"""Subscription filters (https://cloud.google.com/pubsub/docs/subscription-message-filter): a
subscription with a `filter` receives only the messages whose attributes match it; the others are
acknowledged for it at once. The sandbox parses the documented attribute forms

    attributes.KEY = "value"     attributes.KEY != "value"     attributes:KEY
    hasPrefix(attributes.KEY, "prefix")

combined with NOT (or `-`), AND, OR and parentheses, and refuses anything else with
INVALID_ARGUMENT at create time, as Pub/Sub refuses an invalid filter. A filter is at most 256
bytes and cannot be changed after the subscription is created."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from sandbox.gcp.common import GoogleError

MAX_FILTER_BYTES = 256
_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:|\(|\)|,|-)|(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*))""")
Predicate = Callable[[Mapping[str, str]], bool]


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _invalid(text, f"unexpected character at {pos}")
        out.append(m.group(m.lastgroup or "word"))
        pos = m.end()
    return out


def _invalid(text: str, why: str) -> GoogleError:
    return GoogleError("INVALID_ARGUMENT", f"Invalid filter expression {text!r}: {why}.")


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def compile_filter(text: str) -> Predicate:
    """A predicate on a message's attributes; GoogleError(INVALID_ARGUMENT) for a bad filter."""
    if len(text.encode("utf-8")) > MAX_FILTER_BYTES:
        raise GoogleError("INVALID_ARGUMENT", f"filter: longer than {MAX_FILTER_BYTES} bytes")
    tokens = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = peek()
        if token is None or (expected is not None and token != expected):
            raise _invalid(text, f"expected {expected or 'more'}, got {token!r}")
        pos += 1
        return token

    def key_of(token: str) -> str:
        if not token.startswith("attributes.") or len(token) == len("attributes."):
            raise _invalid(text, f"{token!r} is not attributes.KEY")
        return token[len("attributes."):]

    def string() -> str:
        token = take()
        if not token.startswith('"'):
            raise _invalid(text, f"expected a quoted string, got {token!r}")
        return _unquote(token)

    def primary() -> Predicate:
        token = peek()
        if token in ("NOT", "-"):
            take()
            inner = primary()
            return lambda a: not inner(a)
        if token == "(":
            take("(")
            inner = disjunction()
            take(")")
            return inner
        if token == "hasPrefix":
            take()
            take("(")
            key = key_of(take())
            take(",")
            prefix = string()
            take(")")
            return lambda a: key in a and a[key].startswith(prefix)
        if token == "attributes":
            take()
            take(":")
            name = take()
            return lambda a: name in a
        word = take()
        key = key_of(word)
        op = take()
        if op not in ("=", "!="):
            raise _invalid(text, f"expected = or != after {word}, got {op!r}")
        value = string()
        if op == "=":
            return lambda a: a.get(key) == value
        return lambda a: a.get(key) != value

    def conjunction() -> Predicate:
        parts = [primary()]
        while peek() == "AND":
            take()
            parts.append(primary())
        return lambda a: all(p(a) for p in parts)

    def disjunction() -> Predicate:
        parts = [conjunction()]
        while peek() == "OR":
            take()
            parts.append(conjunction())
        return lambda a: any(p(a) for p in parts)

    predicate = disjunction()
    if peek() is not None:
        raise _invalid(text, f"unexpected {peek()!r}")
    return predicate
