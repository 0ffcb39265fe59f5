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
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.loading import table_metadata

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


def _usage_ddl(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (day DATE, account_id VARCHAR, "
        "pendo_events BIGINT, pendo_minutes BIGINT, pendo_active_visitors BIGINT, "
        "amplitude_events BIGINT, amplitude_active_users BIGINT)"
    )


def _schema(table: str) -> str:
    return table.rsplit(".", 1)[0]


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
        context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse
    ) -> dg.MaterializeResult:
        window = calendar.window(context.partition_key)
        has_events = warehouse.table_exists(events)
        amplitude_cte = (
            f"""
            SELECT v.account_id, count(*) AS amplitude_events,
                   count(DISTINCT e.user_id) AS amplitude_active_users
            FROM {events} e JOIN {visitors} v ON v.visitor_id = e.user_id
            WHERE e.event_time >= ? AND e.event_time < ?
              AND v.account_id IS NOT NULL AND v.account_id <> ''
            GROUP BY v.account_id
            """
            if has_events and warehouse.table_exists(visitors)
            else "SELECT NULL::VARCHAR AS account_id, 0::BIGINT AS amplitude_events, "
            "0::BIGINT AS amplitude_active_users WHERE ? IS NULL AND ? IS NULL"
        )
        # Amplitude's export times are naive UTC; compare against the local day in UTC.
        start = window.start.astimezone(UTC).replace(tzinfo=None)
        end = window.end.astimezone(UTC).replace(tzinfo=None)
        select = f"""
            WITH p AS (
                SELECT account_id, events, minutes, active_visitors
                FROM {pendo_usage} WHERE day = ?
            ), a AS ({amplitude_cte})
            SELECT DATE '{window.day.isoformat()}' AS day,
                   coalesce(p.account_id, a.account_id) AS account_id,
                   coalesce(p.events, 0)::BIGINT AS pendo_events,
                   coalesce(p.minutes, 0)::BIGINT AS pendo_minutes,
                   coalesce(p.active_visitors, 0)::BIGINT AS pendo_active_visitors,
                   coalesce(a.amplitude_events, 0)::BIGINT AS amplitude_events,
                   coalesce(a.amplitude_active_users, 0)::BIGINT AS amplitude_active_users
            FROM p FULL OUTER JOIN a ON p.account_id = a.account_id
        """
        with warehouse.connection() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_schema(table)}")
                conn.execute(_usage_ddl(table))
                conn.execute(f"DELETE FROM {table} WHERE day = ?", [window.day])
                conn.execute(f"INSERT INTO {table} BY NAME {select}", [window.day, start, end])
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
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
    def _health(warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
        # Health over no usage yet is an empty table, not an error.
        warehouse.execute(f"CREATE SCHEMA IF NOT EXISTS {_schema(table)}")
        warehouse.execute(_usage_ddl(usage))
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
                   sum(pendo_events) FILTER (WHERE age < 7) AS pendo_events_7d,
                   sum(pendo_events) AS pendo_events_28d,
                   sum(amplitude_events) FILTER (WHERE age < 7) AS amplitude_events_7d,
                   sum(amplitude_events) AS amplitude_events_28d,
                   count(*) FILTER (WHERE age < 7 AND pendo_events + amplitude_events > 0)
                       AS active_days_7d,
                   count(*) FILTER (WHERE pendo_events + amplitude_events > 0) AS active_days_28d,
                   max(day) FILTER (WHERE pendo_events + amplitude_events > 0) AS last_active_day,
                   CASE WHEN coalesce(sum(pendo_events + amplitude_events), 0) = 0 THEN NULL
                        ELSE round((coalesce(sum(pendo_events + amplitude_events)
                                     FILTER (WHERE age < 7), 0) / 7.0)
                                   / (sum(pendo_events + amplitude_events) / 28.0), 3)
                   END AS trend_7d_vs_28d
            FROM u GROUP BY account_id
            """,
        )
        return dg.MaterializeResult(
            metadata=table_metadata(warehouse, table),
            check_results=[checks.check_keys_unique(warehouse, table, ["account_id"])],
        )

    _health.__name__ = "_".join([*naming.key_prefix, "analytics_account_health"])
    return _health
