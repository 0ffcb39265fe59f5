"""The one Definitions object of the code location: everything, wired together.

This is the only module that knows the whole: assets, checks, jobs, schedules,
sensors, and the resources chosen from the environment. Keys are ``EnvVar``s,
resolved by Dagster at run time; the non-secret settings (region, base URL) are read
from the environment when the code location loads.
"""

from __future__ import annotations

import os

import dagster as dg

from analytics_assets.alerts.sensors import build_sensors
from analytics_assets.amplitude.assets import amplitude_assets
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.analytics.assets import analytics_assets
from analytics_assets.crm_writeback import (
    crm_account_metadata_push,
    crm_account_metadata_push_schedule,
)
from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sync_config import load_sync_config
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

DAILY_JOB = "daily_sync"
CATALOG_JOB = "catalog_refresh"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def build_resources() -> dict[str, object]:
    """Resources from the environment: real services when keys are set, else whatever
    base URLs point at (the demo points them at the sandbox)."""
    common_pendo = {
        "region": _env("PENDO_REGION", "us"),
        "base_url": _env("PENDO_BASE_URL"),
        "rate_per_second": float(_env("PENDO_RATE_PER_SECOND", "5")),
    }
    return {
        # Least privilege: the syncs and sensors read with a read-only key; only the
        # write-back holds the read-write one.
        "pendo": PendoResource(integration_key=dg.EnvVar("PENDO_INTEGRATION_KEY"), **common_pendo),
        "pendo_write": PendoResource(
            integration_key=dg.EnvVar("PENDO_WRITE_INTEGRATION_KEY"), **common_pendo
        ),
        "amplitude": AmplitudeResource(
            api_key=dg.EnvVar("AMPLITUDE_API_KEY"),
            secret_key=dg.EnvVar("AMPLITUDE_SECRET_KEY"),
            region=_env("AMPLITUDE_REGION", "us"),
            base_url=_env("AMPLITUDE_BASE_URL"),
            ingestion_url=_env("AMPLITUDE_INGESTION_URL"),
            profile_url=_env("AMPLITUDE_PROFILE_URL"),
        ),
        "warehouse": DuckDBWarehouse(),
    }


all_assets = [*pendo_assets(), *amplitude_assets(), *analytics_assets()]

daily_assets = dg.AssetSelection.assets(*(a for a in all_assets if a.partitions_def is not None))
daily_sync = dg.define_asset_job(
    DAILY_JOB,
    selection=daily_assets,
    description=(
        "Yesterday's (or a backfilled day's) usage from Pendo and Amplitude, the raw export "
        "and the per-account daily view."
    ),
    tags={"team": "data-engineering"},
)
catalog_refresh = dg.define_asset_job(
    CATALOG_JOB,
    selection=dg.AssetSelection.all() - daily_assets,
    description=(
        "Catalogs, schemas, visitors, accounts, reports, charts, cohorts, today's cohort "
        "membership snapshot and health."
    ),
)


@dg.schedule(
    job=daily_sync,
    cron_schedule="0 4 * * *",
    execution_timezone=load_sync_config().timezone,
    description=(
        "Every day at 04:00 in the subscription's time zone: yesterday's partition, after "
        "Amplitude's ~2 h export lag and Pendo's late events. The late-data sensor re-runs "
        "earlier days whose totals changed."
    ),
)
def daily_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    partitions_def = daily_sync.partitions_def
    assert partitions_def is not None
    key = partitions_def.get_last_partition_key(current_time=context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"daily-{key}", partition_key=key)


catalog_refresh_schedule = dg.ScheduleDefinition(
    job=catalog_refresh,
    cron_schedule="30 3 * * *",
    execution_timezone=load_sync_config().timezone,
    description="Every day at 03:30: catalogs and snapshots, before the daily sync reads them.",
)

# Late data: a day whose Pendo events changed after it was materialized is re-run, for
# its Pendo assets only (the Amplitude export files late uploads under later days).
sensors = build_sensors(
    late_data_job=daily_sync,
    late_data_assets=[
        a.key for a in all_assets if a.partitions_def is not None and a.key.path[0] == "pendo"
    ],
)

defs = dg.Definitions(
    assets=all_assets,
    jobs=[daily_sync, catalog_refresh, crm_account_metadata_push],
    schedules=[daily_sync_schedule, catalog_refresh_schedule, crm_account_metadata_push_schedule],
    sensors=sensors,
    resources=build_resources(),
)
