"""Backfills by range against the sandbox (real HTTP, real DuckDB): a run over a range of
days writes every table exactly as one-day runs of the same days do, asks Pendo one
aggregation per asset for the whole range, records each day's materialization and checks
against that day, and refuses an answer whose days are not the days asked."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from sync_day import DAY, make_resources
from warehouse_compare import table_differences

from analytics_assets.amplitude.assets import amplitude_assets
from analytics_assets.analytics.assets import analytics_assets
from analytics_assets.partitions import DailyCalendar
from analytics_assets.pendo.assets import DAY_BY_DAY, pendo_assets
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.warehouse import checks

CALENDAR = DailyCalendar("America/New_York")
ASSETS = [*pendo_assets(), *amplitude_assets(calendar=CALENDAR), *analytics_assets()]
DAILY = [a.key for a in ASSETS if a.partitions_def is not None]
PENDO_DAILY = [a for a in pendo_assets() if a.partitions_def is not None]
# Three days ending on the sync day, a Sunday among them.
LAST = date.fromisoformat(DAY)
DAYS = [(LAST - timedelta(days=n)).isoformat() for n in range(2, -1, -1)]
AGGREGATION = r"^/api/v1/aggregation$"
# Amplitude assets asked one Dashboard query over the range (the export goes day by day).
ASKED_OVER_THE_RANGE = {"daily_active_users", "event_type_daily_totals", "session_daily_stats"}
# The module's fixture loads the days five times over (two warehouses): above the default
# per-test limit on a loaded two-core machine.
pytestmark = pytest.mark.timeout(900)


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def _snapshots(resources: dict[str, object]) -> None:
    snapshots = [a.key for a in ASSETS if a.partitions_def is None]
    daily_health = [k for k in snapshots if k.path[-1] == "account_health"]
    selection = [k for k in snapshots if k not in daily_health]
    assert dg.materialize(ASSETS, selection=selection, resources=resources).success


def _runs(sandbox, folder):
    """The same days loaded twice, from the same sandbox: one run per day, and one run for
    the range; with the sandbox's request counts of each."""
    counters = sandbox.state.counters
    per_day = make_resources(sandbox, str(folder / "per_day.duckdb"))
    ranged = make_resources(sandbox, str(folder / "ranged.duckdb"))
    _snapshots(per_day)
    _snapshots(ranged)
    daily = [*DAILY, *(a.key for a in ASSETS if a.key.path[-1] == "account_health")]

    before = counters.count(), counters.count(path=AGGREGATION)
    for day in DAYS:
        one = dg.materialize(ASSETS, selection=daily, partition_key=day, resources=per_day)
        assert one.success
    per_day_requests = (counters.count() - before[0], counters.count(path=AGGREGATION) - before[1])

    before = counters.count(), counters.count(path=AGGREGATION)
    result = dg.materialize(
        ASSETS, selection=daily, resources=ranged, tags=_range_tags(DAYS[0], DAYS[-1])
    )
    assert result.success
    range_requests = (counters.count() - before[0], counters.count(path=AGGREGATION) - before[1])
    return per_day, ranged, result, per_day_requests, range_requests


def test_a_range_run_writes_and_records_what_one_day_runs_do(sandbox, tmp_path) -> None:
    # One test, not two over a module fixture: pytest-xdist would build the fixture (five
    # loads of the days) once per worker.
    per_day, ranged, result, per_day_requests, range_requests = _runs(sandbox, tmp_path)
    _tables_are_equal(per_day, ranged, per_day_requests, range_requests)
    _each_day_has_its_materialization_and_checks(ranged, result)


def _tables_are_equal(per_day, ranged, per_day_requests, range_requests) -> None:
    compared, problems = table_differences(per_day["warehouse"], ranged["warehouse"])
    assert not problems, "\n".join(problems)
    # Every daily table was compared; together they hold rows of every day of the range.
    held: set[str] = set()
    for key in DAILY:
        table = ".".join(key.path)
        assert table in compared, f"{table} was not compared"
        found = ranged["warehouse"].records(f"SELECT DISTINCT day AS d FROM {table}")
        days = {str(r["d"]) for r in found}
        assert days <= set(DAYS), f"{table} holds days {sorted(days)}"
        held |= days
    assert held == set(DAYS)
    assert range_requests[0] < per_day_requests[0]
    assert range_requests[1] < per_day_requests[1]


