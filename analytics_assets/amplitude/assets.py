"""Amplitude assets: daily users and event totals, the raw export, charts and cohorts.

``amplitude_assets(...)`` builds them for one calendar, naming and selection (the
``AmplitudeSync`` component calls it; so can a project in Python). The raw export is
never held in a frame: the client streams the zip to disk and extracts its gzipped
JSON-lines members, and the warehouse loads those files itself with an explicit schema
(``load_json_lines``), inside the one transaction that replaces the partition. Dashboard
figures are asked for the project-local day of the partition (set the Amplitude
project's time zone to the Pendo subscription's, as the README says).
"""

import difflib
import re
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import dagster as dg

from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.api_session import api_metadata
from analytics_assets.component_fields import NamedItem
from analytics_assets.http.errors import TransportError
from analytics_assets.naming import DAILY, SNAPSHOT, AssetNaming, asset_tags
from analytics_assets.partitions import DAILY_CRON, DailyCalendar
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
KINDS = {"amplitude", "duckdb"}
OWNERS = ["team:data-engineering"]
POOL = "amplitude_api"

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
    CHARTS,
)
CHART_PREFIX = "chart_"

DAY = Column("day", DATE, "The local day (the partition)")

Compute = Callable[
    [dg.AssetExecutionContext, AmplitudeResource, WarehouseResource], dg.MaterializeResult
]


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


def _cost_metadata(client: Any, since: Any) -> dict[str, dg.MetadataValue]:
    meta = api_metadata(client, since, "amplitude")
    spent = getattr(client, "cost_spent", None)
    if isinstance(spent, dict):
        meta["amplitude_cost_units"] = dg.MetadataValue.float(float(sum(spent.values())))
    return meta


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


