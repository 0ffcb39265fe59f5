"""The Amplitude and cross-source assets against the sandbox: rows equal what the sandbox
holds for the day (its own per-day summaries, not the asset code), and re-runs are exact."""

from __future__ import annotations

from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sync_day import DAY

from analytics_assets.amplitude.assets import amplitude_assets
from analytics_assets.analytics.assets import analytics_assets
from analytics_assets.partitions import DailyCalendar, day_window
from analytics_assets.pendo.assets import pendo_assets

# The sandbox's Amplitude project keeps New York days (the default calendar's zone).
CALENDAR = DailyCalendar("America/New_York")
ASSETS = [*pendo_assets(), *amplitude_assets(calendar=CALENDAR), *analytics_assets()]
AMPLITUDE_DAILY = [
    a.key for a in amplitude_assets(calendar=CALENDAR) if a.partitions_def is not None
]
# The local day of the sandbox's frozen clock (2026-11-18 15:00 UTC, 10:00 in New York): the
# day Amplitude's current membership is of.
SNAPSHOT_DAY = "2026-11-18"


@pytest.fixture(scope="module")
def materialized(sandbox, resources):
    snapshots = [a.key for a in ASSETS if a.partitions_def is None]
    daily = [a.key for a in ASSETS if a.partitions_def is not None]
    assert dg.materialize(ASSETS, selection=snapshots, resources=resources).success
    result = dg.materialize(ASSETS, selection=daily, partition_key=DAY, resources=resources)
    assert result.success
    return result


def _tenant(sandbox):
    return sandbox.state.amplitude_tenants["us"]


def _query(resources, sql):
    return resources["warehouse"].query(sql)


def test_export_loads_every_event_uploaded_in_the_days_utc_hours(
    sandbox, resources, materialized
) -> None:
    first, last = day_window(DAY, "America/New_York").utc_hours()
    counts = _tenant(sandbox).events.upload_hour_counts(
        int(first.timestamp() * 1000), int(last.timestamp() * 1000)
    )
    loaded = _query(
        resources,
        f"SELECT count(*) AS n, count(DISTINCT uuid) AS u "
        f"FROM amplitude.events WHERE day = DATE '{DAY}'",
    )
    assert int(loaded.n[0]) == int(counts.sum()) > 0
    assert int(loaded.u[0]) == int(loaded.n[0])


def test_daily_active_and_new_users_match_the_project(sandbox, resources, materialized) -> None:
    events = _tenant(sandbox).events
    day = date.fromisoformat(DAY)
    got = _query(
        resources,
        f"SELECT active_users, new_users FROM amplitude.daily_active_users "
        f"WHERE day = DATE '{DAY}'",
    )
    assert int(got.active_users[0]) == len(events.active_users(day))
    assert int(got.new_users[0]) == len(events.new_users(day))


def test_event_type_totals_match_the_project(sandbox, resources, materialized) -> None:
    tenant = _tenant(sandbox)
    totals, uniques = tenant.events.type_counts(date.fromisoformat(DAY))
    names = [t.name if hasattr(t, "name") else str(t) for t in tenant.events.catalog.event_types]
    expected = {names[i]: int(totals[i]) for i in np.flatnonzero(totals)}
    got = _query(
        resources,
        "SELECT event_type, totals FROM amplitude.event_type_daily_totals "
        f"WHERE day = DATE '{DAY}'",
    )
    assert dict(zip(got.event_type, got.totals.astype(int), strict=True)) == expected


def test_cohort_membership_matches_each_cohorts_size(resources, materialized) -> None:
    sizes = _query(
        resources,
        "SELECT cohort_id, size FROM amplitude.cohorts WHERE NOT archived AND size IS NOT NULL",
    )
    members = _query(
        resources,
        "SELECT cohort_id, count(*) AS n FROM amplitude.cohort_membership "
        f"WHERE snapshot_day = DATE '{SNAPSHOT_DAY}' GROUP BY cohort_id",
    )
    got = dict(zip(members.cohort_id, members.n.astype(int), strict=True))
    for row in sizes.itertuples():
        assert got.get(row.cohort_id, 0) == row.size


MEMBERSHIP = dg.AssetKey(["amplitude", "cohort_membership"])
EARLIER_DAY = "2026-11-10"
COHORT_ENDPOINTS = r"^/api/(3|5)/cohorts"  # the list, request, request-status and file


