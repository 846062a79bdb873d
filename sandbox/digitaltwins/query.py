"""The part of the Azure Digital Twins query language the sandbox serves.

Supported: `SELECT [TOP(n)] * | COUNT() | <alias> | <alias>.<prop>, ... FROM DIGITALTWINS|RELATIONSHIPS
[<alias>] [WHERE <condition>]`, with conditions built from comparisons (`= != <> < <= > >=`),
`IN [...]`, `NOT`, `AND`, `OR`, parentheses, and the functions `IS_OF_MODEL`, `IS_DEFINED`,
`IS_NULL`, `IS_STRING`, `IS_NUMBER`, `IS_BOOL`, `IS_PRIMITIVE`, `IS_OBJECT`, `STARTSWITH`,
`ENDSWITH`, `CONTAINS`. Anything else (JOIN, MATCH, aggregates other than COUNT) is answered
with ADT's `SqlQueryError`, so a query that would not run here is visible, not silently wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,|\.|\*|\[|\])
      | (?P<ident>[$A-Za-z_][$A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "TOP", "AS", "JOIN", "MATCH", "TRUE", "FALSE", "NULL"}
SQL_ERROR_SUFFIX = " See samples in https://aka.ms/adtv2query for the correct syntax."


class QueryError(ValueError):
    """ADT answers 400 `SqlQueryError`."""


@dataclass
class Token:
    kind: str  # str | num | op | ident | kw | end
    value: Any
    pos: int

    def __str__(self) -> str:
        return "<end of query>" if self.kind == "end" else str(self.value)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise QueryError(
                f"SQL query parse failed: SQL Parser Error, Line=1, Position={pos}, "
                f"Message=unexpected character {text[pos]!r}.{SQL_ERROR_SUFFIX}"
            )
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.group("str") is not None:
            raw = m.group("str")[1:-1]
            tokens.append(Token("str", re.sub(r"\\(.)", r"\1", raw), start))
        elif m.group("num") is not None:
            n = m.group("num")
            tokens.append(Token("num", float(n) if any(c in n for c in ".eE") else int(n), start))
        elif m.group("op") is not None:
            tokens.append(Token("op", m.group("op"), start))
        else:
            ident = m.group("ident")
            if ident.upper() in KEYWORDS:
                tokens.append(Token("kw", ident.upper(), start))
            else:
                tokens.append(Token("ident", ident, start))
        pos = m.end()
    tokens.append(Token("end", None, len(text)))
    return tokens


Expr = Callable[[dict[str, Any]], Any]
_MISSING = object()


@dataclass
class Query:
    collection: str  # DIGITALTWINS | RELATIONSHIPS
    alias: str | None
    projection: list[str] | None  # None = *; ["COUNT()"] = count; else alias or alias.prop paths
    top: int | None
    where: Expr | None
    _is_of_model: Callable[[dict[str, Any], str, bool], bool] = field(default=lambda doc, model, exact: False)

    def run(self, items: list[dict[str, Any]], is_of_model: Callable[[dict[str, Any], str, bool], bool]) -> list[Any]:
        self._is_of_model = is_of_model
        matched = [i for i in items if self.where is None or self.where(i) is True]
        if self.projection == ["COUNT()"]:
            return [{"COUNT": len(matched)}]
        if self.top is not None:
            matched = matched[: self.top]
        if self.projection is None:
            return matched
        out = []
        for item in matched:
            row: dict[str, Any] = {}
            for p in self.projection:
                if p == self.alias:
                    row[p] = item
                else:
                    value = _get_path(item, p.split(".")[1:] if self.alias and p.startswith(self.alias + ".") else p.split("."))
                    if value is not _MISSING:
                        row[p.split(".")[-1]] = value
            out.append(row)
        return out


def _get_path(item: Any, parts: list[str]) -> Any:
    cur = item
    for part in parts:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.query: Query | None = None

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: Token | None = None) -> QueryError:
        tok = tok or self.peek()
        return QueryError(
            f"SQL query parse failed: SQL Parser Error, Line=1, Position={tok.pos}, Message={message}{SQL_ERROR_SUFFIX}"
        )

    def expect_kw(self, kw: str) -> None:
        tok = self.next()
        if tok.kind != "kw" or tok.value != kw:
            raise self.fail(f"missing {kw} at '{tok}'", tok)

    def expect_op(self, op: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise self.fail(f"expected '{op}'", tok)

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        top = None
        if self.peek().kind == "kw" and self.peek().value == "TOP":
            self.next()
            self.expect_op("(")
            tok = self.next()
            if tok.kind != "num" or not isinstance(tok.value, int) or tok.value < 1:
                raise self.fail("TOP needs a positive integer", tok)
            top = tok.value
            self.expect_op(")")
        projection = self.parse_projection()
        self.expect_kw("FROM")
        tok = self.next()
        if tok.kind != "ident" or tok.value.upper() not in ("DIGITALTWINS", "RELATIONSHIPS"):
            raise self.fail(f"unknown collection '{tok}' (expected DIGITALTWINS or RELATIONSHIPS)", tok)
        collection = tok.value.upper()
        alias = None
        if self.peek().kind == "kw" and self.peek().value == "AS":
            self.next()
        if self.peek().kind == "ident":
            alias = self.next().value
        if self.peek().kind == "kw" and self.peek().value in ("JOIN", "MATCH"):
            raise self.fail(f"{self.peek().value} is not supported by the sandbox's query engine")
        self.query = Query(collection, alias, projection, top, None)
        if self.peek().kind == "kw" and self.peek().value == "WHERE":
            self.next()
            self.query.where = self.parse_or()
        if self.peek().kind != "end":
            raise self.fail(f"extraneous input '{self.peek()}'")
        if projection is not None and projection != ["COUNT()"]:
            for p in projection:
                head = p.split(".")[0]
                if alias is None or head != alias:
                    raise self.fail(f"'{p}' does not refer to the collection alias")
        return self.query

    def parse_projection(self) -> list[str] | None:
        tok = self.peek()
        if tok.kind == "op" and tok.value == "*":
            self.next()
            return None
        if tok.kind == "ident" and tok.value.upper() == "COUNT":
            self.next()
            self.expect_op("(")
            self.expect_op(")")
            return ["COUNT()"]
        out = [self.parse_path_text()]
        while self.peek().kind == "op" and self.peek().value == ",":
            self.next()
            out.append(self.parse_path_text())
        return out

    def parse_path_text(self) -> str:
        tok = self.next()
        if tok.kind != "ident":
            raise self.fail(f"unexpected '{tok}'", tok)
        parts = [tok.value]
        while self.peek().kind == "op" and self.peek().value == ".":
            self.next()
            t = self.next()
            if t.kind not in ("ident", "kw"):
                raise self.fail("expected a property name after '.'", t)
            parts.append(str(t.value) if t.kind == "ident" else t.value)
        return ".".join(parts)

    # --- conditions --------------------------------------------------------------------------

    def parse_or(self) -> Expr:
        left = self.parse_and()
        while self.peek().kind == "kw" and self.peek().value == "OR":
            self.next()
            right = self.parse_and()
            left = (lambda a, b: lambda item: _or(a(item), b(item)))(left, right)
        return left

    def parse_and(self) -> Expr:
        left = self.parse_not()
        while self.peek().kind == "kw" and self.peek().value == "AND":
            self.next()
            right = self.parse_not()
            left = (lambda a, b: lambda item: _and(a(item), b(item)))(left, right)
        return left

    def parse_not(self) -> Expr:
        if self.peek().kind == "kw" and self.peek().value == "NOT":
            self.next()
            inner = self.parse_not()
            return lambda item: _not(inner(item))
        return self.parse_comparison()

    def parse_comparison(self) -> Expr:
        tok = self.peek()
        if tok.kind == "op" and tok.value == "(":
            self.next()
            inner = self.parse_or()
            self.expect_op(")")
            return inner
        left = self.parse_operand()
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("=", "!=", "<>", "<", "<=", ">", ">="):
            self.next()
            right = self.parse_operand()
            return _compare(tok.value, left, right)
        if tok.kind == "kw" and tok.value in ("IN", "NOT"):
            negate = False
            if tok.value == "NOT":
                self.next()
                negate = True
                if not (self.peek().kind == "kw" and self.peek().value == "IN"):
                    raise self.fail("expected IN after NOT")
            self.next()
            self.expect_op("[")
            values = [self.parse_literal()]
            while self.peek().kind == "op" and self.peek().value == ",":
                self.next()
                values.append(self.parse_literal())
            self.expect_op("]")
            return lambda item: None if left(item) is _MISSING else (left(item) in values) != negate
        return left  # a bare boolean function such as IS_OF_MODEL(...)

    def parse_literal(self) -> Any:
        tok = self.next()
        if tok.kind in ("str", "num"):
            return tok.value
        if tok.kind == "kw" and tok.value in ("TRUE", "FALSE", "NULL"):
            return {"TRUE": True, "FALSE": False, "NULL": None}[tok.value]
        raise self.fail(f"expected a literal, got '{tok}'", tok)

    def parse_operand(self) -> Expr:
        tok = self.peek()
        if tok.kind in ("str", "num") or (tok.kind == "kw" and tok.value in ("TRUE", "FALSE", "NULL")):
            value = self.parse_literal()
            return lambda item: value
        if tok.kind == "ident":
            if self.tokens[self.i + 1].kind == "op" and self.tokens[self.i + 1].value == "(":
                return self.parse_function()
            text = self.parse_path_text()
            return self._path_getter(text)
        raise self.fail(f"unexpected '{tok}'", tok)

    def _path_getter(self, text: str) -> Expr:
        parts = text.split(".")
        alias = self.query.alias if self.query else None
        if alias is not None and parts[0] == alias:
            parts = parts[1:]
        if not parts:
            return lambda item: item
        return lambda item: _get_path(item, parts)

    def parse_function(self) -> Expr:
        name_tok = self.next()
        name = name_tok.value.upper()
        self.expect_op("(")
        args: list[Any] = []
        if not (self.peek().kind == "op" and self.peek().value == ")"):
            args.append(self.parse_function_arg(name))
            while self.peek().kind == "op" and self.peek().value == ",":
                self.next()
                args.append(self.parse_function_arg(name))
        self.expect_op(")")
        if name == "IS_OF_MODEL":
            return self._is_of_model(args, name_tok)
        type_checks: dict[str, Callable[[Any], bool]] = {
            "IS_DEFINED": lambda v: v is not _MISSING,
            "IS_NULL": lambda v: v is None,
            "IS_STRING": lambda v: isinstance(v, str),
            "IS_NUMBER": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "IS_BOOL": lambda v: isinstance(v, bool),
            "IS_PRIMITIVE": lambda v: isinstance(v, str | int | float | bool),
            "IS_OBJECT": lambda v: isinstance(v, dict),
        }
        if name in type_checks:
            if len(args) != 1 or not callable(args[0]):
                raise self.fail(f"{name} takes one property path", name_tok)
            check, getter = type_checks[name], args[0]
            return lambda item: check(getter(item))
        string_fns: dict[str, Callable[[str, str], bool]] = {
            "STARTSWITH": str.startswith,
            "ENDSWITH": str.endswith,
            "CONTAINS": lambda a, b: b in a,
        }
        if name in string_fns:
            if len(args) != 2 or not callable(args[0]) or not isinstance(args[1], str):
                raise self.fail(f"{name} takes a property path and a string", name_tok)
            fn, getter, needle = string_fns[name], args[0], args[1]
            return lambda item: isinstance(getter(item), str) and fn(getter(item), needle)
        raise self.fail(f"unknown function {name_tok.value}", name_tok)

    def parse_function_arg(self, fn_name: str) -> Any:
        tok = self.peek()
        if tok.kind in ("str", "num") or tok.kind == "kw":
            if tok.kind == "kw" and tok.value not in ("TRUE", "FALSE", "NULL"):
                raise self.fail(f"unexpected '{tok}'", tok)
            return self.parse_literal()
        if tok.kind == "ident":
            if fn_name == "IS_OF_MODEL" and tok.value.lower() == "exact":
                self.next()
                return "__exact__"
            return self._path_getter(self.parse_path_text())
        raise self.fail(f"unexpected '{tok}'", tok)

    def _is_of_model(self, args: list[Any], tok: Token) -> Expr:
        exact = "__exact__" in args
        args = [a for a in args if a != "__exact__"]
        model_ids = [a for a in args if isinstance(a, str)]
        if len(model_ids) != 1:
            raise self.fail("IS_OF_MODEL takes a model id (and optionally an alias and 'exact')", tok)
        model_id = model_ids[0]
        getters = [a for a in args if callable(a)]
        getter: Expr = getters[0] if getters else (lambda item: item)
        query = self.query
        assert query is not None

        def check(item: dict[str, Any]) -> bool:
            target = getter(item)
            return isinstance(target, dict) and query._is_of_model(target, model_id, exact)

        return check


# Conditions are three-valued, as in ADT's (Cosmos DB style) SQL: a comparison involving an
# undefined property, or values of different types, is undefined (None); WHERE keeps only true.


def _and(a: Any, b: Any) -> bool | None:
    if a is False or b is False:
        return False
    return True if a is True and b is True else None


def _or(a: Any, b: Any) -> bool | None:
    if a is True or b is True:
        return True
    return False if a is False and b is False else None


def _not(a: Any) -> bool | None:
    return None if a is None or a is _MISSING or not isinstance(a, bool) else not a


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def _compare(op: str, left: Expr, right: Expr) -> Expr:
    def cmp(item: dict[str, Any]) -> bool | None:
        a, b = left(item), right(item)
        if a is _MISSING or b is _MISSING or _kind(a) != _kind(b):
            return None
        if op == "=":
            return bool(a == b)
        if op in ("!=", "<>"):
            return bool(a != b)
        if not isinstance(a, int | float | str) or isinstance(a, bool):
            return None
        ordering = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}
        return bool(ordering[op](a, b))

    return cmp


def parse_query(text: str) -> Query:
    if not isinstance(text, str) or not text.strip():
        raise QueryError("SQL query parse failed: the query is empty." + SQL_ERROR_SUFFIX)
    if len(text) > 8000:
        raise QueryError("The query is longer than 8,000 characters.")
    return _Parser(text).parse()
