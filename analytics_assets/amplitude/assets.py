"""Amplitude assets: daily users and event totals, the raw export, charts and cohorts.

``amplitude_assets(...)`` builds them for one calendar, naming and selection (the
``AmplitudeSync`` component calls it; so can a project in Python). The raw export is
never held in a frame: the client streams the zip to disk and extracts its gzipped
JSON-lines members, and the warehouse loads those files itself with an explicit schema
(``load_json_lines``), inside the one transaction that replaces the partition. Dashboard
figures are asked for the project-local days of the step (set the Amplitude project's time
zone to the Pendo subscription's, as the README says): one query over a backfill run's
range where Amplitude's cost model charges it no more than a query a day (daily users,
event totals), each day's partition written as a one-day run writes it; the export goes
day by day, by the UTC hours of each day.
"""

import difflib
import re
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import dagster as dg

from analytics_assets.amplitude.asset_factory import amplitude_asset, cost_metadata
from analytics_assets.amplitude.export import NO_DATA_DETAILS, ExportResult
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.amplitude.session_assets import (
    SESSION_ASSET_NAMES,
    amplitude_session_assets,
)
from analytics_assets.component_fields import NamedItem
from analytics_assets.day_results import DayResult, range_cost
from analytics_assets.naming import AssetNaming
from analytics_assets.partitions import DailyCalendar
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.loading import Column, load_rows, table_metadata
from analytics_assets.warehouse.types import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    JSON,
    STR,
    TS,
    TS_NAIVE,
    JsonField,
)

SYSTEM = "amplitude"
DEFAULT_NAMING = AssetNaming(SYSTEM)
DEFAULT_CALENDAR = DailyCalendar()

# The names ``include`` (and the component's ``assets``) select by; each is also the last
# part of the asset key and the table name. ``charts`` selects every chart; one chart is
# ``chart_<name>``.
DAILY_ACTIVE_USERS = "daily_active_users"
EVENT_TYPE_DAILY_TOTALS = "event_type_daily_totals"
EVENTS = "events"
COHORTS = "cohorts"
COHORT_MEMBERSHIP = "cohort_membership"
CHARTS = "charts"
ASSET_NAMES = (
    DAILY_ACTIVE_USERS,
    EVENT_TYPE_DAILY_TOTALS,
    EVENTS,
    COHORTS,
    COHORT_MEMBERSHIP,
    *SESSION_ASSET_NAMES,
    CHARTS,
)
CHART_PREFIX = "chart_"

DAY = Column("day", DATE, "The local day (the partition)")


def events_key(naming: AssetNaming = DEFAULT_NAMING) -> dg.AssetKey:
    """The key of the raw events asset: what cross-source assets depend on."""
    return naming.key(EVENTS)


def events_table(naming: AssetNaming = DEFAULT_NAMING) -> str:
    """The warehouse table of the raw events (``amplitude.events`` by default)."""
    return naming.table(EVENTS)


# The default key and table, for code that uses the default naming; with another naming
# use events_key(naming) and events_table(naming).
EVENTS_KEY = events_key()
EVENTS_TABLE = events_table()

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")


def _table(naming: AssetNaming, name: str) -> str:
    # Table names reach SQL text (CREATE SCHEMA, DELETE): refuse a schema from YAML that
    # is not a plain identifier when the definitions load, not in the middle of a run.
    table = naming.table(name)
    if not _TABLE.match(table):
        raise ValueError(
            f"invalid Amplitude table name {table!r}: the schema must be a plain identifier "
            "(letters, digits, underscores)"
        )
    return table


def _materialize(
    warehouse: WarehouseResource,
    table: str,
    columns: list[Column] | None,
    cost: dict[str, Any],
    check_results: list[dg.AssetCheckResult],
    partition: tuple[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, table, columns, partition=partition),
            **cost,
            **(extra or {}),
        },
        check_results=check_results,
    )


# ----- daily users and event totals -------------------------------------------------------------

USERS_COLUMNS = [
    DAY,
    Column("active_users", INT, "Users with at least one event in the day (Amplitude's count)"),
    Column("new_users", INT, "Users whose first event ever was in the day"),
]
# One row a day: the volume check weighs the day's users, not its rows.
ACTIVE_USERS_MEASURE = "sum(active_users)"


def _single_value(rows: Iterable[dict[str, Any]], day: date) -> int:
    """The one value a one-day query returns (0 when Amplitude has no point for the day)."""
    total = 0
    for row in rows:
        if str(row.get("date", ""))[:10] in (day.isoformat(), ""):
            total += int(row.get("value") or 0)
    return total


