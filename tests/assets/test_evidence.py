"""Evidence before emptiness: the raw export never empties a day on one answer, its count is
checked against the Dashboard's, and the cross-source usage never reads an absent input as
zeros. Real HTTP to the sandbox (its own sandbox, this module's), real SQL in DuckDB."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import pytest
from sync_day import DAY

from analytics_assets.amplitude.assets import (
    EXPORT_MATCHES_DASHBOARD,
    EXPORT_TOLERANCE_FLOOR,
    _refuse_empty,
    amplitude_assets,
    check_export_count,
    export_tolerance,
    exported_event_count,
)
from analytics_assets.amplitude.export import ExportResult
from analytics_assets.analytics.assets import analytics_assets
from analytics_assets.partitions import DailyCalendar
from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

CALENDAR = DailyCalendar("America/New_York")
ASSETS = [*pendo_assets(), *amplitude_assets(calendar=CALENDAR), *analytics_assets()]
EVENTS = dg.AssetKey(["amplitude", "events"])
USAGE = dg.AssetKey(["analytics", "account_daily_usage"])
PENDO_DAILY = [a.key for a in pendo_assets() if a.partitions_def is not None]
# After the sandbox's frozen now (2026-11-18 15:00 UTC): the Export API has nothing yet and
# answers its own "no data" 404.
FUTURE_DAY = "2026-11-20"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _run(
    resources: dict[str, Any],
    selection: list[dg.AssetKey],
    partition: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        resources=resources,
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    assert event.step_failure_data is not None
    return str(event.step_failure_data.error)


def _rows(warehouse: DuckDBWarehouse, table: str, day: str) -> pd.DataFrame:
    return warehouse.query(f"SELECT * FROM {table} WHERE day = DATE '{day}' ORDER BY ALL")


def _same(after: pd.DataFrame, before: pd.DataFrame) -> None:
    assert len(before) > 0
    # assert_frame_equal takes missing values (NaN) as equal, as identical rows are.
    pd.testing.assert_frame_equal(after, before, check_exact=True)


@pytest.fixture(scope="module")
def loaded(resources: dict[str, Any]) -> dg.ExecuteInProcessResult:
    """The events of DAY, loaded fault-free."""
    result = _run(resources, [EVENTS], DAY)
    assert result.success
    return result


# ----- the export against the Dashboard ---------------------------------------------------


def test_the_export_count_check_passes_with_the_dashboards_figures(loaded) -> None:
    (evaluation,) = [
        e for e in loaded.get_asset_check_evaluations() if e.check_name == EXPORT_MATCHES_DASHBOARD
    ]
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert evaluation.passed and meta["dashboard_events"] > 1000
    assert meta["exported_events"] == meta["dashboard_events"]  # the sandbox lags nothing
    (event,) = loaded.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["export_no_data"].value is False
    assert metadata["dashboard_events"].value == meta["dashboard_events"]


def test_the_tolerance_is_two_percent_with_a_floor() -> None:
    assert export_tolerance(0) == EXPORT_TOLERANCE_FLOOR == 10
    assert export_tolerance(7_459) == 149
    assert check_export_count(7_459 - 149, 7_459).passed
    lost_hour = check_export_count(7_459 - 7_459 // 24, 7_459)
    assert "time zone" in lost_hour.metadata["what_to_do"].value
    assert "what_to_do" not in check_export_count(7_459, 7_459).metadata
    assert not lost_hour.passed and lost_hour.metadata["difference"].value == -310
    assert not check_export_count(0, 3_449).passed  # the day the issue saw wiped


def test_identify_rows_are_not_counted_as_dashboard_events(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    warehouse.execute("CREATE SCHEMA amplitude")
    warehouse.execute("CREATE TABLE amplitude.events (day DATE, event_type VARCHAR)")
    warehouse.execute(
        "INSERT INTO amplitude.events VALUES (DATE '2026-11-17', 'Open'), "
        "(DATE '2026-11-17', '$identify'), (DATE '2026-11-17', '$groupidentify'), "
        "(DATE '2026-11-17', NULL), (DATE '2026-11-16', 'Open')"
    )
    assert exported_event_count(warehouse, "amplitude.events", date(2026, 11, 17)) == 2


# ----- never emptied on one answer --------------------------------------------------------


def test_a_genuinely_empty_day_is_loaded_empty_and_says_so(resources) -> None:
    result = _run(resources, [EVENTS], FUTURE_DAY)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["export_no_data"].value is True
    assert metadata["amplitude_events_loaded"].value == 0
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_no_data_for_a_day_that_held_rows_keeps_them_and_fails(resources, loaded) -> None:
    warehouse = resources["warehouse"]
    day = "2026-11-21"
    warehouse.execute(
        f"INSERT INTO amplitude.events SELECT * REPLACE (DATE '{day}' AS day) "
        f"FROM amplitude.events WHERE day = DATE '{DAY}' LIMIT 25"
    )
    before = _rows(warehouse, "amplitude.events", day)
    result = _run(resources, [EVENTS], day)
    assert not result.success
    text = _failure(result)
    assert "Raw data files were not found." in text and "holds 25 rows" in text
    assert "They were kept" in text and "DELETE FROM amplitude.events" in text
    _same(_rows(warehouse, "amplitude.events", day), before)


def test_an_html_404_never_empties_the_day(sandbox, resources, loaded) -> None:
    """An intermediary's HTML 404 on the export path is retried, then fails; the day's rows
    are exactly as they were (the issue's wiped day)."""
    warehouse = resources["warehouse"]
    before = _rows(warehouse, "amplitude.events", DAY)
    control = sandbox.urls.control()
    rule = {"kind": "html", "status": 404, "path": r"^/api/2/export"}
    httpx.post(f"{control}/faults", json=rule, timeout=30).raise_for_status()
    try:
        result = _run(resources, [EVENTS], DAY)
    finally:
        httpx.delete(f"{control}/faults", timeout=30).raise_for_status()
    assert not result.success
    text = _failure(result)
    assert "HTML" in text and "not Amplitude's own" in text
    _same(_rows(warehouse, "amplitude.events", DAY), before)


def test_files_missing_without_the_no_data_answer_is_a_failure(tmp_path: Path) -> None:
    """A 200 whose archive held no event files is no evidence of an empty day."""
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    hour = CALENDAR.window(DAY).utc_hours()
    empty = ExportResult(files=[], events=None, bytes=0, windows=[hour], no_data_windows=[])
    with pytest.raises(dg.Failure) as info:
        _refuse_empty(empty, warehouse, "amplitude.events", date(2026, 11, 17), "the day", 7459)
    assert "without a single event file" in str(info.value.description)
    assert info.value.metadata["export_no_data"].value is False
    said = ExportResult(files=[], events=None, bytes=0, windows=[hour], no_data_windows=[hour])
    _refuse_empty(said, warehouse, "amplitude.events", date(2026, 11, 17), "the day", 0)


# ----- declared inputs or a clear failure ---------------------------------------------------


def test_usage_without_pendo_visitors_fails_naming_the_table_and_job(
    resources, tmp_path: Path
) -> None:
    """The issue's green run with zeros: a warehouse where pendo.visitors was never loaded."""
    # The module's API resources, a warehouse of its own.
    resources = {**resources, "warehouse": DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))}
    instance = dg.DagsterInstance.ephemeral()
    result = _run(resources, [*PENDO_DAILY, EVENTS, USAGE], "2026-11-16", instance)
    assert not result.success
    text = _failure(result)
    assert "pendo.visitors does not exist" in text
    assert "pendo/visitors" in text and "catalog_refresh" in text
    assert not resources["warehouse"].table_exists("analytics.account_daily_usage")


