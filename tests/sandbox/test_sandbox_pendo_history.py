"""Pendo sandbox: visitor history, anonymous visitors, and the key checked before the method.

Expectations come from the generated company (``us_company``, built apart from the
server) and from the aggregation sources the history must agree with.
"""

from __future__ import annotations

import base64
from datetime import date, timedelta

import httpx
import numpy as np
import pytest
from sandbox_clock import NOW

from analytics_assets.sandbox import SandboxServer
from analytics_assets.sandbox.company import Company

DAY = date(2026, 11, 17)  # yesterday in New York at NOW: a whole, visible weekday
NOW_MS = int(NOW.timestamp() * 1000)


def _visitor_with_pages(company: Company) -> int:
    act = company.activity(DAY)
    return int(act.visitor[act.page_parent[0]])


def _history(pendo: httpx.Client, visitor_id: str, start_ms: int) -> list[dict]:
    response = pendo.get(f"/api/v1/visitor/{visitor_id}/history", params={"starttime": start_ms})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_history_items_are_the_days_rows(pendo: httpx.Client, us_company: Company) -> None:
    v = _visitor_with_pages(us_company)
    vid = us_company.visitor_id(v)
    start, end = us_company.day_bounds(DAY)
    items = _history(pendo, vid, start)
    act = us_company.activity(DAY)
    rows = act.visitor == v
    expected = {
        "page": int(rows[act.page_parent].sum()),
        "feature": int(rows[act.feature_parent].sum()),
        "trackType": int(rows[act.track_parent].sum()),
        "guide": int((act.guide_visitor == v).sum()),
    }
    got = {kind: sum(1 for i in items if i["type"] == kind) for kind in expected}
    assert got == expected
    assert sum(expected.values()) == len(items)
    assert [i["ts"] for i in items] == sorted(i["ts"] for i in items)
    assert all(start <= i["ts"] < end and i["lastTs"] >= i["ts"] for i in items)
    assert all(i["duration"] == i["lastTs"] - i["ts"] for i in items)
    for item in items:
        assert set(item["parsedUserAgent"]) == {"name", "version", "os"}
        assert item["uri"].startswith("https://")
        key = {"page": "pageId", "feature": "featureId", "trackType": "trackTypeId"}.get(
            item["type"], "guideId"
        )
        assert key in item
        if item["type"] == "guide":
            assert "guideStepId" in item


def test_history_pages_agree_with_page_events(
    pendo: httpx.Client, aggregate, us_company: Company
) -> None:
    """A history page item is the visitor's pageEvents hour row: same page and times."""
    v = _visitor_with_pages(us_company)
    vid = us_company.visitor_id(v)
    start, _ = us_company.day_bounds(DAY)
    items = _history(pendo, vid, start)
    rows = aggregate(
        {
            "source": {
                "pageEvents": {"appId": 'expandAppIds("*")'},
                "timeSeries": {"period": "hourRange", "first": start, "count": 24},
            }
        },
        {"filter": f'visitorId == "{vid}"'},
    )["results"]
    from_agg = sorted((r["pageId"], r["firstTime"], r["lastTime"]) for r in rows)
    from_history = sorted((i["pageId"], i["ts"], i["lastTs"]) for i in items if i["type"] == "page")
    assert from_history == from_agg and from_agg


def test_history_window_answers(pendo: httpx.Client, us_company: Company) -> None:
    v = _visitor_with_pages(us_company)
    vid = us_company.visitor_id(v)
    start, _ = us_company.day_bounds(DAY)
    # A window starting mid-day holds only what happened from then on.
    noon = start + 12 * 3_600_000
    later = _history(pendo, vid, noon)
    assert all(noon <= i["ts"] < noon + 86_400_000 for i in later)
    # Older than the ~180 days the service keeps, and in the future: nothing.
    old = us_company.day_bounds(DAY - timedelta(days=200))[0]
    assert _history(pendo, vid, old) == []
    assert _history(pendo, vid, NOW_MS + 86_400_000) == []
    # The base64 form of the path id works here as on the lookup.
    encoded = base64.urlsafe_b64encode(vid.encode()).decode().rstrip("=")
    same = pendo.get(
        f"/api/v1/visitor/{encoded}/history",
        params={"starttime": start},
        headers={"x-pendo-base64-encoded-params": "true"},
    )
    assert same.status_code == 200 and same.json() == _history(pendo, vid, start)


def test_history_errors_and_auth(sandbox: SandboxServer, pendo: httpx.Client) -> None:
    unknown = pendo.get("/api/v1/visitor/no-such-visitor/history", params={"starttime": 0})
    assert unknown.status_code == 404
    bad = pendo.get("/api/v1/visitor/visitor-0000001/history", params={"starttime": "yesterday"})
    assert bad.status_code == 400 and "starttime" in bad.text
    anonymous = httpx.get(
        f"{sandbox.urls.pendo()}/api/v1/visitor/visitor-0000001/history", params={"starttime": 0}
    )
    assert anonymous.status_code == 403 and anonymous.content == b""
    # The lookup itself still answers under the same prefix.
    assert pendo.get("/api/v1/visitor/visitor-0000001").json()["id"] == "visitor-0000001"


