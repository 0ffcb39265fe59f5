"""Pendo's C-like expression language, as used by `filter`, `eval`, `select` and `timeSeries`.

Text is parsed once (cached) into a small AST; `Expr.bind(env)` compiles that AST to nested
Python closures, folding every sub-expression that does not read the row (constants, `now()`)
to a value first, so filtering millions of rows costs a few closure calls per row.

Evaluation never raises on data: type mismatches, missing fields and bad function arguments
give `None` (or `False` for comparisons), like a query engine rather than a program.
"""

from __future__ import annotations

import calendar
import functools
import json
import math
import operator
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

Row = Mapping[str, Any]
Fn = Callable[[Row], Any]

HOUR_MS = 3_600_000
_UTC = ZoneInfo("UTC")


class ExprSyntaxError(ValueError):
    """The expression text (or legacy filter object) cannot be parsed."""


@dataclass(frozen=True)
class EvalEnv:
    """What evaluation depends on besides the row: the clock, the subscription time zone,
    and the aggregation limits (None = unlimited)."""

    now_ms: int
    tz: ZoneInfo = _UTC
    max_rows_out: int | None = None
    max_seconds: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)


# ---------------------------------------------------------------- calendar helpers (shared)


def local_day_start(ms: int, tz: ZoneInfo) -> int:
    """Epoch ms of local midnight (in `tz`) of the day containing `ms`."""
    day = datetime.fromtimestamp(ms // 1000, tz).date()
    return int(datetime.combine(day, dtime(), tzinfo=tz).timestamp()) * 1000


def add_local_days(ms: int, days: int, tz: ZoneInfo) -> int:
    """Local midnight `days` days after the day containing `ms` (23/24/25 h days across DST)."""
    day = datetime.fromtimestamp(ms // 1000, tz).date() + timedelta(days=days)
    return int(datetime.combine(day, dtime(), tzinfo=tz).timestamp()) * 1000


def _local(ms: int, tz: ZoneInfo) -> tuple[datetime, int]:
    sec, frac = divmod(int(ms), 1000)
    return datetime.fromtimestamp(sec, tz), frac


def _to_ms(dt: datetime, frac: int = 0) -> int:
    return int(dt.timestamp()) * 1000 + frac


# ---------------------------------------------------------------------------- tokenizer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<bt>`[^`]*`)
  | (?P<name>[A-Za-z_$][\w$]*(?:\.[\w$]+)*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%<>!(),\[\].])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/"}
_KEYWORDS = {"true": True, "false": False, "null": None}


def _unescape(body: str) -> str:
    def sub(m: re.Match[str]) -> str:
        c = m.group(1)
        if c.startswith("u"):
            return chr(int(c[1:], 16))
        return _ESCAPES.get(c, c)  # \" and \\ (and any other char) stand for themselves

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", sub, body, flags=re.DOTALL)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExprSyntaxError(f"unexpected character {text[pos]!r} at {pos}")
        pos = m.end()
        kind, tok = m.lastgroup, m.group()
        if kind == "ws":
            continue
        if kind == "num":
            is_int = tok.isdigit()
            tokens.append(("const", int(tok) if is_int else float(tok)))
        elif kind == "str":
            tokens.append(("const", _unescape(tok[1:-1])))
        elif kind == "bt":
            tokens.append(("const", tok[1:-1]))
        elif kind == "name" and tok in _KEYWORDS:
            tokens.append(("const", _KEYWORDS[tok]))
        else:
            tokens.append((str(kind), tok))
    tokens.append(("end", None))
    return tokens


# ------------------------------------------------------------------------------- parser
# AST nodes are tuples: ("const", v) ("path", parts) ("not", x) ("neg", x) ("bin", op, a, b)
# ("and", a, b) ("or", a, b) ("call", name, args) ("index", x, i)

_BINARY_POWER = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, Any]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        kind, tok = self.take()
        if kind != "op" or tok != op:
            raise ExprSyntaxError(f"expected {op!r}, got {tok!r}")

    def parse(self) -> tuple:
        node = self.expr(0)
        if self.peek()[0] != "end":
            raise ExprSyntaxError(f"unexpected {self.peek()[1]!r}")
        return node

    def expr(self, min_power: int) -> tuple:
        left = self.unary()
        while True:
            kind, tok = self.peek()
            power = _BINARY_POWER.get(tok) if kind == "op" else None
            if power is None or power <= min_power:
                return left
            self.take()
            right = self.expr(power)  # left-associative: the right side binds tighter
            if tok == "&&":
                left = ("and", left, right)
            elif tok == "||":
                left = ("or", left, right)
            else:
                left = ("bin", tok, left, right)

    def unary(self) -> tuple:
        kind, tok = self.peek()
        if kind == "op" and tok in ("!", "-", "+"):
            self.take()
            operand = self.unary()  # C: unary binds tighter than any binary operator
            return {"!": ("not", operand), "-": ("neg", operand), "+": operand}[tok]
        return self.postfix(self.primary())

    def primary(self) -> tuple:
        kind, tok = self.take()
        if kind == "const":
            return ("const", tok)
        if kind == "op" and tok == "(":
            node = self.expr(0)
            self.expect(")")
            return node
        if kind == "name":
            nk, nt = self.peek()
            if nk == "op" and nt == "(":
                self.take()
                return self.call(tok, self.args())
            return ("path", tuple(tok.split(".")))
        raise ExprSyntaxError(
            "unexpected end of expression" if kind == "end" else f"unexpected {tok!r}"
        )

    def args(self) -> list[tuple]:
        args: list[tuple] = []
        if self.peek() == ("op", ")"):
            self.take()
            return args
        while True:
            args.append(self.expr(0))
            kind, tok = self.take()
            if kind == "op" and tok == ")":
                return args
            if kind != "op" or tok != ",":
                raise ExprSyntaxError(f"expected ',' or ')', got {tok!r}")

    def call(self, name: str, args: list[tuple]) -> tuple:
        arity = (3, 3) if name == "if" else _FUNCTIONS.get(name, (None, None))[:2]
        lo, hi = arity
        if lo is None or hi is None:
            raise ExprSyntaxError(f"unknown function {name}()")
        if not lo <= len(args) <= hi:
            raise ExprSyntaxError(f"{name}() takes {lo}..{hi} arguments, got {len(args)}")
        return ("call", name, tuple(args))

    def postfix(self, node: tuple) -> tuple:
        # `polls[0].id` (Pendo's own example) = index, then member access.
        while True:
            kind, tok = self.peek()
            if kind == "op" and tok == "[":
                self.take()
                index = self.expr(0)
                self.expect("]")
                node = ("index", node, index)
            elif kind == "op" and tok == ".":
                self.take()
                nk, name = self.take()
                if nk != "name":
                    raise ExprSyntaxError(f"expected a field name after '.', got {name!r}")
                for part in name.split("."):
                    node = ("index", node, ("const", part))
            else:
                return node


