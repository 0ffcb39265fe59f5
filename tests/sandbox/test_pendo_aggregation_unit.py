"""The sandbox's Pendo aggregation interpreter (timeSeries + pipeline), over a fake provider."""

from __future__ import annotations

import copy
import itertools
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from analytics_assets.sandbox.pendo.aggregation import (
    AggregationError,
    AggregationResult,
    run_pipeline,
    validate_request,
)
from analytics_assets.sandbox.pendo.expr import EvalEnv
from analytics_assets.sandbox.pendo.timeseries import Bucket, parse_time_series

NY = ZoneInfo("America/New_York")
HOUR = 3_600_000
DAY = 24 * HOUR


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000


NOW = utc_ms(2026, 3, 10, 15, 30)  # 11:30 EDT
ENV = EvalEnv(now_ms=NOW, tz=NY)


# ---------------------------------------------------------------------------- timeSeries


def spans(buckets: list[Bucket]) -> list[tuple[int, int]]:
    return [(b.start_ms, (b.end_ms - b.start_ms) // HOUR) for b in buckets]


def test_day_buckets_across_spring_forward_are_23_hours() -> None:
    ts = {"period": "dayRange", "first": "date(2026, 3, 7)", "count": 3}
    assert spans(parse_time_series(ts, ENV)) == [
        (utc_ms(2026, 3, 7, 5), 24),
        (utc_ms(2026, 3, 8, 5), 23),
        (utc_ms(2026, 3, 9, 4), 24),
    ]


def test_day_buckets_across_fall_back_are_25_hours() -> None:
    ts = {"period": "dayRange", "first": "date(2026, 10, 31)", "last": "date(2026, 11, 3)"}
    buckets = parse_time_series(ts, ENV)
    assert spans(buckets) == [
        (utc_ms(2026, 10, 31, 4), 24),
        (utc_ms(2026, 11, 1, 4), 25),
        (utc_ms(2026, 11, 2, 5), 24),
    ]
    assert {b.period for b in buckets} == {"dayRange"}
    assert buckets[0].row_key == "day"
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(buckets))


def test_first_snaps_down_to_local_midnight() -> None:
    ts = {"period": "dayRange", "first": utc_ms(2026, 3, 10, 3, 59), "count": 1}  # 23:59 on the 9th
    assert spans(parse_time_series(ts, ENV)) == [(utc_ms(2026, 3, 9, 4), 24)]


def test_negative_count_covers_the_days_before_first() -> None:
    ts = {"period": "dayRange", "first": "now()", "count": -2}
    assert spans(parse_time_series(ts, ENV)) == [
        (utc_ms(2026, 3, 8, 5), 23),
        (utc_ms(2026, 3, 9, 4), 24),
    ]
    yesterday = parse_time_series({"period": "dayRange", "first": "now()", "count": -1}, ENV)
    assert spans(yesterday) == [(utc_ms(2026, 3, 9, 4), 24)]


def test_hour_buckets_are_utc_hours_even_across_dst() -> None:
    ts = {"period": "hourRange", "first": utc_ms(2026, 3, 8, 6, 45), "count": 3}
    buckets = parse_time_series(ts, ENV)
    assert [b.start_ms for b in buckets] == [utc_ms(2026, 3, 8, h) for h in (6, 7, 8)]
    assert {b.end_ms - b.start_ms for b in buckets} == {HOUR}
    assert buckets[0].row_key == "hour"
    back = parse_time_series({"period": "hourRange", "first": "now()", "count": -2}, ENV)
    assert [b.start_ms for b in back] == [utc_ms(2026, 3, 10, 13), utc_ms(2026, 3, 10, 14)]


@pytest.mark.parametrize(
    "first",
    [
        str(utc_ms(2026, 2, 8, 5)),  # ms as a string (estuary sends these)
        float(utc_ms(2026, 2, 8, 5)),
        'dateAdd(now(), -30, "days")',
        "now() - 30 * 1000 * 60 * 60 * 24",
        "date(2026, 2, 8)",
    ],
)
def test_first_forms(first: Any) -> None:
    buckets = parse_time_series({"period": "dayRange", "first": first, "count": 30}, ENV)
    assert len(buckets) == 30
    assert buckets[0].start_ms == utc_ms(2026, 2, 8, 5)
    assert buckets[-1].end_ms == utc_ms(2026, 3, 10, 4)


def test_last_is_an_exclusive_end() -> None:
    first = utc_ms(2026, 3, 10, 10)
    at_boundary = {"period": "hourRange", "first": first, "last": utc_ms(2026, 3, 10, 12)}
    assert len(parse_time_series(at_boundary, ENV)) == 2
    mid_bucket = {"period": "hourRange", "first": first, "last": utc_ms(2026, 3, 10, 12, 1)}
    assert len(parse_time_series(mid_bucket, ENV)) == 3
    future = {"period": "dayRange", "first": "now()", "last": 'dateAdd(now(), 2, "days")'}
    assert len(parse_time_series(future, ENV)) == 3  # the 10th, 11th and 12th (ends 11:30)
    assert parse_time_series({"period": "hourRange", "first": first, "last": first}, ENV) == []
    assert parse_time_series(None, ENV) == []


@pytest.mark.parametrize(
    "ts",
    [
        "dayRange",
        {"first": "now()", "count": 1},
        {"period": "daily", "first": "now()", "count": 1},
        {"period": "weekRange", "first": "now()", "count": 1},
        {"period": "dayRange", "count": 1},
        {"period": "dayRange", "first": "now()"},
        {"period": "dayRange", "first": "now()", "count": 1, "last": "now()"},
        {"period": "dayRange", "first": "now()", "count": 0},
        {"period": "dayRange", "first": "now()", "count": "3"},
        {"period": "dayRange", "first": "now()", "count": True},
        {"period": "dayRange", "first": "now()", "count": 3661},
        {"period": "dayRange", "first": "now()", "count": -3661},
        {"period": "dayRange", "first": 0, "last": "now()"},
        {"period": "hourRange", "first": "now()", "last": "now() + 3661 * 3600000"},
        {"period": "dayRange", "first": "now(", "count": 1},
        {"period": "dayRange", "first": '"text"', "count": 1},
        {"period": "dayRange", "first": True, "count": 1},
        {"period": "dayRange", "first": "now()", "last": [1]},
    ],
)
def test_time_series_errors_are_400(ts: Any) -> None:
    with pytest.raises(AggregationError) as err:
        parse_time_series(ts, ENV)
    assert err.value.status == 400
    assert err.value.body


def test_exactly_3660_buckets_is_allowed() -> None:
    ts = {"period": "hourRange", "first": 0, "count": 3660}
    assert len(parse_time_series(ts, ENV)) == 3660


# ------------------------------------------------------------------------- fake provider

VISITORS = [
    {"visitorId": "v1", "metadata": {"custom": {"plan": "pro"}, "auto": {"accountids": ["a1"]}}},
    {"visitorId": "v2", "metadata": {"custom": {"plan": "free"}, "auto": {"accountids": []}}},
    {
        "visitorId": "v3",
        "metadata": {"custom": {"plan": "pro"}, "auto": {"accountids": ["a1", "a2"]}},
    },
    {"visitorId": "_PENDO_T_anon", "metadata": {"auto": {"accountids": ["a3"]}}},
]
D1, D2 = utc_ms(2026, 3, 8, 5), utc_ms(2026, 3, 9, 4)
EVENTS = [
    {"visitorId": "v1", "accountId": "a1", "day": D1, "numEvents": 3, "numMinutes": 2},
    {"visitorId": "v1", "accountId": "a1", "day": D2, "numEvents": 5, "numMinutes": 1},
    {"visitorId": "v2", "accountId": "", "day": D1, "numEvents": 1, "numMinutes": 1},
    {"visitorId": "v3", "accountId": "a2", "day": D2, "numEvents": 4, "numMinutes": 3},
    {"visitorId": "_PENDO_T_anon", "accountId": "a3", "day": D2, "numEvents": 7, "numMinutes": 4},
]
EVENTS_TS = {"period": "dayRange", "first": "date(2026, 3, 8)", "count": 2}


class FakeProvider:
    def __init__(self, data: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.data = data if data is not None else {"visitors": VISITORS, "events": EVENTS}
        self.calls: list[tuple[str, Any, list[Bucket] | None]] = []

    def rows(
        self, source: str, params: dict[str, Any] | None, buckets: list[Bucket] | None
    ) -> Iterable[dict[str, Any]]:
        self.calls.append((source, params, buckets))
        starts = None if buckets is None else {b.start_ms for b in buckets}
        for row in self.data.get(source, []):
            if starts is None or row.get("day") in starts:
                yield row  # the very object: the interpreter must not mutate it


def body(*steps: Any, source: Any = None) -> dict[str, Any]:
    first = {"source": source or {"events": None, "timeSeries": EVENTS_TS}}
    return {"response": {"mimeType": "application/json"}, "request": {"pipeline": [first, *steps]}}


def run(*steps: Any, source: Any = None, provider: Any = None, env: EvalEnv = ENV) -> list:
    request = validate_request(body(*steps, source=source))
    return list(run_pipeline(request, provider or FakeProvider(), env).rows)


def visitors(*steps: Any) -> list[dict[str, Any]]:
    return run(*steps, source={"visitors": None})


def ids(rows: list[dict[str, Any]]) -> list[Any]:
    return [r["visitorId"] for r in rows]


def status_of(b: Any) -> tuple[int, str]:
    with pytest.raises(AggregationError) as err:
        validate_request(b)
    return err.value.status, err.value.body


# ------------------------------------------------------------------------------ envelope


def test_validate_returns_the_request_and_ignores_extra_keys() -> None:
    b = body({"limit": 1})
    b["channelId"] = ""
    b["response"]["location"] = "request"
    b["request"].update(name="n", requestId="r", sort=["visitorId"])
    assert validate_request(b) is b["request"]
    assert validate_request({"response": {}, "request": b["request"]}) is b["request"]
    assert validate_request({"request": b["request"]}) is b["request"]


@pytest.mark.parametrize(
    ("b", "text"),
    [
        ([], "request body must be a JSON object"),
        ({"response": {"mimeType": "text/csv"}, "request": {}}, 'mimeType "text/csv"'),
        ({"response": {"mimeType": "application/json"}}, "request must be an object"),
        ({"request": {"pipeline": []}}, "must be a non-empty list"),
        ({"request": {"pipeline": [{"limit": 1}]}}, "must start with a source step"),
        (body({"foo": 1}), 'unknown pipeline operator "foo"'),
        (body({"limit": 1, "skip": 1}), "one operator"),
        (body(source={"segments": None}), 'unknown source "segments"'),
        (body(source={"events": None}), 'source "events" requires a timeSeries'),
        (body(source={"visitors": None, "accounts": None}), "exactly one source"),
        (body(source={"visitors": 5}), "params must be an object or null"),
        (body({"source": {"visitors": None}}), '"source" must be the first pipeline step'),
        (body({"filter": "visitorId =="}), "Cannot parse filter expression"),
        (body({"filter": {"field": "a", "operator": "~", "value": 1}}), "Cannot parse filter"),
        (body({"filter": 5}), "Cannot parse filter expression"),
        (body({"select": {"x": "a +"}}), "Cannot parse select expression"),
        (body({"eval": {"x": "nope(1)"}}), "Cannot parse eval expression"),
        (body({"eval": {"x": 5}}), '"eval"'),
        (body({"limit": "5"}), '"limit"'),
        (body({"skip": -1}), '"skip"'),
        (body({"sort": 5}), '"sort"'),
        (body({"count": "n"}), '"count"'),
        (body({"identified": "email"}), '"identified"'),
        (body({"group": {"fields": {}}}), '"group"'),
        (body({"group": {"group": ["a"], "fields": {"n": {"median": "x"}}}}), "median"),
        (body({"reduce": {"n": {"sum": None}}}), '"reduce"'),
        (body({"reduce": "n"}), '"reduce"'),
        (body({"unwind": {"index": "i"}}), '"unwind"'),
        (body({"merge": {"fields": ["visitorId"], "pipeline": []}}), "merge pipeline"),
        (
            body({"merge": {"fields": ["v"], "pipeline": [{"source": {"nope": None}}]}}),
            'unknown source "nope"',
        ),
        (body({"join": {"fields": ["v"], "width": 0}}), '"join"'),
        (body({"fork": [[{"bad": 1}]]}), 'unknown pipeline operator "bad"'),
        ({"request": {"pipeline": [{"spawn": [[{"limit": 1}]]}]}}, "spawn pipeline"),
    ],
)
def test_invalid_requests_are_400_with_plain_text(b: Any, text: str) -> None:
    status, message = status_of(b)
    assert status == 400
    assert text in message


def test_time_series_errors_surface_from_run_pipeline_before_any_row() -> None:
    request = validate_request(
        body(source={"events": None, "timeSeries": {"period": "dayRange", "first": "now()"}})
    )
    provider = FakeProvider()
    with pytest.raises(AggregationError) as err:
        run_pipeline(request, provider, ENV)
    assert err.value.status == 400
    assert provider.calls == []


# ------------------------------------------------------------------------------- sources


def test_event_source_gets_buckets_and_start_time() -> None:
    provider = FakeProvider()
    request = validate_request(body(source={"events": {"appId": -323232}, "timeSeries": EVENTS_TS}))
    result = run_pipeline(request, provider, ENV)
    assert isinstance(result, AggregationResult)
    assert result.start_time == D1
    assert len(list(result.rows)) == 5
    ((source, params, buckets),) = provider.calls
    assert (source, params) == ("events", {"appId": -323232})
    assert [(b.start_ms, b.end_ms) for b in buckets] == [(D1, D2), (D2, utc_ms(2026, 3, 10, 4))]


def test_entity_source_ignores_time_series() -> None:
    provider = FakeProvider()
    request = validate_request(body(source={"visitors": None, "timeSeries": {"junk": 1}}))
    result = run_pipeline(request, provider, ENV)
    assert result.start_time is None
    assert ids(list(result.rows)) == ["v1", "v2", "v3", "_PENDO_T_anon"]
    assert provider.calls == [("visitors", None, None)]


def test_run_pipeline_accepts_the_whole_envelope() -> None:
    result = run_pipeline(body({"count": None}), FakeProvider(), ENV)
    assert list(result.rows) == [{"count": 5}]


# ----------------------------------------------------------------------------- operators


def test_filter_string_and_legacy_forms() -> None:
    assert ids(run({"filter": 'numEvents > 3 && visitorId != "v3"'})) == ["v1", "_PENDO_T_anon"]
    legacy = {"filter": {"field": "accountId", "operator": "==", "value": "a1"}}
    assert ids(run(legacy)) == ["v1", "v1"]
    assert ids(run({"filter": f"day == {D2}"}, {"filter": "numMinutes >= 3"})) == [
        "v3",
        "_PENDO_T_anon",
    ]


def test_select_paths_and_expressions() -> None:
    rows = visitors(
        {"filter": 'visitorId == "v1"'},
        {
            "select": {
                "id": "visitorId",
                "plan": "metadata.custom.plan",
                "firstAccount": "metadata.auto.accountids[0]",
                "missing": "metadata.nope",
                "date": "now()",
                "shout": "upper(visitorId) + `!`",
            }
        },
    )
    assert rows == [
        {
            "id": "v1",
            "plan": "pro",
            "firstAccount": "a1",
            "missing": None,
            "date": NOW,
            "shout": "V1!",
        }
    ]


def test_eval_adds_replaces_and_nests_without_mutating_input() -> None:
    before = copy.deepcopy(VISITORS)
    rows = visitors(
        {"filter": 'visitorId == "v1"'},
        {
            "eval": {
                "visitorId": "hash(visitorId)",
                "orig": "visitorId",  # sees the input row, not the hash above
                "metadata.custom.seats": "2 * 2",
            }
        },
    )
    assert rows == [
        {
            "visitorId": zlib.crc32(b"v1"),  # 1768082613
            "orig": "v1",
            "metadata": {"custom": {"plan": "pro", "seats": 4}, "auto": {"accountids": ["a1"]}},
        }
    ]
    assert before == VISITORS


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("visitorId", ["v1", "v1", "v2", "v3"]),
        ("!visitorId", ["_PENDO_T_anon"]),
        ("accountId", ["v1", "v1", "v3", "_PENDO_T_anon"]),
        ("!accountId", ["v2"]),
    ],
)
def test_identified(mode: str, expected: list[str]) -> None:
    assert ids(run({"identified": mode})) == expected