# ----- anonymous visitors ------------------------------------------------------------------


def _anonymous_expected(company: Company) -> dict[str, tuple[int, int]]:
    """Anonymous id -> (first, last) visible hour over the 14 local days up to NOW."""
    today = company.local_day(NOW_MS)
    seen: dict[int, list[int]] = {}
    for back in range(14):
        act = company.activity(today - timedelta(days=back))
        ok = act.anon_hour_ms <= NOW_MS
        for n, h in zip(act.anon_id[ok].tolist(), act.anon_hour_ms[ok].tolist(), strict=True):
            seen.setdefault(n, []).append(h)
    return {company.anonymous_id(n): (min(h), max(h)) for n, h in seen.items()}


def test_visitors_source_returns_anonymous_visitors_on_request(
    aggregate, us_company: Company
) -> None:
    expected = _anonymous_expected(us_company)
    assert expected
    everyone = aggregate({"source": {"visitors": {"identified": False}}})["results"]
    identified = aggregate({"source": {"visitors": {"identified": True}}})["results"]
    default = aggregate({"source": {"visitors": None}})["results"]
    anonymous = {r["visitorId"]: r for r in everyone if r["visitorId"].startswith("_PENDO_T_")}
    assert set(anonymous) == set(expected)
    assert len(everyone) == len(identified) + len(expected)
    assert not any(r["visitorId"].startswith("_PENDO_T_") for r in identified)
    assert len(default) == len(identified)
    for vid, row in anonymous.items():
        auto = row["metadata"]["auto"]
        assert (auto["firstvisit"], auto["lastvisit"]) == expected[vid]
        assert auto["accountids"] == [] and auto["accountid"] == ""
        assert row["metadata"]["agent"] == {}
    # The identified operator sees them as anonymous ("!visitorId").
    only = aggregate({"source": {"visitors": {"identified": False}}}, {"identified": "!visitorId"})[
        "results"
    ]
    assert {r["visitorId"] for r in only} == set(expected)


def test_anonymous_visitor_lookup_and_history(pendo: httpx.Client, us_company: Company) -> None:
    act = us_company.activity(DAY)
    number = int(act.anon_id[0])
    vid = us_company.anonymous_id(number)
    found = pendo.get(f"/api/v1/visitor/{vid}")
    assert found.status_code == 200
    body = found.json()
    assert body["id"] == vid and body["accountIds"] == []
    assert pendo.get("/api/v1/visitor/_PENDO_T_notavisitor").status_code == 404
    start, _ = us_company.day_bounds(DAY)
    items = _history(pendo, vid, start)
    hours = int((act.anon_id == number).sum())
    assert len(items) == hours and all(i["type"] == "untagged" for i in items)
    assert all(i["untaggedUrl"] == i["uri"] for i in items)


def test_anonymous_visitors_are_in_the_events_source_too(aggregate, us_company: Company) -> None:
    """The ids the visitors source adds are the ones the events rows carry."""
    start, _ = us_company.day_bounds(DAY)
    rows = aggregate(
        {
            "source": {
                "events": None,
                "timeSeries": {"period": "dayRange", "first": start, "count": 1},
            }
        },
        {"identified": "!visitorId"},
    )["results"]
    expected = _anonymous_expected(us_company)
    assert rows and {r["visitorId"] for r in rows} <= set(expected)
    assert len(rows) == np.unique(us_company.activity(DAY).anon_id).size


# ----- the key before the method -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/aggregation"),
        ("PUT", "/api/v1/feature"),
        ("DELETE", "/api/v1/visitor/visitor-0000001"),
        ("GET", "/api/v1/metadata/visitor/custom/value"),
        ("POST", "/api/v1/token/verify"),
    ],
)
def test_a_bad_key_is_403_whatever_the_method(
    sandbox: SandboxServer, method: str, path: str
) -> None:
    for headers in ({}, {"x-pendo-integration-key": "not-a-key"}):
        response = httpx.request(method, f"{sandbox.urls.pendo()}{path}", headers=headers)
        assert response.status_code == 403, (method, path, headers)
        assert response.content == b""


def test_a_good_key_with_a_wrong_method_is_405(pendo: httpx.Client, pendo_writer) -> None:
    response = pendo.get("/api/v1/aggregation")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert pendo.put("/api/v1/feature").status_code == 405
    assert pendo_writer.delete("/api/v1/visitor/visitor-0000001").status_code == 405
    listing = pendo.get("/api/v1/metadata/visitor/custom/value")
    assert listing.status_code == 405
    # The right method with a read-only key is the write refusal, not a 405.
    refused = pendo.post("/api/v1/metadata/visitor/custom/value", json=[])
    assert refused.status_code == 403 and "write access" in refused.text
    assert pendo.head("/api/v1/feature").status_code == 200