# ----------------------------------------------------------------------------- semantics


def _num(v: Any) -> bool:
    return (type(v) is int) or (type(v) is float)


def _eq(a: Any, b: Any) -> bool:
    # Python says 1 == True; Pendo's typed values do not.
    return a == b and (type(a) is bool) == (type(b) is bool)


def _safe(cmp: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        try:
            return cmp(a, b)
        except TypeError:  # None, or number vs string: the comparison is just false
            return False

    return f


def _fmt(v: Any) -> str:
    if type(v) is float and v.is_integer():
        return str(int(v))
    return str(v)


def _add(a: Any, b: Any) -> Any:
    if _num(a) and _num(b):
        return a + b
    ta, tb = type(a), type(b)
    if (ta is str and (tb is str or _num(b))) or (tb is str and _num(a)):
        return _fmt(a) + _fmt(b)
    if ta is list and tb is list:
        return a + b
    return None


def _div(a: Any, b: Any) -> Any:
    if not (_num(a) and _num(b)) or b == 0:
        return None
    if type(a) is int and type(b) is int and a % b == 0:
        return a // b  # keep ms arithmetic integral
    return a / b


def _mod(a: Any, b: Any) -> Any:
    if not (_num(a) and _num(b)) or b == 0:
        return None
    if type(a) is int and type(b) is int:
        r = abs(a) % abs(b)  # C semantics: the sign follows the dividend
        return r if a >= 0 else -r
    if not math.isfinite(a):
        return None  # C's fmod gives NaN here, which JSON cannot carry
    return math.fmod(a, b)


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: op(a, b) if _num(a) and _num(b) else None


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<": _safe(lambda a, b: a < b),
    "<=": _safe(lambda a, b: a <= b),
    ">": _safe(lambda a, b: a > b),
    ">=": _safe(lambda a, b: a >= b),
    "+": _add,
    "-": _arith(lambda a, b: a - b),
    "*": _arith(lambda a, b: a * b),
    "/": _div,
    "%": _mod,
}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


