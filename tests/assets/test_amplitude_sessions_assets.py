"""Amplitude sessions, annotations and daily user properties against the sandbox: each
table equals an independent computation from the sandbox's own per-day events, its seeded
annotations and its users' properties; checks pass; a re-run leaves identical tables."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import numpy as np
import pytest
from sync_day import DAY

from analytics_assets.amplitude.assets import amplitude_assets
from analytics_assets.amplitude.session_assets import (
    SESSION_ASSET_NAMES,
    amplitude_session_assets,
)
from analytics_assets.naming import AssetNaming
from analytics_assets.partitions import DailyCalendar
from analytics_assets.sandbox.amplitude.annotations import Annotations
from analytics_assets.sandbox.amplitude.users import UserDirectory

CALENDAR = DailyCalendar("America/New_York")
NAMING = AssetNaming("amplitude")
ASSETS = [
    *amplitude_assets(calendar=CALENDAR, include=["events"]),
    *amplitude_session_assets(CALENDAR, NAMING),
]
DAILY = [a.key for a in ASSETS if a.partitions_def is not None]
SNAPSHOTS = [a.key for a in ASSETS if a.partitions_def is None]
ONE_DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def materialized(sandbox, resources):
    assert dg.materialize(ASSETS, selection=SNAPSHOTS, resources=resources).success
    result = dg.materialize(ASSETS, selection=DAILY, partition_key=DAY, resources=resources)
    assert result.success
    return result


@pytest.fixture(scope="module")
def tenant(sandbox):
    return sandbox.state.amplitude_tenants["us"]


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


def test_user_properties_of_every_user_seen(resources, materialized, tenant) -> None:
    seen = _records(
        resources,
        "SELECT DISTINCT user_id FROM amplitude.events "
        f"WHERE day = DATE '{DAY}' AND user_id IS NOT NULL "
        "AND event_type NOT IN ('$identify', '$groupidentify')",
    )
    got = {
        r["user_id"]: r
        for r in _records(
            resources, f"SELECT * FROM amplitude.user_properties_daily WHERE day = DATE '{DAY}'"
        )
    }
    assert set(got) == {r["user_id"] for r in seen} and got
    directory = UserDirectory(tenant)
    for user_id in sorted(got)[:25]:  # a profile costs the sandbox a pass over the history
        amp = directory.lookup_user(user_id)
        assert json.loads(got[user_id]["properties"]) == tenant.events.user_properties(amp)
        summary = directory.summary(amp)
        assert got[user_id]["last_used"].isoformat() == summary.last_used
        assert got[user_id]["first_used"].isoformat() == summary.first_used


def test_checks_pass(materialized) -> None:
    mine = {n for n in SESSION_ASSET_NAMES}
    evaluations = [
        e for e in materialized.get_asset_check_evaluations() if e.asset_key.path[-1] in mine
    ]
    # keys and not-empty on both daily assets, volume and every-user-profiled on the users
    assert len(evaluations) == 6 and all(e.passed for e in evaluations)


@pytest.mark.slow  # the Profile API's budget (600 a minute) paces the second pass
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
