"""A small Cosmos DB SQL (NoSQL API) engine: the subset payload functions and tests use.

Supported: `SELECT [DISTINCT] [TOP n] * | VALUE expr | expr [AS name], ...` `FROM c` (or `FROM root c`)
`[WHERE expr] [ORDER BY expr [ASC|DESC], ...] [OFFSET n LIMIT m]`, with `@parameters`, property
paths (`c.a.b`, `c["a"]`, `c.list[0]`), comparisons, `AND`/`OR`/`NOT`, `IN`, `BETWEEN`, arithmetic,
`||`, array and object constructors, a few built-in functions, and the aggregates
`COUNT/SUM/MIN/MAX/AVG` in `SELECT VALUE`. Semantics follow Cosmos DB: comparing values of
different types gives *undefined*, which a `WHERE` treats as false; `ORDER BY` sorts
undefined < null < booleans < numbers < strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class QueryError(ValueError):
    """A query Cosmos DB would refuse with 400 (syntax error, unknown identifier, bad parameter)."""


class _Undefined:
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()

KEYWORDS = frozenset(
    {
        "SELECT", "DISTINCT", "TOP", "VALUE", "AS", "FROM", "WHERE", "ORDER", "BY", "ASC", "DESC",
        "AND", "OR", "NOT", "IN", "BETWEEN", "OFFSET", "LIMIT", "TRUE", "FALSE", "NULL", "UNDEFINED",
    }
)
AGGREGATES = frozenset({"COUNT", "SUM", "MIN", "MAX", "AVG"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\d*\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<param>@[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|\|\||[=<>+\-*/%(),.\[\]{}:?])
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, param, ident, keyword, op, end
    value: Any
    pos: int


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 5 < len(body) + 1:
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise QueryError(f"Syntax error, incorrect syntax near '{text[pos:pos + 10]}'.")
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "number":
            tokens.append(Token("number", float(raw) if any(c in raw for c in ".eE") else int(raw), pos))
        elif kind == "string":
            try:
                tokens.append(Token("string", _unescape(raw[1:-1]), pos))
            except ValueError as exc:
                raise QueryError(f"Syntax error, invalid escape sequence in string at position {pos}.") from exc
        elif kind == "ident":
            upper = raw.upper()
            tokens.append(Token("keyword", upper, pos) if upper in KEYWORDS else Token("ident", raw, pos))
        elif kind != "ws":
            tokens.append(Token(kind, raw, pos))
        pos = m.end()
    tokens.append(Token("end", None, len(text)))
    return tokens


# --- AST -------------------------------------------------------------------------------------------

Expr = tuple[Any, ...]  # ("lit", v) ("param", name) ("path", root, [steps]) ("op", op, a, b) ...


@dataclass
class SelectItem:
    expr: Expr
    alias: str | None


@dataclass
class Query:
    text: str
    distinct: bool = False
    top: Expr | None = None
    star: bool = False
    value: Expr | None = None
    items: list[SelectItem] = field(default_factory=list)
    alias: str = "c"
    where: Expr | None = None
    order_by: list[tuple[Expr, bool]] = field(default_factory=list)  # (expr, descending)
    offset: Expr | None = None
    limit: Expr | None = None

    @property
    def aggregate(self) -> str | None:
        if self.value is not None and self.value[0] == "agg":
            return str(self.value[1])
        return None

    @property
    def needs_query_plan(self) -> bool:
        """True for what the gateway refuses to run across partitions (the SDK then asks for a plan)."""
        return bool(self.order_by or self.top is not None or self.aggregate or self.distinct or self.offset is not None)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # --- token helpers ---

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _error(self) -> QueryError:
        t = self.tok
        near = self.text[t.pos : t.pos + 20].split()[0] if t.kind != "end" else "<end of query>"
        return QueryError(f"Syntax error, incorrect syntax near '{near}'.")

    def accept_kw(self, *words: str) -> str | None:
        if self.tok.kind == "keyword" and self.tok.value in words:
            word = str(self.tok.value)
            self.i += 1
            return word
        return None

    def expect_kw(self, word: str) -> None:
        if self.accept_kw(word) is None:
            raise self._error()

    def accept_op(self, *ops: str) -> str | None:
        if self.tok.kind == "op" and self.tok.value in ops:
            op = str(self.tok.value)
            self.i += 1
            return op
        return None

    def expect_op(self, op: str) -> None:
        if self.accept_op(op) is None:
            raise self._error()

    def ident(self) -> str:
        if self.tok.kind != "ident":
            raise self._error()
        name = str(self.tok.value)
        self.i += 1
        return name

    # --- grammar ---

    def query(self) -> Query:
        q = Query(self.text)
        self.expect_kw("SELECT")
        q.distinct = self.accept_kw("DISTINCT") is not None
        if self.accept_kw("TOP"):
            q.top = self._count_operand()
        if self.accept_op("*"):
            q.star = True
        elif self.accept_kw("VALUE"):
            q.value = self.expr()
        else:
            while True:
                e = self.expr()
                alias = self.ident() if self.accept_kw("AS") else (self.ident() if self.tok.kind == "ident" else None)
                q.items.append(SelectItem(e, alias))
                if not self.accept_op(","):
                    break
        self.expect_kw("FROM")
        first = self.ident()
        q.alias = first
        if self.accept_kw("AS") or self.tok.kind == "ident":
            q.alias = self.ident()
        if self.accept_kw("WHERE"):
            q.where = self.expr()
        if self.accept_kw("ORDER"):
            self.expect_kw("BY")
            while True:
                e = self.expr()
                desc = self.accept_kw("ASC", "DESC") == "DESC"
                q.order_by.append((e, desc))
                if not self.accept_op(","):
                    break
        if self.accept_kw("OFFSET"):
            q.offset = self._count_operand()
            self.expect_kw("LIMIT")
            q.limit = self._count_operand()
        if self.tok.kind != "end":
            raise self._error()
        return q

    def _count_operand(self) -> Expr:
        t = self.tok
        if t.kind == "number" and isinstance(t.value, int):
            self.i += 1
            return ("lit", t.value)
        if t.kind == "param":
            self.i += 1
            return ("param", t.value)
        raise self._error()

    def expr(self) -> Expr:
        return self.or_expr()

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.accept_kw("OR"):
            left = ("or", left, self.and_expr())
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.accept_kw("AND"):
            left = ("and", left, self.not_expr())
        return left

    def not_expr(self) -> Expr:
        if self.accept_kw("NOT"):
            return ("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        op = self.accept_op("=", "!=", "<>", "<", "<=", ">", ">=")
        if op is not None:
            return ("cmp", "!=" if op == "<>" else op, left, self.additive())
        negate = self.accept_kw("NOT") is not None
        if self.accept_kw("IN"):
            self.expect_op("(")
            options = [self.expr()]
            while self.accept_op(","):
                options.append(self.expr())
            self.expect_op(")")
            node: Expr = ("in", left, options)
            return ("not", node) if negate else node
        if self.accept_kw("BETWEEN"):
            low = self.additive()
            self.expect_kw("AND")
            high = self.additive()
            node = ("between", left, low, high)
            return ("not", node) if negate else node
        if negate:
            raise self._error()
        return left

    def additive(self) -> Expr:
        left = self.multiplicative()
        while True:
            op = self.accept_op("+", "-", "||")
            if op is None:
                return left
            left = ("arith", op, left, self.multiplicative())

    def multiplicative(self) -> Expr:
        left = self.unary()
        while True:
            op = self.accept_op("*", "/", "%")
            if op is None:
                return left
            left = ("arith", op, left, self.unary())

    def unary(self) -> Expr:
        if self.accept_op("-"):
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, base: Expr) -> Expr:
        while True:
            if self.accept_op("."):
                base = ("member", base, ("lit", self.ident()))
            elif self.accept_op("["):
                index = self.expr()
                self.expect_op("]")
                base = ("member", base, index)
            else:
                return base

    def primary(self) -> Expr:
        t = self.tok
        if t.kind in ("number", "string"):
            self.i += 1
            return ("lit", t.value)
        if t.kind == "param":
            self.i += 1
            return ("param", t.value)
        if t.kind == "keyword" and t.value in ("TRUE", "FALSE", "NULL", "UNDEFINED"):
            self.i += 1
            return ("lit", {"TRUE": True, "FALSE": False, "NULL": None, "UNDEFINED": UNDEFINED}[t.value])
        if self.accept_op("("):
            e = self.expr()
            self.expect_op(")")
            return e
        if self.accept_op("["):
            elems: list[Expr] = []
            if not self.accept_op("]"):
                elems.append(self.expr())
                while self.accept_op(","):
                    elems.append(self.expr())
                self.expect_op("]")
            return ("array", elems)
        if self.accept_op("{"):
            members: list[tuple[str, Expr]] = []
            if not self.accept_op("}"):
                while True:
                    key = self.tok
                    if key.kind not in ("string", "ident"):
                        raise self._error()
                    self.i += 1
                    self.expect_op(":")
                    members.append((str(key.value), self.expr()))
                    if not self.accept_op(","):
                        break
                self.expect_op("}")
            return ("object", members)
        if t.kind == "ident":
            name = self.ident()
            if self.accept_op("("):
                args: list[Expr] = []
                if not self.accept_op(")"):
                    if name.upper() == "COUNT" and self.accept_op("*"):
                        args.append(("lit", 1))
                    else:
                        args.append(self.expr())
                    while self.accept_op(","):
                        args.append(self.expr())
                    self.expect_op(")")
                upper = name.upper()
                if upper in AGGREGATES:
                    if len(args) != 1:
                        raise QueryError(f"The aggregate function {upper} takes exactly one argument.")
                    return ("agg", upper, args[0])
                if upper not in FUNCTIONS:
                    raise QueryError(f"'{name}' is not a recognized built-in function name.")
                return ("call", upper, args)
            return ("ident", name)
        raise self._error()


def parse(text: str) -> Query:
    if not isinstance(text, str) or not text.strip():
        raise QueryError("The query text is empty.")
    q = _Parser(text).query()
    _check_identifiers(q)
    return q


def _walk(e: Any) -> list[Expr]:
    out: list[Expr] = []
    if isinstance(e, tuple) and e and isinstance(e[0], str):
        out.append(e)
        for part in e[1:]:
            out.extend(_walk(part))
    elif isinstance(e, list):
        for part in e:
            out.extend(_walk(part))
    return out


def _check_identifiers(q: Query) -> None:
    exprs: list[Any] = [q.value, q.where, [i.expr for i in q.items], [e for e, _ in q.order_by]]
    for node in _walk(exprs):
        if node[0] == "ident" and node[1] != q.alias:
            raise QueryError(f"Identifier '{node[1]}' could not be resolved.")
        if node[0] == "agg" and node is not q.value:
            raise QueryError("Aggregates are supported only as 'SELECT VALUE <aggregate>(...)' in this sandbox.")


# --- evaluation ----------------------------------------------------------------------------------


def _type_rank(v: Any) -> int:
    if v is UNDEFINED:
        return 0
    if v is None:
        return 1
    if isinstance(v, bool):
        return 2
    if isinstance(v, int | float):
        return 3
    if isinstance(v, str):
        return 4
    if isinstance(v, list):
        return 5
    return 6


def sort_key(v: Any) -> tuple[int, Any]:
    rank = _type_rank(v)
    if rank in (2, 3, 4):
        return (rank, v)
    if rank >= 5:
        return (rank, json.dumps(v, sort_keys=True))
    return (rank, 0)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _compare(op: str, a: Any, b: Any) -> Any:
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if op in ("=", "!="):
        if _type_rank(a) != _type_rank(b):
            return UNDEFINED
        eq = a == b
        return eq if op == "=" else not eq
    if _type_rank(a) != _type_rank(b) or _type_rank(a) not in (2, 3, 4):
        return UNDEFINED
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is True and b is True:
        return True
    return UNDEFINED


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is False and b is False:
        return False
    return UNDEFINED


def _str_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        if any(not isinstance(a, str) for a in args[:2]):
            return UNDEFINED
        return fn(*args)

    return wrapped


def _length(v: Any) -> Any:
    return len(v) if isinstance(v, str) else UNDEFINED


def _array_contains(arr: Any, item: Any, partial: Any = False) -> Any:
    if not isinstance(arr, list):
        return UNDEFINED
    if partial is True and isinstance(item, dict):
        return any(isinstance(x, dict) and all(x.get(k, UNDEFINED) == v for k, v in item.items()) for x in arr)
    return item in arr


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "IS_DEFINED": lambda v: v is not UNDEFINED,
    "IS_NULL": lambda v: v is None,
    "IS_STRING": lambda v: isinstance(v, str),
    "IS_NUMBER": _is_num,
    "IS_BOOL": lambda v: isinstance(v, bool),
    "IS_ARRAY": lambda v: isinstance(v, list),
    "IS_OBJECT": lambda v: isinstance(v, dict),
    "STARTSWITH": _str_fn(lambda s, p, ci=False: s.lower().startswith(p.lower()) if ci is True else s.startswith(p)),
    "ENDSWITH": _str_fn(lambda s, p, ci=False: s.lower().endswith(p.lower()) if ci is True else s.endswith(p)),
    "CONTAINS": _str_fn(lambda s, p, ci=False: p.lower() in s.lower() if ci is True else p in s),
    "LOWER": _str_fn(lambda s: s.lower()),
    "UPPER": _str_fn(lambda s: s.upper()),
    "LENGTH": _length,
    "ARRAY_CONTAINS": _array_contains,
    "ARRAY_LENGTH": lambda v: len(v) if isinstance(v, list) else UNDEFINED,
}


class Evaluator:
    """Evaluates expressions of one parsed query against one document."""

    def __init__(self, query: Query, parameters: dict[str, Any]) -> None:
        self.query = query
        self.parameters = parameters

    def eval(self, e: Expr, doc: Any) -> Any:
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "param":
            if e[1] not in self.parameters:
                raise QueryError(f"The parameter {e[1]} is referenced in the query but has no value.")
            return self.parameters[e[1]]
        if kind == "ident":
            return doc
        if kind == "member":
            base = self.eval(e[1], doc)
            key = self.eval(e[2], doc)
            if isinstance(base, dict) and isinstance(key, str):
                return base.get(key, UNDEFINED)
            if isinstance(base, list) and _is_num(key) and int(key) == key and 0 <= int(key) < len(base):
                return base[int(key)]
            return UNDEFINED
        if kind == "cmp":
            return _compare(e[1], self.eval(e[2], doc), self.eval(e[3], doc))
        if kind == "and":
            left = self.eval(e[1], doc)
            return False if left is False else _and(left, self.eval(e[2], doc))
        if kind == "or":
            left = self.eval(e[1], doc)
            return True if left is True else _or(left, self.eval(e[2], doc))
        if kind == "not":
            v = self.eval(e[1], doc)
            return (not v) if isinstance(v, bool) else UNDEFINED
        if kind == "in":
            v = self.eval(e[1], doc)
            results = [_compare("=", v, self.eval(o, doc)) for o in e[2]]
            return True if True in results else (UNDEFINED if v is UNDEFINED else False)
        if kind == "between":
            v = self.eval(e[1], doc)
            return _and(_compare(">=", v, self.eval(e[2], doc)), _compare("<=", v, self.eval(e[3], doc)))
        if kind == "arith":
            a, b = self.eval(e[2], doc), self.eval(e[3], doc)
            if e[1] == "||":
                return a + b if isinstance(a, str) and isinstance(b, str) else UNDEFINED
            if not (_is_num(a) and _is_num(b)):
                return UNDEFINED
            if e[1] == "+":
                return a + b
            if e[1] == "-":
                return a - b
            if e[1] == "*":
                return a * b
            if b == 0:
                return UNDEFINED
            return a / b if e[1] == "/" else a % b
        if kind == "neg":
            v = self.eval(e[1], doc)
            return -v if _is_num(v) else UNDEFINED
        if kind == "array":
            return [x for x in (self.eval(el, doc) for el in e[1]) if x is not UNDEFINED]
        if kind == "object":
            return {k: v for k, v in ((k, self.eval(el, doc)) for k, el in e[1]) if v is not UNDEFINED}
        if kind == "call":
            return FUNCTIONS[e[1]](*[self.eval(a, doc) for a in e[2]])
        raise QueryError(f"Unsupported expression {kind!r}.")

    def int_operand(self, e: Expr, what: str) -> int:
        v = self.eval(e, None)
        if not _is_num(v) or int(v) != v or v < 0:
            raise QueryError(f"The {what} value must be a non-negative integer, got {v!r}.")
        return int(v)


def _item_name(e: Expr, index: int) -> str:
    if e[0] == "member" and e[2][0] == "lit" and isinstance(e[2][1], str):
        return str(e[2][1])
    return f"${index + 1}"


def execute(query: Query, parameters: dict[str, Any], documents: list[dict[str, Any]]) -> list[Any]:
    """Every result row of `query` over `documents`, in order (paging is the caller's job)."""
    ev = Evaluator(query, parameters)
    rows = [d for d in documents if query.where is None or ev.eval(query.where, d) is True]
    if query.order_by:
        # Stable multi-key sort: apply keys from the last to the first.
        for expr, desc in reversed(query.order_by):

            def order_key(d: dict[str, Any], x: Expr = expr) -> tuple[int, Any]:
                return sort_key(ev.eval(x, d))

            rows.sort(key=order_key, reverse=desc)
    agg = query.aggregate
    if agg is not None:
        assert query.value is not None
        values = [ev.eval(query.value[2], d) for d in rows]
        result = _aggregate(agg, values)
        return [] if result is UNDEFINED else [result]
    out: list[Any] = []
    for d in rows:
        if query.star:
            out.append(d)
        elif query.value is not None:
            v = ev.eval(query.value, d)
            if v is not UNDEFINED:
                out.append(v)
        else:
            row: dict[str, Any] = {}
            for i, item in enumerate(query.items):
                v = ev.eval(item.expr, d)
                if v is not UNDEFINED:
                    row[item.alias or _item_name(item.expr, i)] = v
            out.append(row)
    if query.distinct:
        seen: set[str] = set()
        unique = []
        for r in out:
            key = json.dumps(r, sort_keys=True)
            if key not in seen:
                seen.add(key)
                unique.append(r)
        out = unique
    if query.offset is not None and query.limit is not None:
        start = ev.int_operand(query.offset, "OFFSET")
        out = out[start : start + ev.int_operand(query.limit, "LIMIT")]
    if query.top is not None:
        out = out[: ev.int_operand(query.top, "TOP")]
    return out


def _aggregate(name: str, values: list[Any]) -> Any:
    defined = [v for v in values if v is not UNDEFINED]
    if name == "COUNT":
        return len(defined)
    nums = [v for v in defined if _is_num(v)]
    if name == "SUM":
        return sum(nums) if len(nums) == len(defined) else UNDEFINED
    if name == "AVG":
        return sum(nums) / len(nums) if nums and len(nums) == len(defined) else UNDEFINED
    if not defined:
        return UNDEFINED
    keyed = sorted(defined, key=sort_key)
    return keyed[0] if name == "MIN" else keyed[-1]