# ----------------------------------------------------------------------------- functions


def _date(env: EvalEnv, y: Any, m: Any, d: Any, h: Any = 0, mi: Any = 0, s: Any = 0) -> int:
    y, m, d, h, mi, s = (int(v) for v in (y, m, d, h, mi, s))
    return _to_ms(datetime(y, m, d, h, mi, s, tzinfo=env.tz))


def _date_add(env: EvalEnv, ms: Any, n: Any, unit: Any) -> Any:
    if not (_num(ms) and _num(n)) or type(unit) is not str:
        return None
    unit = unit.lower().rstrip("s")
    fixed = {"millisecond": 1, "second": 1000, "minute": 60_000, "hour": HOUR_MS}
    if unit in fixed:
        return int(ms + n * fixed[unit])
    if n != int(n):
        return None
    n = int(n)
    dt, frac = _local(ms, env.tz)
    if unit in ("day", "week"):  # wall-clock days: a day across DST is 23 or 25 hours
        return _to_ms(dt + timedelta(days=n * (7 if unit == "week" else 1)), frac)
    if unit in ("month", "year"):
        months = n * (12 if unit == "year" else 1)
        y, m0 = divmod(dt.month - 1 + months, 12)
        day = min(dt.day, calendar.monthrange(dt.year + y, m0 + 1)[1])
        return _to_ms(dt.replace(year=dt.year + y, month=m0 + 1, day=day), frac)
    return None


def _start_of_period(env: EvalEnv, period: Any, ms: Any) -> Any:
    if not _num(ms) or type(period) is not str:
        return None
    ms = int(ms)
    if period in ("dayRange", "day", "daily"):
        return local_day_start(ms, env.tz)
    if period in ("hourRange", "hour", "hourly"):
        return ms - ms % HOUR_MS  # UTC-aligned hours, as the hourRange buckets
    if period in ("monthRange", "month", "monthly"):
        dt, _ = _local(ms, env.tz)
        return _to_ms(datetime(dt.year, dt.month, 1, tzinfo=env.tz))
    return None


def _contains(_env: EvalEnv, hay: Any, needle: Any) -> bool:
    if type(hay) is str:
        return type(needle) is str and needle in hay
    if isinstance(hay, (list, dict)):
        return any(_eq(v, needle) for v in hay)
    return False


def _len(_env: EvalEnv, v: Any) -> Any:
    if v is None:
        return 0
    return len(v) if isinstance(v, (str, list, dict)) else None


def _hash(_env: EvalEnv, v: Any) -> Any:
    # Stable across processes (unlike Python's hash()) and 32-bit like Pendo's `idhash`.
    if v is None:
        return None
    text = v if type(v) is str else json.dumps(v, sort_keys=True, default=str)
    return zlib.crc32(text.encode("utf-8"))


def _round(_env: EvalEnv, v: Any, digits: Any = None) -> Any:
    if not _num(v):
        return None
    if digits is not None:
        return round(v, int(digits))
    return int(math.copysign(math.floor(abs(v) + 0.5), v))  # half away from zero, like C


def _split(_env: EvalEnv, s: Any, sep: Any) -> Any:
    if type(s) is not str or type(sep) is not str or not sep:
        return None
    return s.split(sep)


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    def f(_env: EvalEnv, *vals: Any) -> Any:
        nums = [v for v in vals if _num(v)]
        return pick(nums) if nums else None

    return f


def _str_fn(method: Callable[[str], str]) -> Callable[..., Any]:
    return lambda _env, v: method(v) if type(v) is str else None


def _num_fn(method: Callable[[float], Any]) -> Callable[..., Any]:
    return lambda _env, v: method(v) if _num(v) else None


