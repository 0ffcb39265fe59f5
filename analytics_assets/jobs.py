"""The project's jobs and schedules: ``daily_sync`` and ``catalog_refresh``, and ``SyncJobs``,
the component that declares them.

Jobs select assets by the tags every asset of this package carries (``naming.asset_tags``),
so they hold whatever assets the ``PendoSync``, ``AmplitudeSync`` and ``AccountAnalytics``
components of the project built, under any key prefix.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator

from analytics_assets.component_fields import LocatedErrors, check_cron
from analytics_assets.naming import CADENCE_TAG, DAILY, SNAPSHOT
from analytics_assets.partitions import (
    CATALOG_CRON,
    DAILY_CRON,
    DEFAULT_TIMEZONE,
    check_timezone,
)

DAILY_JOB = "daily_sync"
CATALOG_JOB = "catalog_refresh"

DAILY_ASSETS = dg.AssetSelection.tag(CADENCE_TAG, DAILY)
SNAPSHOT_ASSETS = dg.AssetSelection.tag(CADENCE_TAG, SNAPSHOT)


def sync_jobs(
    timezone: str = DEFAULT_TIMEZONE,
    daily_cron: str | None = DAILY_CRON,
    catalog_cron: str | None = CATALOG_CRON,
) -> dg.Definitions:
    """``daily_sync`` (every daily asset: the schedule's run is one day, a backfill's runs
    cover up to the calendar's ``days_per_run`` days each, by the assets' shared
    ``BackfillPolicy``) and ``catalog_refresh`` (the snapshots), each with its schedule in
    the subscription's time zone (None: no schedule)."""
    daily_sync = dg.define_asset_job(
        DAILY_JOB,
        selection=DAILY_ASSETS,
        description=(
            "Yesterday's (or a backfilled day's) usage from Pendo and Amplitude, the raw export, "
            "the per-account daily view and the account health built on it."
        ),
        tags={"team": "data-engineering"},
    )
    catalog_refresh = dg.define_asset_job(
        CATALOG_JOB,
        selection=SNAPSHOT_ASSETS,
        description=(
            "Catalogs, schemas, visitors, accounts, reports, charts, cohorts and today's "
            "cohort membership snapshot."
        ),
        tags={"team": "data-engineering"},
    )
    schedules: list[dg.ScheduleDefinition] = []
    if daily_cron:

        @dg.schedule(
            job=daily_sync,
            cron_schedule=daily_cron,
            execution_timezone=timezone,
            description=(
                "Every day at 04:00 in the subscription's time zone: yesterday's partition, "
                "after Amplitude's ~2 h export lag and Pendo's late events. The late-data "
                "sensor re-runs earlier days whose totals changed."
            ),
        )
        def daily_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
            partitions_def = context.repository_def.get_job(DAILY_JOB).partitions_def
            if partitions_def is None:
                raise dg.DagsterInvariantViolationError(
                    f"{DAILY_JOB} holds no daily assets: declare PendoSync or AmplitudeSync"
                )
            key = partitions_def.get_last_partition_key(
                current_time=context.scheduled_execution_time
            )
            return dg.RunRequest(run_key=f"daily-{key}", partition_key=key)

        schedules.append(daily_sync_schedule)
    if catalog_cron:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{CATALOG_JOB}_schedule",
                job=catalog_refresh,
                cron_schedule=catalog_cron,
                execution_timezone=timezone,
                description="Every day at 03:30: catalogs and snapshots, before the daily sync "
                "reads them.",
            )
        )
    return dg.Definitions(jobs=[daily_sync, catalog_refresh], schedules=schedules)


class SyncJobs(LocatedErrors, dg.Component, dg.Resolvable, dg.Model):
    """The jobs ``daily_sync`` (every daily asset of this package: a day a scheduled run, a
    range of days a backfill run) and ``catalog_refresh`` (the snapshots), with their daily
    schedules."""

    timezone: str = Field(
        default=DEFAULT_TIMEZONE, description="Time zone of the schedules (the subscription's)."
    )
    daily_cron: str | None = Field(
        default=DAILY_CRON, description="When daily_sync runs for yesterday; null: no schedule."
    )
    catalog_cron: str | None = Field(
        default=CATALOG_CRON, description="When catalog_refresh runs; null: no schedule."
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("daily_cron", "catalog_cron")
    @classmethod
    def _cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_cron(value, info.field_name or "cron")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return sync_jobs(self.timezone, self.daily_cron, self.catalog_cron)