def test_group_with_distinct_count_sum_and_more() -> None:
    rows = run(
        {
            "group": {
                "group": ["accountId"],
                "fields": {
                    "visitors": {"count": "visitorId"},
                    "rows": {"count": None},
                    "events": {"sum": "numEvents"},
                    "avgMinutes": {"avg": "numMinutes"},
                    "firstDay": {"min": "day"},
                    "lastDay": {"max": "day"},
                    "firstEvents": {"first": "numEvents"},
                    "lastEvents": {"last": "numEvents"},
                    "days": {"list": "day"},
                },
            }
        },
        {"sort": ["accountId"]},
    )
    assert rows == [
        {
            "accountId": "",
            "visitors": 1,
            "rows": 1,
            "events": 1,
            "avgMinutes": 1.0,
            "firstDay": D1,
            "lastDay": D1,
            "firstEvents": 1,
            "lastEvents": 1,
            "days": [D1],
        },
        {
            "accountId": "a1",
            "visitors": 1,  # two rows of one visitor: count is distinct
            "rows": 2,
            "events": 8,
            "avgMinutes": 1.5,
            "firstDay": D1,
            "lastDay": D2,
            "firstEvents": 3,
            "lastEvents": 5,
            "days": [D1, D2],
        },
        {
            "accountId": "a2",
            "visitors": 1,
            "rows": 1,
            "events": 4,
            "avgMinutes": 3.0,
            "firstDay": D2,
            "lastDay": D2,
            "firstEvents": 4,
            "lastEvents": 4,
            "days": [D2],
        },
        {
            "accountId": "a3",
            "visitors": 1,
            "rows": 1,
            "events": 7,
            "avgMinutes": 4.0,
            "firstDay": D2,
            "lastDay": D2,
            "firstEvents": 7,
            "lastEvents": 7,
            "days": [D2],
        },
    ]