def _day_values(rows: Iterable[dict[str, Any]], days: Sequence[date]) -> dict[date, int]:
    """Each day's value in the answer of a query over ``days`` (0 when Amplitude has no
    point for a day). One day: as ``_single_value``. Over a range a point must name its
    day, or it would be counted for every day."""
    if len(days) == 1:
        return {days[0]: _single_value(rows, days[0])}
    values = dict.fromkeys(days, 0)
    for row in rows:
        stamp = str(row.get("date", ""))[:10]
        day = date.fromisoformat(stamp) if stamp else None
        if day not in values:
            raise dg.Failure(
                description=(
                    f"Amplitude answered a point dated {stamp or '(no date)'!r} to a query over "
                    f"{days[0]} to {days[-1]}; nothing was written. Run the partitions again "
                    "one day at a time (a backfill of single days) if it keeps answering so."
                ),
                metadata={"date": stamp},
            )
        values[day] += int(row.get("value") or 0)
    return values


def _daily_active_users_asset(
    calendar: DailyCalendar, naming: AssetNaming, retry: dg.RetryPolicy | None
) -> dg.AssetsDefinition:
    table = _table(naming, DAILY_ACTIVE_USERS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> list[DayResult]:
        days = [w.day for w in calendar.windows(context)]
        with amplitude.session(context) as client:
            start = client.stats.snapshot()
            # One query over the step's days: Amplitude charges per day either way.
            active = _day_values(client.active_users(days[0], days[-1], metric="active"), days)
            new = _day_values(client.active_users(days[0], days[-1], metric="new"), days)
            cost = cost_metadata(client, start)
        results = []
        for day in days:
            partition = ("day", day)
            row = {"day": day, "active_users": active[day], "new_users": new[day]}
            load_rows(warehouse, table, USERS_COLUMNS, [row], partition=partition)
            result = _materialize(
                warehouse,
                table,
                USERS_COLUMNS,
                range_cost(cost, days),
                [
                    checks.check_keys_unique(warehouse, table, ["day"], partition),
                    checks.check_volume(warehouse, table, day, measure=ACTIVE_USERS_MEASURE),
                ],
                partition,
            )
            results.append(DayResult.of(day.isoformat(), result))
        return results

    return amplitude_asset(
        naming,
        DAILY_ACTIVE_USERS,
        "Daily active and new users from Amplitude's Dashboard REST API (/api/2/users).",
        compute,
        lambda key, days: [
            checks.keys_spec(key, ["day"], days),
            checks.volume_spec(key, days, "active users"),
        ],
        calendar,
        retry=retry,
        ranged=True,
    )


TOTALS_COLUMNS = [
    DAY,
    Column("event_type", STR, "The event type, as the project's event list names it"),
    Column("totals", INT, "Events of the type in the day"),
    Column("uniques", INT, "Users with at least one event of the type in the day"),
]


def _event_type_daily_totals_asset(
    calendar: DailyCalendar, naming: AssetNaming, retry: dg.RetryPolicy | None
) -> dg.AssetsDefinition:
    table = _table(naming, EVENT_TYPE_DAILY_TOTALS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> list[DayResult]:
        days = [w.day for w in calendar.windows(context)]
        rows: dict[date, list[dict[str, Any]]] = {day: [] for day in days}
        with amplitude.session(context) as client:
            start = client.stats.snapshot()
            for event in client.events_list():
                name = event.get("value") or event.get("name")
                if not name or event.get("deleted") or event.get("hidden"):
                    continue
                spec = {"event_type": name}
                # One query over the step's days: the same cost as one a day.
                totals = _day_values(
                    client.segmentation(spec, days[0], days[-1], metric="totals"), days
                )
                uniques = _day_values(
                    client.segmentation(spec, days[0], days[-1], metric="uniques"), days
                )
                for day in days:
                    if totals[day] or uniques[day]:
                        rows[day].append(
                            {
                                "day": day,
                                "event_type": name,
                                "totals": totals[day],
                                "uniques": uniques[day],
                            }
                        )
            cost = cost_metadata(client, start)
        results = []
        for day in days:
            partition = ("day", day)
            load_rows(warehouse, table, TOTALS_COLUMNS, rows[day], partition=partition)
            total_events = sum(r["totals"] for r in rows[day])
            result = _materialize(
                warehouse,
                table,
                TOTALS_COLUMNS,
                range_cost(cost, days),
                [
                    checks.check_keys_unique(warehouse, table, ["day", "event_type"], partition),
                    checks.check_not_empty(warehouse, table, total_events > 0, partition),
                    checks.check_volume(warehouse, table, day, measure="sum(totals)"),
                ],
                partition,
                {"amplitude_events_total": dg.MetadataValue.int(total_events)},
            )
            results.append(DayResult.of(day.isoformat(), result))
        return results

    return amplitude_asset(
        naming,
        EVENT_TYPE_DAILY_TOTALS,
        "Per event type and day: total events and unique users (event segmentation), for "
        "every event type the project lists.",
        compute,
        lambda key, days: [
            checks.keys_spec(key, ["day", "event_type"], days),
            checks.not_empty_spec(key, days),
            checks.volume_spec(key, days, "events (sum of totals)"),
        ],
        calendar,
        retry=retry,
        ranged=True,
    )


# ----- the raw event export -------------------------------------------------------------------

# What each column of the events table means (the Dagster UI shows it), by column name.
# Times are UTC, written without a zone (TS_NAIVE).
EXPORT_DESCRIPTIONS = {
    "insert_id": "The sender's $insert_id: Amplitude drops repeats for a device within 7 days",
    "uuid": "Amplitude's unique id of the event",
    "event_id": "The sender's counter telling apart events with the same user and time",
    "event_type": "The event's name ($identify, $groupidentify: property updates)",
    "amplitude_event_type": "Amplitude's internal event type, as the export gives it",
    "user_id": "The user id the sender set (NULL for anonymous events)",
    "device_id": "The device id the sender set",
    "amplitude_id": "Amplitude's own id of the user",
    "session_id": "The session's start, epoch milliseconds (-1: no session)",
    "app": "The Amplitude project id",
    "event_time": "When the event happened (client time corrected for clock skew), UTC",
    "client_event_time": "When the event happened by the device's clock, UTC",
    "client_upload_time": "When the device uploaded the event, by its clock, UTC",
    "server_received_time": "When Amplitude received the event, UTC",
    "server_upload_time": "When Amplitude stored the event, UTC: the export's hours select on it",
    "processed_time": "When Amplitude processed the event, UTC",
    "user_creation_time": "When Amplitude first saw the user, UTC",
    "event_properties": "The event's properties, JSON",
    "user_properties": "The user's properties as of the event, JSON",
    "global_user_properties": "Amplitude's global user properties, JSON",
    "group_properties": "The properties of the event's groups, JSON",
    "groups": "The event's groups (group type to value), JSON",
    "data": "Amplitude's processing details (ingestion path, group ids, ...), JSON",
    "plan": "The tracking plan (branch, source, version), JSON",
    "platform": "Platform (Web, iOS, Android, ...)",
    "os_name": "Operating system, or browser on the web",
    "os_version": "Version of the operating system (or browser)",
    "device_brand": "Device brand",
    "device_carrier": "Mobile carrier",
    "device_family": "Device family",
    "device_manufacturer": "Device manufacturer",
    "device_model": "Device model",
    "device_type": "Device type",
    "country": "Country, from the IP address unless the sender set it",
    "region": "Region (state, province), from the IP address unless the sender set it",
    "city": "City, from the IP address unless the sender set it",
    "dma": "Designated Market Area (US media region)",
    "language": "The user's language",
    "ip_address": "The sender's IP address",
    "location_lat": "Latitude of the device, degrees",
    "location_lng": "Longitude of the device, degrees",
    "library": "The SDK or API that sent the event (e.g. http/2.0)",
    "version_name": "The app's version",
    "start_version": "The app version the user first had",
    "paying": "Whether the user has paid (Amplitude's paying flag), as text",
    "revenue": "Revenue of the event",
    "price": "Price of the item bought",
    "quantity": "Number of items bought",
    "product_id": "Id of the product bought (productId)",
    "revenue_type": "Type of revenue, e.g. purchase or refund (revenueType)",
    "sample_rate": "Sampling rate applied to the event, as text",
    "is_attribution_event": "True for an attribution (ad campaign) event",
    "idfa": "iOS advertising id (IDFA)",
    "adid": "Google advertising id (Android)",
    "partner_id": "The partner integration's id (partner_id)",
    "source_id": "The Amplitude source id, as the export gives it",
    "data_type": "The record's type ('event' for events)",
}
# (field in the export, column in the table, column type). An explicit schema lets the
# warehouse skip type inference (the slow, memory-hungry part of reading JSON) and makes a
# record with an unexpected shape fail loudly instead of being coerced or dropped.
EXPORT_FIELDS: tuple[JsonField, ...] = tuple(
    JsonField(*field, EXPORT_DESCRIPTIONS[field[1]])
    for field in (
        ("$insert_id", "insert_id", STR),
        ("uuid", "uuid", STR),
        ("event_id", "event_id", INT),
        ("event_type", "event_type", STR),
        ("amplitude_event_type", "amplitude_event_type", STR),
        ("user_id", "user_id", STR),
        ("device_id", "device_id", STR),
        ("amplitude_id", "amplitude_id", INT),
        ("session_id", "session_id", INT),
        ("app", "app", INT),
        ("event_time", "event_time", TS_NAIVE),
        ("client_event_time", "client_event_time", TS_NAIVE),
        ("client_upload_time", "client_upload_time", TS_NAIVE),
        ("server_received_time", "server_received_time", TS_NAIVE),
        ("server_upload_time", "server_upload_time", TS_NAIVE),
        ("processed_time", "processed_time", TS_NAIVE),
        ("user_creation_time", "user_creation_time", TS_NAIVE),
        ("event_properties", "event_properties", JSON),
        ("user_properties", "user_properties", JSON),
        ("global_user_properties", "global_user_properties", JSON),
        ("group_properties", "group_properties", JSON),
        ("groups", "groups", JSON),
        ("data", "data", JSON),
        ("plan", "plan", JSON),
        ("platform", "platform", STR),
        ("os_name", "os_name", STR),
        ("os_version", "os_version", STR),
        ("device_brand", "device_brand", STR),
        ("device_carrier", "device_carrier", STR),
        ("device_family", "device_family", STR),
        ("device_manufacturer", "device_manufacturer", STR),
        ("device_model", "device_model", STR),
        ("device_type", "device_type", STR),
        ("country", "country", STR),
        ("region", "region", STR),
        ("city", "city", STR),
        ("dma", "dma", STR),
        ("language", "language", STR),
        ("ip_address", "ip_address", STR),
        ("location_lat", "location_lat", FLOAT),
        ("location_lng", "location_lng", FLOAT),
        ("library", "library", STR),
        ("version_name", "version_name", STR),
        ("start_version", "start_version", STR),
        ("paying", "paying", STR),
        ("revenue", "revenue", FLOAT),
        ("price", "price", FLOAT),
        ("quantity", "quantity", INT),
        ("productId", "product_id", STR),
        ("revenueType", "revenue_type", STR),
        ("sample_rate", "sample_rate", STR),
        ("is_attribution_event", "is_attribution_event", BOOL),
        ("idfa", "idfa", STR),
        ("adid", "adid", STR),
        ("partner_id", "partner_id", STR),
        ("source_id", "source_id", STR),
        ("data_type", "data_type", STR),
    )
)
# The events table's columns: the partition column, then the export's fields.
EVENTS_COLUMNS = [DAY, *(Column(f.name, f.type, f.description) for f in EXPORT_FIELDS)]


def _load_export(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    files: list[Path],
    day: date,
    table: str = EVENTS_TABLE,
) -> int:
    """The day's export files into its partition, in one transaction, the backend's fastest
    way (DuckDB's ``read_json``; Postgres's ``COPY``); no files empties the partition."""
    return warehouse.load_json_lines(table, files, EXPORT_FIELDS, "day", day)


# Rows the Export API carries that the Dashboard does not count as events: user and group
# property updates (Identify API, SDK identify calls).
NOT_DASHBOARD_EVENTS = ("$identify", "$groupidentify")
EXPORT_MATCHES_DASHBOARD = "export_count_matches_dashboard"
UPLOADED_IN_HOURS = "events_uploaded_within_the_days_hours"
USER_OR_DEVICE = "events_have_a_user_or_device"
HOUR = timedelta(hours=1)
# The export is by upload hour, the Dashboard by event time (in the project's time zone),
# so a few late uploads (the export lags ~2 h; offline SDKs send hours later) move between
# neighbouring days; a lost hour is ~4 % of a day, a wiped day 100 %. 2 % catches those
# without flapping on late uploads, and the floor keeps a quiet day's stragglers from
# failing the check.
EXPORT_TOLERANCE = 0.02
EXPORT_TOLERANCE_FLOOR = 10


def export_tolerance(dashboard_events: int) -> int:
    """How far the export's count may be from the Dashboard's ``dashboard_events``."""
    return max(EXPORT_TOLERANCE_FLOOR, int(dashboard_events * EXPORT_TOLERANCE))


def export_count_spec(
    asset_key: dg.AssetKey, partitions_def: checks.Partitions = None
) -> dg.AssetCheckSpec:
    return checks.check_spec(
        EXPORT_MATCHES_DASHBOARD,
        asset_key,
        (
            "The partition's events (without $identify/$groupidentify rows, which the "
            "Dashboard does not count) are within "
            f"{EXPORT_TOLERANCE:.0%} (at least {EXPORT_TOLERANCE_FLOOR} events) of the "
            "Dashboard REST API's total for the same day (segmentation of _all, totals). "
            "The export is by upload hour and the Dashboard by event time, so late uploads "
            "move a little between days; a lost hour or an emptied day fails."
        ),
        partitions_def,
        blocking=True,
    )


def exported_event_count(warehouse: WarehouseResource, table: str, day: date) -> int:
    """The partition's rows that the Dashboard counts as events."""
    marks = ", ".join("?" for _ in NOT_DASHBOARD_EVENTS)
    return int(
        warehouse.records(
            f"SELECT count(*) AS n FROM {table} WHERE day = ? "
            f"AND (event_type IS NULL OR event_type NOT IN ({marks}))",
            [day, *NOT_DASHBOARD_EVENTS],
        )[0]["n"]
    )


def check_export_count(exported: int, dashboard: int) -> dg.AssetCheckResult:
    """The export's event count for the day against the Dashboard's, within the tolerance."""
    tolerance = export_tolerance(dashboard)
    difference = exported - dashboard
    passed = abs(difference) <= tolerance
    hint = (
        {}
        if passed
        else {
            "what_to_do": (
                "Re-run the day once the export has caught up (it lags about 2 hours). If "
                "every day is off by a few percent, the Amplitude project's time zone is "
                "likely not the sync's: the Dashboard counts the project's days, the export "
                "is asked for the sync's local hours. Set the project's time zone to the "
                "sync's timezone."
            )
        }
    )
    return dg.AssetCheckResult(
        check_name=EXPORT_MATCHES_DASHBOARD,
        passed=passed,
        metadata={
            "exported_events": exported,
            "dashboard_events": dashboard,
            "difference": difference,
            "tolerance": tolerance,
            "excluded_event_types": ", ".join(NOT_DASHBOARD_EVENTS),
            **hint,
        },
    )


def _partition_rows(warehouse: WarehouseResource, table: str, day: date) -> int:
    if not warehouse.table_exists(table):
        return 0
    rows = warehouse.records(f"SELECT count(*) AS n FROM {table} WHERE day = ?", [day])
    return int(rows[0]["n"])


def _refuse_empty(
    result: ExportResult,
    warehouse: WarehouseResource,
    table: str,
    day: date,
    hours: str,
    dashboard: int,
) -> None:
    """Evidence before emptiness: an export with no files replaces the partition only when
    the Export API itself said "no data" and the partition holds nothing to lose."""
    held = _partition_rows(warehouse, table, day)
    said = f"the Dashboard counts {dashboard:,} events for {day}"
    if not result.no_data:
        raise dg.Failure(
            description=(
                f"the Export API answered for {hours} without a single event file, and never "
                f'gave its own "no data" answer ({NO_DATA_DETAILS!r}); {said}. An empty '
                f"answer is not evidence of an empty day, so {table} was left as it was "
                f"({held:,} rows for {day}). Run the partition again; if it keeps answering "
                "empty archives, check base_url and any proxy between this host and Amplitude."
            ),
            metadata={"export_no_data": False, "dashboard_events": dashboard, "rows_kept": held},
        )
    if held:
        # Amplitude does not lose raw events on its own: a day that held rows and now
        # "has no data" was deleted there (deletion API, retention) or is answered by
        # the wrong project. Neither is for one answer to decide; the rows stay.
        raise dg.Failure(
            description=(
                f'the Export API says there is no data for {hours} ("{NO_DATA_DETAILS}"), '
                f"but {table} holds {held:,} rows for {day} from an earlier load; {said}. "
                "They were kept: one answer does not replace a day that had data with an "
                "empty one. Check that the API key is this project's; if the day's events "
                "were deleted in Amplitude on purpose, delete the partition's rows "
                f"(DELETE FROM {table} WHERE day = DATE '{day}') and run the partition again."
            ),
            metadata={"export_no_data": True, "dashboard_events": dashboard, "rows_kept": held},
        )


def _events_asset(
    calendar: DailyCalendar, naming: AssetNaming, retry: dg.RetryPolicy | None
) -> dg.AssetsDefinition:
    table = _table(naming, EVENTS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        window = calendar.window(context.partition_key)
        first_hour, last_hour = window.utc_hours()
        hours = f"{first_hour:%Y%m%dT%H} to {last_hour:%Y%m%dT%H} (UTC)"
        partition = ("day", window.day)
        with tempfile.TemporaryDirectory(prefix="amplitude-export-") as tmp:
            downloading = time.perf_counter()
            with amplitude.session(context) as client:
                start = client.stats.snapshot()
                result = client.export(first_hour, last_hour, Path(tmp))
                download_seconds = time.perf_counter() - downloading
                # The Dashboard's count of the same day: the evidence the check weighs
                # the export against, and what a refusal reports.
                dashboard = _single_value(
                    client.segmentation("_all", window.day, window.day, metric="totals"),
                    window.day,
                )
                cost = cost_metadata(client, start)
            files = list(result.files)
            if not files:
                _refuse_empty(result, warehouse, table, window.day, hours, dashboard)
            loading = time.perf_counter()
            # The table exists (with its explicit schema) even before the first events
            # arrive, so a genuinely empty day still replaces its (empty) partition.
            rows = _load_export(context, warehouse, files, window.day, table)
            load_seconds = time.perf_counter() - loading
        context.log.info(
            f"{table}: {rows} events for {window.day} from {len(files)} files; download "
            f"{download_seconds:.1f} s, load {load_seconds:.1f} s "
            f"({rows / max(load_seconds, 1e-9):,.0f} events/s)"
        )
        exported = exported_event_count(warehouse, table, window.day)
        return _materialize(
            warehouse,
            table,
            EVENTS_COLUMNS,
            cost,
            [
                checks.check_keys_unique(warehouse, table, ["uuid"], partition),
                check_export_count(exported, dashboard),
                checks.check_volume(warehouse, table, window.day),
                checks.check_none_match(
                    warehouse,
                    table,
                    UPLOADED_IN_HOURS,
                    "server_upload_time < ? OR server_upload_time >= ?",
                    [first_hour.replace(tzinfo=None), (last_hour + HOUR).replace(tzinfo=None)],
                    partition,
                ),
                checks.check_none_match(
                    warehouse,
                    table,
                    USER_OR_DEVICE,
                    "user_id IS NULL AND device_id IS NULL",
                    [],
                    partition,
                ),
            ],
            partition,
            {
                "export_hours": dg.MetadataValue.text(hours),
                "export_files": dg.MetadataValue.int(len(files)),
                "export_mb": dg.MetadataValue.float(round((result.bytes or 0) / 1e6, 3)),
                "export_no_data": dg.MetadataValue.bool(bool(result.no_data)),
                "amplitude_events_loaded": dg.MetadataValue.int(rows),
                "dashboard_events": dg.MetadataValue.int(dashboard),
                "export_download_seconds": dg.MetadataValue.float(round(download_seconds, 3)),
                "load_seconds": dg.MetadataValue.float(round(load_seconds, 3)),
            },
        )

    return amplitude_asset(
        naming,
        EVENTS,
        "Amplitude's raw events from the Export API, for the UTC upload hours that cover the "
        "local day; streamed to disk and loaded by the warehouse itself, never held in memory "
        "whole. Late uploads land in the partition of the day they were uploaded. A day is "
        'emptied only on the Export API\'s own "no data" answer and never when it held rows; '
        "a check weighs the day's count against the Dashboard's.",
        compute,
        lambda key, days: [
            checks.keys_spec(key, ["uuid"], days),
            export_count_spec(key, days),
            checks.volume_spec(key, days),
            checks.check_spec(
                UPLOADED_IN_HOURS,
                key,
                "Every event of the partition was uploaded (server_upload_time, UTC) within the "
                "export hours of its day: nothing of another day's hours was loaded into it",
                days,
            ),
            checks.check_spec(
                USER_OR_DEVICE,
                key,
                "Every event has a user_id or a device_id (Amplitude requires one)",
                days,
            ),
        ],
        calendar,
        retry=retry,
    )


# ----- saved charts ---------------------------------------------------------------------------

CHART_COLUMNS = [
    Column("row_number", INT, "The row's position in the chart's results, from 0"),
    Column("row", STR, "The chart row as JSON"),
]


def chart_asset(
    chart: NamedItem,
    naming: AssetNaming = DEFAULT_NAMING,
    retry: dg.RetryPolicy | None = None,
) -> dg.AssetsDefinition:
    """The asset of one saved chart, ``chart_<name>``, refreshed whole on the daily cron."""
    name = f"{CHART_PREFIX}{chart.name}"
    table = _table(naming, name)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        with amplitude.session(context) as client:
            start = client.stats.snapshot()
            results = client.chart_results(chart.id)
            cost = cost_metadata(client, start)
        load_rows(
            warehouse,
            table,
            CHART_COLUMNS,
            ({"row_number": i, "row": r} for i, r in enumerate(results)),
        )
        return _materialize(
            warehouse,
            table,
            CHART_COLUMNS,
            cost,
            [checks.check_keys_unique(warehouse, table, ["row_number"])],
        )

    return amplitude_asset(
        naming,
        name,
        f"The saved Amplitude chart {chart.id} ({chart.name}), as tidy rows.",
        compute,
        lambda key, _: [checks.keys_spec(key, ["row_number"])],
        retry=retry,
    )


# ----- cohorts --------------------------------------------------------------------------------

COHORT_COLUMNS = [
    Column("cohort_id", STR, "Amplitude cohort id"),
    Column("name", STR, "The cohort's name"),
    Column("size", INT, "Members when last computed (NULL: never computed)"),
    Column("archived", BOOL, "The cohort is archived"),
    Column("published", BOOL, "The cohort is published (Amplitude's published flag)"),
    Column("finished", BOOL, "Amplitude's finished flag: its members were computed"),
    Column("last_computed", TS, "When Amplitude last computed its members (lastComputed), UTC"),
    Column("details", STR, "The cohort object as JSON"),
]


def _cohort_row(c: dict[str, Any]) -> dict[str, Any]:
    computed = c.get("lastComputed")
    return {
        "cohort_id": c.get("id"),
        "name": c.get("name"),
        "size": c.get("size"),
        "archived": c.get("archived"),
        "published": c.get("published"),
        "finished": c.get("finished"),
        # Amplitude gives lastComputed in epoch seconds (not milliseconds).
        "last_computed": datetime.fromtimestamp(computed, tz=UTC) if computed else None,
        "details": c,
    }


def _cohorts_asset(naming: AssetNaming, retry: dg.RetryPolicy | None) -> dg.AssetsDefinition:
    table = _table(naming, COHORTS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        with amplitude.session(context) as client:
            start = client.stats.snapshot()
            cohorts = client.list_cohorts()
            cost = cost_metadata(client, start)
        load_rows(warehouse, table, COHORT_COLUMNS, map(_cohort_row, cohorts))
        return _materialize(
            warehouse,
            table,
            COHORT_COLUMNS,
            cost,
            [checks.check_keys_unique(warehouse, table, ["cohort_id"])],
        )

    return amplitude_asset(
        naming,
        COHORTS,
        "The project's behavioral cohorts (the cohort list), refreshed daily.",
        compute,
        lambda key, _: [checks.keys_spec(key, ["cohort_id"])],
        retry=retry,
    )


MEMBERSHIP_COLUMNS = [
    Column(
        "snapshot_day", DATE, "The local day the snapshot was taken (the as_of day, sync time zone)"
    ),
    Column("as_of", TS, "When Amplitude computed the membership (the cohorts' lastComputed)"),
    Column("cohort_id", STR, "The cohort (cohorts.cohort_id)"),
    Column("user_id", STR, "A member's user id, from the cohort download"),
    Column("amplitude_id", INT, "The member's Amplitude id, when the download gives it"),
]


def selected_cohorts(
    cohorts: list[dict[str, Any]], wanted: Literal["all"] | Sequence[str] = "all"
) -> list[dict[str, Any]]:
    """The cohorts ``wanted`` names (ids), or with ``"all"`` every discoverable one
    (computed, not archived)."""
    if wanted == "all":
        return [
            c
            for c in cohorts
            if not c.get("archived")
            and c.get("finished") is not False
            and c.get("size") is not None
        ]
    by_id = {c.get("id"): c for c in cohorts}
    missing = [cid for cid in wanted if cid not in by_id]
    if missing:
        raise dg.Failure(
            f"cohorts named in the config are not in the cohort list: {missing}; fix the "
            "cohorts of the AmplitudeSync component (amplitude_assets(cohorts=...))"
        )
    return [by_id[cid] for cid in wanted]


def membership_as_of(
    cohorts: list[dict[str, Any]], timezone: str, now: datetime | None = None
) -> tuple[datetime, str]:
    """When the membership Amplitude serves now was computed, in the sync's time zone: the
    newest ``lastComputed`` (epoch seconds) of ``cohorts``, read from the server, else the
    wall clock (``now``) when no cohort has one. Returns the moment and what it came from."""
    tz = ZoneInfo(timezone)
    computed = [
        c["lastComputed"]
        for c in cohorts
        if isinstance(c.get("lastComputed"), int | float)
        and not isinstance(c.get("lastComputed"), bool)
    ]
    if computed:
        return datetime.fromtimestamp(max(computed), tz=tz), "the cohorts' newest lastComputed"
    return (now or datetime.now(tz)).astimezone(tz), "the wall clock: no cohort has a lastComputed"


def _cohort_table(cohorts: list[dict[str, Any]]) -> str:
    """The snapshot's cohorts as a Markdown table: id, name and the list's member count."""
    lines = ["| id | name | members |", "|---|---|---|"]
    for c in cohorts:
        name = str(c.get("name") or "(unnamed)").replace("|", "\\|")
        lines.append(f"| {c['id']} | {name} | {c.get('size')} |")
    return "\n".join(lines)


def _cohort_membership_asset(
    calendar: DailyCalendar,
    naming: AssetNaming,
    wanted: Literal["all"] | Sequence[str],
    retry: dg.RetryPolicy | None,
) -> dg.AssetsDefinition:
    table = _table(naming, COHORT_MEMBERSHIP)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        expected: dict[str, int | None] = {}
        with (
            tempfile.TemporaryDirectory(prefix="amplitude-cohorts-") as tmp,
            amplitude.session(context) as client,
        ):
            start = client.stats.snapshot()
            chosen = selected_cohorts(client.list_cohorts(), wanted)
            names = {c["id"]: c["name"] for c in chosen if c.get("name")}
            # The snapshot day is a day of the calendar's time zone, as the partitions are.
            as_of, basis = membership_as_of(chosen, calendar.timezone)
            snapshot_day = as_of.date()
            files = []
            for cohort in chosen:
                dest = Path(tmp) / f"{cohort['id']}.csv"
                size = cohort.get("size")
                # The cohort list's size: a file cut short at a line end (its Content-Length
                # still matching) is downloaded again in the transport's one retry loop.
                known = size if isinstance(size, int) and not isinstance(size, bool) else None
                client.download_cohort(cohort["id"], dest, expected_members=known)
                files.append((cohort["id"], dest))
                expected[cohort["id"]] = size

            def rows() -> Iterator[dict[str, Any]]:
                for cohort_id, path in files:
                    for member in client.read_cohort_csv(path):
                        amp_id = member.get("amplitude_id")
                        yield {
                            "snapshot_day": snapshot_day,
                            "as_of": as_of,
                            "cohort_id": cohort_id,
                            "user_id": member.get("user_id"),
                            "amplitude_id": int(amp_id) if amp_id not in (None, "") else None,
                        }

            partition = ("snapshot_day", snapshot_day)
            load_rows(warehouse, table, MEMBERSHIP_COLUMNS, rows(), partition=partition)
            cost = cost_metadata(client, start)
        context.log.info(
            f"{table}: snapshot of {snapshot_day} (as of {as_of:%Y-%m-%d %H:%M %Z}, from "
            f"{basis}) for {len(expected)} cohorts; earlier snapshots kept"
        )
        return _materialize(
            warehouse,
            table,
            MEMBERSHIP_COLUMNS,
            cost,
            [
                checks.check_keys_unique(
                    warehouse, table, ["snapshot_day", "cohort_id", "user_id"], partition
                ),
                checks.check_cohort_sizes(
                    warehouse,
                    table,
                    expected,
                    snapshot_day,
                    day_column="snapshot_day",
                    names=names,
                ),
            ],
            partition,
            {
                "cohorts": dg.MetadataValue.int(len(expected)),
                "cohorts_loaded": dg.MetadataValue.md(_cohort_table(chosen)),
                "snapshot_day": dg.MetadataValue.text(snapshot_day.isoformat()),
                "membership_as_of": dg.MetadataValue.text(as_of.isoformat()),
            },
        )

    # Not partitioned: Amplitude serves only current membership (see the description).
    return amplitude_asset(
        naming,
        COHORT_MEMBERSHIP,
        "Who is in each selected cohort, one snapshot a day kept as history, fetched through "
        "Amplitude's asynchronous cohort download (request, poll, file). Amplitude serves "
        "only a cohort's current members, so this is a snapshot refreshed with the catalog, "
        "not a daily partition: a past day's membership cannot be fetched again, and "
        "backfills of the daily sync never touch it. A run replaces the rows of its own "
        "snapshot_day (the local day of the cohorts' newest lastComputed); earlier days stay.",
        compute,
        lambda key, _: [
            checks.keys_spec(key, ["snapshot_day", "cohort_id", "user_id"]),
            checks.cohort_sizes_spec(key),
        ],
        # It snapshots the cohorts the list names: draw the list as what it reads.
        deps=[naming.key(COHORTS)],
        retry=retry,
    )


# ----- the factory ----------------------------------------------------------------------------


def amplitude_asset_names(charts: Sequence[NamedItem] = ()) -> list[str]:
    """Every name ``include`` accepts: the fixed assets, ``charts``, and ``chart_<name>``."""
    return [*ASSET_NAMES, *(f"{CHART_PREFIX}{c.name}" for c in charts)]


def check_asset_names(names: Iterable[str], charts: Sequence[NamedItem] = ()) -> list[str]:
    """``names`` as a list if each is an asset name, else a ValueError that lists the valid
    names and suggests the closest one."""
    valid = amplitude_asset_names(charts)
    chosen = list(names)
    for name in chosen:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown Amplitude asset {name!r}: {hint}valid names are {', '.join(valid)}"
            )
    return chosen


def amplitude_assets(
    *,
    calendar: DailyCalendar = DEFAULT_CALENDAR,
    charts: Sequence[NamedItem] = (),
    cohorts: Literal["all"] | Sequence[str] = "all",
    naming: AssetNaming = DEFAULT_NAMING,
    include: Collection[str] | None = None,
    retry: dg.RetryPolicy | None = None,
) -> list[dg.AssetsDefinition]:
    """The Amplitude assets for one ``calendar`` (daily partitions) and ``naming`` (keys,
    group, tables): daily users, event type totals and the raw export (partitioned), the
    cohort list and the cohort membership snapshot of ``cohorts`` (ids, or ``"all"``
    discoverable ones), and one asset per saved chart of ``charts``.

    ``include`` keeps only the named assets (see ``amplitude_asset_names``); ``None``
    keeps them all. An unknown name raises ValueError. ``retry`` is
    the step retry policy of every asset (they all call the API): None, Dagster's default,
    runs a failed step once;
    the ``AmplitudeSync`` component passes ``API_RETRY_POLICY`` unless told otherwise."""
    wanted = set(check_asset_names(include, charts)) if include is not None else None

    def chosen(name: str) -> bool:
        return wanted is None or name in wanted

    builders: list[tuple[str, Callable[[], dg.AssetsDefinition]]] = [
        (DAILY_ACTIVE_USERS, lambda: _daily_active_users_asset(calendar, naming, retry)),
        (EVENT_TYPE_DAILY_TOTALS, lambda: _event_type_daily_totals_asset(calendar, naming, retry)),
        (EVENTS, lambda: _events_asset(calendar, naming, retry)),
        (COHORTS, lambda: _cohorts_asset(naming, retry)),
        (COHORT_MEMBERSHIP, lambda: _cohort_membership_asset(calendar, naming, cohorts, retry)),
    ]
    assets = [build() for name, build in builders if chosen(name)]
    assets += amplitude_session_assets(calendar, naming, wanted, retry)
    for chart in charts:
        if chosen(CHARTS) or chosen(f"{CHART_PREFIX}{chart.name}"):
            assets.append(chart_asset(chart, naming, retry))
    return assets
