"""Cross-source assets: one row per account per day from both tools, and account health.

Amplitude users are Pendo visitors (``user_id`` = ``visitorId``); an Amplitude event
belongs to the account Pendo links its visitor to. Computed in the warehouse, with
no API calls. ``analytics_assets(...)`` builds them with the namings of the Pendo and
Amplitude assets they read, so keys and tables follow whatever prefixes those use.
"""

# No `from __future__ import annotations`: Dagster checks the asset functions' context
# annotation at definition time, and cannot resolve a string one inside a factory.
from collections.abc import Iterator
from datetime import UTC, date
from typing import Any

import dagster as dg

from analytics_assets.day_results import each_day
from analytics_assets.jobs import CATALOG_JOB, DAILY_JOB
from analytics_assets.naming import DAILY, AssetNaming, asset_tags
from analytics_assets.partitions import FRESHNESS_POLICY, DailyCalendar, beta_backfill_policy
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.asset_kinds import WAREHOUSE_KIND
from analytics_assets.warehouse.base import Query, WarehouseResource
from analytics_assets.warehouse.loading import table_metadata
from analytics_assets.warehouse.types import DATE, FLOAT, INT, STR, Column

KINDS = {WAREHOUSE_KIND}
OWNERS = ["team:data-engineering", "team:customer-success"]


def analytics_assets(
    *,
    calendar: DailyCalendar | None = None,
    naming: AssetNaming | None = None,
    pendo: AssetNaming | None = None,
    amplitude: AssetNaming | None = None,
) -> list[dg.AssetsDefinition]:
    """``account_daily_usage`` (daily) and ``account_health``. ``pendo`` and ``amplitude``
    are the namings of the assets they read (default: the unprefixed defaults)."""
    calendar = calendar or DailyCalendar()
    naming = naming or AssetNaming("analytics")
    pendo = pendo or AssetNaming("pendo")
    amplitude = amplitude or AssetNaming("amplitude")
    return [
        _account_daily_usage(calendar, naming, pendo, amplitude),
        _account_health(naming),
    ]


USAGE_COLUMNS = [
    Column("day", DATE, "The local day (the partition)"),
    Column("account_id", STR, "Pendo account id (Amplitude users map to it via Pendo visitors)"),
    Column("pendo_events", INT, "Pendo events of the account's identified visitors (0: none)"),
    Column("pendo_minutes", INT, "Pendo minutes with events (sum of numMinutes; 0: none)"),
    Column("pendo_active_visitors", INT, "Distinct Pendo visitors of the account active that day"),
    Column("amplitude_events", INT, "Amplitude events of its users whose event_time is in the day"),
    Column("amplitude_active_users", INT, "Distinct Amplitude user_ids of those events"),
]

HEALTH_COLUMNS = [
    Column("account_id", STR, "Pendo account id, with usage rows in the 28 days to as_of"),
    Column("as_of", DATE, "The newest day of account_daily_usage"),
    Column("pendo_events_7d", INT, "Pendo events in the 7 days to as_of (NULL: no row in them)"),
    Column("pendo_events_28d", INT, "Pendo events in the 28 days to as_of"),
    Column("amplitude_events_7d", INT, "Amplitude events in the 7 days to as_of (NULL: no row)"),
    Column("amplitude_events_28d", INT, "Amplitude events in the 28 days to as_of"),
    Column("active_days_7d", INT, "Days with any Pendo or Amplitude event, of the 7 to as_of"),
    Column("active_days_28d", INT, "Days with any Pendo or Amplitude event, of the 28 to as_of"),
    Column("last_active_day", DATE, "Latest day with any event, within the 28 (NULL: none)"),
    Column("trend_7d_vs_28d", FLOAT, "The last 7 days' daily average over the 28 days'"),
]