def test_group_by_nested_path_and_list_form_fields() -> None:
    rows = visitors(
        {
            "group": {
                "group": ["metadata.custom.plan"],
                "fields": [{"n": {"count": "visitorId"}}, {"ids": {"list": "visitorId"}}],
            }
        },
        {"sort": ["-n"]},
    )
    assert rows == [
        {"metadata.custom.plan": "pro", "n": 2, "ids": ["v1", "v3"]},
        {"metadata.custom.plan": "free", "n": 1, "ids": ["v2"]},
        {"metadata.custom.plan": None, "n": 1, "ids": ["_PENDO_T_anon"]},
    ]
    # The flat output key is readable by later steps under the same path.
    assert visitors(
        {"group": {"group": ["metadata.custom.plan"], "fields": {"n": {"count": None}}}},
        {"filter": 'metadata.custom.plan == "pro"'},
    ) == [{"metadata.custom.plan": "pro", "n": 2}]


def test_group_keys_with_unhashable_values() -> None:
    rows = visitors(
        {"group": {"group": ["metadata.auto.accountids"], "fields": {"n": {"count": None}}}}
    )
    assert [r["n"] for r in rows] == [1, 1, 1, 1]
    assert rows[2]["metadata.auto.accountids"] == ["a1", "a2"]


