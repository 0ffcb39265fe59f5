"""Amplitude sessions, annotations and the user properties of each day's users.

``amplitude_session_assets(calendar, naming, include)`` builds, with the conventions of
the other Amplitude assets (``amplitude_api`` pool, tags, freshness, step retries,
checks recorded against the partition):

* ``session_daily_stats`` (daily): the average session length and the sessions per
  user of the day, as the Dashboard REST API gives them (``/api/2/sessions/average``,
  ``/api/2/sessions/peruser``: cost 4 per day each);
* ``annotations`` (snapshot): the project's chart annotations (``/api/2/annotations``);
* ``user_properties_daily`` (daily): for every user seen in the day's raw export (the
  ``events`` table, a declared dependency), the user's properties from the User Profile
  API (``/v1/userprofile?get_amp_props=true``), as they are when the step runs. The
  Profile API exists only for US projects; in the EU the step fails saying so.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's context
# annotation at definition time.
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import dagster as dg

from analytics_assets.amplitude.asset_factory import Compute, amplitude_asset, cost_metadata
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.naming import AssetNaming
from analytics_assets.partitions import DailyCalendar
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.loading import Column, load_rows, table_metadata
from analytics_assets.warehouse.types import DATE, FLOAT, INT, STR

SESSION_DAILY_STATS = "session_daily_stats"
ANNOTATIONS = "annotations"
USER_PROPERTIES_DAILY = "user_properties_daily"
#: The names ``include`` accepts from this module.
SESSION_ASSET_NAMES = (SESSION_DAILY_STATS, ANNOTATIONS, USER_PROPERTIES_DAILY)
#: Built only when named: one Profile API request per user seen, against a budget of 600
#: a minute per organization, so 100,000 users a day take 2.8 hours of a day's sync.
OPT_IN_ASSET_NAMES = (USER_PROPERTIES_DAILY,)
EVENTS = "events"  # the raw export asset, whose users the user properties follow
# Rows of the export that are property updates, not a user's activity.
NOT_ACTIVITY = ("$identify", "$groupidentify")
# Profile lookups in flight at once: the Profile API's budget (600 a minute) paces them.
PROFILE_WORKERS = 4
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
    Column("user_id", STR, "Amplitude user_id seen in the day's export"),
    Column("properties", STR, "The user's properties (amp_props) as JSON, when the step ran"),
    Column("first_used", DATE, "The user's first day in the project"),
    Column("last_used", DATE, "The user's latest day in the project"),
]
# Profile fields that are not user properties.
_NOT_PROPERTIES = ("library", "first_used", "last_used")


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


def _user_row(day: date, user_id: str, profile: dict[str, Any]) -> dict[str, Any]:
    props = dict(profile.get("amp_props") or {})
    extra = {k: props.pop(k, None) for k in _NOT_PROPERTIES}
    return {
        "day": day,
        "user_id": user_id,
        "properties": dict(sorted(props.items())),
        "first_used": _as_date(extra["first_used"]),
        "last_used": _as_date(extra["last_used"]),
    }


def every_user_spec(
    asset_key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> dg.AssetCheckSpec:
    return checks.check_spec(
        EVERY_USER_PROFILED,
        asset_key,
        "Every user_id of the day's export has one row of properties",
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
        )

    def session_daily_stats(self) -> dg.AssetsDefinition:
        table = self.naming.table(SESSION_DAILY_STATS)
        calendar, parts = self.calendar, self.calendar.partitions_def

        def compute(
            context: dg.AssetExecutionContext,
            amplitude: AmplitudeResource,
            warehouse: WarehouseResource,
        ) -> dg.MaterializeResult:
            day = calendar.window(context.partition_key).day
            with amplitude.session(context) as client:
                start = client.stats.snapshot()
                average = _day_value(client.session_average_length(day, day), day)
                per_user = _day_value(client.sessions_per_user(day, day), day)
                cost = cost_metadata(client, start)
            rows = (
                []
                if per_user is None
                else [
                    {"day": day, "average_session_seconds": average, "sessions_per_user": per_user}
                ]
            )
            partition = ("day", day)
            load_rows(warehouse, table, SESSION_COLUMNS, rows, partition=partition)
            return dg.MaterializeResult(
                metadata={
                    **table_metadata(warehouse, table, SESSION_COLUMNS, partition=partition),
                    **cost,
                },
                check_results=[
                    checks.check_keys_unique(warehouse, table, ["day"], partition),
                    checks.check_not_empty(warehouse, table, bool(per_user), partition),
                ],
            )

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
        calendar, parts = self.calendar, self.calendar.partitions_def
        keys = ["day", "user_id"]

        def compute(
            context: dg.AssetExecutionContext,
            amplitude: AmplitudeResource,
            warehouse: WarehouseResource,
        ) -> dg.MaterializeResult:
            day = calendar.window(context.partition_key).day
            if not warehouse.table_exists(events):
                raise dg.Failure(f"{events} does not exist yet: materialize the day's events")
            marks = ", ".join("?" for _ in NOT_ACTIVITY)
            users = [
                r["user_id"]
                for r in warehouse.records(
                    f"SELECT DISTINCT user_id FROM {events} WHERE day = ? "
                    f"AND user_id IS NOT NULL AND event_type NOT IN ({marks}) ORDER BY user_id",
                    [day, *NOT_ACTIVITY],
                )
            ]
            partition = ("day", day)
            with amplitude.session(context) as client, ThreadPoolExecutor(PROFILE_WORKERS) as pool:
                start = client.stats.snapshot()

                def profile(user_id: str) -> dict[str, Any]:
                    return _user_row(
                        day, user_id, client.user_profile(user_id=user_id, get_amp_props=True)
                    )

                rows: Iterator[dict[str, Any]] = pool.map(profile, users)
                load_rows(warehouse, table, USER_COLUMNS, rows, partition=partition)
                cost = cost_metadata(client, start)
            written = int(
                warehouse.records(f"SELECT count(*) AS n FROM {table} WHERE day = ?", [day])[0]["n"]
            )
            return dg.MaterializeResult(
                metadata={
                    **table_metadata(warehouse, table, USER_COLUMNS, partition=partition),
                    **cost,
                    "users_seen": dg.MetadataValue.int(len(users)),
                },
                check_results=[
                    checks.check_keys_unique(warehouse, table, keys, partition),
                    checks.check_not_empty(warehouse, table, bool(users), partition),
                    checks.check_volume(warehouse, table, day),
                    dg.AssetCheckResult(
                        check_name=EVERY_USER_PROFILED,
                        passed=written == len(users),
                        metadata={"users_seen": len(users), "rows": written},
                    ),
                ],
            )

        return self.asset(
            USER_PROPERTIES_DAILY,
            "Per day and user seen in that day's export: the user's properties from the User "
            "Profile API (amp_props), with first and last day used.",
            compute,
            lambda key: [
                checks.keys_spec(key, keys, parts),
                checks.not_empty_spec(key, parts),
                checks.volume_spec(key, parts, "users"),
                every_user_spec(key, parts),
            ],
            daily=True,
            deps=[self.naming.key(EVENTS)],
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
