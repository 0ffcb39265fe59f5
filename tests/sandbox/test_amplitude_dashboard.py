"""Amplitude sandbox: Dashboard REST endpoints over real HTTP, checked against the export.

The project time zone here is Asia/Kolkata (UTC+5:30), so a project day is not a
UTC day and not a Pendo (New York) day: the independent counts read the export's
UTC ``event_time`` and convert it themselves.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from amplitude_helpers import amplitude_sandbox, client, error_details, export_records

from analytics_assets.sandbox import SandboxServer
from analytics_assets.sandbox.amplitude.budget import (
    conditions_count,
    funnel_type_cost,
    query_cost,
    segmentation_type_cost,
)

TZ = ZoneInfo("Asia/Kolkata")
DAY = date(2026, 6, 16)  # a Tuesday
METADATA = {"timeComputed", "wasCached", "novaCost"}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with amplitude_sandbox(seed=21, config={"amplitude_timezone": "Asia/Kolkata"}) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


def _local_day(ts: str) -> date:
    moment = datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return moment.astimezone(TZ).date()


@pytest.fixture(scope="module")
def day_records(http: httpx.Client) -> list[dict]:
    """Export records whose event time falls on DAY in the project time zone.

    The day spans 18:30 UTC the day before to 18:30 UTC; uploads run up to an hour late.
    """
    records = export_records(http, "20260615T18", "20260616T20")
    return [r for r in records if _local_day(r["event_time"]) == DAY]


def _get(http: httpx.Client, path: str, **params) -> dict:
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= METADATA
    return body


def _seg(http: httpx.Client, event: dict, start: date = DAY, end: date = DAY, **params) -> dict:
    return _get(
        http,
        "/api/2/events/segmentation",
        e=json.dumps(event),
        start=f"{start:%Y%m%d}",
        end=f"{end:%Y%m%d}",
        **params,
    )


def test_segmentation_totals_equal_an_independent_count_of_the_export(
    http: httpx.Client, day_records: list[dict]
) -> None:
    counts = Counter(r["event_type"] for r in day_records)
    assert len(day_records) > 1000
    for event_type in (
        "Page Viewed",
        "Session Start",
        "Report Exported",
        "Search Performed",
        counts.most_common(12)[-1][0],
    ):
        body = _seg(http, {"event_type": event_type}, m="totals")
        assert body["data"]["series"] == [[counts[event_type]]], event_type
        assert body["data"]["xValues"] == [DAY.isoformat()]
    everything = _seg(http, {"event_type": "_all"}, m="totals")
    assert everything["data"]["series"] == [[len(day_records)]]
    users = {r["user_id"] for r in day_records if r["event_type"] == "Page Viewed"}
    uniques = _seg(http, {"event_type": "Page Viewed"}, m="uniques")
    assert uniques["data"]["series"] == [[len(users)]]
    assert uniques["data"]["seriesLabels"] == [0]
    assert uniques["data"]["seriesCollapsed"] == [[{"setId": "", "value": len(users)}]]


def test_active_users_equal_distinct_users_of_the_export(
    http: httpx.Client, day_records: list[dict]
) -> None:
    body = _get(http, "/api/2/users", start=f"{DAY:%Y%m%d}", end=f"{DAY:%Y%m%d}", m="active")
    data = body["data"]
    assert set(data) >= {"xValues", "series", "seriesLabels", "seriesMeta", "seriesCollapsed"}
    assert data["series"] == [[len({r["user_id"] for r in day_records})]]


def test_new_users_are_first_events_ever(http: httpx.Client) -> None:
    start, end = date(2026, 5, 20), date(2026, 6, 16)
    body = _get(http, "/api/2/users", start=f"{start:%Y%m%d}", end=f"{end:%Y%m%d}", m="new")
    series = body["data"]["series"][0]
    best = max(range(len(series)), key=lambda i: series[i])
    assert series[best] > 0
    day = start + timedelta(days=best)
    records = export_records(http, f"{day - timedelta(days=1):%Y%m%d}T18", f"{day:%Y%m%d}T20")
    on_day = [r for r in records if _local_day(r["event_time"]) == day]
    created = {r["user_id"] for r in on_day if _local_day(r["user_creation_time"]) == day}
    assert series[best] == len(created)
    assert all(
        r["event_type"] == "Sign Up"
        for r in on_day
        if r["user_id"] in created and r["event_time"] == r["user_creation_time"]
    )


def test_group_by_splits_the_totals_by_property(
    http: httpx.Client, day_records: list[dict]
) -> None:
    body = _seg(
        http, {"event_type": "_all", "group_by": [{"type": "user", "value": "country"}]}, m="totals"
    )
    data = body["data"]
    by_country = Counter(r["country"] for r in day_records)
    got = {
        label[1]: series[0]
        for label, series in zip(data["seriesLabels"], data["series"], strict=True)
    }
    assert got == dict(by_country)
    assert [label[0] for label in data["seriesLabels"]] == [0] * len(got)
    plans = _get(http, "/api/2/users", start=f"{DAY:%Y%m%d}", end=f"{DAY:%Y%m%d}", g="gp:plan")
    users_by_plan = Counter()
    for _user, plan in {(r["user_id"], r["user_properties"]["plan"]) for r in day_records}:
        users_by_plan[plan] += 1
    got_plans = dict(
        zip(plans["data"]["seriesLabels"], (s[0] for s in plans["data"]["series"]), strict=True)
    )
    assert got_plans == dict(users_by_plan)
    assert plans["data"]["seriesMeta"] == plans["data"]["seriesLabels"]


def test_filters_and_segments_narrow_the_count(http: httpx.Client, day_records: list[dict]) -> None:
    event = {
        "event_type": "Page Viewed",
        "filters": [
            {
                "subprop_type": "event",
                "subprop_key": "page",
                "subprop_op": "is",
                "subprop_value": ["Reports"],
            }
        ],
    }
    segment = [{"prop": "gp:plan", "op": "is", "values": ["pro", "enterprise"]}]
    body = _seg(http, event, m="totals", s=json.dumps(segment))
    expected = sum(
        1
        for r in day_records
        if r["event_type"] == "Page Viewed"
        and r["event_properties"].get("page") == "Reports"
        and r["user_properties"]["plan"] in ("pro", "enterprise")
    )
    assert body["data"]["series"] == [[expected]]
    assert body["novaCost"] == query_cost(1, conditions_count([segment], 0), 1) == 2


def test_weekly_intervals_and_metrics(http: httpx.Client) -> None:
    start, end = date(2026, 6, 1), date(2026, 6, 14)
    daily = _seg(http, {"event_type": "Session Start"}, start, end, m="totals")
    weekly = _seg(http, {"event_type": "Session Start"}, start, end, m="totals", i="7")
    assert weekly["data"]["xValues"] == ["2026-05-31", "2026-06-07", "2026-06-14"]
    assert sum(weekly["data"]["series"][0]) == sum(daily["data"]["series"][0])
    avg = _seg(http, {"event_type": "Session Start"}, start, start, m="average")
    uniq = _seg(http, {"event_type": "Session Start"}, start, start, m="uniques")
    total = daily["data"]["series"][0][0]
    assert avg["data"]["series"][0][0] == pytest.approx(
        total / uniq["data"]["series"][0][0], rel=1e-5
    )
    pct = _seg(http, {"event_type": "Session Start"}, start, start, m="pct_dau")
    assert 0 < pct["data"]["series"][0][0] <= 100


def test_events_list_has_the_live_fields(http: httpx.Client) -> None:
    body = _get(http, "/api/2/events/list")
    names = {e["name"]: e for e in body["data"]}
    assert {"Page Viewed", "Session Start", "Report Exported"} <= set(names)
    entry = names["Page Viewed"]
    assert set(entry) == {
        "autohidden",
        "id",
        "value",
        "display",
        "hidden",
        "deleted",
        "flow_hidden",
        "timeline_hidden",
        "non_active",
        "in_waitroom",
        "waitroom_approved",
        "name",
        "totals",
        "totals_delta",
    }
    assert entry["totals"] > 0 and entry["value"] == entry["display"] == "Page Viewed"


def test_funnel_has_the_live_shape_and_counts(http: httpx.Client) -> None:
    steps = [
        {"event_type": "Session Start"},
        {"event_type": "Page Viewed"},
        {"event_type": "Report Exported"},
    ]
    params = [("e", json.dumps(s)) for s in steps] + [
        ("start", "20260608"),
        ("end", "20260612"),
        ("cs", "86400"),
    ]
    response = http.get("/api/2/funnels", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["numSeries"] == 1
    (funnel,) = body["data"]
    assert set(funnel) >= {
        "meta",
        "events",
        "cumulative",
        "cumulativeRaw",
        "stepByStep",
        "medianTransTimes",
        "avgTransTimes",
        "dayFunnels",
        "dayMedianTransTimes",
        "dayAvgTransTimes",
    }
    raw = funnel["cumulativeRaw"]
    assert raw[0] >= raw[1] >= raw[2] > 0
    assert funnel["cumulative"][0] == 1.0
    assert funnel["dayFunnels"]["formattedXValues"][0] == "Jun 8"
    assert [sum(col) for col in zip(*funnel["dayFunnels"]["series"], strict=True)] == raw
    assert body["novaCost"] == 5 * 1 * funnel_type_cost(steps)


def test_retention_revenue_and_realtime_shapes(http: httpx.Client) -> None:
    body = _get(
        http,
        "/api/2/retention",
        se=json.dumps({"event_type": "_active"}),
        re=json.dumps({"event_type": "_active"}),
        start="20260608",
        end="20260612",
    )
    (series,) = body["data"]["series"]
    assert series["dates"][0] == "Jun 12, 2026" and series["dates"][-1] == "Jun 8, 2026"
    first = series["values"]["Jun 8, 2026"]
    assert first[0]["count"] == first[0]["outof"] > 0
    assert all(cell["count"] <= cell["outof"] for cell in first)
    assert body["novaCost"] == 5 * 1 * 8
    ltv = _get(http, "/api/2/revenue/ltv", start="20260601", end="20260603", m="2")
    row = ltv["data"]["series"][0]["values"]["Jun 1"]
    assert {"count", "paid", "total_amount", "r1d", "r180d", "r7new", "r180new"} <= set(row)
    realtime = _get(http, "/api/2/realtime")
    assert realtime["data"]["seriesLabels"] == ["Today", "Yesterday"]
    assert realtime["data"]["xValues"][:2] == ["00:00", "00:05"]


def test_saved_charts_query_and_csv(http: httpx.Client) -> None:
    chart = _get(http, "/api/3/chart/dau30dq/query")
    assert len(chart["data"]["xValues"]) == 30
    csv = http.get("/api/3/chart/wkrpt8x/csv")
    assert csv.status_code == 200
    text = csv.json()["data"]
    lines = text.split("\r\n")
    assert lines[0] == '"\tWeekly Report Exports"'
    assert lines[2] == "" and lines[3] == '"\tEvent Totals"' and lines[4] == '"\tReport Exported"'
    assert lines[6].startswith('"\tSegment","\t20')
    assert lines[7].startswith('"\tAll Users","')
    assert text.endswith("\r\n")
    missing = http.get("/api/3/chart/nochart/query")
    assert missing.status_code == 404


def test_bad_queries_are_400_without_cost(http: httpx.Client) -> None:
    bad = http.get("/api/2/events/segmentation", params={"start": "20260601", "end": "20260602"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "Invalid chart definition"
    worse = http.get(
        "/api/2/users", params={"start": "20260601", "end": "20260602", "g": "shoe size"}
    )
    assert worse.status_code == 400
    assert error_details(worse) == "Invalid user property shoe size"


def test_cost_model_matches_the_docs_example() -> None:
    segment = [{"prop": "country", "op": "is", "values": ["US"]}]
    assert conditions_count([segment], 2) == 10  # 1 segment + 1 condition + 2 group-bys
    steps = [{"event_type": "a"}, {"event_type": "b"}, {"event_type": "c"}]
    assert query_cost(30, 10, funnel_type_cost(steps)) == 1800
    grouped = [{"event_type": "a", "group_by": [{"type": "user", "value": "country"}]}]
    assert segmentation_type_cost(grouped) == 5


def test_cost_budget_refuses_with_the_429_body() -> None:
    with (
        amplitude_sandbox(seed=21, dashboard_cost_per_hour=10, window_scale=0.0005) as small,
        client(small) as http,
    ):
        params = {
            "e": json.dumps({"event_type": "Page Viewed"}),
            "start": "20260610",
            "end": "20260616",
        }
        assert http.get("/api/2/events/segmentation", params=params).status_code == 200
        refused = http.get("/api/2/events/segmentation", params=params)
        assert refused.status_code == 429
        assert refused.json() == {
            "error": {
                "http_code": 429,
                "type": "unspecified",
                "message": "Unspecified Error",
                "metadata": {
                    "details": "Too Many Requests: Exceeded rate limit with query of cost 7"
                },
            }
        }
        assert "retry-after" not in refused.headers
        small.config.amplitude_limits.retry_after_header = True
        again = http.get("/api/2/events/segmentation", params=params)
        assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1
        # The window (an hour × 0.0005 = 1.8 s) slides: the budget comes back.
        import time

        time.sleep(2.0)
        assert http.get("/api/2/events/segmentation", params=params).status_code == 200


def test_concurrency_pool_refuses_the_sixth_query(server: SandboxServer) -> None:
    control = server.urls.control()
    httpx.post(f"{control}/amplitude/slow", json={"seconds": 1.0, "region": "us"})
    try:
        results: list[httpx.Response] = []
        lock = threading.Lock()

        def query() -> None:
            with client(server) as c:
                r = c.get("/api/2/users", params={"start": "20260610", "end": "20260610"})
            with lock:
                results.append(r)

        threads = [threading.Thread(target=query) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        httpx.post(f"{control}/amplitude/slow", json={"seconds": 0, "region": "us"})
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [429]
    refused = next(r for r in results if r.status_code == 429)
    assert error_details(refused) == (
        "Too Many Requests: Exceeded concurrent limit with query of cost 1"
    )
