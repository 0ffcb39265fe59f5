"""Pendo aggregation pipelines: validate a request, then run it over rows from a provider.

A pipeline compiles to a plan once (every operand checked, every expression parsed), so all
400s surface before the first row. Running it chains lazy iterator stages: streaming operators
(filter, select, eval, identified, unwind, merge, limit, skip) never hold the input; blocking
ones (sort, group, reduce, count, join, fork) materialise what they must.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .expr import EvalEnv, Expr, ExprSyntaxError, parse, parse_legacy_filter, path_getter
from .timeseries import AggregationError, Bucket, parse_time_series

__all__ = [
    "EVENT_SOURCES",
    "SOURCES",
    "AggregationError",
    "AggregationResult",
    "SourceProvider",
    "run_pipeline",
    "validate_request",
]

EVENT_SOURCES = frozenset(
    {"events", "featureEvents", "pageEvents", "guideEvents", "trackEvents", "pollEvents"}
)
SOURCES = EVENT_SOURCES | {"visitors", "accounts", "features", "pages", "guides", "trackTypes"}
ANONYMOUS_PREFIX = "_PENDO_T_"
CHECK_EVERY = 10_000

Row = dict[str, Any]
Stage = Callable[[Iterator[Row]], Iterator[Row]]


class SourceProvider(Protocol):
    """Supplies a source's rows. Event sources get their buckets and must yield only rows of
    those buckets, each with `day` (dayRange) or `hour` (hourRange) = the bucket start."""

    def rows(
        self, source: str, params: dict[str, Any] | None, buckets: list[Bucket] | None
    ) -> Iterable[Row]: ...


@dataclass
class AggregationResult:
    """`start_time`: start of the first bucket (None without a timeSeries); `rows`: lazy."""

    start_time: int | None
    rows: Iterator[Row]


class _Ctx:
    def __init__(self, env: EvalEnv, provider: SourceProvider) -> None:
        self.env = env
        self.provider = provider
        self.deadline = None if env.max_seconds is None else env.clock() + env.max_seconds

    def check_time(self) -> None:
        if self.deadline is not None and self.env.clock() > self.deadline:
            secs = self.env.max_seconds
            raise AggregationError(408, f"Aggregation timed out (exceeded {secs:g} seconds)")

    def timed(self, rows: Iterable[Row]) -> Iterator[Row]:
        if self.deadline is None:
            return iter(rows)
        return self._timed(rows)

    def _timed(self, rows: Iterable[Row]) -> Iterator[Row]:
        for i, row in enumerate(rows, 1):
            if i % CHECK_EVERY == 0:
                self.check_time()
            yield row


Builder = Callable[[_Ctx], Stage]


# ----------------------------------------------------------------------------- helpers


def _q(value: Any) -> str:
    return json.dumps(value, default=str)


def _bad(op: str, expected: str) -> AggregationError:
    return AggregationError(400, f"invalid {_q(op)} operand: expected {expected}")


def _expr(op: str, text: Any) -> Expr:
    try:
        return parse(text)
    except ExprSyntaxError as exc:
        raise AggregationError(400, f"Cannot parse {op} expression") from exc


def _str_list(op: str, value: Any, *, allow_empty: bool = False) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(op, "a list of field names")
    if not value and not allow_empty:
        raise _bad(op, "a non-empty list of field names")
    return value


def _count(op: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(op, "a non-negative integer")
    return value


_NUMBERS = (int, float)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _hashable(value: Any) -> Any:
    """Lists and objects (group keys, distinct values) compare by their JSON form."""
    if value.__class__ in _SCALARS:
        return value
    return ("\0json", json.dumps(value, sort_keys=True, default=str))


def _sort_key(value: Any) -> tuple[int, Any]:
    # Total order across types so mixed columns never raise: null < bool < number < string.
    t = type(value)
    if value is None:
        return (0, 0)
    if t is bool:
        return (1, value)
    if t is int or t is float:
        return (2, value)
    if t is str:
        return (3, value)
    return (4, json.dumps(value, sort_keys=True, default=str))


def _assign(out: Row, name: str, value: Any) -> None:
    """Set `name` on `out`, a fresh top-level copy of a row. A dotted name writes into copies
    of the nested dicts on its path, so the provider's objects are never mutated."""
    if "." not in name or name in out:
        out[name] = value
        return
    parts = name.split(".")
    cur = out
    for part in parts[:-1]:
        child = cur.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        cur[part] = child
        cur = child
    cur[parts[-1]] = value


