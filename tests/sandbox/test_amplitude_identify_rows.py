"""Amplitude sandbox: ``$identify`` / ``$groupidentify`` rows in the export, and groups
set by an identify (the SDKs' ``set_group``) carried onto the user's later events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from amplitude_helpers import NOW, amplitude_sandbox, client, export_records

from analytics_assets.sandbox import SandboxServer

NOW_MS = int(NOW.timestamp() * 1000)
HOUR = NOW.strftime("%Y%m%dT%H")
TODAY = NOW.strftime("%Y%m%d")


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    # These tests read the hour they write into: no Export API lag here.
    with amplitude_sandbox(seed=43, export_lag_seconds=0) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


@pytest.fixture(scope="module")
def api_key(server: SandboxServer) -> str:
    return server.config.amplitude_keys["us"].api_key


def _rows(http: httpx.Client, event_type: str, **match: object) -> list[dict]:
    return [
        r
        for r in export_records(http, HOUR, HOUR)
        if r["event_type"] == event_type and all(r.get(k) == v for k, v in match.items())
    ]


def _totals(http: httpx.Client) -> tuple[int, int]:
    """(_all events, active users) of today: identify rows must change neither."""
    seg = http.get(
        "/api/2/events/segmentation",
        params={
            "e": json.dumps({"event_type": "_all"}),
            "start": TODAY,
            "end": TODAY,
            "m": "totals",
        },
    ).json()["data"]["seriesCollapsed"][0][0]["value"]
    users = http.get("/api/2/users", params={"start": TODAY, "end": TODAY}).json()["data"]
    return seg, users["series"][0][0]


def test_identify_api_writes_identify_rows(http: httpx.Client, api_key: str) -> None:
    before = _totals(http)
    ident = {
        "user_id": "row-user-0001",
        "user_properties": {"$set": {"tier": "gold"}},
        "groups": {"org": "org-7"},
        "platform": "Web",
    }
    response = http.post(
        "/identify", data={"api_key": api_key, "identification": json.dumps(ident)}
    )
    assert response.status_code == 200 and response.text == "success"
    (row,) = _rows(http, "$identify", user_id="row-user-0001")
    assert row["data"]["path"] == "/identify" and row["data"]["user_properties_updated"]
    assert row["user_properties"] == {"tier": "gold"}
    assert row["groups"] == {"org": "org-7"}
    assert row["platform"] == "Web"
    assert row["server_upload_time"].startswith(NOW.strftime("%Y-%m-%d %H:"))
    assert _totals(http) == before  # not an event of the Dashboard


def test_group_identify_api_writes_groupidentify_rows(http: httpx.Client, api_key: str) -> None:
    group = {
        "group_type": "org",
        "group_value": "org-9",
        "group_properties": {"$set": {"seats": 12}},
    }
    response = http.post(
        "/groupidentify", data={"api_key": api_key, "identification": json.dumps(group)}
    )
    assert response.status_code == 200
    (row,) = [r for r in _rows(http, "$groupidentify") if r["groups"] == {"org": "org-9"}]
    assert row["user_id"] is None and row["amplitude_id"] is None
    assert row["group_properties"] == {"org": {"org-9": {"seats": 12}}}
    assert row["data"]["path"] == "/groupidentify"


def test_set_group_rides_on_later_events(http: httpx.Client, api_key: str) -> None:
    """What ``identify(Identify().set("org", "org-5"))`` + ``set_group`` send: a $identify
    event with ``groups``; the user's later events carry the group and its properties."""
    before = _totals(http)
    events = [
        {
            "event_type": "$groupidentify",
            "user_id": "group-user-01",
            "groups": {"org": "org-5"},
            "group_properties": {"$set": {"plan": "enterprise"}},
            "time": NOW_MS - 5_000,
        },
        {
            "event_type": "$identify",
            "user_id": "group-user-01",
            "groups": {"org": "org-5"},
            "user_properties": {"$set": {"org": "org-5"}},
            "time": NOW_MS - 4_000,
        },
    ]
    assert http.post("/2/httpapi", json={"api_key": api_key, "events": events}).status_code == 200
    later = {"event_type": "After Group", "user_id": "group-user-01", "time": NOW_MS - 1_000}
    other = {
        "event_type": "After Group",
        "user_id": "group-user-01",
        "groups": {"team": "t-1"},
        "time": NOW_MS - 500,
    }
    stranger = {"event_type": "After Group", "user_id": "group-user-02", "time": NOW_MS - 500}
    body = {"api_key": api_key, "events": [later, other, stranger]}
    assert http.post("/2/httpapi", json=body).status_code == 200

    (identify,) = _rows(http, "$identify", user_id="group-user-01")
    assert identify["groups"] == {"org": "org-5"}
    assert identify["user_properties"]["org"] == "org-5"
    (group_row,) = _rows(http, "$groupidentify", user_id="group-user-01")
    assert group_row["group_properties"] == {"org": {"org-5": {"plan": "enterprise"}}}

    rows = _rows(http, "After Group")
    mine = sorted(
        (r for r in rows if r["user_id"] == "group-user-01"), key=lambda r: r["event_time"]
    )
    assert [r["groups"] for r in mine] == [{"org": "org-5"}, {"org": "org-5", "team": "t-1"}]
    assert mine[0]["group_properties"]["org"] == {"org-5": {"plan": "enterprise"}}
    (theirs,) = [r for r in rows if r["user_id"] == "group-user-02"]
    assert theirs["groups"] == {}
    # Three real events; the identify rows are not counted.
    seg, _ = _totals(http)
    assert seg == before[0] + 3


def _ms(ts: str) -> int:
    return int(datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp() * 1000)


def test_groups_reach_a_synthetic_users_later_generated_events(
    server: SandboxServer, http: httpx.Client, api_key: str
) -> None:
    """A generated visitor assigned to a group at 12:00: its generated events from then on
    carry the group (next to its generated account), its earlier ones do not."""
    clock = f"{server.urls.control()}/clock"
    later = NOW + timedelta(hours=2)
    try:
        httpx.post(clock, json={"now": later.isoformat()}).raise_for_status()
        window = export_records(http, "20260620T10", "20260620T13")
        visitor = next(
            r["user_id"]
            for r in window
            if r["user_id"].startswith("visitor-") and _ms(r["event_time"]) >= NOW_MS
        )
        httpx.post(clock, json={"now": NOW.isoformat()}).raise_for_status()
        ident = {"user_id": visitor, "groups": {"org": "org-synthetic"}}
        http.post("/identify", data={"api_key": api_key, "identification": json.dumps(ident)})
        httpx.post(clock, json={"now": later.isoformat()}).raise_for_status()
        mine = [
            r
            for r in export_records(http, "20260620T10", "20260620T13")
            if r["user_id"] == visitor and r["event_type"] != "$identify"
        ]
    finally:
        httpx.post(clock, json={"now": NOW.isoformat()})
    assert any(_ms(r["event_time"]) >= NOW_MS for r in mine)
    for r in mine:
        assert r["groups"]["account"].startswith("account-")
        assert (r["groups"].get("org") == "org-synthetic") == (_ms(r["event_time"]) >= NOW_MS)