def _recorded_empty(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str) -> bool:
    """True when this instance recorded ``key``'s ``partition`` as loaded with no rows (the
    source said the day is empty), so an empty partition is that answer, not a gap."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return False
    metadata = records[0].asset_materialization.metadata
    count = metadata.get("dagster/row_count")
    return count is not None and count.value == 0


def require_input(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    table: str,
    key: dg.AssetKey,
    job: str,
    day: date | None = None,
) -> None:
    """Fail unless ``table`` (the table of ``key``) exists and holds rows (for ``day``, when
    given): an input that is absent or was never loaded for the day is no day of zeros. A
    day partition its asset recorded as empty (the source's own answer) is accepted."""
    what, reader = "/".join(key.path), context.asset_key.to_user_string()
    if not warehouse.table_exists(table):
        raise dg.Failure(
            description=(
                f"{table} does not exist in this warehouse, and {reader} "
                f"reads it; nothing was written. Materialize {what} first (job {job})"
                + (f" for {day}" if day else "")
                + ", then run this partition again."
            ),
            metadata={"missing_table": table, "asset_to_run": what, "job": job},
        )
    where, params = ("", []) if day is None else (" WHERE day = ?", [day])
    rows = int(warehouse.records(f"SELECT count(*) AS n FROM {table}{where}", params)[0]["n"])
    if rows:
        return
    if day is not None and _recorded_empty(context, key, day.isoformat()):
        context.log.info(f"{table}: no rows for {day}, as its last materialization recorded")
        return
    scope = f"for {day}" if day is not None else "at all"
    raise dg.Failure(
        description=(
            f"{table} has no rows {scope}, and {reader} reads it; "
            "nothing was written (its figures would read 0 for every account). Materialize "
            f"{what}" + (f" for partition {day}" if day else "") + f" (job {job}), then run "
            "this partition again."
        ),
        metadata={"empty_table": table, "asset_to_run": what, "job": job},
    )


def _account_daily_usage(
    calendar: DailyCalendar, naming: AssetNaming, pendo: AssetNaming, amplitude: AssetNaming
) -> dg.AssetsDefinition:
    key = naming.key("account_daily_usage")
    table = naming.table("account_daily_usage")
    events = amplitude.table("events")
    visitors = pendo.table("visitors")
    pendo_usage = pendo.table("account_daily_usage")
    events_key, visitors_key = amplitude.key("events"), pendo.key("visitors")
    pendo_usage_key = pendo.key("account_daily_usage")

    with beta_backfill_policy():  # Dagster warns at this call, not at the decoration
        as_asset = dg.asset(
            key=key,
            group_name=naming.group,
            kinds=KINDS,
            owners=OWNERS,
            tags=asset_tags(naming, DAILY),
            description=(
                "One row per account per day: Pendo events, minutes and active visitors beside "
                "Amplitude events and active users (events whose time falls in the local day, "
                "mapped to accounts through Pendo's visitor-to-account link)."
            ),
            partitions_def=calendar.partitions_def,
            backfill_policy=calendar.backfill_policy,
            deps=[pendo_usage_key, events_key, visitors_key],
            check_specs=[
                checks.keys_spec(key, ["day", "account_id"], calendar.partitions_def),
                checks.volume_spec(key, calendar.partitions_def, "events (Pendo and Amplitude)"),
            ],
            freshness_policy=FRESHNESS_POLICY,
        )

    @as_asset
    def _usage(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[Any]:
        # A backfill run's range: each day as its own run would compute it, in the warehouse.
        yield from each_day(context, lambda day: _usage_of_day(day, warehouse))

    def _usage_of_day(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        window = calendar.window(context.partition_key)
        # Amplitude's export times are naive UTC; compare against the local day in UTC.
        start = window.start.astimezone(UTC).replace(tzinfo=None)
        end = window.end.astimezone(UTC).replace(tzinfo=None)
        # Every input is required: an absent or unloaded one is a failure naming what to
        # run, never a day of zeros (the Amplitude columns read 0 without visitors).
        require_input(context, warehouse, pendo_usage, pendo_usage_key, DAILY_JOB, window.day)
        require_input(context, warehouse, events, events_key, DAILY_JOB, window.day)
        require_input(context, warehouse, visitors, visitors_key, CATALOG_JOB)
        amplitude_cte = f"""
            SELECT v.account_id, count(*) AS amplitude_events,
                   count(DISTINCT e.user_id) AS amplitude_active_users
            FROM {events} e JOIN {visitors} v ON v.visitor_id = e.user_id
            WHERE e.event_time >= ? AND e.event_time < ?
              AND v.account_id IS NOT NULL AND v.account_id <> ''
            GROUP BY v.account_id
        """
        amplitude_params = [start, end]
        # Portable SQL (warehouse/base.py): the day is a parameter rather than a DATE
        # literal, and the table's declared types do the casts on insert.
        select = f"""
            WITH p AS (
                SELECT account_id, events, minutes, active_visitors
                FROM {pendo_usage} WHERE day = ?
            ), a AS ({amplitude_cte})
            SELECT CAST(? AS DATE) AS day,
                   coalesce(p.account_id, a.account_id) AS account_id,
                   CAST(coalesce(p.events, 0) AS BIGINT) AS pendo_events,
                   CAST(coalesce(p.minutes, 0) AS BIGINT) AS pendo_minutes,
                   CAST(coalesce(p.active_visitors, 0) AS BIGINT) AS pendo_active_visitors,
                   CAST(coalesce(a.amplitude_events, 0) AS BIGINT) AS amplitude_events,
                   CAST(coalesce(a.amplitude_active_users, 0) AS BIGINT) AS amplitude_active_users
            FROM p FULL OUTER JOIN a ON p.account_id = a.account_id
        """
        params = [window.day, *amplitude_params, window.day]
        # The table, the delete and the insert: one transaction (replace_partition).
        warehouse.replace_partition(
            table, Query(select, params), "day", window.day, columns=USAGE_COLUMNS
        )
        partition = ("day", window.day)
        return dg.MaterializeResult(
            metadata=table_metadata(warehouse, table, USAGE_COLUMNS, partition=partition),
            check_results=[
                checks.check_keys_unique(warehouse, table, ["day", "account_id"], partition),
                checks.check_volume(
                    warehouse, table, window.day, measure="sum(pendo_events + amplitude_events)"
                ),
            ],
        )

    _usage.__name__ = "_".join([*naming.key_prefix, "analytics_account_daily_usage"])
    return _usage


def _account_health(naming: AssetNaming) -> dg.AssetsDefinition:
    key = naming.key("account_health")
    table = naming.table("account_health")
    usage = naming.table("account_daily_usage")

    @dg.asset(
        key=key,
        group_name=naming.group,
        kinds=KINDS,
        owners=OWNERS,
        # Daily, not a snapshot: it summarizes the days daily_sync loads, so it runs in that
        # job right after account_daily_usage (an unpartitioned step of a partitioned job),
        # never before the day it summarizes.
        tags=asset_tags(naming, DAILY),
        description=(
            "Per account: activity over the last 7 and 28 days, active days, and the trend (the "
            "last 7 days' daily average against the 28 days'); the input of the activity alerts "
            "and of the CRM write-back's health score. Refreshed by daily_sync after each day."
        ),
        deps=[naming.key("account_daily_usage")],
        check_specs=[checks.keys_spec(key, ["account_id"])],
        freshness_policy=FRESHNESS_POLICY,
    )
    def _health(warehouse: WarehouseResource) -> dg.MaterializeResult:
        # Health over no usage yet is an empty table, not an error.
        warehouse.create_table(usage, USAGE_COLUMNS)
        # Portable SQL (warehouse/base.py): CASE inside the aggregates where DuckDB would
        # take FILTER; date minus date is a number of days, date minus a number a date.
        active = "pendo_events + amplitude_events > 0"
        warehouse.replace_table(
            table,
            f"""
            WITH latest AS (SELECT max(day) AS d FROM {usage}),
            u AS (
                SELECT u.*, (latest.d - u.day) AS age
                FROM {usage} u, latest
                WHERE u.day > latest.d - 28
            )
            SELECT account_id,
                   (SELECT d FROM latest) AS as_of,
                   sum(CASE WHEN age < 7 THEN pendo_events END) AS pendo_events_7d,
                   sum(pendo_events) AS pendo_events_28d,
                   sum(CASE WHEN age < 7 THEN amplitude_events END) AS amplitude_events_7d,
                   sum(amplitude_events) AS amplitude_events_28d,
                   count(CASE WHEN age < 7 AND {active} THEN 1 END) AS active_days_7d,
                   count(CASE WHEN {active} THEN 1 END) AS active_days_28d,
                   max(CASE WHEN {active} THEN day END) AS last_active_day,
                   CASE WHEN coalesce(sum(pendo_events + amplitude_events), 0) = 0 THEN NULL
                        ELSE round((coalesce(sum(CASE WHEN age < 7
                                                      THEN pendo_events + amplitude_events END),
                                             0) / 7.0)
                                   / (sum(pendo_events + amplitude_events) / 28.0), 3)
                   END AS trend_7d_vs_28d
            FROM u GROUP BY account_id
            """,
            columns=HEALTH_COLUMNS,
        )
        return dg.MaterializeResult(
            metadata=table_metadata(warehouse, table, HEALTH_COLUMNS),
            check_results=[checks.check_keys_unique(warehouse, table, ["account_id"])],
        )

    _health.__name__ = "_".join([*naming.key_prefix, "analytics_account_health"])
    return _health
