"""Amplitude sandbox: sessions (length, average, per user) and user composition.

Every figure is checked against an independent count from the export of the same days:
a session is the events of one ``amplitude_id`` sharing a ``session_id`` (``-1`` is no
session), its length the time from its first to its last event.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from amplitude_helpers import amplitude_sandbox, client, error_details, export_records

from analytics_assets.sandbox import SandboxServer

DAYS = [date(2026, 6, 15), date(2026, 6, 16), date(2026, 6, 17)]
START, END = "20260615", "20260617"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with amplitude_sandbox(seed=23) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


def _day(ts: str) -> date:
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).date()


def _ms(ts: str) -> int:
    moment = datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


@pytest.fixture(scope="module")
def records(http: httpx.Client) -> list[dict]:
    """The export's events of DAYS (project time zone UTC; uploads run up to an hour late)."""
    rows = export_records(http, "20260615T00", "20260618T01")
    return [r for r in rows if DAYS[0] <= _day(r["event_time"]) <= DAYS[-1]]


@pytest.fixture(scope="module")
def sessions(records: list[dict]) -> dict[date, dict[tuple[int, int], list[int]]]:
    """day -> (amplitude_id, session_id) -> event times (ms)."""
    out: dict[date, dict[tuple[int, int], list[int]]] = {d: defaultdict(list) for d in DAYS}
    for r in records:
        if r["session_id"] is None or r["session_id"] < 0:
            continue
        out[_day(r["event_time"])][(r["amplitude_id"], r["session_id"])].append(
            _ms(r["event_time"])
        )
    return out


def _lengths(day_sessions: dict[tuple[int, int], list[int]]) -> list[int]:
    return [max(times) - min(times) for times in day_sessions.values()]