def _apply(stages: list[Stage], rows: Iterator[Row]) -> Iterator[Row]:
    for stage in stages:
        rows = stage(rows)
    return rows


# -------------------------------------------------------------------------- aggregators
# Pendo's `count` in group/reduce is the number of DISTINCT non-null values of the field
# (`{"count": "visitorId"}` = unique visitors over visitor-day event rows); `{"count": null}`
# counts rows. `first`/`last` take the first/last non-null value in input order.

Update = Callable[[Row, list[Any]], None]


def _better(pick_max: bool) -> Callable[[Any, Any], bool]:
    if pick_max:
        return lambda v, best: _sort_key(v) > _sort_key(best)
    return lambda v, best: _sort_key(v) < _sort_key(best)


def _accumulator(
    kind: str, get: Callable[[Row], Any], j: int
) -> tuple[Callable[[], Any], Update, Callable[[Any], Any]]:
    """(initial state, update(row, states) for slot j, final value) of one aggregation.

    One specialised closure per kind keeps the per-row cost of `group` to two calls."""
    if kind == "rows":

        def update(row: Row, st: list[Any]) -> None:
            st[j] += 1

        return int, update, lambda n: n
    if kind in ("count", "list"):

        def update(row: Row, st: list[Any]) -> None:
            v = get(row)
            if v is not None:
                st[j].setdefault(v if v.__class__ in _SCALARS else _hashable(v), v)

        final = len if kind == "count" else (lambda seen: list(seen.values()))
        return dict, update, final
    if kind in ("sum", "avg"):

        def update(row: Row, st: list[Any]) -> None:
            v = get(row)
            if v.__class__ in _NUMBERS:  # bools and numeric strings are not summed
                acc = st[j]
                acc[0] += v
                acc[1] += 1

        if kind == "sum":
            return lambda: [0, 0], update, lambda acc: acc[0]
        return lambda: [0, 0], update, lambda acc: acc[0] / acc[1] if acc[1] else None
    if kind in ("min", "max"):
        better = _better(kind == "max")

        def update(row: Row, st: list[Any]) -> None:
            v = get(row)
            if v is not None and (st[j] is None or better(v, st[j])):
                st[j] = v

        return lambda: None, update, lambda v: v
    keep_first = kind == "first"

    def update(row: Row, st: list[Any]) -> None:
        v = get(row)
        if v is not None and not (keep_first and st[j] is not None):
            st[j] = v

    return lambda: None, update, lambda v: v


_AGGS = {"count", "sum", "avg", "min", "max", "first", "last", "list"}


def _field_specs(op: str, spec: Any) -> list[tuple[str, str, str | None]]:
    """`{"n": {"count": "f"}}` or `[{"n": {"count": "f"}}, ...]` -> [(name, kind, path)]."""
    if isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, list) and all(isinstance(s, dict) for s in spec):
        items = [item for s in spec for item in s.items()]
    else:
        raise _bad(op, 'fields like {"name": {"count": "visitorId"}}')
    out = []
    for name, agg in items:
        if not isinstance(agg, dict) or len(agg) != 1:
            raise _bad(op, f"one aggregation for field {_q(name)}")
        ((kind, path),) = agg.items()
        if kind not in _AGGS:
            raise AggregationError(400, f"unknown aggregation {_q(kind)} in {_q(op)}")
        if path is None and kind == "count":
            kind = "rows"
        elif not isinstance(path, str) or not path:
            raise _bad(op, f"a field name for {_q(kind)} of {_q(name)}")
        out.append((name, kind, path))
    return out


