"""Cross-source assets: one row per account per day from both tools, and account health.

Amplitude users are Pendo visitors (``user_id`` = ``visitorId``); an Amplitude event
belongs to the account Pendo links its visitor to. Computed in the warehouse, with
no API calls. ``analytics_assets(...)`` builds them with the namings of the Pendo and
Amplitude assets they read, so keys and tables follow whatever prefixes those use.
"""

# No `from __future__ import annotations`: Dagster checks the asset functions' context
# annotation at definition time, and cannot resolve a string one inside a factory.
from datetime import UTC

import dagster as dg

from analytics_assets.naming import DAILY, SNAPSHOT, AssetNaming, asset_tags
from analytics_assets.partitions import DailyCalendar
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.base import Query, WarehouseResource
from analytics_assets.warehouse.loading import table_metadata
from analytics_assets.warehouse.types import DATE, FLOAT, INT, STR, Column

KINDS = {"duckdb"}
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
    Column("account_id", STR),
    Column("pendo_events", INT),
    Column("pendo_minutes", INT),
    Column("pendo_active_visitors", INT),
    Column("amplitude_events", INT),
    Column("amplitude_active_users", INT),
]

HEALTH_COLUMNS = [
    Column("account_id", STR),
    Column("as_of", DATE, "The newest day of account_daily_usage"),
    Column("pendo_events_7d", INT),
    Column("pendo_events_28d", INT),
    Column("amplitude_events_7d", INT),
    Column("amplitude_events_28d", INT),
    Column("active_days_7d", INT),
    Column("active_days_28d", INT),
    Column("last_active_day", DATE),
    Column("trend_7d_vs_28d", FLOAT, "The last 7 days' daily average over the 28 days'"),
]


def _account_daily_usage(
    calendar: DailyCalendar, naming: AssetNaming, pendo: AssetNaming, amplitude: AssetNaming
) -> dg.AssetsDefinition:
    key = naming.key("account_daily_usage")
    table = naming.table("account_daily_usage")
    events = amplitude.table("events")
    visitors = pendo.table("visitors")
    pendo_usage = pendo.table("account_daily_usage")

    @dg.asset(
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
        deps=[pendo.key("account_daily_usage"), amplitude.key("events"), pendo.key("visitors")],
        check_specs=[checks.keys_spec(key, ["day", "account_id"])],
        automation_condition=dg.AutomationCondition.eager(),
    )
    def _usage(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        window = calendar.window(context.partition_key)
        # Amplitude's export times are naive UTC; compare against the local day in UTC.
        start = window.start.astimezone(UTC).replace(tzinfo=None)
        end = window.end.astimezone(UTC).replace(tzinfo=None)
        if warehouse.table_exists(events) and warehouse.table_exists(visitors):
            amplitude_cte = f"""
                SELECT v.account_id, count(*) AS amplitude_events,
                       count(DISTINCT e.user_id) AS amplitude_active_users
                FROM {events} e JOIN {visitors} v ON v.visitor_id = e.user_id
                WHERE e.event_time >= ? AND e.event_time < ?
                  AND v.account_id IS NOT NULL AND v.account_id <> ''
                GROUP BY v.account_id
            """
            amplitude_params = [start, end]
        else:
            # No export loaded yet: Pendo's figures alone, Amplitude's as zeros.
            amplitude_cte = (
                "SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(0 AS BIGINT) AS "
                "amplitude_events, CAST(0 AS BIGINT) AS amplitude_active_users WHERE 1 = 0"
            )
            amplitude_params = []
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
            metadata=table_metadata(warehouse, table, partition=partition),
            check_results=[
                checks.check_keys_unique(warehouse, table, ["day", "account_id"], partition)
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
        tags=asset_tags(naming, SNAPSHOT),
        description=(
            "Per account: activity over the last 7 and 28 days, active days, and the trend (the "
            "last 7 days' daily average against the 28 days'); the input of the activity alerts "
            "and of the CRM write-back's health score."
        ),
        deps=[naming.key("account_daily_usage")],
        check_specs=[checks.keys_spec(key, ["account_id"])],
        automation_condition=dg.AutomationCondition.eager(),
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
            metadata=table_metadata(warehouse, table),
            check_results=[checks.check_keys_unique(warehouse, table, ["account_id"])],
        )

    _health.__name__ = "_".join([*naming.key_prefix, "analytics_account_health"])
    return _health