@pytest.mark.parametrize(
    "spec",
    [
        {"uniqueVisitors": {"count": "visitorId"}, "total": {"sum": "numEvents"}},
        [{"uniqueVisitors": {"count": "visitorId"}}, {"total": {"sum": "numEvents"}}],
    ],
)
def test_reduce_both_forms(spec: Any) -> None:
    assert run({"identified": "visitorId"}, {"reduce": spec}) == [
        {"uniqueVisitors": 3, "total": 13}
    ]


def test_reduce_of_nothing_is_one_row() -> None:
    rows = run(
        {"filter": "false"},
        {"reduce": {"n": {"count": "visitorId"}, "s": {"sum": "x"}, "a": {"avg": "x"}}},
    )
    assert rows == [{"n": 0, "s": 0, "a": None}]


def test_sort_keys_directions_and_nulls() -> None:
    rows = run({"sort": ["-numEvents"]})
    assert [r["numEvents"] for r in rows] == [7, 5, 4, 3, 1]
    rows = run({"sort": ["visitorId", "-day"]})
    assert [(r["visitorId"], r["day"]) for r in rows] == [
        ("_PENDO_T_anon", D2),
        ("v1", D2),
        ("v1", D1),
        ("v2", D1),
        ("v3", D2),
    ]
    plans = [
        r["plan"] for r in visitors({"select": {"plan": "metadata.custom.plan"}}, {"sort": "plan"})
    ]
    assert plans == [None, "free", "pro", "pro"]  # null first ascending
    mixed = FakeProvider({"visitors": [{"v": "b"}, {"v": 2}, {"v": None}, {"v": [1]}, {"v": 1}]})
    rows = run({"sort": ["-v"]}, source={"visitors": None}, provider=mixed)
    assert [r["v"] for r in rows] == [[1], "b", 2, 1, None]