def _group_key(key_gets: list[Callable[[Row], Any]]) -> Callable[[Row], Any]:
    """A hashable key of a row's group values (one key, the common case, needs no tuple)."""
    if len(key_gets) == 1:
        (get,) = key_gets

        def one(row: Row) -> Any:
            v = get(row)
            return v if v.__class__ in _SCALARS else _hashable(v)

        return one
    return lambda row: tuple(_hashable(g(row)) for g in key_gets)


def _aggregate(
    specs: list[tuple[str, str, str | None]], keys: list[str], rows: Iterator[Row]
) -> Iterator[Row]:
    accs = [
        _accumulator(kind, path_getter(path) if path else (lambda row: row), j)
        for j, (_, kind, path) in enumerate(specs)
    ]
    inits, updates = [a[0] for a in accs], [a[1] for a in accs]
    key_gets = [path_getter(k) for k in keys]
    key_of = _group_key(key_gets)
    groups: dict[Any, tuple[list[Any], list[Any]]] = {}
    for row in rows:
        gk = key_of(row)
        entry = groups.get(gk)
        if entry is None:
            values = [g(row) for g in key_gets]
            entry = groups[gk] = (values, [init() for init in inits])
        states = entry[1]
        for update in updates:
            update(row, states)
    if not keys and not groups:  # reduce over nothing still answers one row
        groups[()] = ([], [init() for init in inits])
    for values, states in groups.values():
        out = dict(zip(keys, values, strict=True))
        for (name, _, _), (_, _, final), state in zip(specs, accs, states, strict=True):
            out[name] = final(state)
        yield out


# ---------------------------------------------------------------------------- operators


def _op_filter(arg: Any) -> Builder:
    try:
        if isinstance(arg, dict):
            expr = parse_legacy_filter(arg)
        elif isinstance(arg, str):
            expr = parse(arg)
        else:
            raise ExprSyntaxError("filter must be a string")
    except ExprSyntaxError as exc:
        raise AggregationError(400, "Cannot parse filter expression") from exc

    def build(ctx: _Ctx) -> Stage:
        pred = expr.bind(ctx.env)
        return lambda rows: filter(pred, rows)

    return build


def _expr_map(op: str, arg: Any) -> list[tuple[str, Expr]]:
    if not isinstance(arg, dict) or not arg:
        raise _bad(op, '{"name": "expression", ...}')
    for name, text in arg.items():
        if not isinstance(text, str) or not name:
            raise _bad(op, f"an expression string for {_q(name)}")
    return [(name, _expr(op, text)) for name, text in arg.items()]


def _op_select(arg: Any) -> Builder:
    pairs = _expr_map("select", arg)

    def build(ctx: _Ctx) -> Stage:
        fns = [(name, e.bind(ctx.env)) for name, e in pairs]
        return lambda rows: ({name: f(row) for name, f in fns} for row in rows)

    return build


def _op_eval(arg: Any) -> Builder:
    pairs = _expr_map("eval", arg)

    def build(ctx: _Ctx) -> Stage:
        fns = [(name, e.bind(ctx.env)) for name, e in pairs]

        def stage(rows: Iterator[Row]) -> Iterator[Row]:
            for row in rows:
                out = dict(row)
                for name, f in fns:  # every expression sees the input row, not earlier results
                    _assign(out, name, f(row))
                yield out

        return stage

    return build


def _op_identified(arg: Any) -> Builder:
    def anonymous(row: Row) -> bool:
        vid = row.get("visitorId")
        return isinstance(vid, str) and vid.startswith(ANONYMOUS_PREFIX)

    def identified_visitor(row: Row) -> bool:
        vid = row.get("visitorId")
        return bool(vid) and not (isinstance(vid, str) and vid.startswith(ANONYMOUS_PREFIX))

    preds: dict[str, Callable[[Row], bool]] = {
        "visitorId": identified_visitor,
        "!visitorId": anonymous,
        "accountId": lambda row: bool(row.get("accountId")),
        "!accountId": lambda row: not row.get("accountId"),
    }
    if not isinstance(arg, str) or arg not in preds:
        raise _bad("identified", '"visitorId", "!visitorId", "accountId" or "!accountId"')
    pred = preds[arg]
    return lambda ctx: lambda rows: filter(pred, rows)