def _amplitude_asset(
    naming: AssetNaming,
    name: str,
    description: str,
    compute: Compute,
    check_specs: Callable[[dg.AssetKey], list[dg.AssetCheckSpec]],
    calendar: DailyCalendar | None = None,
) -> dg.AssetsDefinition:
    """One Amplitude asset: a daily partition of ``calendar`` when given one, else a
    snapshot refreshed on the daily cron. Every asset calls the API in the one pool."""
    key = naming.key(name)

    @dg.asset(
        key=key,
        group_name=naming.group,
        kinds=KINDS,
        owners=OWNERS,
        pool=POOL,
        tags=asset_tags(naming, DAILY if calendar else SNAPSHOT),
        description=description,
        partitions_def=calendar.partitions_def if calendar else None,
        automation_condition=None if calendar else dg.AutomationCondition.on_cron(DAILY_CRON),
        check_specs=check_specs(key),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        return compute(context, amplitude, warehouse)

    return _asset


# ----- daily users and event totals -------------------------------------------------------------

USERS_COLUMNS = [DAY, Column("active_users", INT), Column("new_users", INT)]


def _single_value(rows: Iterable[dict[str, Any]], day: date) -> int:
    """The one value a one-day query returns (0 when Amplitude has no point for the day)."""
    total = 0
    for row in rows:
        if str(row.get("date", ""))[:10] in (day.isoformat(), ""):
            total += int(row.get("value") or 0)
    return total


def _daily_active_users_asset(calendar: DailyCalendar, naming: AssetNaming) -> dg.AssetsDefinition:
    table = _table(naming, DAILY_ACTIVE_USERS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        day = calendar.window(context.partition_key).day
        with amplitude.session(context) as client:
            start = client.stats.snapshot()
            active = _single_value(client.active_users(day, day, metric="active"), day)
            new = _single_value(client.active_users(day, day, metric="new"), day)
            cost = _cost_metadata(client, start)
        load_rows(
            warehouse,
            table,
            USERS_COLUMNS,
            [{"day": day, "active_users": active, "new_users": new}],
            partition=("day", day),
        )
        partition = ("day", day)
        return _materialize(
            warehouse,
            table,
            USERS_COLUMNS,
            cost,
            [checks.check_keys_unique(warehouse, table, ["day"], partition)],
            partition,
        )

    return _amplitude_asset(
        naming,
        DAILY_ACTIVE_USERS,
        "Daily active and new users from Amplitude's Dashboard REST API (/api/2/users).",
        compute,
        lambda key: [checks.keys_spec(key, ["day"])],
        calendar,
    )


TOTALS_COLUMNS = [DAY, Column("event_type", STR), Column("totals", INT), Column("uniques", INT)]


def _event_type_daily_totals_asset(
    calendar: DailyCalendar, naming: AssetNaming
) -> dg.AssetsDefinition:
    table = _table(naming, EVENT_TYPE_DAILY_TOTALS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        day = calendar.window(context.partition_key).day
        rows = []
        with amplitude.session(context) as client:
            start = client.stats.snapshot()
            for event in client.events_list():
                name = event.get("value") or event.get("name")
                if not name or event.get("deleted") or event.get("hidden"):
                    continue
                spec = {"event_type": name}
                totals = _single_value(client.segmentation(spec, day, day, metric="totals"), day)
                uniques = _single_value(client.segmentation(spec, day, day, metric="uniques"), day)
                if totals or uniques:
                    rows.append(
                        {"day": day, "event_type": name, "totals": totals, "uniques": uniques}
                    )
            cost = _cost_metadata(client, start)
        load_rows(warehouse, table, TOTALS_COLUMNS, rows, partition=("day", day))
        partition = ("day", day)
        total_events = sum(r["totals"] for r in rows)
        return _materialize(
            warehouse,
            table,
            TOTALS_COLUMNS,
            cost,
            [
                checks.check_keys_unique(warehouse, table, ["day", "event_type"], partition),
                checks.check_not_empty(warehouse, table, total_events > 0, partition),
            ],
            partition,
            {"amplitude_events_total": dg.MetadataValue.int(total_events)},
        )

    return _amplitude_asset(
        naming,
        EVENT_TYPE_DAILY_TOTALS,
        "Per event type and day: total events and unique users (event segmentation), for "
        "every event type the project lists.",
        compute,
        lambda key: [checks.keys_spec(key, ["day", "event_type"]), checks.not_empty_spec(key)],
        calendar,
    )


# ----- the raw event export -------------------------------------------------------------------

# (field in the export, column in the table, column type). An explicit schema lets the
# warehouse skip type inference (the slow, memory-hungry part of reading JSON) and makes a
# record with an unexpected shape fail loudly instead of being coerced or dropped.
EXPORT_FIELDS: tuple[JsonField, ...] = tuple(
    JsonField(*field)
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
EVENTS_COLUMNS = [DAY, *(Column(f.name, f.type) for f in EXPORT_FIELDS)]


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


def _events_asset(calendar: DailyCalendar, naming: AssetNaming) -> dg.AssetsDefinition:
    table = _table(naming, EVENTS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        window = calendar.window(context.partition_key)
        first_hour, last_hour = window.utc_hours()
        partition = ("day", window.day)
        with tempfile.TemporaryDirectory(prefix="amplitude-export-") as tmp:
            downloading = time.perf_counter()
            with amplitude.session(context) as client:
                start = client.stats.snapshot()
                result = client.export(first_hour, last_hour, Path(tmp))
                cost = _cost_metadata(client, start)
            download_seconds = time.perf_counter() - downloading
            files = list(result.files)
            loading = time.perf_counter()
            # The table exists (with its explicit schema) even before the first events
            # arrive, so an empty day (Amplitude's 404) still replaces its partition, with
            # nothing.
            rows = _load_export(context, warehouse, files, window.day, table)
            load_seconds = time.perf_counter() - loading
        context.log.info(
            f"{table}: {rows} events for {window.day} from {len(files)} files; download "
            f"{download_seconds:.1f} s, load {load_seconds:.1f} s "
            f"({rows / max(load_seconds, 1e-9):,.0f} events/s)"
        )
        return _materialize(
            warehouse,
            table,
            None,
            cost,
            [checks.check_keys_unique(warehouse, table, ["uuid"], partition)],
            partition,
            {
                "export_hours": dg.MetadataValue.text(
                    f"{first_hour:%Y%m%dT%H} to {last_hour:%Y%m%dT%H} (UTC)"
                ),
                "export_files": dg.MetadataValue.int(len(files)),
                "export_bytes": dg.MetadataValue.int(int(result.bytes or 0)),
                "amplitude_events_loaded": dg.MetadataValue.int(rows),
                "export_download_seconds": dg.MetadataValue.float(round(download_seconds, 3)),
                "load_seconds": dg.MetadataValue.float(round(load_seconds, 3)),
            },
        )

    return _amplitude_asset(
        naming,
        EVENTS,
        "Amplitude's raw events from the Export API, for the UTC upload hours that cover the "
        "local day; streamed to disk and loaded by the warehouse itself, never held in memory "
        "whole. Late "
        "uploads land in the partition of the day they were uploaded.",
        compute,
        lambda key: [checks.keys_spec(key, ["uuid"])],
        calendar,
    )


# ----- saved charts ---------------------------------------------------------------------------

CHART_COLUMNS = [Column("row_number", INT), Column("row", STR, "The chart row as JSON")]


def chart_asset(chart: NamedItem, naming: AssetNaming = DEFAULT_NAMING) -> dg.AssetsDefinition:
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
            cost = _cost_metadata(client, start)
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

    return _amplitude_asset(
        naming,
        name,
        f"The saved Amplitude chart {chart.id} ({chart.name}), as tidy rows.",
        compute,
        lambda key: [checks.keys_spec(key, ["row_number"])],
    )


# ----- cohorts --------------------------------------------------------------------------------

COHORT_COLUMNS = [
    Column("cohort_id", STR),
    Column("name", STR),
    Column("size", INT),
    Column("archived", BOOL),
    Column("published", BOOL),
    Column("finished", BOOL),
    Column("last_computed", TS),
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


def _cohorts_asset(naming: AssetNaming) -> dg.AssetsDefinition:
    table = _table(naming, COHORTS)

    def compute(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        with amplitude.session(context) as client:
            start = client.stats.snapshot()
            cohorts = client.list_cohorts()
            cost = _cost_metadata(client, start)
        load_rows(warehouse, table, COHORT_COLUMNS, map(_cohort_row, cohorts))
        return _materialize(
            warehouse,
            table,
            COHORT_COLUMNS,
            cost,
            [checks.check_keys_unique(warehouse, table, ["cohort_id"])],
        )

    return _amplitude_asset(
        naming,
        COHORTS,
        "The project's behavioral cohorts (the cohort list), refreshed daily.",
        compute,
        lambda key: [checks.keys_spec(key, ["cohort_id"])],
    )


MEMBERSHIP_COLUMNS = [
    Column(
        "snapshot_day", DATE, "The local day the snapshot was taken (the as_of day, sync time zone)"
    ),
    Column("as_of", TS, "When Amplitude computed the membership (the cohorts' lastComputed)"),
    Column("cohort_id", STR),
    Column("user_id", STR),
    Column("amplitude_id", INT),
]


COHORT_DOWNLOAD_ATTEMPTS = 3


def download_whole_cohort(client: Any, cohort: dict[str, Any], dest: Path) -> Path:
    """Download a cohort's members; a file with fewer than the cohort list's ``size`` was
    cut short on the way (its length can still match its Content-Length, so the transport
    cannot tell), so it is downloaded again, and the step fails before anything is written
    if it stays short. (A cut inside the last line keeps the count and is not caught.)"""
    size = cohort.get("size")
    members = 0
    for _ in range(COHORT_DOWNLOAD_ATTEMPTS):
        path = client.download_cohort(cohort["id"], dest)
        members = sum(1 for _ in client.read_cohort_csv(path))
        if not isinstance(size, int) or members >= size:
            return path
    raise TransportError(
        f"the file of cohort {cohort['id']} holds {members} members but the cohort list says "
        f"{size}: the download was cut short, or the cohort was recomputed meanwhile",
        service="amplitude",
        method="GET",
        url=f"/api/5/cohorts/request/{cohort['id']}",
        attempts=COHORT_DOWNLOAD_ATTEMPTS,
        hint="Nothing was written; re-run the partition.",
    )


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


def _cohort_membership_asset(
    calendar: DailyCalendar, naming: AssetNaming, wanted: Literal["all"] | Sequence[str]
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
            # The snapshot day is a day of the calendar's time zone, as the partitions are.
            as_of, basis = membership_as_of(chosen, calendar.timezone)
            snapshot_day = as_of.date()
            files = []
            for cohort in chosen:
                dest = Path(tmp) / f"{cohort['id']}.csv"
                files.append((cohort["id"], download_whole_cohort(client, cohort, dest)))
                expected[cohort["id"]] = cohort.get("size")

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
            cost = _cost_metadata(client, start)
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
                    warehouse, table, expected, snapshot_day, day_column="snapshot_day"
                ),
            ],
            partition,
            {
                "cohorts": dg.MetadataValue.int(len(expected)),
                "snapshot_day": dg.MetadataValue.text(snapshot_day.isoformat()),
                "membership_as_of": dg.MetadataValue.text(as_of.isoformat()),
            },
        )

    # Not partitioned: Amplitude serves only current membership (see the description).
    return _amplitude_asset(
        naming,
        COHORT_MEMBERSHIP,
        "Who is in each selected cohort, one snapshot a day kept as history, fetched through "
        "Amplitude's asynchronous cohort download (request, poll, file). Amplitude serves "
        "only a cohort's current members, so this is a snapshot refreshed with the catalog, "
        "not a daily partition: a past day's membership cannot be fetched again, and "
        "backfills of the daily sync never touch it. A run replaces the rows of its own "
        "snapshot_day (the local day of the cohorts' newest lastComputed); earlier days stay.",
        compute,
        lambda key: [
            checks.keys_spec(key, ["snapshot_day", "cohort_id", "user_id"]),
            checks.cohort_sizes_spec(key),
        ],
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
) -> list[dg.AssetsDefinition]:
    """The Amplitude assets for one ``calendar`` (daily partitions) and ``naming`` (keys,
    group, tables): daily users, event type totals and the raw export (partitioned), the
    cohort list and the cohort membership snapshot of ``cohorts`` (ids, or ``"all"``
    discoverable ones), and one asset per saved chart of ``charts``.

    ``include`` keeps only the named assets (see ``amplitude_asset_names``); ``None``
    keeps all. An unknown name raises ValueError."""
    wanted = set(check_asset_names(include, charts)) if include is not None else None

    def chosen(name: str) -> bool:
        return wanted is None or name in wanted

    builders: list[tuple[str, Callable[[], dg.AssetsDefinition]]] = [
        (DAILY_ACTIVE_USERS, lambda: _daily_active_users_asset(calendar, naming)),
        (EVENT_TYPE_DAILY_TOTALS, lambda: _event_type_daily_totals_asset(calendar, naming)),
        (EVENTS, lambda: _events_asset(calendar, naming)),
        (COHORTS, lambda: _cohorts_asset(naming)),
        (COHORT_MEMBERSHIP, lambda: _cohort_membership_asset(calendar, naming, cohorts)),
    ]
    assets = [build() for name, build in builders if chosen(name)]
    for chart in charts:
        if chosen(CHARTS) or chosen(f"{CHART_PREFIX}{chart.name}"):
            assets.append(chart_asset(chart, naming))
    return assets