def test_skip_and_limit_page_through_a_stable_sort() -> None:
    pages = [run({"sort": ["numEvents"]}, {"skip": s}, {"limit": 2}) for s in (0, 2, 4)]
    assert [[r["numEvents"] for r in page] for page in pages] == [[1, 3], [4, 5], [7]]
    assert run({"limit": 0}) == []


def test_count() -> None:
    assert run({"count": None}) == [{"count": 5}]
    assert run({"filter": "false"}, {"count": None}) == [{"count": 0}]


def test_unwind_lists_with_index_and_keep_empty() -> None:
    before = copy.deepcopy(VISITORS)
    step = {"unwind": {"field": "metadata.auto.accountids", "index": "i"}}
    rows = visitors(step, {"select": {"v": "visitorId", "a": "metadata.auto.accountids", "i": "i"}})
    assert rows == [
        {"v": "v1", "a": "a1", "i": 0},
        {"v": "v3", "a": "a1", "i": 0},
        {"v": "v3", "a": "a2", "i": 1},
        {"v": "_PENDO_T_anon", "a": "a3", "i": 0},
    ]
    step["unwind"]["keepEmpty"] = True
    kept = visitors(step, {"select": {"v": "visitorId", "a": "metadata.auto.accountids"}})
    assert {"v": "v2", "a": None} in kept and len(kept) == 5
    assert before == VISITORS


