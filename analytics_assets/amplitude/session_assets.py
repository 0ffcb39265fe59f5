"""Amplitude sessions, annotations and the user properties of each day's users.

``amplitude_session_assets(calendar, naming, include)`` builds, with the conventions of
the other Amplitude assets (``amplitude_api`` pool, tags, freshness, step retries,
checks recorded against the partition):

* ``session_daily_stats`` (daily): the average session length and the sessions per
  user of the day, as the Dashboard REST API gives them (``/api/2/sessions/average``,
  ``/api/2/sessions/peruser``: cost 4 per day each);
* ``annotations`` (snapshot): the project's chart annotations (``/api/2/annotations``);
* ``user_properties_daily`` (daily): for every user with a row in the day's raw export
  (the ``events`` table, a declared dependency), the user's properties at the end of the
  day, read from that export in SQL: every export row carries the user's properties as
  of the event, so the user's latest row of the day (``$identify`` rows included) holds
  them. No API request, so it costs nothing per user and works in the EU too.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's context
# annotation at definition time.
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import date
from typing import Any

import dagster as dg

from analytics_assets.amplitude.asset_factory import Compute, amplitude_asset, cost_metadata
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.analytics.assets import require_input
from analytics_assets.day_results import DayResult, range_cost
from analytics_assets.jobs import DAILY_JOB
from analytics_assets.naming import AssetNaming
from analytics_assets.partitions import DailyCalendar
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.base import Query, WarehouseResource
from analytics_assets.warehouse.loading import Column, load_rows, table_metadata
from analytics_assets.warehouse.types import BOOL, DATE, FLOAT, INT, STR, TS_NAIVE

SESSION_DAILY_STATS = "session_daily_stats"
ANNOTATIONS = "annotations"
USER_PROPERTIES_DAILY = "user_properties_daily"
#: The names ``include`` accepts from this module.
SESSION_ASSET_NAMES = (SESSION_DAILY_STATS, ANNOTATIONS, USER_PROPERTIES_DAILY)
EVENTS = "events"  # the raw export asset, whose rows the user properties are read from
# Rows of the export that are property updates, not a user's activity: $identify carries
# the user's properties after its update; $groupidentify updates a group's, not the user's.
IDENTIFY, GROUP_IDENTIFY = "$identify", "$groupidentify"
EVERY_USER_PROFILED = "every_user_seen_has_properties"

DAY = Column("day", DATE, "The local day (the partition)")
SESSION_COLUMNS = [
    DAY,
    Column("average_session_seconds", FLOAT, "Average session length of the day, in seconds"),
    Column("sessions_per_user", FLOAT, "Average sessions per active user of the day"),
]
ANNOTATION_COLUMNS = [
    Column("id", INT, "Amplitude annotation id"),
    Column("date", DATE, "The day the annotation marks"),
    Column("label", STR, "Its title"),
    Column("details", STR, "Its text"),
]
USER_COLUMNS = [
    DAY,
    Column("user_id", STR, "Amplitude user_id with a row in the day's export"),
    Column("amplitude_id", INT, "Amplitude's own id of the user, from the row read"),
    Column(
        "properties",
        STR,
        "The user's properties at the end of the day, JSON: those of the user's latest row "
        "of the day's export ($identify rows included)",
    ),
    Column("properties_as_of", TS_NAIVE, "event_time of the row the properties are from, UTC"),
    Column("user_creation_time", TS_NAIVE, "When Amplitude first saw the user, UTC"),
    Column(
        "active",
        BOOL,
        "True when the user had an event that day; False when the day's rows were only "
        "$identify property updates",
    ),
]


def _day_value(rows: Iterable[dict[str, Any]], day: date) -> float | None:
    """The value of ``day`` in a one-series Dashboard answer (None when it has no point)."""
    for row in rows:
        if row.get("date") == day and row.get("value") is not None:
            return float(row["value"])
    return None


def _as_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def user_properties_query(warehouse: WarehouseResource, events: str, day: date) -> Query:
    """The rows of ``user_properties_daily`` for ``day``, from the ``events`` table's
    partition of that day: per user_id, the user_properties of the user's latest row.

    Latest by event time, then upload time, then uuid (a fixed order for ties). An
    ``$identify`` row counts: it carries the properties its update left, so a property set
    after the user's last event of the day is the day's state. ``$groupidentify`` rows
    update a group, and rows without user_properties carry none: neither is read (a user
    with none left is written with NULL properties, which the check reports). NULLS LAST
    is spelled out: Postgres and Snowflake sort NULLs first in a descending order. The
    window ranks narrow rows (no JSON) and the chosen rows are read back by uuid: on DuckDB
    1.5 times as fast on 5.4 million events as ranking whole rows, in the same memory
    (bench/README.md); a uuid repeated in the export would repeat a user here, which the
    keys checks of both tables report.
    """
    ranked = f"""
        SELECT uuid, user_id,
               max(CASE WHEN event_type <> ? THEN 1 ELSE 0 END)
                   OVER (PARTITION BY user_id) AS activity,
               ROW_NUMBER() OVER (
                   PARTITION BY user_id
                   ORDER BY CASE WHEN user_properties IS NULL THEN 1 ELSE 0 END,
                            event_time DESC NULLS LAST,
                            server_upload_time DESC NULLS LAST,
                            uuid DESC NULLS LAST
               ) AS newest
        FROM {events}
        WHERE day = ? AND user_id IS NOT NULL AND event_type <> ?
    """
    select = f"""
        SELECT CAST(? AS DATE) AS day, e.user_id, e.amplitude_id,
               {warehouse.json_as_text("e.user_properties")} AS properties,
               e.event_time AS properties_as_of, e.user_creation_time,
               r.activity = 1 AS active
        FROM ({ranked}) r
        JOIN {events} e ON e.uuid = r.uuid AND e.user_id = r.user_id AND e.day = ?
        WHERE r.newest = 1
    """
    return Query(select, [day, IDENTIFY, day, GROUP_IDENTIFY, day])


def every_user_spec(
    asset_key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> dg.AssetCheckSpec:
    return checks.check_spec(
        EVERY_USER_PROFILED,
        asset_key,
        "Every user_id with an event in the day's export has a row with properties",
        partitions,
    )


class _Factory:
    def __init__(
        self, calendar: DailyCalendar, naming: AssetNaming, retry: dg.RetryPolicy | None
    ) -> None:
        self.calendar = calendar
        self.naming = naming
        self.retry = retry

    def asset(
        self,
        name: str,
        description: str,
        compute: Compute,
        specs: Callable[[dg.AssetKey], list[dg.AssetCheckSpec]],
        *,
        daily: bool,
        deps: Sequence[dg.AssetKey] = (),
        ranged: bool = False,
    ) -> dg.AssetsDefinition:
        return amplitude_asset(
            self.naming,
            name,
            description,
            compute,
            lambda key, _: specs(key),
            self.calendar if daily else None,
            deps,
            self.retry,
            ranged=ranged,
        )

    def session_daily_stats(self) -> dg.AssetsDefinition:
        table = self.naming.table(SESSION_DAILY_STATS)
        calendar, parts = self.calendar, self.calendar.partitions_def

        def compute(
            context: dg.AssetExecutionContext,
            amplitude: AmplitudeResource,
            warehouse: WarehouseResource,
        ) -> list[DayResult]:
            days = [w.day for w in calendar.windows(context)]
            with amplitude.session(context) as client:
                start = client.stats.snapshot()
                # One query over the step's days: sessions cost per day either way.
                averages = client.session_average_length(days[0], days[-1])
                per_users = client.sessions_per_user(days[0], days[-1])
                cost = cost_metadata(client, start)
            results = []
            for day in days:
                average, per_user = _day_value(averages, day), _day_value(per_users, day)
                rows = (
                    []
                    if per_user is None
                    else [
                        {
                            "day": day,
                            "average_session_seconds": average,
                            "sessions_per_user": per_user,
                        }
                    ]
                )
                partition = ("day", day)
                load_rows(warehouse, table, SESSION_COLUMNS, rows, partition=partition)
                metadata = {
                    **table_metadata(warehouse, table, SESSION_COLUMNS, partition=partition),
                    **range_cost(cost, days),
                }
                day_checks = [
                    checks.check_keys_unique(warehouse, table, ["day"], partition),
                    checks.check_not_empty(warehouse, table, bool(per_user), partition),
                ]
                results.append(DayResult(day.isoformat(), metadata, day_checks))
            return results

        return self.asset(
            SESSION_DAILY_STATS,
            "Per day: the average session length (seconds) and the average sessions per "
            "active user, as Amplitude's Dashboard REST API computes them.",
            compute,
            lambda key: [
                checks.keys_spec(key, ["day"], parts),
                checks.not_empty_spec(key, parts),
            ],
            daily=True,
            ranged=True,
        )

    def annotations(self) -> dg.AssetsDefinition:
        table = self.naming.table(ANNOTATIONS)

        def compute(
            context: dg.AssetExecutionContext,
            amplitude: AmplitudeResource,
            warehouse: WarehouseResource,
        ) -> dg.MaterializeResult:
            with amplitude.session(context) as client:
                start = client.stats.snapshot()
                items = client.list_annotations()
                cost = cost_metadata(client, start)
            rows = (
                {
                    "id": a.get("id"),
                    "date": _as_date(a.get("date")),
                    "label": a.get("label"),
                    "details": a.get("details"),
                }
                for a in items
            )
            load_rows(warehouse, table, ANNOTATION_COLUMNS, rows)
            return dg.MaterializeResult(
                metadata={**table_metadata(warehouse, table, ANNOTATION_COLUMNS), **cost},
                check_results=[checks.check_keys_unique(warehouse, table, ["id"])],
            )

        return self.asset(
            ANNOTATIONS,
            "The project's chart annotations (releases, campaigns, incidents): id, day, "
            "label and details.",
            compute,
            lambda key: [checks.keys_spec(key, ["id"])],
            daily=False,
        )

    def user_properties_daily(self) -> dg.AssetsDefinition:
        table = self.naming.table(USER_PROPERTIES_DAILY)
        events = self.naming.table(EVENTS)
        events_key = self.naming.key(EVENTS)
        calendar, parts = self.calendar, self.calendar.partitions_def
        keys = ["day", "user_id"]

        def compute(
            context: dg.AssetExecutionContext,
            amplitude: AmplitudeResource,  # unused: the rows come from the warehouse
            warehouse: WarehouseResource,
        ) -> dg.MaterializeResult:
            day = calendar.window(context.partition_key).day
            # The day's export must be loaded (or recorded empty): no export is no users.
            require_input(context, warehouse, events, events_key, DAILY_JOB, day)
            partition = ("day", day)
            warehouse.replace_partition(
                table,
                user_properties_query(warehouse, events, day),
                "day",
                day,
                columns=USER_COLUMNS,
            )
            (seen,) = warehouse.records(
                f"SELECT count(DISTINCT user_id) AS n FROM {events} WHERE day = ? "
                "AND user_id IS NOT NULL AND event_type NOT IN (?, ?)",
                [day, IDENTIFY, GROUP_IDENTIFY],
            )
            (got,) = warehouse.records(
                f"SELECT count(*) AS n_rows, count(CASE WHEN active AND properties IS NOT NULL "
                f"THEN 1 END) AS covered FROM {table} WHERE day = ?",
                [day],
            )
            users, covered = int(seen["n"]), int(got["covered"])
            return dg.MaterializeResult(
                metadata={
                    **table_metadata(warehouse, table, USER_COLUMNS, partition=partition),
                    "users_seen": dg.MetadataValue.int(users),
                },
                check_results=[
                    checks.check_keys_unique(warehouse, table, keys, partition),
                    checks.check_not_empty(warehouse, table, users > 0, partition),
                    checks.check_volume(warehouse, table, day),
                    dg.AssetCheckResult(
                        check_name=EVERY_USER_PROFILED,
                        passed=covered == users,
                        metadata={
                            "users_seen": users,
                            "with_properties": covered,
                            "rows": int(got["n_rows"]),
                        },
                    ),
                ],
            )

        return self.asset(
            USER_PROPERTIES_DAILY,
            "Per day and user with a row in that day's raw export: the user's properties at "
            "the end of the day (those of the user's latest export row, $identify updates "
            "included), read from the events table: no API request.",
            compute,
            lambda key: [
                checks.keys_spec(key, keys, parts),
                checks.not_empty_spec(key, parts),
                checks.volume_spec(key, parts, "users"),
                every_user_spec(key, parts),
            ],
            daily=True,
            deps=[events_key],
        )


def amplitude_session_assets(
    calendar: DailyCalendar,
    naming: AssetNaming,
    include: Collection[str] | None = None,
    retry: dg.RetryPolicy | None = None,
) -> list[dg.AssetsDefinition]:
    """Sessions, annotations and daily user properties (see the module docstring);
    ``include`` keeps only the names it lists (others are ignored: the caller checks the
    whole vocabulary)."""
    factory = _Factory(calendar, naming, retry)
    builders = {
        SESSION_DAILY_STATS: factory.session_daily_stats,
        ANNOTATIONS: factory.annotations,
        USER_PROPERTIES_DAILY: factory.user_properties_daily,
    }
    return [build() for name, build in builders.items() if include is None or name in include]