def test_usage_with_no_events_loaded_for_the_day_fails(resources, loaded) -> None:
    snapshots = _run(resources, [dg.AssetKey(["pendo", "visitors"])])
    assert snapshots.success
    day = "2026-11-16"  # Pendo loaded, the export never run for it
    pendo = _run(resources, PENDO_DAILY, day)
    assert pendo.success
    result = _run(resources, [USAGE], day)
    assert not result.success
    text = _failure(result)
    assert "amplitude.events has no rows for 2026-11-16" in text
    assert "amplitude/events for partition 2026-11-16 (job daily_sync)" in text


def test_usage_accepts_a_day_its_source_recorded_as_empty(resources) -> None:
    """A day the export itself said is empty (recorded with 0 rows) is zeros, not a gap."""
    instance = dg.DagsterInstance.ephemeral()
    assert _run(resources, [dg.AssetKey(["pendo", "visitors"])], None, instance).success
    assert _run(resources, PENDO_DAILY, FUTURE_DAY, instance).success
    assert _run(resources, [EVENTS], FUTURE_DAY, instance).success
    result = _run(resources, [USAGE], FUTURE_DAY, instance)
    assert result.success
    totals = resources["warehouse"].records(
        "SELECT count(*) AS n, sum(amplitude_events) AS a FROM analytics.account_daily_usage "
        f"WHERE day = DATE '{FUTURE_DAY}'"
    )[0]
    assert int(totals["a"] or 0) == 0


# Last: it adds late events to this module's sandbox, which every later load of DAY sees.
def test_late_uploads_beyond_the_tolerance_fail_the_blocking_check(
    sandbox, resources, loaded
) -> None:
    """Events of DAY uploaded now land in today's export partition, not DAY's; the
    Dashboard counts them for DAY. Beyond 2 % the check fails and the run with it."""
    keys = sandbox.config.amplitude_keys["us"]
    at = int(
        (CALENDAR.window(DAY).start.timestamp() + 12 * 3600) * 1000
    )  # noon of DAY, in the project's zone
    events = [
        {"user_id": f"late-user-{i:04d}", "event_type": "Late Upload", "time": at + i}
        for i in range(400)
    ]
    response = httpx.post(
        f"{sandbox.urls.base}/2/httpapi",
        json={"api_key": keys.api_key, "events": events},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result = _run(resources, [EVENTS], DAY)
    assert not result.success
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == EXPORT_MATCHES_DASHBOARD
    ]
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert not evaluation.passed
    assert meta["dashboard_events"] - meta["exported_events"] == 400 > meta["tolerance"]
    assert "blocking asset check" in _failure(result)
