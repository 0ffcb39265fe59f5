"""Property tests: the Pendo aggregation pipeline builder under any argument.

The builder's promise: every step either joins the pipeline or is refused at the call site
with a ``ValueError`` (or the builder's own ``TypeError`` naming the wrong type) that says
what to pass; a refused step leaves the pipeline as it was (pipelines are immutable); and
whatever is built serialises to strict JSON (no NaN, no Infinity) whose filter strings
quote every value so that no value can change the expression around it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analytics_assets.pendo.pipeline import (
    Agg,
    AggSpec,
    Expr,
    Pipeline,
    Source,
    TimeSeries,
    app_ids_param,
    quote,
)

PROPS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ClearError = Callable[..., None]
FIELD = re.compile(r"[A-Za-z_$][\w$]*(?:\.[\w$]+)*")
T0 = 1_718_409_600_000  # 2024-06-15 00:00 UTC in epoch ms


class Opaque:
    """An object of a type the builder has never heard of."""

    def __repr__(self) -> str:
        return "Opaque()"


#: Anything a caller might pass by mistake: wrong types, huge and non-finite numbers.
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**64), 10**30, 10**300])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.binary(max_size=4)
    | st.builds(Decimal, st.integers())
    | st.just(Opaque()),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        | st.sets(st.integers(), max_size=3)
    ),
    max_leaves=6,
)
good_fields = st.from_regex(FIELD, fullmatch=True).filter(lambda f: len(f) <= 40)
fields = good_fields | st.text(max_size=12) | anything
literals = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


def unquote(literal: str) -> str:
    """The string a Pendo filter literal denotes (the inverse of ``quote``)."""
    assert literal[0] == literal[-1] == '"', literal
    out, i, inner = [], 0, literal[1:-1]
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            assert inner[i + 1] in '\\"', f"unknown escape in {literal!r}"
            out.append(inner[i + 1])
            i += 2
            continue
        assert ch != '"', f"an unescaped quote inside {literal!r} ends the string early"
        out.append(ch)
        i += 1
    return "".join(out)


def check_error(exc: BaseException, clear_error: ClearError) -> None:
    # The builder's refusals: ValueError, or its own TypeError naming the wrong type
    # ("cannot write a list in a filter", "quote() takes a str, got int").
    clear_error(exc, (ValueError, TypeError), crashes_allowed=(TypeError,))


def strict_json(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


# ============================================================================== expressions


@PROPS
@given(value=st.text())
@example(value='a"b\\c')
@example(value='\\"')
@example(value='" || true || "')
def test_quote_round_trips_any_string_and_escapes_every_quote(value: str) -> None:
    literal = quote(value)
    assert unquote(literal) == value
    assert strict_json(literal) == literal


@PROPS
@given(field=good_fields, op=st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), value=literals)
def test_a_comparison_is_the_field_the_operator_and_the_value_read_back(
    field: str, op: str, value: Any
) -> None:
    expr = Expr.cmp(field, op, value)
    head, literal = expr[: len(field) + len(op) + 2], expr[len(field) + len(op) + 2 :]
    assert head == f"{field} {op} "
    if isinstance(value, str):
        assert unquote(literal) == value
    elif value is None or isinstance(value, bool):
        assert literal == {None: "null", True: "true", False: "false"}[value]
    else:
        assert type(value)(literal) == value  # int("12"), float(repr(x))


@PROPS
@given(
    which=st.sampled_from(
        [
            "eq",
            "ne",
            "gt",
            "ge",
            "lt",
            "le",
            "is_null",
            "contains",
            "in_",
            "between",
            "cmp",
            "field",
            "literal",
            "and_",
            "or_",
            "not_",
        ]
    ),
    a=fields,
    b=anything | literals,
    c=anything | literals,
)
@example(which="in_", a="accountId", b=[[1], [2]], c=None)
@example(which="in_", a="accountId", b=[{"x": 1}], c=None)
@example(which="eq", a="accountId", b=float("nan"), c=None)
@example(which="cmp", a="accountId", b=["=="], c=1)
@example(which="contains", a="name", b=5, c=None)
@example(which="and_", a="x == 1", b=5, c=None)
def test_expression_builders_return_text_or_refuse_clearly(
    which: str, a: Any, b: Any, c: Any, clear_error: ClearError
) -> None:
    calls: dict[str, Callable[[], Any]] = {
        "eq": lambda: Expr.eq(a, b),
        "ne": lambda: Expr.ne(a, b),
        "gt": lambda: Expr.gt(a, b),
        "ge": lambda: Expr.ge(a, b),
        "lt": lambda: Expr.lt(a, b),
        "le": lambda: Expr.le(a, b),
        "is_null": lambda: Expr.is_null(a),
        "contains": lambda: Expr.contains(a, b),
        "in_": lambda: Expr.in_(a, b),
        "between": lambda: Expr.between(a, b, c),
        "cmp": lambda: Expr.cmp(a, b, c),
        "field": lambda: Expr.field(a),
        "literal": lambda: Expr.literal(b),
        "and_": lambda: Expr.and_(a, b),
        "or_": lambda: Expr.or_(a, b),
        "not_": lambda: Expr.not_(a),
    }
    try:
        expr = calls[which]()
    except Exception as exc:
        check_error(exc, clear_error)
        return
    assert isinstance(expr, str) and expr
    strict_json(expr)
    for value in (b, c):  # a non-finite number has no spelling in a filter
        assert not (
            isinstance(value, float)
            and not math.isfinite(value)
            and which in ("eq", "ne", "gt", "ge", "lt", "le", "between", "literal")
        )
    if which not in ("literal", "and_", "or_", "not_"):
        assert isinstance(a, str) and FIELD.fullmatch(a), f"accepted field {a!r}"


@PROPS
@given(name=st.text(max_size=20) | anything)
@example(name="visitorId) || (1 == 1")
@example(name='a"b')
@example(name="metadata.custom.plan")
@example(name="a..b")
def test_a_field_name_is_a_field_path_or_refused_naming_it(
    name: Any, clear_error: ClearError
) -> None:
    try:
        field = Expr.field(name)
    except Exception as exc:
        check_error(exc, clear_error)
        assert repr(name)[:40] in str(exc) or not isinstance(name, str)
        return
    assert FIELD.fullmatch(field)
    # Nothing that could end or extend an expression gets through.
    assert not set(field) & set(" \"'()=!<>&|,;+-*/\\\n")


@PROPS
@given(field=good_fields, values=st.lists(literals, min_size=1, max_size=8))
def test_in_matches_each_distinct_value_exactly_once(field: str, values: list[Any]) -> None:
    expr = Expr.in_(field, values)
    clauses = expr[1:-1].split(" || ") if "||" in expr else [expr[1:-1]]
    literals_out = [Expr.literal(v) for v in values]
    # One clause per distinct value (1 and True are different values to Pendo).
    assert sorted(clauses) == sorted({f"{field} == {lit}" for lit in literals_out})


# ============================================================================== sources


@PROPS
@given(
    first=anything | st.integers(),
    last=anything | st.integers(),
    count=anything | st.integers(),
    hourly=st.booleans(),
)
@example(first=T0, last=None, count=7, hourly=False)
@example(first=1_718_409_600, last=None, count=1, hourly=False)  # seconds, not ms
@example(first=T0, last=T0, count=None, hourly=True)
@example(first="now()", last=None, count=-3, hourly=True)
def test_a_time_series_is_valid_or_refused(
    first: Any, last: Any, count: Any, hourly: bool, clear_error: ClearError
) -> None:
    make = TimeSeries.hour_range if hourly else TimeSeries.day_range
    try:
        ts = make(first, last=last, count=count) if hourly else make(first, count, last=last)
    except Exception as exc:
        check_error(exc, clear_error)
        return
    body = strict_json(ts.to_json())
    assert body["period"] == ("hourRange" if hourly else "dayRange")
    assert isinstance(body["first"], int | str) and not isinstance(body["first"], bool)
    assert ("last" in body) != ("count" in body)
    if isinstance(first, int) and isinstance(body.get("last"), int):
        assert body["last"] > first


@PROPS
@given(
    kind=st.sampled_from(
        [
            "events",
            "featureEvents",
            "pageEvents",
            "guideEvents",
            "trackEvents",
            "pollEvents",
            "visitors",
            "accounts",
            "features",
            "pages",
            "guides",
            "trackTypes",
        ]
    ),
    app_ids=anything | st.just("*") | st.lists(st.integers(), max_size=3),
    item_id=anything,
    event_class=anything | st.lists(st.sampled_from(["web", "ios"]), max_size=2),
)
@example(kind="visitors", app_ids=1.5, item_id=None, event_class=None)
@example(kind="events", app_ids=None, item_id=None, event_class="web")
@example(kind="events", app_ids=None, item_id=None, event_class=5)
@example(kind="accounts", app_ids={"a": 1}, item_id=None, event_class=None)
def test_a_source_is_valid_json_or_refused(
    kind: str, app_ids: Any, item_id: Any, event_class: Any, clear_error: ClearError
) -> None:
    ts = TimeSeries.day_range(T0, count=1)
    builders: dict[str, Callable[[], Source]] = {
        "events": lambda: Source.events(time_series=ts, app_ids=app_ids, event_class=event_class),
        "featureEvents": lambda: Source.feature_events(item_id, time_series=ts, app_ids=app_ids),
        "pageEvents": lambda: Source.page_events(item_id, time_series=ts, app_ids=app_ids),
        "guideEvents": lambda: Source.guide_events(item_id, time_series=ts, app_ids=app_ids),
        "trackEvents": lambda: Source.track_events(item_id, time_series=ts, app_ids=app_ids),
        "pollEvents": lambda: Source.poll_events(time_series=ts, app_ids=app_ids),
        "visitors": lambda: Source.visitors(identified=item_id, app_ids=app_ids),
        "accounts": lambda: Source.accounts(app_ids=app_ids),
        "features": lambda: Source.features(app_ids=app_ids),
        "pages": lambda: Source.pages(app_ids=app_ids),
        "guides": lambda: Source.guides(app_ids=app_ids),
        "trackTypes": lambda: Source.track_types(app_ids=app_ids),
    }
    try:
        source = builders[kind]()
        request = Pipeline(source).to_request()
    except Exception as exc:
        check_error(exc, clear_error)
        return
    step = strict_json(request)["request"]["pipeline"][0]["source"]
    params = step[kind] or {}
    app = params.get("appId")
    assert (
        app is None
        or app == 'expandAppIds("*")'
        or isinstance(app, int)
        or (isinstance(app, list) and app and all(isinstance(i, int) for i in app))
    )
    if kind == "events" and isinstance(event_class, str):
        raise AssertionError(f"event_class={event_class!r} was read as {params['eventClass']}")
    if kind == "events" and "eventClass" in params:
        assert all(isinstance(e, str) for e in params["eventClass"]), params["eventClass"]
        assert params["eventClass"] == list(event_class)


@PROPS
@given(app_ids=anything | st.just("*"))
def test_app_ids_are_an_int_a_list_all_or_refused(app_ids: Any, clear_error: ClearError) -> None:
    try:
        value = app_ids_param(app_ids)
    except Exception as exc:
        check_error(exc, clear_error)
        return
    assert (
        value is None
        or value == 'expandAppIds("*")'
        or (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, list) and value and all(type(i) is int for i in value))
    )


# ============================================================================== the pipeline

OPS = [
    "filter",
    "identified",
    "select",
    "eval",
    "group",
    "reduce",
    "sort",
    "limit",
    "skip",
    "unwind",
    "count",
    "step",
]
aggs = st.builds(
    lambda kind, f: getattr(Agg, kind)(f),
    st.sampled_from(["sum", "count", "min", "max", "first", "last", "avg", "list_"]),
    good_fields,
) | st.builds(Agg.count_rows)
agg_maps = st.dictionaries(good_fields, aggs, max_size=3) | anything


@dataclass
class Op:
    name: str
    args: tuple[Any, ...]

    def apply(self, pipeline: Pipeline) -> Pipeline:
        method = getattr(pipeline, self.name)
        return method(*self.args)


@st.composite
def ops(draw: st.DrawFn) -> Op:
    name = draw(st.sampled_from(OPS))
    good = draw(st.booleans())
    if name == "filter":
        arg = Expr.eq(draw(good_fields), draw(literals)) if good else draw(anything)
        return Op(name, (arg,))
    if name == "identified":
        return Op(name, (draw(st.sampled_from(["visitorId", "!accountId"]) | anything),))
    if name in ("select", "eval"):
        mapping = st.dictionaries(good_fields, good_fields, min_size=1, max_size=3)
        extra = st.lists(good_fields, min_size=1, max_size=3) if name == "select" else st.nothing()
        return Op(name, (draw(mapping | extra if good else anything | st.text(max_size=5)),))
    if name == "group":
        by = draw(
            st.lists(good_fields, min_size=1, max_size=2, unique=True) | good_fields
            if good
            else anything
        )
        return Op(name, (by, draw(agg_maps)))
    if name == "reduce":
        return Op(name, (draw(agg_maps),))
    if name == "sort":
        key = st.tuples(st.sampled_from(["", "-"]), good_fields).map("".join)
        keys = draw(
            st.lists(key, min_size=1, max_size=3) if good else st.lists(anything, max_size=3)
        )
        return Op(name, tuple(keys) if draw(st.booleans()) else (keys,))
    if name in ("limit", "skip"):
        return Op(name, (draw(st.integers(0, 10**12) if good else anything),))
    if name == "unwind":
        return Op(name, (draw(good_fields if good else anything),))
    if name == "count":
        return Op(name, ())
    op_name = draw(st.sampled_from(["merge", "bulkExpand", "segment"]) | anything)
    return Op(name, (op_name, draw(anything)))


@settings(PROPS, max_examples=40)
@given(
    program=st.lists(ops(), max_size=8),
    source=st.sampled_from(
        [
            Source.accounts(),
            Source.visitors(identified=True),
            Source.feature_events(time_series=TimeSeries.day_range(T0, count=7), app_ids="*"),
        ]
    ),
)
@example(program=[Op("step", ("merge", {"x": float("nan")}))], source=Source.accounts())
@example(program=[Op("step", ("merge", {"x": [float("inf")]}))], source=Source.accounts())
@example(program=[Op("group", (5, {"n": Agg.count_rows()}))], source=Source.accounts())
@example(program=[Op("group", (["a"], None))], source=Source.accounts())
@example(program=[Op("select", (5,))], source=Source.accounts())
@example(program=[Op("sort", (5,))], source=Source.accounts())
@example(program=[Op("sort", (None,))], source=Source.accounts())
@example(program=[Op("step", ("merge", {1: Opaque()}))], source=Source.accounts())
def test_any_program_builds_strict_json_and_refused_steps_change_nothing(
    program: list[Op], source: Source, clear_error: ClearError
) -> None:
    pipeline = Pipeline(source)
    applied: list[str] = []
    for op in program:
        before = pipeline.to_request()
        try:
            after = op.apply(pipeline)
        except Exception as exc:
            check_error(exc, clear_error)
            assert pipeline.to_request() == before, "a refused step changed the pipeline"
            continue
        assert isinstance(after, Pipeline) and after is not pipeline
        assert pipeline.to_request() == before, "pipelines must be immutable"
        assert len(after.steps) == len(pipeline.steps) + 1
        pipeline = after
        applied.append(op.name if op.name != "step" else op.args[0])
    request = pipeline.to_request()
    # Strict JSON (json.dumps(allow_nan=False) would refuse NaN/Infinity), and it round-trips.
    assert strict_json(request) == request
    steps = request["request"]["pipeline"]
    assert list(steps[0]) == ["source"]
    assert [next(iter(s)) for s in steps[1:]] == applied
    assert repr(pipeline).count("|") == len(applied)


@PROPS
@given(value=st.text(max_size=30), field=good_fields)
def test_a_value_in_a_filter_cannot_change_the_expression(value: str, field: str) -> None:
    request = Pipeline(Source.accounts()).filter(Expr.eq(field, value)).to_request()
    text = request["request"]["pipeline"][1]["filter"]
    assert text.startswith(f"{field} == ")
    assert unquote(text[len(field) + 4 :]) == value


def test_agg_specs_are_checked_when_built(clear_error: ClearError) -> None:
    for bad in ("a b", "", "x)", 5, None):
        try:
            Agg.sum(bad)  # type: ignore[arg-type]
        except Exception as exc:
            check_error(exc, clear_error)
        else:
            raise AssertionError(f"Agg.sum({bad!r}) was accepted")
    assert AggSpec("count", None).to_json() == {"count": None}
    assert Agg.avg("numMinutes").to_json() == {"avg": "numMinutes"}