def _op_group(arg: Any) -> Builder:
    if not isinstance(arg, dict) or "group" not in arg:
        raise _bad("group", '{"group": [fields], "fields": {...}}')
    keys = _str_list("group", arg["group"], allow_empty=True)
    specs = _field_specs("group", arg.get("fields") or {})
    return lambda ctx: lambda rows: _aggregate(specs, keys, rows)


def _op_reduce(arg: Any) -> Builder:
    specs = _field_specs("reduce", arg)
    return lambda ctx: lambda rows: _aggregate(specs, [], rows)


def _op_sort(arg: Any) -> Builder:
    keys = [(path_getter(k.lstrip("-")), k.startswith("-")) for k in _str_list("sort", arg)]

    def stage(rows: Iterator[Row]) -> Iterator[Row]:
        data = list(rows)
        for get, desc in reversed(keys):  # stable sorts, least significant key first
            data.sort(key=lambda row, get=get: _sort_key(get(row)), reverse=desc)
        yield from data

    return lambda ctx: stage


def _op_limit(arg: Any) -> Builder:
    n = _count("limit", arg)
    return lambda ctx: lambda rows: itertools.islice(rows, n)


def _op_skip(arg: Any) -> Builder:
    n = _count("skip", arg)
    return lambda ctx: lambda rows: itertools.islice(rows, n, None)


def _op_count(arg: Any) -> Builder:
    if arg is not None:
        raise _bad("count", "null")

    def stage(rows: Iterator[Row]) -> Iterator[Row]:
        yield {"count": sum(1 for _ in rows)}

    return lambda ctx: stage


def _op_cat(arg: Any) -> Builder:
    return lambda ctx: lambda rows: rows  # joins spawned streams; they are concatenated already


def _op_unwind(arg: Any) -> Builder:
    if not isinstance(arg, dict) or not isinstance(arg.get("field"), str) or not arg["field"]:
        raise _bad("unwind", '{"field": "name"}')
    name, index = arg["field"], arg.get("index")
    keep_empty = arg.get("keepEmpty", False)
    if (index is not None and not isinstance(index, str)) or not isinstance(keep_empty, bool):
        raise _bad("unwind", '"index" as a string and "keepEmpty" as a boolean')
    get = path_getter(name)

    def emit(row: Row, item: Any, i: int | None) -> Row:
        out = dict(row)
        _assign(out, name, item)
        if index:
            out[index] = i
        return out

    def stage(rows: Iterator[Row]) -> Iterator[Row]:
        for row in rows:
            value = get(row)
            if not isinstance(value, list):  # a scalar unwinds to itself
                value = [] if value is None else [value]
            if value:
                for i, item in enumerate(value):
                    yield emit(row, item, i)
            elif keep_empty:
                yield emit(row, None, None)

    return lambda ctx: stage


def _op_merge(arg: Any) -> Builder:
    if not isinstance(arg, dict):
        raise _bad("merge", '{"fields": [...], "mappings": {...}, "pipeline": [...]}')
    fields = _str_list("merge", arg.get("fields"))
    mappings = arg.get("mappings")
    if mappings is not None and not (
        isinstance(mappings, dict) and all(isinstance(v, str) for v in mappings.values())
    ):
        raise _bad("merge", 'mappings like {"outName": "subPipelineField"}')
    sub = _compile_pipeline(arg.get("pipeline"), "merge pipeline")
    key_gets = [path_getter(f) for f in fields]
    mapped = [(out, path_getter(src)) for out, src in (mappings or {}).items()]

    def key(row: Row) -> tuple:
        return tuple(_hashable(g(row)) for g in key_gets)

    def build(ctx: _Ctx) -> Stage:
        _, sub_rows = sub.open(ctx)  # opened now so its timeSeries errors are 400s up front

        def stage(rows: Iterator[Row]) -> Iterator[Row]:
            index: dict[tuple, Row] | None = None
            for row in rows:
                if index is None:  # read the sub-pipeline only once a row needs it
                    index = {}
                    for s in sub_rows:
                        k = key(s)
                        if None not in k:  # like SQL, a null key joins nothing
                            index.setdefault(k, s)
                match = index.get(key(row))
                out = dict(row)
                if mapped:  # a left join: unmatched rows get nulls
                    for name, get in mapped:
                        _assign(out, name, None if match is None else get(match))
                elif match is not None:
                    for k, v in match.items():
                        out.setdefault(k, v)
                yield out

        return stage

    return build