def _get(http: httpx.Client, path: str, **params: object) -> dict:
    response = http.get(path, params={"start": START, "end": END, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_average_session_length_equals_the_export(http: httpx.Client, sessions) -> None:
    body = _get(http, "/api/2/sessions/average")
    data = body["data"]
    assert data["xValues"] == [f"{d.isoformat()}T00:00:00" for d in DAYS]
    assert data["seriesMeta"] == [{"segmentIndex": 0, "sessionIndex": 0}]
    expected = []
    for d in DAYS:
        lengths = _lengths(sessions[d])
        assert lengths, "every day of the seeded history has sessions"
        expected.append(sum(lengths) / len(lengths) / 1000)
    assert data["series"][0] == pytest.approx(expected)
    every = [x for d in DAYS for x in _lengths(sessions[d])]
    assert data["seriesCollapsed"][0][0]["value"] == pytest.approx(sum(every) / len(every) / 1000)
    # The sessions chart costs 4 per day and condition (docs: "User Sessions ... 4").
    assert body["novaCost"] == 3 * 1 * 4


def test_sessions_per_user_equal_the_export(http: httpx.Client, sessions) -> None:
    data = _get(http, "/api/2/sessions/peruser")["data"]
    expected = []
    for d in DAYS:
        users = {amp for amp, _ in sessions[d]}
        expected.append(len(sessions[d]) / len(users))
    assert data["series"][0] == pytest.approx(expected)
    all_users = {amp for d in DAYS for amp, _ in sessions[d]}
    total = sum(len(sessions[d]) for d in DAYS)
    assert data["seriesCollapsed"][0][0]["value"] == pytest.approx(total / len(all_users))


def test_session_length_distribution_default_bins(http: httpx.Client, sessions) -> None:
    body = _get(http, "/api/2/sessions/length")
    data = body["data"]
    edges_ms = [
        0,
        3_000,
        10_000,
        30_000,
        60_000,
        180_000,
        600_000,
        1_800_000,
        3_600_000,
        86_400_000,
    ]
    assert data["xValues"] == [
        f"{lo // 1000}s-{hi // 1000}s" for lo, hi in zip(edges_ms, edges_ms[1:], strict=False)
    ]
    counts = [0] * (len(edges_ms) - 1)
    for d in DAYS:
        for length in _lengths(sessions[d]):
            for b in range(len(counts)):
                if edges_ms[b] <= length < edges_ms[b + 1]:
                    counts[b] += 1
    assert data["series"] == [counts]
    assert sum(counts) == sum(len(sessions[d]) for d in DAYS)
    assert body["novaCost"] == 12


def test_session_length_distribution_custom_bins(http: httpx.Client, sessions) -> None:
    params = {
        "timeHistogramConfigBinTimeUnit": "minutes",
        "timeHistogramConfigBinMin": 0,
        "timeHistogramConfigBinMax": 10,
    }
    data = _get(http, "/api/2/sessions/length", **params)["data"]
    # No bin size: ten bins of a minute, as the docs' example shows.
    assert data["xValues"] == [f"{60 * k}s-{60 * (k + 1)}s" for k in range(10)]
    lengths = [x for d in DAYS for x in _lengths(sessions[d])]
    assert data["series"] == [
        [sum(1 for x in lengths if 60_000 * k <= x < 60_000 * (k + 1)) for k in range(10)]
    ]
    sized = _get(
        http,
        "/api/2/sessions/length",
        **{**params, "timeHistogramConfigBinSize": 5},
    )["data"]
    assert sized["xValues"] == ["0s-300s", "300s-600s"]
    # An invalid unit falls back to the default bins (the docs' rule), it is no 400.
    fallback = _get(http, "/api/2/sessions/length", timeHistogramConfigBinTimeUnit="weeks")
    assert fallback["data"]["xValues"][0] == "0s-3s"


def test_composition_counts_users_per_value(http: httpx.Client, records: list[dict]) -> None:
    body = _get(http, "/api/2/composition", p="country")
    data = body["data"]
    users: dict[str, set[int]] = defaultdict(set)
    for r in records:
        users[r["country"] or "(none)"].add(r["amplitude_id"])
    expected = sorted(users.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    assert data["xValues"] == [k for k, _ in expected]
    assert data["series"] == [[len(v) for _, v in expected]]
    assert data["seriesLabels"] == ["country"]
    assert body["novaCost"] == 3  # days × 1 condition × 1 (not a listed chart type)

    plans = _get(http, "/api/2/composition", p="gp:plan")["data"]
    by_plan: dict[str, set[int]] = defaultdict(set)
    for r in records:
        by_plan[str(r["user_properties"].get("plan", "(none)"))].add(r["amplitude_id"])
    assert dict(zip(plans["xValues"], plans["series"][0], strict=True)) == {
        k: len(v) for k, v in by_plan.items()
    }
    assert plans["seriesLabels"] == ["gp:plan"]


def test_bad_parameters_and_auth(server: SandboxServer, http: httpx.Client) -> None:
    missing = http.get("/api/2/composition", params={"start": START, "end": END})
    assert missing.status_code == 400
    assert "p" in error_details(missing)
    bogus = http.get("/api/2/composition", params={"start": START, "end": END, "p": "bogus"})
    assert bogus.status_code == 400 and error_details(bogus) == "Invalid user property bogus"
    for path in ("/api/2/sessions/average", "/api/2/sessions/length", "/api/2/sessions/peruser"):
        bad = http.get(path, params={"start": "2026-06-15", "end": END})
        assert bad.status_code == 400, path
        reversed_ = http.get(path, params={"start": END, "end": START})
        assert reversed_.status_code == 400
        keys = server.config.amplitude_keys["us"]
        wrong = httpx.get(
            f"{server.urls.amplitude()}{path}",
            params={"start": START, "end": END},
            auth=(keys.api_key, "not-the-secret"),
        )
        assert wrong.status_code == 403
        assert error_details(wrong) == "Invalid API/Secret Key combination"
        other_region = server.config.amplitude_keys["eu"]
        assert (
            httpx.get(
                f"{server.urls.amplitude()}{path}",
                params={"start": START, "end": END},
                auth=(other_region.api_key, other_region.secret_key),
            ).status_code
            == 403
        )


def test_sessions_exclude_ingested_events_without_a_session() -> None:
    """An ingested event with ``session_id`` -1 is in no session; one with an id is."""
    now = datetime(2026, 6, 20, 12, tzinfo=UTC)
    with amplitude_sandbox(seed=24) as s, client(s) as http:
        before = _get_day(http, "20260620")
        key = s.config.amplitude_keys["us"].api_key
        t0 = int((now - timedelta(minutes=30)).timestamp() * 1000)
        events = [
            {"event_type": "Solo", "user_id": "session-user-1", "time": t0, "session_id": -1},
            {"event_type": "In", "user_id": "session-user-2", "time": t0, "session_id": t0},
            {
                "event_type": "In",
                "user_id": "session-user-2",
                "time": t0 + 90_000,
                "session_id": t0,
            },
        ]
        assert http.post("/2/httpapi", json={"api_key": key, "events": events}).status_code == 200
        after = _get_day(http, "20260620")
        # One more session (user 2, 90 s long), one more user with sessions.
        assert after["count"] == before["count"] + 1
        assert after["users"] == before["users"] + 1
        assert after["total_s"] == pytest.approx(before["total_s"] + 90)


def _get_day(http: httpx.Client, day: str) -> dict:
    params = {"start": day, "end": day}
    average = http.get("/api/2/sessions/average", params=params).json()["data"]["series"][0][0]
    per_user = http.get("/api/2/sessions/peruser", params=params).json()["data"]["series"][0][0]
    count = sum(http.get("/api/2/sessions/length", params=params).json()["data"]["series"][0])
    users = round(count / per_user)
    return {"count": count, "users": users, "total_s": average * count}


def test_sessions_are_charged_against_the_budget() -> None:
    with amplitude_sandbox(seed=25, dashboard_cost_per_hour=20) as s, client(s) as http:
        ok = http.get("/api/2/sessions/average", params={"start": START, "end": END})
        assert ok.status_code == 200 and ok.json()["novaCost"] == 12
        refused = http.get("/api/2/sessions/peruser", params={"start": START, "end": END})
        assert refused.status_code == 429
        assert error_details(refused) == (
            "Too Many Requests: Exceeded rate limit with query of cost 12"
        )
        # Composition over one day costs 1 and still fits.
        one = http.get("/api/2/composition", params={"start": START, "end": START, "p": "os"})
        assert one.status_code == 200 and one.json()["novaCost"] == 1
        assert json.loads(json.dumps(one.json()["data"]))["seriesLabels"] == ["os"]