def _each_day_has_its_materialization_and_checks(ranged, result) -> None:
    by_asset: dict[dg.AssetKey, dict[str, dict]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        by_asset.setdefault(materialization.asset_key, {})[materialization.partition] = dict(
            materialization.metadata
        )
    for key in DAILY:
        assert set(by_asset[key]) == set(DAYS), key
        table = ".".join(key.path)
        for day, metadata in by_asset[key].items():
            rows = ranged["warehouse"].records(
                f"SELECT count(*) AS n FROM {table} WHERE day = ?", [date.fromisoformat(day)]
            )[0]["n"]
            assert metadata["dagster/row_count"].value == rows, (key, day)
            if key.path[0] == "pendo" or key.path[-1] in ASKED_OVER_THE_RANGE:
                # The range's API figures on every day, saying so (not to be summed).
                cover = f"the {len(DAYS)} days {DAYS[0]} to {DAYS[-1]} (one run)"
                assert metadata["api_figures_cover"].value == cover, (key, day)
    evaluations = result.get_asset_check_evaluations()
    for key in DAILY:
        mine = [e for e in evaluations if e.asset_key == key]
        names = {e.check_name for e in mine}
        assert names, key
        for name in names:
            days = sorted(e.partition for e in mine if e.check_name == name)
            assert days == DAYS, (key, name, days)
        assert all(e.target_materialization_data is not None for e in mine), key
    failed = [(e.asset_key, e.check_name, e.partition) for e in evaluations if not e.passed]
    assert not failed


def test_pendo_is_asked_one_aggregation_per_asset_for_the_range(sandbox, tmp_path) -> None:
    resources = make_resources(sandbox, str(tmp_path / "pendo.duckdb"))
    pendo = pendo_assets()
    assert dg.materialize(
        pendo, selection=[a.key for a in pendo if a.partitions_def is None], resources=resources
    ).success
    counters = sandbox.state.counters
    before = counters.count(path=AGGREGATION)
    result = dg.materialize(
        pendo,
        selection=[a.key for a in PENDO_DAILY],
        resources=resources,
        tags=_range_tags(DAYS[0], DAYS[-1]),
    )
    assert result.success
    asked = counters.count(path=AGGREGATION) - before
    # Guide and poll events carry no day bucket: those assets ask day by day.
    by_day = [a for a in PENDO_DAILY if a.key.path[-1] in DAY_BY_DAY]
    assert len(by_day) == len(DAY_BY_DAY)
    assert asked == (len(PENDO_DAILY) - len(by_day)) + len(by_day) * len(DAYS)


def test_a_day_with_too_few_rows_fails_its_own_check(sandbox, tmp_path) -> None:
    """The volume check of one day of the range fails, recorded against that day only, as
    a one-day run of it would fail."""
    resources = make_resources(sandbox, str(tmp_path / "volume.duckdb"))
    warehouse = resources["warehouse"]
    pendo = pendo_assets(include=["visitor_daily_usage"])
    key = pendo[0].key
    table = ".".join(key.path)
    assert dg.materialize(
        pendo, selection=[key], partition_key=DAYS[0], resources=resources
    ).success
    # The same weekday of the four weeks before the range's second day held many more rows
    # than that day will: a loss the check must name.
    (row,) = warehouse.records(f"SELECT * FROM {table} LIMIT 1")
    weekday = date.fromisoformat(DAYS[1])
    for weeks in range(1, 5):
        past = weekday - timedelta(weeks=weeks)
        warehouse.execute(
            f"INSERT INTO {table} SELECT ?, 'v-' || i, ?, ?, ? FROM range(100000) AS t(i)",
            [past, row["account_id"], row["events"], row["minutes"]],
        )
    result = dg.materialize(
        pendo, selection=[key], resources=resources, tags=_range_tags(DAYS[0], DAYS[-1])
    )
    assert result.success  # a failed volume check is an ERROR result, not a failed step
    failed = [
        e.partition
        for e in result.get_asset_check_evaluations()
        if e.check_name == checks.VOLUME and not e.passed
    ]
    assert failed == [DAYS[1]]


def test_an_answer_for_other_days_fails_naming_them(sandbox, tmp_path) -> None:
    """A calendar whose days are not the subscription's (Pendo's day buckets start at the
    subscription's midnight): the answer's days are not the days asked, and the run fails
    without writing, naming what came back and the days asked."""
    resources = make_resources(sandbox, str(tmp_path / "zone.duckdb"))
    pendo = pendo_assets(
        calendar=DailyCalendar("America/Los_Angeles"), include=["visitor_daily_usage"]
    )
    result = dg.materialize(
        pendo,
        resources=resources,
        tags=_range_tags(DAYS[0], DAYS[-1]),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert f"{DAYS[0]} to {DAYS[-1]}" in message
    assert "nothing was written" in message
    assert not resources["warehouse"].table_exists("pendo.visitor_daily_usage")


@pytest.mark.parametrize("how", ["refused", "cut midway"])
def test_a_range_over_pendos_cap_is_asked_in_halves(sandbox, tmp_path, monkeypatch, how) -> None:
    """Pendo's size cap stops the range's aggregation (a refusal, or, past the first bytes,
    a stream cut short): the step drops what it staged and asks the range in halves down
    to single days, and writes what one-day runs write."""
    from analytics_assets.sandbox.pendo import routes

    pendo = pendo_assets(include=["feature_visitor_daily_usage"])
    key = pendo[0].key
    table = ".".join(key.path)
    per_day = make_resources(sandbox, str(tmp_path / "per_day.duckdb"))
    for day in DAYS:
        assert dg.materialize(pendo, partition_key=day, resources=per_day).success
    counted = per_day["warehouse"].records(f"SELECT day, count(*) AS n FROM {table} GROUP BY day")
    rows = {str(r["day"]): int(r["n"]) for r in counted}
    assert len(rows) == len(DAYS) and min(rows.values()) > 0
    # One day's answer fits under the cap; any two days' do not.
    monkeypatch.setattr(sandbox.config.pendo_limits, "aggregation_max_rows", max(rows.values()))
    if how == "cut midway":  # the 200 goes out before the cap is reached
        monkeypatch.setattr(routes, "PREFETCH_ALL_ROWS", 1)
        monkeypatch.setattr(routes, "PREFETCH_BYTES", 1)
    ranged = _own_ledger(make_resources(sandbox, str(tmp_path / "ranged.duckdb")), tmp_path)
    counters = sandbox.state.counters
    before = counters.count(path=AGGREGATION)
    result = dg.materialize(pendo, resources=ranged, tags=_range_tags(DAYS[0], DAYS[-1]))
    assert result.success
    # The three days, then one day and the other two, then those two one by one.
    assert counters.count(path=AGGREGATION) - before >= 1 + 2 + 2
    compared, problems = table_differences(per_day["warehouse"], ranged["warehouse"])
    assert not problems, "\n".join(problems)
    assert compared[table] == sum(rows.values())
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert not failed

    # The asset learned that two days do not fit: the next range run (another step, as in
    # a backfill's next run) asks one day at a time from the start, and meets no cap.
    before, refused = counters.count(path=AGGREGATION), counters.count(status=413)
    instance = dg.DagsterInstance.ephemeral()
    again = dg.materialize(
        pendo, resources=ranged, tags=_range_tags(DAYS[0], DAYS[-1]), instance=instance
    )
    assert again.success
    assert counters.count(path=AGGREGATION) - before == len(DAYS)
    assert counters.count(status=413) == refused
    compared, problems = table_differences(per_day["warehouse"], ranged["warehouse"])
    assert not problems, "\n".join(problems)
    why = "1 day per aggregation, not 3: Pendo's cap stopped a range of 2 days"
    assert any(why in line for line in _logged(instance, again))


def test_a_range_is_cut_to_what_the_assets_days_took(sandbox, tmp_path) -> None:
    """Days that took long (here: a slow Pendo, and a read timeout of 2 s, so a chunk may
    take 1 s) make the next range run ask fewer days per aggregation, without ever meeting
    the cap; the tables are still those of one-day runs."""
    pendo = pendo_assets(include=["page_daily_usage"])
    table = ".".join(pendo[0].key.path)
    slow = make_resources(sandbox, str(tmp_path / "slow.duckdb"))
    resources = _own_ledger(slow, tmp_path, read_timeout=2.0)
    fast = make_resources(sandbox, str(tmp_path / "fast.duckdb"))
    counters = sandbox.state.counters
    rule = sandbox.state.faults.add(
        {"kind": "latency", "latency_seconds": 0.6, "path": AGGREGATION.strip("^$")}
    )
    try:
        # A one-day run takes over 0.6 s: half a 2 s cap fits one day.
        assert dg.materialize(pendo, partition_key=DAYS[0], resources=resources).success
        before = counters.count(path=AGGREGATION)
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize(
            pendo, resources=resources, tags=_range_tags(DAYS[0], DAYS[-1]), instance=instance
        )
    finally:
        sandbox.state.faults.clear()
    assert rule.applied >= 1
    assert result.success
    assert counters.count(path=AGGREGATION) - before == len(DAYS)
    assert any("1 day per aggregation, not 3: a day took" in m for m in _logged(instance, result))
    for day in DAYS:
        assert dg.materialize(pendo, partition_key=day, resources=fast).success
    compared, problems = table_differences(fast["warehouse"], resources["warehouse"])
    assert not problems, "\n".join(problems)
    assert compared[table] > 0


def _own_ledger(resources: dict[str, Any], folder: Path, **settings: Any) -> dict[str, Any]:
    """``resources`` whose Pendo keeps what it learns in a ledger of the test's own (the
    module's is shared by its tests, which must not learn from one another), with
    ``settings`` (a Dagster resource is made anew, not copied: its config is its init's)."""
    ledger = str(folder / "own-ledger.sqlite")
    for name in ("pendo", "pendo_write"):
        old = resources[name]
        resources[name] = PendoResource(
            integration_key=old.integration_key,
            base_url=old.base_url,
            rate_per_second=old.rate_per_second,
            budget_ledger=ledger,
            **settings,
        )
    return resources


def _logged(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    return [entry.user_message or "" for entry in instance.all_logs(result.run_id)]