def _op_join(arg: Any) -> Builder:
    if not isinstance(arg, dict):
        raise _bad("join", '{"fields": [...], "width": n}')
    keys = [path_getter(f) for f in _str_list("join", arg.get("fields"))]
    width = arg.get("width", 1)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise _bad("join", "a positive integer width")

    def stage(rows: Iterator[Row]) -> Iterator[Row]:
        joined: dict[tuple, Row] = {}
        for row in rows:
            k = tuple(_hashable(g(row)) for g in keys)
            into = joined.get(k)
            if into is None:
                joined[k] = dict(row)
            else:  # later rows fill in; a null never erases a value
                into.update((f, v) for f, v in row.items() if v is not None or f not in into)
        yield from joined.values()

    return lambda ctx: stage


def _op_fork(arg: Any) -> Builder:
    if not isinstance(arg, list) or not arg or not all(isinstance(b, list) for b in arg):
        raise _bad("fork", "a list of pipelines (lists of steps)")
    branches = [[_compile_step(step) for step in branch] for branch in arg]

    def build(ctx: _Ctx) -> Stage:
        built = [[b(ctx) for b in branch] for branch in branches]

        def stage(rows: Iterator[Row]) -> Iterator[Row]:
            data = list(rows)
            for stages in built:
                yield from _apply(stages, iter(data))

        return stage

    return build


_OPS: dict[str, Callable[[Any], Builder]] = {
    "filter": _op_filter,
    "select": _op_select,
    "eval": _op_eval,
    "identified": _op_identified,
    "group": _op_group,
    "reduce": _op_reduce,
    "sort": _op_sort,
    "limit": _op_limit,
    "skip": _op_skip,
    "count": _op_count,
    "cat": _op_cat,
    "unwind": _op_unwind,
    "merge": _op_merge,
    "join": _op_join,
    "fork": _op_fork,
}


# ------------------------------------------------------------------------------- plans


@dataclass
class _Source:
    name: str
    params: dict[str, Any] | None
    time_series: Any

    def open(self, ctx: _Ctx) -> tuple[int | None, Iterator[Row]]:
        buckets = None
        if self.name in EVENT_SOURCES:
            buckets = parse_time_series(self.time_series, ctx.env)
        rows = ctx.provider.rows(self.name, self.params, buckets)
        return (buckets[0].start_ms if buckets else None), ctx.timed(rows)


@dataclass
class _Plan:
    head: _Source | list[_Plan]  # a source, or the branches of a leading `spawn`
    stages: list[Builder]

    def open(self, ctx: _Ctx) -> tuple[int | None, Iterator[Row]]:
        if isinstance(self.head, _Source):
            start, rows = self.head.open(ctx)
        else:
            opened = [branch.open(ctx) for branch in self.head]
            start = min((s for s, _ in opened if s is not None), default=None)
            rows = itertools.chain.from_iterable(r for _, r in opened)
        return start, _apply([build(ctx) for build in self.stages], rows)


def _split_step(step: Any) -> tuple[str, Any]:
    if not isinstance(step, dict) or len(step) != 1:
        raise AggregationError(400, "each pipeline step must be an object with one operator")
    ((op, arg),) = step.items()
    return op, arg