def test_merge_is_a_left_join_on_the_first_matching_row() -> None:
    sub = [{"source": {"visitors": None}}, {"identified": "visitorId"}]
    rows = run(
        {
            "merge": {
                "fields": ["visitorId"],
                "mappings": {"plan": "metadata.custom.plan"},
                "pipeline": sub,
            }
        },
        {"select": {"v": "visitorId", "plan": "plan"}},
        {"sort": ["v"]},
    )
    assert rows == [
        {"v": "_PENDO_T_anon", "plan": None},  # filtered out of the sub-pipeline
        {"v": "v1", "plan": "pro"},
        {"v": "v1", "plan": "pro"},
        {"v": "v2", "plan": "free"},
        {"v": "v3", "plan": "pro"},
    ]
    data = {"events": EVENTS, "accounts": [{"accountId": "a1", "name": "Acme", "numEvents": -1}]}
    merged = run(
        {"merge": {"fields": ["accountId"], "pipeline": [{"source": {"accounts": None}}]}},
        {"filter": 'accountId == "a1"'},
        provider=FakeProvider(data),
    )
    assert [(r["name"], r["numEvents"]) for r in merged] == [("Acme", 3), ("Acme", 5)]


def test_spawn_cat_and_join_like_pendos_nps_example() -> None:
    data = {
        "visitors": [{"visitorId": "v1", "accountId": "a"}, {"visitorId": "v2", "accountId": "b"}],
        "accounts": [{"visitorId": "v1", "score": 9}, {"visitorId": "v3", "score": 3}],
    }
    request = {
        "response": {"mimeType": "application/json"},
        "request": {
            "pipeline": [
                {
                    "spawn": [
                        [{"source": {"visitors": None}}, {"cat": None}],
                        [
                            {"source": {"accounts": None}},
                            {"select": {"visitorId": "visitorId", "nps": "score"}},
                        ],
                    ]
                },
                {"join": {"fields": ["visitorId"], "width": 2}},
                {"sort": ["visitorId"]},
            ]
        },
    }
    result = run_pipeline(validate_request(request), FakeProvider(data), ENV)
    assert result.start_time is None
    assert list(result.rows) == [
        {"visitorId": "v1", "accountId": "a", "nps": 9},
        {"visitorId": "v2", "accountId": "b"},
        {"visitorId": "v3", "nps": 3},
    ]


