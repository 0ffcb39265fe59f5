"""Amplitude sessions, annotations and daily user properties against the sandbox: each
table equals an independent computation from the sandbox's own per-day events, its seeded
annotations and its users' property store; checks pass; a re-run leaves identical
tables. Two Identify API calls late in the day (one for a user active earlier that day,
one for a user with no event that day) stage the property updates the day's export
carries as ``$identify`` rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import dagster as dg
import httpx
import numpy as np
import orjson
import pytest
from sync_day import DAY, NOW

from analytics_assets.amplitude.assets import amplitude_assets
from analytics_assets.amplitude.session_assets import (
    SESSION_ASSET_NAMES,
    amplitude_session_assets,
)
from analytics_assets.naming import AssetNaming
from analytics_assets.partitions import DailyCalendar, day_window
from analytics_assets.sandbox.amplitude.annotations import Annotations

CALENDAR = DailyCalendar("America/New_York")
NAMING = AssetNaming("amplitude")
ASSETS = [
    *amplitude_assets(calendar=CALENDAR, include=["events"]),
    *amplitude_session_assets(CALENDAR, NAMING),
]
DAILY = [a.key for a in ASSETS if a.partitions_def is not None]
SNAPSHOTS = [a.key for a in ASSETS if a.partitions_def is None]
ONE_DAY_MS = 86_400_000
WINDOW = day_window(DAY, "America/New_York")
# 23:30 in New York: uploaded within the day's export hours, after most of its events.
LATE_IN_THE_DAY = datetime(2026, 11, 18, 4, 30, tzinfo=UTC)
UPDATE = {"crm_stage": "renewal", "seats": 42}
NOT_ACTIVITY = ("$identify", "$groupidentify")


@pytest.fixture(scope="module")
def tenant(sandbox):
    return sandbox.state.amplitude_tenants["us"]


def _day_records(tenant) -> list[dict]:
    """The day's export records as the sandbox serves them (its upload hours)."""
    first, last = (int(h.timestamp() * 1000) for h in WINDOW.utc_hours())
    return [
        orjson.loads(line)
        for chunk in tenant.events.iter_export_records(first, last)
        for piece in chunk.pieces
        for line in piece.splitlines()
    ]


@pytest.fixture(scope="module")
def staged(sandbox, tenant) -> dict[str, str]:
    """Identify calls at 23:30 of the day, the clock set back to the frozen NOW after:
    ``active`` is a user with events earlier that day, ``idle`` one with none."""
    records = _day_records(tenant)
    last_event: dict[str, str] = {}
    for r in records:
        if r["user_id"] and r["event_type"] not in NOT_ACTIVITY:
            last_event[r["user_id"]] = max(last_event.get(r["user_id"], ""), r["event_time"])
    late = LATE_IN_THE_DAY.strftime("%Y-%m-%d %H:%M")
    active = min(u for u, t in last_event.items() if t < late)
    company = tenant.events.company
    idle = next(
        uid
        for uid in (company.visitor_id(v) for v in range(company.n_visitors))
        if uid not in last_event
    )
    clock = f"{sandbox.urls.control()}/clock"
    key = sandbox.config.amplitude_keys["us"].api_key
    identifications = [{"user_id": u, "user_properties": {"$set": UPDATE}} for u in (active, idle)]
    try:
        httpx.post(clock, json={"now": LATE_IN_THE_DAY.isoformat()}).raise_for_status()
        sent = httpx.post(
            f"{sandbox.urls.base}/identify",
            data={"api_key": key, "identification": json.dumps(identifications)},
        )
        assert sent.status_code == 200, sent.text
    finally:
        httpx.post(clock, json={"now": NOW.isoformat()}).raise_for_status()
    return {"active": active, "idle": idle}


@pytest.fixture(scope="module")
def materialized(sandbox, resources, staged):
    assert dg.materialize(ASSETS, selection=SNAPSHOTS, resources=resources).success
    result = dg.materialize(ASSETS, selection=DAILY, partition_key=DAY, resources=resources)
    assert result.success
    return result


def _records(resources, sql: str) -> list[dict]:
    return resources["warehouse"].records(sql)


