"""The typed Pendo pipeline builder: request shape, quoting, early validation.

Round trips go through the sandbox's own parser and evaluator (the contract's reading of
Pendo's language), so a quoting bug shows as a wrong match, not just a wrong string.
"""

from __future__ import annotations

import json

import pytest

from analytics_assets.pendo.pipeline import (
    Agg,
    Expr,
    Pipeline,
    Source,
    TimeSeries,
    app_ids_param,
    quote,
)
from analytics_assets.sandbox.pendo.aggregation import validate_request
from analytics_assets.sandbox.pendo.expr import EvalEnv, parse

T0 = 1_718_409_600_000  # 2024-06-15T00:00Z
DAY = 86_400_000


def matches(expr: str, row: dict) -> bool:
    return parse(expr).evaluate(row, EvalEnv(now_ms=T0)) is True


# --- quoting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["plain", 'with "quotes"', "back\\slash", '\\"', "end\\", '"; visitorId != "', "ünï\ncode"],
)
def test_quote_round_trips_through_the_filter_language(value):
    expr = Expr.eq("visitorId", value)
    assert matches(expr, {"visitorId": value})
    assert not matches(expr, {"visitorId": value + "x"})


def test_quote_escapes_backslash_before_quote():
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote('\\"') == '"\\\\\\""'
    with pytest.raises(TypeError, match="Expr.literal"):
        quote(5)  # type: ignore[arg-type]


def test_an_injected_id_cannot_widen_a_filter():
    evil = 'x" || visitorId != "'
    expr = Expr.eq("visitorId", evil)
    assert not matches(expr, {"visitorId": "someone-else"})
    assert matches(expr, {"visitorId": evil})


def test_literals():
    assert Expr.literal(None) == "null"
    assert Expr.literal(True) == "true"
    assert Expr.literal(3) == "3"
    assert Expr.literal(2.5) == "2.5"
    with pytest.raises(ValueError, match="finite"):
        Expr.literal(float("nan"))
    with pytest.raises(TypeError, match="use str, int"):
        Expr.literal([1])  # type: ignore[arg-type]


def test_in_is_an_or_of_equalities_and_composes_with_and():
    expr = Expr.in_("accountId", ["a", 'b"', "a"])
    assert expr == '(accountId == "a" || accountId == "b\\"")'
    both = Expr.and_(expr, Expr.gt("numEvents", 2))
    assert matches(both, {"accountId": 'b"', "numEvents": 3})
    assert not matches(both, {"accountId": "c", "numEvents": 3})
    assert not matches(both, {"accountId": "a", "numEvents": 1})
    with pytest.raises(ValueError, match="can match nothing"):
        Expr.in_("accountId", [])


def test_other_helpers_parse_and_mean_what_they_say():
    row = {"n": 5, "name": "Acme Corp", "gone": None}
    assert matches(Expr.between("n", 5, 6), row)
    assert not matches(Expr.between("n", 1, 5), row)
    assert matches(Expr.or_(Expr.eq("n", 1), Expr.ne("n", 1)), row)
    assert matches(Expr.not_(Expr.lt("n", 5)), row)
    assert matches(Expr.le("n", 5), row) and matches(Expr.ge("n", 5), row)
    assert matches(Expr.contains("name", "Acme"), row)
    assert matches(Expr.is_null("gone"), row)
    assert Expr.and_("a == 1") == "a == 1"
    with pytest.raises(ValueError):
        Expr.and_()


@pytest.mark.parametrize("bad", ["", "a b", "x==1", "a.", "1abc", 'v"'])
def test_field_names_are_checked(bad):
    with pytest.raises(ValueError, match="not a field path"):
        Expr.eq(bad, 1)


def test_comparison_operator_is_checked():
    with pytest.raises(ValueError, match="use one of"):
        Expr.cmp("a", "=~", 1)


# --- time series and sources -------------------------------------------------------------------


