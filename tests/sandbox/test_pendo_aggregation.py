"""Pendo sandbox: aggregations against an independent computation over the company.

The expectation of each test is computed from ``Company.activity(day)`` arrays directly,
never from the server's own provider.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from analytics_assets.sandbox.company import HOUR_MS, Company
from analytics_assets.sandbox.config import PendoLimits

NY = ZoneInfo("America/New_York")
DAY = date(2026, 11, 17)  # the day before the sandbox's "now", a Tuesday
ALL_APPS = 'expandAppIds("*")'


def midnight(day: date, tz: ZoneInfo = NY) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def events_source(name: str = "events", params: dict | None = None, **ts) -> dict:
    return {"source": {name: params, "timeSeries": ts}}


def test_events_day_totals_equal_the_activity(aggregate, us_company):
    act = us_company.activity(DAY)
    start = midnight(DAY)
    body = aggregate(events_source(period="dayRange", first="date(2026, 11, 17)", count=1))
    rows = body["results"]
    assert body["startTime"] == start
    assert {r["day"] for r in rows} == {start}
    web = act.app == 0
    expected = int(act.num_events[web].sum()) + int(act.anon_events.sum())
    assert sum(r["numEvents"] for r in rows) == expected
    identified = [r for r in rows if not r["visitorId"].startswith("_PENDO_T_")]
    assert len(identified) == np.unique(act.visitor[web]).size  # one row per visitor-day
    assert {r["appId"] for r in rows} == {-323232}
    # Each row's account is the visitor's account.
    for r in identified[:50]:
        index = us_company.visitor_index(r["visitorId"])
        assert r["accountId"] == us_company.account_id(int(us_company.visitor_account[index]))
    assert set(rows[0]) >= {
        "visitorId",
        "accountId",
        "appId",
        "day",
        "numEvents",
        "numMinutes",
        "remoteIp",
        "server",
        "userAgent",
        "parameters",
    }

    every_app = aggregate(
        events_source(params={"appId": ALL_APPS}, period="dayRange", first=start, count=1)
    )["results"]
    assert sum(r["numEvents"] for r in every_app) == int(act.num_events.sum()) + int(
        act.anon_events.sum()
    )
    ios = us_company.apps[1].id
    only_ios = aggregate(
        events_source(params={"appId": [ios]}, period="dayRange", first=start, count=1)
    )["results"]
    assert sum(r["numEvents"] for r in only_ios) == int(act.num_events[act.app == 1].sum())


def test_hour_range_rows_per_hour(aggregate, us_company):
    act = us_company.activity(DAY)
    start = midnight(DAY)
    body = aggregate(
        events_source(period="hourRange", first=start, last=start + 24 * HOUR_MS),
        {
            "group": {
                "group": ["hour"],
                "fields": {"rows": {"count": None}, "n": {"sum": "numEvents"}},
            }
        },
    )
    got = {r["hour"]: (r["rows"], r["n"]) for r in body["results"]}
    web = act.app == 0
    expected = {}
    for hour in np.unique(np.concatenate([act.hour_ms[web], act.anon_hour_ms])).tolist():
        in_hour, anon = web & (act.hour_ms == hour), act.anon_hour_ms == hour
        expected[hour] = (
            int(in_hour.sum() + anon.sum()),
            int(act.num_events[in_hour].sum() + act.anon_events[anon].sum()),
        )
    assert got == expected


def test_feature_events_grouped_by_feature(aggregate, us_company):
    act = us_company.activity(DAY)
    body = aggregate(
        events_source("featureEvents", period="dayRange", first=midnight(DAY), count=1),
        {
            "group": {
                "group": ["featureId"],
                "fields": {"n": {"sum": "numEvents"}, "visitors": {"count": "visitorId"}},
            }
        },
    )
    got = {r["featureId"]: r for r in body["results"]}
    web = act.app[act.feature_parent] == 0
    expected = np.bincount(
        act.feature[web], weights=act.feature_events[web], minlength=len(us_company.features)
    )
    for index, total in enumerate(expected.tolist()):
        feature = us_company.features[index]
        if total:
            assert got[feature.id]["n"] == total
            users = np.unique(act.visitor[act.feature_parent[web & (act.feature == index)]])
            assert got[feature.id]["visitors"] == users.size
        else:
            assert feature.id not in got
    one = us_company.features[0].id
    only = aggregate(
        events_source(
            "featureEvents", {"featureId": one}, period="dayRange", first=midnight(DAY), count=1
        )
    )["results"]
    assert {r["featureId"] for r in only} == {one}
    assert sum(r["numEvents"] for r in only) == got[one]["n"]


def test_page_events_carry_first_and_last_time(aggregate, us_company):
    start = midnight(DAY)
    rows = aggregate(events_source("pageEvents", period="hourRange", first=start, count=24))[
        "results"
    ]
    assert rows
    for r in rows:
        assert r["hour"] <= r["firstTime"] <= r["lastTime"] < r["hour"] + HOUR_MS
    act = us_company.activity(DAY)
    web = act.app[act.page_parent] == 0
    assert sum(r["numEvents"] for r in rows) == int(act.page_events[web].sum())


def test_identified_filter(aggregate, us_company):
    act = us_company.activity(DAY)
    ts = {"period": "dayRange", "first": midnight(DAY), "count": 1}
    known = aggregate({"source": {"events": None, "timeSeries": ts}}, {"identified": "visitorId"})[
        "results"
    ]
    assert len(known) == np.unique(act.visitor[act.app == 0]).size
    anonymous = aggregate(
        {"source": {"events": None, "timeSeries": ts}}, {"identified": "!visitorId"}
    )["results"]
    assert len(anonymous) == np.unique(act.anon_id).size
    assert all(r["visitorId"].startswith("_PENDO_T_") and r["accountId"] == "" for r in anonymous)


def test_guide_events_types(aggregate, us_company):
    act = us_company.activity(DAY)
    rows = aggregate(events_source("guideEvents", period="dayRange", first=midnight(DAY), count=1))[
        "results"
    ]
    web_guides = [i for i, g in enumerate(us_company.guides) if g.app_id == -323232]
    mine = np.isin(act.guide, web_guides)
    for code, name in enumerate(("guideSeen", "guideAdvanced", "guideDismissed")):
        assert sum(r["type"] == name for r in rows) == int((mine & (act.guide_type == code)).sum())
    times = [r["browserTime"] for r in rows]
    assert times == sorted(times) and midnight(DAY) <= times[0]
    assert times[-1] < midnight(date(2026, 11, 18))
    guide_ids = {g.id for g in us_company.guides}
    assert all(r["guideId"] in guide_ids and r["accountIds"] == [r["accountId"]] for r in rows)
    polls = aggregate(events_source("pollEvents", period="dayRange", first=midnight(DAY), count=1))[
        "results"
    ]
    nps = next(g for g in us_company.guides if g.poll_id)
    assert all(p["pollId"] == nps.poll_id and 0 <= p["pollResponse"] <= 10 for p in polls)
    assert len(polls) == sum(r["type"] == "pollResponse" for r in rows)


def test_day_buckets_across_the_dst_change(aggregate, us_company):
    first = midnight(date(2026, 10, 31))
    body = aggregate(
        events_source(period="dayRange", first=first, count=3),
        {"group": {"group": ["day"], "fields": {"n": {"sum": "numEvents"}}}},
        {"sort": ["day"]},
    )
    days = [r["day"] for r in body["results"]]
    nov1, nov2 = midnight(date(2026, 11, 1)), midnight(date(2026, 11, 2))
    assert days == [first, nov1, nov2]
    assert nov2 - nov1 == 25 * HOUR_MS  # New York falls back on Nov 1
    assert datetime.fromtimestamp(nov2 / 1000, UTC).hour == 5
    for row, day in zip(
        body["results"], (date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)), strict=True
    ):
        act = us_company.activity(day)
        assert row["n"] == int(act.num_events[act.app == 0].sum() + act.anon_events.sum())
    hours = aggregate(
        events_source(period="hourRange", first=nov1, last=nov2),
        {"reduce": {"n": {"sum": "numEvents"}, "h": {"count": "hour"}}},
    )
    assert hours["results"][0]["n"] == body["results"][1]["n"]
    assert hours["results"][0]["h"] <= 25


def test_subscription_time_zone_moves_day_buckets(sandbox_factory, pendo_client_for, aggregate):
    server = sandbox_factory("berlin", pendo_timezone="Europe/Berlin")
    client = pendo_client_for(server)
    body = aggregate(events_source(period="dayRange", first="now()", count=-1), client=client)
    berlin = ZoneInfo("Europe/Berlin")
    start = midnight(DAY, berlin)
    assert body["startTime"] == start
    assert datetime.fromtimestamp(start / 1000, UTC) == datetime(2026, 11, 16, 23, tzinfo=UTC)
    assert {r["day"] for r in body["results"]} == {start}
    act = Company(server.config.seed, server.config.scale, "us", "Europe/Berlin").activity(DAY)
    assert sum(r["numEvents"] for r in body["results"]) == int(
        act.num_events[act.app == 0].sum() + act.anon_events.sum()
    )


@pytest.mark.parametrize(
    "pipeline, status, fragment",
    [
        (
            [
                {
                    "source": {
                        "events": None,
                        "timeSeries": {"period": "dayRange", "first": "now()", "count": -1},
                    }
                },
                {"frobnicate": 1},
            ],
            400,
            "frobnicate",
        ),
        (
            [{"source": {"accounts": None}}, {"filter": "metadata.agent.plan =="}],
            400,
            "Cannot parse filter expression",
        ),
        ([{"filter": "true"}], 400, "source"),
        ([{"source": {"nope": None}}], 400, "nope"),
        ([{"source": {"events": None}}], 400, "timeSeries"),
    ],
)
def test_bad_pipelines_are_400_text(pendo, pipeline, status, fragment):
    response = pendo.post("/api/v1/aggregation", json={"request": {"pipeline": pipeline}})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert fragment in response.text


def test_bad_json_and_envelope(pendo):
    bad = pendo.post(
        "/api/v1/aggregation", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/plain")
    assert pendo.post("/api/v1/aggregation", json={"pipeline": []}).status_code == 400
    assert pendo.post("/api/v1/aggregation", json=[1, 2]).status_code == 400
    bad_app = pendo.post(
        "/api/v1/aggregation",
        json={
            "request": {
                "pipeline": [
                    events_source(
                        params={"appId": {"x": 1}}, period="dayRange", first="now()", count=-1
                    )
                ]
            }
        },
    )
    assert bad_app.status_code == 400


def test_event_lag_hides_recent_hours(sandbox, sandbox_factory, pendo_client_for, aggregate):
    now = sandbox.config.now_ms()
    today = midnight(date(2026, 11, 18))
    source = events_source(period="hourRange", first=today, last=now + HOUR_MS)
    hours = {"group": {"group": ["hour"], "fields": {"n": {"sum": "numEvents"}}}}
    fresh = {r["hour"]: r["n"] for r in aggregate(source, hours)["results"]}
    assert max(fresh) == now  # the current, incomplete hour is shown without lag
    lagged_server = sandbox_factory("lag", pendo_limits=PendoLimits(event_lag_hours=3))
    lagged = {
        r["hour"]: r["n"]
        for r in aggregate(source, hours, client=pendo_client_for(lagged_server))["results"]
    }
    assert max(lagged) == now - 3 * HOUR_MS
    assert lagged == {h: n for h, n in fresh.items() if h <= now - 3 * HOUR_MS}


def test_row_cap_is_an_error_status(sandbox_factory, pendo_client_for, aggregate):
    server = sandbox_factory("rowcap", pendo_limits=PendoLimits(aggregation_max_rows=50))
    client = pendo_client_for(server)
    too_big = client.post(
        "/api/v1/aggregation",
        json={"request": {"pipeline": [events_source(period="dayRange", first="now()", count=-1)]}},
    )
    assert too_big.status_code == 413
    assert too_big.text == "Aggregation result too large"
    small = aggregate(
        events_source(period="dayRange", first="now()", count=-1), {"count": None}, client=client
    )
    assert small["results"][0]["count"] > 50


def test_a_large_answer_streams_and_parses(sandbox_factory, pendo_client_for):
    server = sandbox_factory("scale100", scale=100)
    client = pendo_client_for(server)
    body = {
        "request": {
            "pipeline": [
                events_source(
                    "featureEvents",
                    {"appId": ALL_APPS},
                    period="dayRange",
                    first=midnight(DAY),
                    count=1,
                )
            ]
        }
    }
    with client.stream("POST", "/api/v1/aggregation", json=body) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers  # streamed, not built whole
        data = orjson.loads(response.read())
    act = Company(server.config.seed, 100, "us", "America/New_York").activity(DAY)
    expected = np.unique(
        (act.visitor[act.feature_parent].astype(np.int64) * 4 + act.app[act.feature_parent]) * 4096
        + act.feature
    ).size
    assert len(data["results"]) == expected > 100_000
    assert sum(r["numEvents"] for r in data["results"]) == int(act.feature_events.sum())