def test_session_stats_equal_the_days_sessions(resources, materialized, tenant) -> None:
    frame = tenant.events.day_frame(date.fromisoformat(DAY))
    keep = frame.session >= 0  # -1: an event outside any session
    lengths: dict[tuple[int, int], list[int]] = {}
    for amp, sid, t in zip(
        frame.amp[keep].tolist(), frame.session[keep].tolist(), frame.t[keep].tolist(), strict=True
    ):
        lo, hi = lengths.get((amp, sid), (t, t))
        lengths[(amp, sid)] = [min(lo, t), max(hi, t)]
    spans = [min(hi - lo, ONE_DAY_MS) for lo, hi in lengths.values()]
    users = len({amp for amp, _ in lengths})
    (row,) = _records(resources, "SELECT * FROM amplitude.session_daily_stats")
    assert str(row["day"]) == DAY and spans
    assert row["average_session_seconds"] == pytest.approx(sum(spans) / len(spans) / 1000)
    assert row["sessions_per_user"] == pytest.approx(len(spans) / users)


def test_annotations_are_the_projects(resources, materialized, tenant) -> None:
    expected = {(a["id"], a["date"], a["label"], a["details"]) for a in Annotations(tenant).all()}
    got = {
        (r["id"], r["date"].isoformat(), r["label"], r["details"])
        for r in _records(resources, "SELECT * FROM amplitude.annotations")
    }
    assert got == expected and expected


def _naive(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_user_properties_are_each_users_state_at_the_end_of_the_day(
    resources, materialized, tenant, staged
) -> None:
    """One row per user with a row in the day's export: the properties the sandbox's
    property store holds for the user at the end of the day's upload hours, the time of
    the user's latest row, and whether the user had an event (not only an update)."""
    end_ms = int(WINDOW.end.timestamp() * 1000)
    expected: dict[str, dict] = {}
    for r in _day_records(tenant):
        user = r["user_id"]
        if not user or r["event_type"] == "$groupidentify":
            continue
        row = expected.setdefault(
            user,
            {
                "amplitude_id": r["amplitude_id"],
                "properties": tenant.events.user_properties(r["amplitude_id"], end_ms),
                "properties_as_of": _naive(r["event_time"]),
                "user_creation_time": _naive(r["user_creation_time"]),
                "active": False,
            },
        )
        row["properties_as_of"] = max(row["properties_as_of"], _naive(r["event_time"]))
        row["active"] = row["active"] or r["event_type"] not in NOT_ACTIVITY
    got = {
        r.pop("user_id"): {**r, "properties": json.loads(r["properties"])}
        for r in _records(
            resources, f"SELECT * FROM amplitude.user_properties_daily WHERE day = DATE '{DAY}'"
        )
    }
    assert all(str(r.pop("day")) == DAY for r in got.values())
    assert set(got) == set(expected) and len(got) > 100
    assert got == expected
    # The staged updates: the day's state includes a property set after the last event,
    # and a user with nothing but an update that day has a row, not an active one.
    for who in ("active", "idle"):
        row = got[staged[who]]
        assert {k: row["properties"][k] for k in UPDATE} == UPDATE
        assert row["active"] is (who == "active")
    assert got[staged["active"]]["properties_as_of"] == LATE_IN_THE_DAY.replace(tzinfo=None)
    untouched = [r for u, r in got.items() if u not in staged.values()]
    assert not any("crm_stage" in r["properties"] for r in untouched)


def test_checks_pass(materialized) -> None:
    mine = {n for n in SESSION_ASSET_NAMES}
    evaluations = [
        e for e in materialized.get_asset_check_evaluations() if e.asset_key.path[-1] in mine
    ]
    # keys and not-empty on both daily assets, volume and every-user-seen on the users
    assert len(evaluations) == 6 and all(e.passed for e in evaluations)


def test_rerunning_the_day_leaves_identical_tables(resources, materialized) -> None:
    def snapshot():
        return {
            t: resources["warehouse"]
            .query(f"SELECT * FROM amplitude.{t} ORDER BY ALL")
            .to_dict("list")
            for t in ("session_daily_stats", "user_properties_daily")
        }

    before = snapshot()
    mine = [a.key for a in ASSETS if a.key.path[-1] in SESSION_ASSET_NAMES and a.partitions_def]
    again = dg.materialize(ASSETS, selection=mine, partition_key=DAY, resources=resources)
    assert again.success and snapshot() == before


def test_the_numbers_are_plausible(resources, materialized) -> None:
    (row,) = _records(resources, "SELECT * FROM amplitude.session_daily_stats")
    assert np.isfinite(row["average_session_seconds"]) and row["sessions_per_user"] >= 1