def test_time_series_json():
    assert TimeSeries.day_range(T0).to_json() == {"period": "dayRange", "first": T0, "count": 1}
    assert TimeSeries.day_range(T0, count=-7).to_json()["count"] == -7
    assert TimeSeries.hour_range(T0, T0 + DAY).to_json() == {
        "period": "hourRange",
        "first": T0,
        "last": T0 + DAY,
    }
    assert TimeSeries.hour_range("now()", count=-24).to_json()["first"] == "now()"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TimeSeries.day_range(T0 // 1000), "looks like seconds"),
        (lambda: TimeSeries.hour_range(T0, T0), "must be after"),
        (lambda: TimeSeries("dayRange", T0, T0 + DAY, 3), "exactly one"),
        (lambda: TimeSeries.day_range(T0, count=0), "non-zero"),
        (lambda: TimeSeries("weekly", T0, count=1), "dayRange"),  # type: ignore[arg-type]
        (lambda: TimeSeries.day_range(True), "epoch milliseconds"),  # type: ignore[arg-type]
    ],
)
def test_time_series_validation(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_app_ids_forms():
    assert app_ids_param(None) is None
    assert app_ids_param(-323232) == -323232
    assert app_ids_param([1, 2]) == [1, 2]
    assert app_ids_param("*") == 'expandAppIds("*")'
    for bad in ("all", [], [1, "2"], True):
        with pytest.raises(ValueError):
            app_ids_param(bad)  # type: ignore[arg-type]


def test_sources_build_the_contract_shapes():
    ts = TimeSeries.day_range(T0, count=1)
    assert Source.feature_events("f1", time_series=ts, app_ids="*").to_step() == {
        "source": {
            "featureEvents": {"featureId": "f1", "appId": 'expandAppIds("*")'},
            "timeSeries": {"period": "dayRange", "first": T0, "count": 1},
        }
    }
    assert Source.events(time_series=ts).to_step()["source"]["events"] is None
    assert Source.events(time_series=ts, event_class=["web"]).to_step()["source"]["events"] == {
        "eventClass": ["web"]
    }
    assert Source.page_events(time_series=ts, app_ids=[1, 2]).to_step()["source"]["pageEvents"] == {
        "appId": [1, 2]
    }
    assert Source.guide_events("g", time_series=ts).to_step()["source"]["guideEvents"] == {
        "guideId": "g"
    }
    assert Source.track_events("t", time_series=ts).to_step()["source"]["trackEvents"] == {
        "trackTypeId": "t"
    }
    assert Source.visitors(identified=True).to_step() == {
        "source": {"visitors": {"identified": True}}
    }
    assert Source.accounts().to_step() == {"source": {"accounts": None}}
    for make, name in [
        (Source.features, "features"),
        (Source.pages, "pages"),
        (Source.guides, "guides"),
        (Source.track_types, "trackTypes"),
    ]:
        assert make(app_ids=5).to_step() == {"source": {name: {"appId": 5}}}


def test_event_sources_need_a_time_series_and_entities_refuse_one():
    with pytest.raises(ValueError, match="needs time_series"):
        Source("events")
    with pytest.raises(ValueError, match="takes no time_series"):
        Source("visitors", None, TimeSeries.day_range(T0))
    with pytest.raises(TypeError, match="TimeSeries"):
        Source.events(time_series={"period": "dayRange"})  # type: ignore[arg-type]


# --- the pipeline ------------------------------------------------------------------------------


def full_pipeline() -> Pipeline:
    return (
        Pipeline(Source.events(time_series=TimeSeries.day_range(T0, count=-7), app_ids="*"))
        .identified("visitorId")
        .filter(Expr.in_("accountId", ["a1", "a2"]))
        .eval({"h": "hash(visitorId)"})
        .group(
            by=["visitorId", "accountId"],
            fields={
                "events": Agg.sum("numEvents"),
                "accounts": Agg.count("accountId"),
                "rows": Agg.count_rows(),
                "first": Agg.min("day"),
                "last": Agg.max("day"),
                "firstAccount": Agg.first("accountId"),
                "lastAccount": Agg.last("accountId"),
            },
        )
        .select({"visitorId": "visitorId", "events": "events"})
        .sort("-events", "visitorId")
        .skip(5)
        .limit(10)
    )


def test_request_envelope_and_steps():
    body = full_pipeline().to_request(name="weekly", request_id="r1")
    assert body["response"] == {"mimeType": "application/json"}
    assert body["request"]["name"] == "weekly" and body["request"]["requestId"] == "r1"
    steps = body["request"]["pipeline"]
    assert [next(iter(s)) for s in steps] == [
        "source",
        "identified",
        "filter",
        "eval",
        "group",
        "select",
        "sort",
        "skip",
        "limit",
    ]
    group = steps[4]["group"]
    assert group["group"] == ["visitorId", "accountId"]
    assert group["fields"]["events"] == {"sum": "numEvents"}
    assert group["fields"]["rows"] == {"count": None}
    assert group["fields"]["firstAccount"] == {"first": "accountId"}
    assert steps[6] == {"sort": ["-events", "visitorId"]}
    json.dumps(body)  # plain JSON
    validate_request(body)  # and the sandbox (the contract) accepts it


def test_pipelines_are_immutable_values():
    base = Pipeline(Source.accounts())
    a = base.limit(1)
    b = base.count()
    assert base.steps == [{"source": {"accounts": None}}]
    assert a.steps[-1] == {"limit": 1} and b.steps[-1] == {"count": None}
    assert a == Pipeline(Source.accounts()).limit(1) and a != b
    steps = a.steps
    steps[0]["source"]["accounts"] = {"appId": 1}
    assert a.steps[0] == {"source": {"accounts": None}}  # callers get copies
    assert repr(a) == "Pipeline(accounts | limit)"


def test_other_operators():
    p = (
        Pipeline(Source.guides())
        .unwind("steps", index="stepIndex", keep_empty=True)
        .reduce({"n": Agg.count_rows(), "avg": Agg.avg("steps.rank"), "ids": Agg.list_("id")})
        .step("bulkExpand", {"account": {"account": "accountId"}})
    )
    steps = p.steps
    assert steps[1] == {"unwind": {"field": "steps", "index": "stepIndex", "keepEmpty": True}}
    assert steps[2] == {
        "reduce": {"n": {"count": None}, "avg": {"avg": "steps.rank"}, "ids": {"list": "id"}}
    }
    assert Pipeline(Source.visitors()).select(["metadata.agent.email"]).steps[1] == {
        "select": {"email": "metadata.agent.email"}
    }
    assert Pipeline(Source.visitors()).identified("!visitorId").steps[1] == {
        "identified": "!visitorId"
    }
    assert Pipeline(Source.pages()).sort(["a", "-b"]).steps[1] == {"sort": ["a", "-b"]}


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda p: p.group(by=[], fields={"n": Agg.count_rows()}), "use reduce"),
        (lambda p: p.group(by=["a", "a"], fields={"n": Agg.count_rows()}), "repeat"),
        (lambda p: p.group(by=["a"], fields={}), "at least one field"),
        (lambda p: p.group(by=["a"], fields={"a": Agg.count_rows()}), "clash"),
        (lambda p: p.group(by=["a"], fields={"n": {"sum": "x"}}), "must be an Agg"),
        (lambda p: p.reduce({}), "at least one field"),
        (lambda p: p.filter(""), "non-empty"),
        (lambda p: p.identified("visitor"), "one of"),
        (lambda p: p.sort(), "at least one key"),
        (lambda p: p.sort("-"), "not a field path"),
        (lambda p: p.limit(-1), "non-negative"),
        (lambda p: p.skip(1.5), "non-negative"),
        (lambda p: p.select({}), "at least one"),
        (lambda p: p.select("visitorId"), "mapping"),
        (lambda p: p.eval({"x": ""}), "expression"),
        (lambda p: p.step("source", {}), "other than source"),
        (lambda p: p.unwind("a b"), "not a field path"),
    ],
)
def test_operator_arguments_are_checked_early(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build(Pipeline(Source.visitors()))


def test_aggregations_check_their_fields():
    with pytest.raises(ValueError, match="Agg.sum field"):
        Agg.sum("")
    assert Agg.count("visitorId").to_json() == {"count": "visitorId"}
    with pytest.raises(TypeError, match="takes a Source"):
        Pipeline({"source": {}})  # type: ignore[arg-type]
