"""The same sandbox day materialized on DuckDB, on Postgres and on Snowflake (fakesnow, the
local fake: ``backend_fixtures``) leaves the same tables, row for row: every Pendo,
Amplitude and cross-source asset with its checks, then the CRM write-back's log and
quarantine.

Values are compared after a normalisation that only undoes representation: timestamps as
UTC, JSON text parsed (Postgres keeps ``jsonb`` and Snowflake ``VARIANT``, which order
keys and space their text their own way), floats to 9 digits, whole numbers as ints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import dagster as dg
import httpx
import pytest
from backend_fixtures import JSON_LOADERS, make_warehouse
from sandbox_resources import sandbox_resources
from warehouse_compare import table_differences

from analytics_assets.amplitude.assets import amplitude_assets
from analytics_assets.analytics.assets import analytics_assets
from analytics_assets.crm_writeback import crm_account_metadata_push
from analytics_assets.crm_writeback.data.make_sample import OUT as SAMPLE_CRM
from analytics_assets.partitions import DailyCalendar
from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.config import AmplitudeLimits
from analytics_assets.warehouse.base import WarehouseResource

pytestmark = pytest.mark.slow

# The day and frozen clock of tests/assets (sync_day.py): a Tuesday, complete in New York.
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
DAY = "2026-11-17"
CALENDAR = DailyCalendar("America/New_York")
ASSETS = [*pendo_assets(), *amplitude_assets(calendar=CALENDAR), *analytics_assets()]
SNAPSHOTS = [a.key for a in ASSETS if a.partitions_def is None]
DAILY = [a.key for a in ASSETS if a.partitions_def is not None]
HEALTH = dg.AssetKey(["analytics", "account_health"])
WINDOW_SCALE = 0.01


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    # Amplitude's windows at 1/100 (the cohorts' 10 minutes last 6 s, on both sides): the
    # three syncs spend 3 times the day's cohort requests, more than one real window allows.
    config = SandboxConfig(
        seed=11,
        scale=2,
        now=NOW,
        amplitude_timezone="America/New_York",
        amplitude_limits=AmplitudeLimits(window_scale=WINDOW_SCALE),
    )
    with SandboxServer(config) as server:
        yield server


def _sync_the_day(sandbox: SandboxServer, warehouse: WarehouseResource) -> None:
    # Each backend starts from the same Pendo state: the write-back of the run before
    # changed the accounts' metadata, which the account snapshot reads.
    httpx.delete(f"{sandbox.urls.control()}/pendo/store/us").raise_for_status()
    resources = sandbox_resources(sandbox, warehouse, budget_window_scale=WINDOW_SCALE)
    snapshots = dg.materialize(ASSETS, selection=SNAPSHOTS, resources=resources)
    daily = dg.materialize(ASSETS, selection=DAILY, partition_key=DAY, resources=resources)
    health = dg.materialize(ASSETS, selection=[HEALTH], resources=resources)
    for result in (snapshots, daily, health):
        assert result.success
        failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
        assert not failed, f"{warehouse.backend}: checks failed: {failed}"
    pushed = crm_account_metadata_push.execute_in_process(
        run_config={"crm_path": str(SAMPLE_CRM)},
        resources={"pendo_write": resources["pendo_write"], "warehouse": warehouse},
        raise_on_error=False,
    )
    assert pushed.success, f"{warehouse.backend}: the write-back failed"


@pytest.fixture(scope="module")
def synced(
    request: pytest.FixtureRequest, sandbox: SandboxServer
) -> Callable[[str], WarehouseResource]:
    """The day synced on a backend (one of ``JSON_LOADERS``), each synced once, when first
    asked for: ``-k snowflake`` syncs DuckDB and Snowflake only."""
    warehouses: dict[str, WarehouseResource] = {}

    def on(backend: str) -> WarehouseResource:
        if backend not in warehouses:
            warehouses[backend] = make_warehouse(request, backend, f"cross_{backend}")
            _sync_the_day(sandbox, warehouses[backend])
        return warehouses[backend]

    return on


@pytest.mark.parametrize("other", JSON_LOADERS[1:])
def test_both_backends_hold_the_same_tables(
    synced: Callable[[str], WarehouseResource], other: str
) -> None:
    duck, pg = synced("duckdb").tables(), synced(other).tables()
    assert duck == pg
    expected = {
        "amplitude.events",
        "amplitude.user_properties_daily",
        "analytics.account_daily_usage",
        "analytics.account_health",
        "analytics.writeback_log",
        "pendo.visitors",
    }
    assert expected <= set(duck)


@pytest.mark.parametrize("other", JSON_LOADERS[1:])
def test_every_table_is_equal_row_for_row(
    synced: Callable[[str], WarehouseResource], other: str
) -> None:
    compared, problems = table_differences(synced("duckdb"), synced(other))
    assert not problems
    # Not vacuous: the day's data is there on both.
    assert compared["amplitude.events"] > 1000
    # Built in SQL on each backend (json_as_text, window functions), not loaded.
    assert compared["amplitude.user_properties_daily"] > 100
    assert compared["analytics.account_daily_usage"] > 0
    assert compared["analytics.account_health"] > 0
    assert compared["analytics.writeback_log"] > 0
