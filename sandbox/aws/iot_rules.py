"""The IoT Core rules engine for the sandbox: a publish through `iot-data` runs the topic rules.

moto stores topic rules but never fires them. Here, for each enabled rule whose `FROM` topic
filter matches the published topic, the SQL's `SELECT` and `WHERE` are applied to the JSON
payload and each Lambda action is invoked asynchronously with the result, as IoT Core does.
Supported SQL (what deployers write): `SELECT * | a, b AS c, topic() AS t, topic(2), clientid(),
timestamp() FROM 'filter/+/#' [WHERE cond]` where `cond` is comparisons
(`= <> != < <= > >=`) of fields or functions against literals (numbers, 'strings', true, false),
joined by AND / OR, optionally parenthesised, and NOT. Anything else is reported as not supported
and the rule does not fire (never a partial evaluation).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Value = Any


class RuleSqlError(ValueError):
    """The rule's SQL is outside the supported subset (the message says what)."""


_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|<=|>=|=|<|>)|(?P<punct>[(),*])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise RuleSqlError(f"unexpected text at {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching with `+` (one level) and `#` (the rest)."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


@dataclass
class Context:
    topic: str
    client_id: str
    payload: dict[str, Any]
    received_ms: int


@dataclass(frozen=True)
class Rule:
    select: list[tuple[str, str | None]]  # (expression, alias); ("*", None) selects the payload
    topic_filter: str
    where: list[tuple[str, str]] | None  # the WHERE tokens, evaluated on demand

    def matches(self, topic: str) -> bool:
        return topic_matches(self.topic_filter, topic)

    def apply(self, ctx: Context) -> dict[str, Any] | None:
        """The message the actions get, or None when WHERE is false."""
        if self.where is not None and not _truthy(_Where(self.where, ctx).parse()):
            return None
        out: dict[str, Any] = {}
        for expr, alias in self.select:
            if expr == "*":
                out.update(ctx.payload)
                continue
            value = _value(_tokens(expr), ctx)
            out[alias or _default_name(expr)] = value
        return out


def _default_name(expr: str) -> str:
    name = expr.split("(", 1)[0].strip()
    return name.rsplit(".", 1)[-1]


def parse_rule(sql: str) -> Rule:
    m = re.fullmatch(r"\s*SELECT\s+(?P<sel>.+?)\s+FROM\s+'(?P<topic>[^']*)'(?:\s+WHERE\s+(?P<where>.+?))?\s*;?\s*",
                     sql, re.IGNORECASE | re.DOTALL)
    if m is None:
        raise RuleSqlError("expected SELECT ... FROM 'topic/filter' [WHERE ...]")
    select: list[tuple[str, str | None]] = []
    for item in _split_commas(m.group("sel")):
        alias_m = re.fullmatch(r"(?P<e>.+?)\s+AS\s+(?P<a>[A-Za-z_][A-Za-z0-9_]*)", item.strip(), re.IGNORECASE)
        expr, alias = (alias_m.group("e").strip(), alias_m.group("a")) if alias_m else (item.strip(), None)
        if expr != "*":
            _value(_tokens(expr), None)  # validate now: an unsupported expression is an error up front
        select.append((expr, alias))
    where = _tokens(m.group("where")) if m.group("where") else None
    if where is not None:
        _Where(where, None).parse()
    return Rule(select, m.group("topic"), where)


def _split_commas(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _field(payload: dict[str, Any], path: str) -> Value:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _function(name: str, args: list[Value], ctx: Context | None) -> Value:
    lname = name.lower()
    if lname == "topic":
        if ctx is None:
            return None
        if not args:
            return ctx.topic
        levels = ctx.topic.split("/")
        index = int(args[0])
        return levels[index - 1] if 1 <= index <= len(levels) else None
    if lname == "clientid":
        return ctx.client_id if ctx else None
    if lname == "timestamp":
        return ctx.received_ms if ctx else None
    raise RuleSqlError(f"function {name}() is not supported")


def _value(tokens: list[tuple[str, str]], ctx: Context | None) -> Value:
    """A single operand: literal, field path, or function call."""
    if not tokens:
        raise RuleSqlError("missing value")
    kind, text = tokens[0]
    if kind == "str" and len(tokens) == 1:
        return text[1:-1].replace("''", "'")
    if kind == "num" and len(tokens) == 1:
        return float(text) if "." in text else int(text)
    if kind == "word" and len(tokens) == 1:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return _field(ctx.payload, text) if ctx else None
    if kind == "word" and len(tokens) >= 3 and tokens[1] == ("punct", "(") and tokens[-1] == ("punct", ")"):
        inner = tokens[2:-1]
        args = [_value([t], ctx) for t in inner if t != ("punct", ",")]
        return _function(text, args, ctx)
    raise RuleSqlError(f"unsupported expression {' '.join(t for _, t in tokens)!r}")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _truthy(value: Value) -> bool:
    return value is True


class _Where:
    """Recursive descent over: or := and (OR and)*; and := not (AND not)*; not := NOT not | atom."""

    def __init__(self, tokens: list[tuple[str, str]], ctx: Context | None) -> None:
        self.tokens = tokens
        self.pos = 0
        self.ctx = ctx

    def parse(self) -> Value:
        value = self._or()
        if self.pos != len(self.tokens):
            raise RuleSqlError(f"unexpected {self.tokens[self.pos][1]!r} in WHERE")
        return value

    def _peek_word(self, word: str) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos][0] == "word" and \
            self.tokens[self.pos][1].upper() == word

    def _or(self) -> Value:
        value = self._and()
        while self._peek_word("OR"):
            self.pos += 1
            right = self._and()
            value = _truthy(value) or _truthy(right)
        return value

    def _and(self) -> Value:
        value = self._not()
        while self._peek_word("AND"):
            self.pos += 1
            right = self._not()
            value = _truthy(value) and _truthy(right)
        return value

    def _not(self) -> Value:
        if self._peek_word("NOT"):
            self.pos += 1
            return not _truthy(self._not())
        return self._comparison()

    def _operand(self) -> Value:
        if self.pos >= len(self.tokens):
            raise RuleSqlError("WHERE ends too early")
        if self.tokens[self.pos] == ("punct", "("):
            self.pos += 1
            value = self._or()
            if self.pos >= len(self.tokens) or self.tokens[self.pos] != ("punct", ")"):
                raise RuleSqlError("missing ) in WHERE")
            self.pos += 1
            return value
        start = self.pos
        if self.tokens[self.pos][0] == "word" and self.pos + 1 < len(self.tokens) and \
                self.tokens[self.pos + 1] == ("punct", "("):
            depth = 0
            while self.pos < len(self.tokens):
                if self.tokens[self.pos] == ("punct", "("):
                    depth += 1
                elif self.tokens[self.pos] == ("punct", ")"):
                    depth -= 1
                    if depth == 0:
                        break
                self.pos += 1
        self.pos += 1
        return _value(self.tokens[start:self.pos], self.ctx)

    def _comparison(self) -> Value:
        left = self._operand()
        if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "op":
            op = self.tokens[self.pos][1]
            self.pos += 1
            right = self._operand()
            if self.ctx is None:
                return None
            try:
                return _COMPARE[op](left, right)
            except TypeError:
                return None  # comparing different types is undefined in IoT SQL: the rule does not fire
        return left


def decode_payload(body: bytes) -> dict[str, Any] | None:
    """The payload as a JSON object; None when it is not one (then only SELECT * of raw data would apply)."""
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def rules_for_publish(rules: list[Any], topic: str, body: bytes, client_id: str = "sandbox-publisher"
                      ) -> tuple[list[tuple[str, str, dict[str, Any]]], list[str]]:
    """For moto's rule objects: ([(rule name, lambda ARN, message)], [problems]) for one publish."""
    payload = decode_payload(body)
    invocations: list[tuple[str, str, dict[str, Any]]] = []
    problems: list[str] = []
    ctx = Context(topic, client_id, payload or {}, int(time.time() * 1000))
    for rule in rules:
        if getattr(rule, "rule_disabled", False):
            continue
        try:
            parsed = parse_rule(str(rule.sql))
        except RuleSqlError as exc:
            problems.append(f"rule {rule.rule_name}: {exc}")
            continue
        if not parsed.matches(topic):
            continue
        if payload is None:
            problems.append(f"rule {rule.rule_name}: the payload on {topic} is not a JSON object")
            continue
        message = parsed.apply(ctx)
        if message is None:
            continue
        for action in rule.actions or []:
            target = action.get("lambda") if isinstance(action, dict) else None
            if isinstance(target, dict) and target.get("functionArn"):
                invocations.append((str(rule.rule_name), str(target["functionArn"]), message))
    return invocations, problems