def test_cohort_membership_is_a_snapshot_that_keeps_earlier_days(
    sandbox, resources, materialized
) -> None:
    warehouse = resources["warehouse"]
    # A snapshot taken on an earlier day: Amplitude cannot serve it again, so it must stay.
    warehouse.execute(
        "INSERT INTO amplitude.cohort_membership VALUES "
        f"(DATE '{EARLIER_DAY}', TIMESTAMPTZ '{EARLIER_DAY} 09:00:00+00', 'c-then', 'u1', 42), "
        f"(DATE '{EARLIER_DAY}', TIMESTAMPTZ '{EARLIER_DAY} 09:00:00+00', 'c-then', 'u2', NULL)"
    )

    def stored(where: str) -> pd.DataFrame:
        return _query(
            resources, f"SELECT * FROM amplitude.cohort_membership WHERE {where} ORDER BY ALL"
        )

    earlier = stored(f"snapshot_day = DATE '{EARLIER_DAY}'")
    current = stored(f"snapshot_day = DATE '{SNAPSHOT_DAY}'")
    assert len(current) > 0
    again = dg.materialize(ASSETS, selection=[MEMBERSHIP], resources=resources)
    assert again.success
    # Today's snapshot replaced exactly; the earlier one untouched.
    pd.testing.assert_frame_equal(stored(f"snapshot_day = DATE '{EARLIER_DAY}'"), earlier)
    pd.testing.assert_frame_equal(stored(f"snapshot_day = DATE '{SNAPSHOT_DAY}'"), current)
    (event,) = again.get_asset_materialization_events()
    assert event.materialization.metadata["snapshot_day"].value == SNAPSHOT_DAY
    assert all(c.passed for c in again.get_asset_check_evaluations())
    # Its cohorts are listed by id and name, as the cohort list gives them.
    listed = event.materialization.metadata["cohorts_loaded"].value.splitlines()[2:]
    assert len(listed) == event.materialization.metadata["cohorts"].value > 0
    cohorts = _query(resources, "SELECT cohort_id, name FROM amplitude.cohorts")
    names = dict(zip(cohorts.cohort_id, cohorts.name, strict=True))
    for line in listed:
        cohort_id, name = (cell.strip() for cell in line.strip("|").split("|")[:2])
        assert name == names[cohort_id]


def test_daily_partitions_spend_nothing_on_cohorts(sandbox, resources, materialized) -> None:
    """Backfilling the daily sync never asks for cohorts: past membership is not served."""
    assert all(a.partitions_def is None for a in ASSETS if a.key == MEMBERSHIP)
    counters = sandbox.state.counters
    before = counters.count(path=COHORT_ENDPOINTS)
    result = dg.materialize(
        ASSETS, selection=AMPLITUDE_DAILY, partition_key=EARLIER_DAY, resources=resources
    )
    assert result.success
    assert counters.count(path=COHORT_ENDPOINTS) == before


def test_account_daily_usage_joins_both_sources(resources, materialized) -> None:
    pendo = _query(
        resources,
        f"SELECT sum(events) AS e FROM pendo.account_daily_usage WHERE day = DATE '{DAY}'",
    )
    joined = _query(
        resources,
        "SELECT sum(pendo_events) AS p, sum(amplitude_events) AS a, "
        "count(*) AS n, count(DISTINCT account_id) AS d "
        f"FROM analytics.account_daily_usage WHERE day = DATE '{DAY}'",
    )
    assert int(joined.p[0]) == int(pendo.e[0])
    assert int(joined.a[0]) > 0
    assert int(joined.n[0]) == int(joined.d[0])


def test_rerunning_amplitude_partitions_is_exact(resources, materialized) -> None:
    def snapshot():
        return {
            t: _query(
                resources, f"SELECT * FROM amplitude.{t} WHERE day = DATE '{DAY}' ORDER BY ALL"
            )
            for t in ("events", "daily_active_users", "event_type_daily_totals")
        }

    before = snapshot()
    again = dg.materialize(
        ASSETS, selection=AMPLITUDE_DAILY, partition_key=DAY, resources=resources
    )
    assert again.success
    after = snapshot()
    for table, frame in before.items():
        # assert_frame_equal treats missing values (NaN) as equal, as a re-run should.
        pd.testing.assert_frame_equal(after[table], frame, check_exact=True)


def test_materializations_report_amplitude_cost(materialized) -> None:
    events = next(
        m
        for m in materialized.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["amplitude", "event_type_daily_totals"])
    )
    assert events.materialization.metadata["amplitude_cost_units"].value > 0