def _compile_step(step: Any) -> Builder:
    op, arg = _split_step(step)
    if op in ("source", "spawn"):
        raise AggregationError(400, f"{_q(op)} must be the first pipeline step")
    if op not in _OPS:
        raise AggregationError(400, f"unknown pipeline operator {_q(op)}")
    return _OPS[op](arg)


def _compile_source(arg: Any) -> _Source:
    if not isinstance(arg, dict):
        raise _bad("source", '{"<sourceName>": params, "timeSeries": {...}}')
    names = [k for k in arg if k != "timeSeries"]
    if len(names) != 1:
        raise AggregationError(400, "source must name exactly one source")
    name = names[0]
    if name not in SOURCES:
        raise AggregationError(400, f"unknown source {_q(name)}")
    params = arg[name]
    if params is not None and not isinstance(params, dict):
        raise AggregationError(400, f"source {_q(name)} params must be an object or null")
    ts = arg.get("timeSeries")
    if name in EVENT_SOURCES and ts is None:
        raise AggregationError(400, f"source {_q(name)} requires a timeSeries")
    return _Source(name, params, ts)


def _compile_pipeline(pipeline: Any, where: str) -> _Plan:
    if not isinstance(pipeline, list) or not pipeline:
        raise AggregationError(400, f"{where} must be a non-empty list of steps")
    op, arg = _split_step(pipeline[0])
    head: _Source | list[_Plan]
    if op == "source":
        head = _compile_source(arg)
    elif op == "spawn":  # Pendo's own examples open with spawn: [[source, ...], [source, ...]]
        if not isinstance(arg, list) or not arg:
            raise _bad("spawn", "a non-empty list of pipelines")
        head = [_compile_pipeline(p, "spawn pipeline") for p in arg]
    else:
        raise AggregationError(400, f"{where} must start with a source step")
    return _Plan(head, [_compile_step(step) for step in pipeline[1:]])


# ---------------------------------------------------------------------------------- API


def validate_request(body: Any) -> dict[str, Any]:
    """Check the envelope and the whole pipeline; return `body["request"]`.

    Raises AggregationError(400, text) for anything the service would refuse."""
    if not isinstance(body, dict):
        raise AggregationError(400, "request body must be a JSON object")
    response = body.get("response")
    if response is not None:  # Pendo's own examples send `"response": {}` too
        if not isinstance(response, dict):
            raise AggregationError(400, "response must be an object")
        mime = response.get("mimeType")
        if mime is not None and mime != "application/json":
            raise AggregationError(400, f"unsupported response mimeType {_q(mime)}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise AggregationError(400, "request must be an object with a pipeline")
    _compile_pipeline(request.get("pipeline"), "request.pipeline")
    return request


def run_pipeline(
    request: Mapping[str, Any], provider: SourceProvider, env: EvalEnv
) -> AggregationResult:
    """Run `request["pipeline"]` (a full envelope is unwrapped too).

    Raises AggregationError(400) before returning; iterating `rows` may raise
    AggregationError(408) past `env.max_seconds` or (413) past `env.max_rows_out` rows."""
    if "pipeline" not in request and isinstance(request.get("request"), Mapping):
        request = request["request"]
    ctx = _Ctx(env, provider)
    start, rows = _compile_pipeline(request.get("pipeline"), "request.pipeline").open(ctx)
    return AggregationResult(start, _guard_output(rows, ctx))


def _guard_output(rows: Iterator[Row], ctx: _Ctx) -> Iterator[Row]:
    limit = ctx.env.max_rows_out
    if limit is None and ctx.deadline is None:
        return rows
    return _guarded(rows, ctx, limit)


def _guarded(rows: Iterator[Row], ctx: _Ctx, limit: int | None) -> Iterator[Row]:
    for n, row in enumerate(rows, 1):
        if limit is not None and n > limit:
            raise AggregationError(413, "Aggregation result too large")
        if n % CHECK_EVERY == 0:
            ctx.check_time()
        yield row