# name -> (min args, max args, impl(env, *args))
_FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "now": (0, 0, lambda env: env.now_ms),
    "date": (3, 6, _date),
    "dateAdd": (3, 3, _date_add),
    "startOfPeriod": (2, 2, _start_of_period),
    "contains": (2, 2, _contains),
    "len": (1, 1, _len),
    "isNull": (1, 1, lambda _env, v: v is None),
    "isNotNull": (1, 1, lambda _env, v: v is not None),
    "hash": (1, 1, _hash),
    "lower": (1, 1, _str_fn(str.lower)),
    "upper": (1, 1, _str_fn(str.upper)),
    "round": (1, 2, _round),
    "abs": (1, 1, _num_fn(abs)),
    "floor": (1, 1, _num_fn(math.floor)),
    "ceil": (1, 1, _num_fn(math.ceil)),
    "split": (2, 2, _split),
    "list": (0, 1_000, lambda _env, *vals: list(vals)),
    "min": (1, 1_000, _extreme(min)),
    "max": (1, 1_000, _extreme(max)),
}


# ------------------------------------------------------------------------------ compiler

_NOT_CONST = object()
_EMPTY: Row = {}


def path_getter(path: str | tuple[str, ...]) -> Fn:
    """A fast getter for a dotted path; a flat key spelled with dots (an earlier step's output
    name, e.g. a `group` key `metadata.custom.plan`) wins over the nested lookup."""
    parts = tuple(path.split(".")) if isinstance(path, str) else path
    if len(parts) == 1:
        key = parts[0]
        return lambda row: row.get(key)
    full = ".".join(parts)

    def get(row: Row) -> Any:
        v = row.get(full, _NOT_CONST)
        if v is not _NOT_CONST:
            return v
        v = row
        for p in parts:
            v = _member(v, p)
            if v is None:
                return None
        return v

    return get


def _member(v: Any, key: Any) -> Any:
    if isinstance(v, dict):
        return v.get(key) if type(key) is str else None
    if isinstance(v, list):
        if type(key) is str and key.isdigit():
            key = int(key)
        if type(key) is int and -len(v) <= key < len(v):
            return v[key]
    return None


def _compile(node: tuple, env: EvalEnv) -> tuple[Fn, Any]:
    """Returns (fn, value) where value is the folded constant, or _NOT_CONST."""
    kind = node[0]
    if kind == "const":
        v = node[1]
        return (lambda _row: v), v
    if kind == "path":
        return path_getter(node[1]), _NOT_CONST
    children = [_compile(c, env) for c in _children(node)]
    fn = _build(node, [c[0] for c in children], children, env)
    if all(c[1] is not _NOT_CONST for c in children):
        v = fn(_EMPTY)  # nothing below reads the row: evaluate once, here
        return (lambda _row: v), v
    return fn, _NOT_CONST


def _children(node: tuple) -> list[tuple]:
    kind = node[0]
    if kind in ("not", "neg"):
        return [node[1]]
    if kind in ("and", "or", "index"):
        return [node[1], node[2]]
    if kind == "bin":
        return [node[2], node[3]]
    return list(node[2])  # call


_BOOL_CALLS = {"isNull", "isNotNull", "contains"}


def _is_bool(node: tuple) -> bool:
    """Whether the node always yields a bool (so `&&` need not convert, saving a call)."""
    kind = node[0]
    if kind in ("not", "and", "or"):
        return True
    if kind == "bin":
        return node[1] in _FLIPPED
    if kind == "call":
        return node[1] in _BOOL_CALLS
    return kind == "const" and type(node[1]) is bool


def _build(node: tuple, fns: list[Fn], compiled: list[tuple[Fn, Any]], env: EvalEnv) -> Fn:
    kind = node[0]
    if kind == "not":
        (a,) = fns
        return lambda row: not a(row)
    if kind == "neg":
        (a,) = fns

        def neg(row: Row) -> Any:
            v = a(row)
            return -v if _num(v) else None

        return neg
    if kind in ("and", "or"):
        a, b = fns
        both = _is_bool(node[1]) and _is_bool(node[2])
        if kind == "and":
            return (
                (lambda row: a(row) and b(row)) if both else (lambda row: bool(a(row) and b(row)))
            )
        return (lambda row: a(row) or b(row)) if both else (lambda row: bool(a(row) or b(row)))
    if kind == "index":
        a, b = fns
        return lambda row: _member(a(row), b(row))
    if kind == "bin":
        return _build_binary(node, fns, compiled)
    return _build_call(node[1], fns, env)


