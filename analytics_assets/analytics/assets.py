"""Cross-source assets: one row per account per day from both tools, and account health.

Amplitude users are Pendo visitors (``user_id`` = ``visitorId``); an Amplitude event
belongs to the account Pendo links its visitor to. Computed in the warehouse, with
no API calls.
"""

from datetime import UTC

import dagster as dg

from analytics_assets.amplitude.assets import EVENTS_KEY
from analytics_assets.partitions import daily_partitions, day_window
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.loading import table_metadata

GROUP = "analytics"
KINDS = {"duckdb"}
OWNERS = ["team:data-engineering", "team:customer-success"]

PENDO_ACCOUNT_USAGE = dg.AssetKey(["pendo", "account_daily_usage"])
PENDO_VISITORS = dg.AssetKey(["pendo", "visitors"])
USAGE_KEY = dg.AssetKey([GROUP, "account_daily_usage"])
USAGE_DDL = (
    "CREATE TABLE IF NOT EXISTS analytics.account_daily_usage (day DATE, account_id VARCHAR, "
    "pendo_events BIGINT, pendo_minutes BIGINT, pendo_active_visitors BIGINT, "
    "amplitude_events BIGINT, amplitude_active_users BIGINT)"
)
HEALTH_KEY = dg.AssetKey([GROUP, "account_health"])


@dg.asset(
    key=USAGE_KEY,
    group_name=GROUP,
    kinds=KINDS,
    owners=OWNERS,
    description=(
        "One row per account per day: Pendo events, minutes and active visitors beside "
        "Amplitude events and active users (events whose time falls in the local day, "
        "mapped to accounts through Pendo's visitor-to-account link)."
    ),
    partitions_def=daily_partitions(),
    deps=[PENDO_ACCOUNT_USAGE, EVENTS_KEY, PENDO_VISITORS],
    check_specs=[checks.keys_spec(USAGE_KEY, ["day", "account_id"])],
    automation_condition=dg.AutomationCondition.eager(),
)
def analytics_account_daily_usage(
    context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse
) -> dg.MaterializeResult:
    window = day_window(context.partition_key)
    table = "analytics.account_daily_usage"
    has_events = warehouse.table_exists("amplitude.events")
    amplitude_cte = (
        """
        SELECT v.account_id, count(*) AS amplitude_events,
               count(DISTINCT e.user_id) AS amplitude_active_users
        FROM amplitude.events e JOIN pendo.visitors v ON v.visitor_id = e.user_id
        WHERE e.event_time >= ? AND e.event_time < ?
          AND v.account_id IS NOT NULL AND v.account_id <> ''
        GROUP BY v.account_id
        """
        if has_events and warehouse.table_exists("pendo.visitors")
        else "SELECT NULL::VARCHAR AS account_id, 0::BIGINT AS amplitude_events, "
        "0::BIGINT AS amplitude_active_users WHERE ? IS NULL AND ? IS NULL"
    )
    # Amplitude's export times are naive UTC; compare against the local day in UTC.
    start = window.start.astimezone(UTC).replace(tzinfo=None)
    end = window.end.astimezone(UTC).replace(tzinfo=None)
    select = f"""
        WITH p AS (
            SELECT account_id, events, minutes, active_visitors
            FROM pendo.account_daily_usage WHERE day = ?
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
            conn.execute("CREATE SCHEMA IF NOT EXISTS analytics")
            conn.execute(USAGE_DDL)
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


@dg.asset(
    key=HEALTH_KEY,
    group_name=GROUP,
    kinds=KINDS,
    owners=OWNERS,
    description=(
        "Per account: activity over the last 7 and 28 days, active days, and the trend (the "
        "last 7 days' daily average against the 28 days'); the input of the activity alerts "
        "and of the CRM write-back's health score."
    ),
    deps=[USAGE_KEY],
    check_specs=[checks.keys_spec(HEALTH_KEY, ["account_id"])],
    automation_condition=dg.AutomationCondition.eager(),
)
def analytics_account_health(warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    table = "analytics.account_health"
    # Health over no usage yet is an empty table, not an error.
    warehouse.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    warehouse.execute(USAGE_DDL)
    warehouse.replace_table(
        table,
        """
        WITH latest AS (SELECT max(day) AS d FROM analytics.account_daily_usage),
        u AS (
            SELECT u.*, (latest.d - u.day) AS age
            FROM analytics.account_daily_usage u, latest
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


def analytics_assets() -> list[dg.AssetsDefinition]:
    return [analytics_account_daily_usage, analytics_account_health]