def test_spawn_start_time_is_the_earliest_branch() -> None:
    late = {"events": None, "timeSeries": {"period": "dayRange", "first": "now()", "count": 1}}
    request = {
        "request": {
            "pipeline": [
                {
                    "spawn": [
                        [{"source": late}],
                        [{"source": {"events": None, "timeSeries": EVENTS_TS}}],
                    ]
                },
                {"count": None},
            ]
        }
    }
    result = run_pipeline(validate_request(request), FakeProvider(), ENV)
    assert result.start_time == D1
    assert list(result.rows) == [{"count": 5}]


def test_fork_runs_each_branch_over_the_same_input() -> None:
    rows = run(
        {
            "fork": [
                [{"reduce": {"n": {"count": None}}}],
                [{"filter": "numEvents > 4"}, {"select": {"v": "visitorId"}}],
            ]
        }
    )
    assert rows == [{"n": 5}, {"v": "v1"}, {"v": "_PENDO_T_anon"}]


# -------------------------------------------------------------------- streaming & limits


class EndlessProvider:
    def rows(self, source: str, params: Any, buckets: Any) -> Iterable[dict[str, Any]]:
        for i in itertools.count():
            yield {"visitorId": f"v{i}", "numEvents": i, "tags": [i, i + 1]}


def test_streaming_operators_do_not_materialise() -> None:
    rows = run(
        {"identified": "visitorId"},
        {"filter": "numEvents % 2 == 0"},
        {"eval": {"double": "numEvents * 2"}},
        {"unwind": {"field": "tags"}},
        {"select": {"v": "visitorId", "t": "tags", "d": "double"}},
        {"skip": 1},
        {"limit": 3},
        source={"visitors": None},
        provider=EndlessProvider(),
    )
    assert rows == [
        {"v": "v0", "t": 1, "d": 0},
        {"v": "v2", "t": 2, "d": 4},
        {"v": "v2", "t": 3, "d": 4},
    ]


def test_too_many_rows_is_413_while_iterating() -> None:
    env = EvalEnv(now_ms=NOW, tz=NY, max_rows_out=3)
    assert len(run({"limit": 3}, env=env)) == 3
    with pytest.raises(AggregationError) as err:
        run({"limit": 4}, env=env)
    assert (err.value.status, err.value.body) == (413, "Aggregation result too large")


def test_timeout_is_408_while_iterating() -> None:
    ticks = itertools.count()
    env = EvalEnv(now_ms=NOW, tz=NY, max_seconds=300, clock=lambda: next(ticks) * 100.0)
    request = validate_request(body({"count": None}, source={"visitors": None}))
    result = run_pipeline(request, EndlessProvider(), env)  # blocking op over endless input
    with pytest.raises(AggregationError) as err:
        next(result.rows)
    assert (err.value.status, err.value.body) == (
        408,
        "Aggregation timed out (exceeded 300 seconds)",
    )


def test_provider_rows_are_never_mutated() -> None:
    before = copy.deepcopy((VISITORS, EVENTS))
    sub = [{"source": {"visitors": None}}]
    run(
        {"eval": {"numEvents": "numEvents + 1", "x.y": "1"}},
        {
            "merge": {
                "fields": ["visitorId"],
                "mappings": {"metadata.custom.plan": "metadata.custom.plan"},
                "pipeline": sub,
            }
        },
        {"unwind": {"field": "day", "index": "i"}},
        {"sort": ["-numEvents"]},
    )
    visitors(
        {"unwind": {"field": "metadata.auto.accountids"}},
        {"eval": {"metadata.auto.extra": "1"}},
        {"join": {"fields": ["metadata.custom.plan"]}},
    )
    assert before == (VISITORS, EVENTS)


def test_merge_null_keys_join_nothing() -> None:
    data = {
        "visitors": [{"visitorId": None, "n": 1}, {"visitorId": "v1", "n": 2}],
        "accounts": [{"visitorId": None, "plan": "x"}, {"visitorId": "v1", "plan": "pro"}],
    }
    rows = run(
        {
            "merge": {
                "fields": ["visitorId"],
                "mappings": {"plan": "plan"},
                "pipeline": [{"source": {"accounts": None}}],
            }
        },
        source={"visitors": None},
        provider=FakeProvider(data),
    )
    assert rows == [
        {"visitorId": None, "n": 1, "plan": None},
        {"visitorId": "v1", "n": 2, "plan": "pro"},
    ]