def _build_binary(node: tuple, fns: list[Fn], compiled: list[tuple[Fn, Any]]) -> Fn:
    op, left, right = node[1], node[2], node[3]
    (a, ca), (b, cb) = compiled
    # Hot path, e.g. `numEvents > 3`: a top-level field against a constant, one closure.
    if op in _FLIPPED:
        if cb is not _NOT_CONST and left[0] == "path" and len(left[1]) == 1:
            return _field_vs_const(left[1][0], op, cb)
        if ca is not _NOT_CONST and right[0] == "path" and len(right[1]) == 1:
            return _field_vs_const(right[1][0], _FLIPPED[op], ca)
    f = _BINOPS[op]
    return lambda row: f(a(row), b(row))


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _field_vs_const(key: str, op: str, c: Any) -> Fn:
    if op == "==" or op == "!=":
        if c is None or type(c) is bool:
            eq: Fn = lambda row: row.get(key) is c  # noqa: E731
        elif type(c) is str:
            eq = lambda row: row.get(key) == c  # noqa: E731
        else:
            eq = lambda row: _eq(row.get(key), c)  # noqa: E731
        return eq if op == "==" else (lambda row: not eq(row))
    cmp = _ORDER[op]

    def order(row: Row) -> bool:
        try:
            return cmp(row.get(key), c)
        except TypeError:
            return False

    return order


def _build_call(name: str, fns: list[Fn], env: EvalEnv) -> Fn:
    if name == "if":
        c, a, b = fns
        return lambda row: a(row) if c(row) else b(row)
    impl = _FUNCTIONS[name][2]

    def call(row: Row) -> Any:
        try:
            return impl(env, *[f(row) for f in fns])
        except (TypeError, ValueError, OverflowError, OSError):
            return None  # a bad argument (date(2021, 13, 1), huge ms) yields null

    return call


# ---------------------------------------------------------------------------------- API


class Expr:
    """A parsed expression. `bind(env)` gives a fast row -> value function."""

    __slots__ = ("text", "_node", "_bound")

    def __init__(self, text: str, node: tuple) -> None:
        self.text = text
        self._node = node
        self._bound: tuple[EvalEnv, Fn] | None = None

    def bind(self, env: EvalEnv) -> Fn:
        """Compile for one environment; use the result for every row of a run."""
        return _compile(self._node, env)[0]

    def evaluate(self, row: Row, env: EvalEnv) -> Any:
        """Evaluate once (convenient, slower than `bind` in a loop)."""
        bound = self._bound
        if bound is None or bound[0] is not env:
            bound = (env, self.bind(env))
            self._bound = bound
        return bound[1](row)

    @property
    def is_path(self) -> bool:
        return self._node[0] == "path"

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"


def parse(text: str) -> Expr:
    """Parse expression text (cached); raises ExprSyntaxError."""
    if not isinstance(text, str):
        raise ExprSyntaxError("expression must be a string")
    return _parse_cached(text)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Expr:
    return Expr(text, _Parser(text).parse())


_LEGACY_OPS = {"==", "!=", "<", "<=", ">", ">="}


def parse_legacy_filter(obj: Mapping[str, Any]) -> Expr:
    """The old object form `{"field": "accountId", "operator": "==", "value": "x"}`."""
    fld, op = obj.get("field"), obj.get("operator")
    if not isinstance(fld, str) or not fld or "value" not in obj:
        raise ExprSyntaxError("legacy filter needs field, operator and value")
    if op == "=":
        op = "=="
    value = ("const", obj["value"])
    if op == "contains":
        node: tuple = ("call", "contains", (("path", tuple(fld.split("."))), value))
    elif op in _LEGACY_OPS:
        node = ("bin", op, ("path", tuple(fld.split("."))), value)
    else:
        raise ExprSyntaxError(f"unknown legacy filter operator {op!r}")
    return Expr(json.dumps(dict(obj), sort_keys=True, default=str), node)
