"""Pendo assets: the catalog, metadata schemas, visitors and accounts, daily usage, reports.

``pendo_assets(...)`` builds them from explicit settings (the ``PendoSync`` component passes
its YAML; a Python project can call it directly). Daily assets ask one aggregation per
step for its subscription-local days (``dayRange`` buckets from local midnight, ``day``
the first group key): the one day of a scheduled run, or every day of a backfill run's
range (split by ``MAX_DAYS_PER_AGGREGATION``, a spec's ``max_days`` and what the asset's
earlier aggregations taught (``pendo.spans``), and halved where Pendo's cap stops one
anyway), and replace each day's partition with
its rows, as a one-day run does. Every asset that calls the API runs
in the ``pendo_api`` pool. Pipelines are built with ``pendo.pipeline`` (never hand-written
JSON), so filter values are always escaped.
"""

# No `from __future__ import annotations`: Dagster checks the asset functions' context
# annotation at definition time, and cannot resolve a string one inside a factory.
import difflib
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from analytics_assets.api_session import api_metadata
from analytics_assets.component_fields import NamedItem
from analytics_assets.day_results import DayResult, range_cost, report_days
from analytics_assets.http.errors import ApiError
from analytics_assets.naming import DAILY, SNAPSHOT, AssetNaming, asset_tags
from analytics_assets.partitions import (
    FRESHNESS_POLICY,
    DailyCalendar,
    DayWindow,
    beta_backfill_policy,
)
from analytics_assets.pendo.arrow_rows import EVENTS_HOURLY
from analytics_assets.pendo.catalog_more import CATALOG_MORE_ASSETS
from analytics_assets.pendo.client import may_fit_narrower
from analytics_assets.pendo.history import HISTORY_ASSETS, HistorySpec, history_asset
from analytics_assets.pendo.pipeline import Agg, AppIds, Expr, Pipeline, Source, TimeSeries
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.pendo.spans import AggregationSpans
from analytics_assets.pendo.specs import DAY, DailySpec, Rows, SnapshotSpec, ms, usage_fields
from analytics_assets.pendo.visitor_usage import VISITOR_USAGE_ASSETS
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.asset_kinds import WAREHOUSE_KIND
from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.loading import (
    BATCH_ROWS,
    ArrowStage,
    Column,
    load_rows,
    table_metadata,
)
from analytics_assets.warehouse.types import BOOL, INT, STR, TS

KINDS = {"pendo", WAREHOUSE_KIND}
OWNERS = ["team:data-engineering"]
POOL = "pendo_api"
# Days one aggregation asks at most. Pendo caps a call at 5 minutes and 4 GB of output and
# asks for windows of at most 30 days (contract sections 2 and 8). Rows grouped per item or
# account and day stay far below that over 30 days; the raw hour rows of events_hourly
# (~150 MB a day at 100,000 accounts) would near 4 GB in a month, so they go a week at a
# time, and so do the visitor-level tables (``DailySpec.max_days``).
MAX_DAYS_PER_AGGREGATION = {"dayRange": 30, "hourRange": 7}
# Guide and poll events are single events (browserTime), not day buckets: their rows carry
# no ``day`` to group by, and a day boundary in the subscription's zone is no expression of
# Pendo's filter language. They are asked one day at a time.
DAY_BY_DAY = frozenset({"guide_daily_activity", "guide_visitor_daily_activity", "poll_responses"})


# ----- catalog and schemas -------------------------------------------------------------------

CATALOG_COLUMNS = [
    Column("id", STR, "Pendo id"),
    Column("name", STR, "Its name in Pendo"),
    Column("kind", STR, "Pendo's kind of the object (Page, Feature, Guide)"),
    Column("app_id", INT, "The Pendo app it belongs to"),
    Column("created_at", TS, "When it was created (createdAt), UTC"),
    Column("last_updated_at", TS, "When it was last changed (lastUpdatedAt), UTC"),
    Column("details", STR, "The full object as JSON"),
]
FEATURE_COLUMNS = [
    *CATALOG_COLUMNS[:4],
    Column("page_id", STR, "The page the feature is tagged on (pageId)"),
    *CATALOG_COLUMNS[4:],
]
GUIDE_COLUMNS = [
    *CATALOG_COLUMNS[:4],
    Column("state", STR, "The guide's state in Pendo (public, disabled, draft, ...)"),
    Column("launch_method", STR, "How the guide is launched (launchMethod: auto, badge, ...)"),
    Column("step_count", INT, "Number of steps in the guide"),
    *CATALOG_COLUMNS[4:],
]


def _catalog_row(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item.get("id"),
        "name": item.get("name"),
        "kind": item.get("kind"),
        "app_id": item.get("appId"),
        "page_id": item.get("pageId"),
        "state": item.get("state"),
        "launch_method": item.get("launchMethod"),
        "step_count": len(item.get("steps") or []),
        "created_at": ms(item.get("createdAt")),
        "last_updated_at": ms(item.get("lastUpdatedAt")),
        "details": item,
    }


SCHEMA_COLUMNS = [
    Column("group_name", STR, "Metadata group: auto, agent, custom, ..."),
    Column("field", STR, "The field's name within its group"),
    Column("type", STR, "Pendo's Type: string, boolean, integer, float, time"),
    Column("display_name", STR, "The name Pendo shows for the field (DisplayName)"),
    Column("is_hidden", BOOL, "Pendo's isHidden flag: the field is hidden"),
    Column("is_deleted", BOOL, "Pendo's isDeleted flag: the field was deleted"),
    Column("is_calculated", BOOL, "Pendo's isCalculated flag: Pendo computes the value"),
    Column("is_per_app", BOOL, "Pendo's isPerApp flag: one value per app"),
]


def _schema_rows(schema: dict[str, dict[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for group, fields in sorted(schema.items()):
        for field, raw in sorted(fields.items()):
            yield {
                "group_name": group,
                "field": field,
                "type": raw.get("Type"),
                "display_name": raw.get("DisplayName"),
                "is_hidden": raw.get("isHidden"),
                "is_deleted": raw.get("isDeleted"),
                "is_calculated": raw.get("isCalculated"),
                "is_per_app": raw.get("isPerApp"),
            }


def _plain_schema(schema: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Pendo's own descriptors (the client's ``FieldSchema.raw``), as the table stores them."""
    return {
        group: {field: dict(descriptor.raw) for field, descriptor in (fields or {}).items()}
        for group, fields in (schema or {}).items()
    }


# ----- visitors and accounts ----------------------------------------------------------------

VISITOR_COLUMNS = [
    Column("visitor_id", STR, "Pendo visitor id (identified visitors only)"),
    Column("account_id", STR, "metadata.auto.accountid"),
    Column("first_visit", TS, "First visit (metadata.auto.firstvisit), UTC"),
    Column("last_visit", TS, "Latest visit (metadata.auto.lastvisit), UTC"),
    Column("email", STR, "metadata.agent.email"),
    Column("name", STR, "metadata.agent.name"),
    Column("role", STR, "metadata.agent.role"),
    Column("language", STR, "metadata.agent.language"),
    Column("agent", STR, "metadata.agent as JSON"),
    Column("custom", STR, "metadata.custom as JSON"),
    Column("pendo", STR, "metadata.pendo as JSON (Pendo's own fields, e.g. donotprocess)"),
]
ACCOUNT_COLUMNS = [
    Column("account_id", STR, "Pendo account id"),
    Column("name", STR, "metadata.agent.name"),
    Column("plan", STR, "metadata.agent.plan"),
    Column("first_visit", TS, "The account's first visit (metadata.auto.firstvisit), UTC"),
    Column("last_visit", TS, "The account's latest visit (metadata.auto.lastvisit), UTC"),
    Column("agent", STR, "metadata.agent as JSON"),
    Column("custom", STR, "metadata.custom as JSON"),
    Column("pendo", STR, "metadata.pendo as JSON (Pendo's own fields, e.g. donotprocess)"),
]


def _group(meta: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One metadata group with its fields sorted: the JSON text of equal values is equal
    whatever order Pendo sends them in, so the history sees no change where there is none."""
    return dict(sorted((meta.get(name) or {}).items()))


def _visitor_row(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("metadata") or {}
    auto, agent = meta.get("auto") or {}, meta.get("agent") or {}
    return {
        "visitor_id": row.get("visitorId"),
        "account_id": auto.get("accountid"),
        "first_visit": ms(auto.get("firstvisit")),
        "last_visit": ms(auto.get("lastvisit")),
        "email": agent.get("email"),
        "name": agent.get("name"),
        "role": agent.get("role"),
        "language": agent.get("language"),
        "agent": _group(meta, "agent"),
        "custom": _group(meta, "custom"),
        "pendo": _group(meta, "pendo"),
    }


def _account_row(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("metadata") or {}
    auto, agent = meta.get("auto") or {}, meta.get("agent") or {}
    return {
        "account_id": row.get("accountId"),
        "name": agent.get("name"),
        "plan": agent.get("plan"),
        "first_visit": ms(auto.get("firstvisit")),
        "last_visit": ms(auto.get("lastvisit")),
        "agent": _group(meta, "agent"),
        "custom": _group(meta, "custom"),
        "pendo": _group(meta, "pendo"),
    }


REPORT_COLUMNS = [
    Column("row_number", INT, "The row's position in the report's results, from 0"),
    Column("row", STR, "The report row as JSON"),
]
ITEM_COLUMNS = [
    Column("events", INT, "Events on the item that day (sum of numEvents)"),
    Column("minutes", INT, "Minutes with events on the item (sum of numMinutes)"),
    Column("unique_visitors", INT, "Distinct visitors with events on the item that day"),
    Column("unique_accounts", INT, "Distinct accounts with events on the item that day"),
]


def _item_usage(
    source: Callable[..., Source], id_field: str, column: str, noun: str, catalog: str
) -> DailySpec:
    return DailySpec(
        f"Per {noun} and day: events, minutes, unique visitors and unique accounts.",
        [Column(column, STR, f"Pendo {noun} id"), *ITEM_COLUMNS],
        [column],
        lambda ts, apps: Pipeline(source(time_series=ts, app_ids=apps)).group(
            by=["day", id_field],
            fields={
                **usage_fields(),
                # Pendo's group "count" counts the distinct non-null values of a field.
                "uniqueVisitors": Agg.count("visitorId"),
                "uniqueAccounts": Agg.count("accountId"),
            },
        ),
        lambda r: {
            column: r.get(id_field),
            "events": r.get("events"),
            "minutes": r.get("minutes"),
            "unique_visitors": r.get("uniqueVisitors"),
            "unique_accounts": r.get("uniqueAccounts"),
        },
        deps=(catalog,),
        names_from=catalog,
    )


DAILY_ASSETS: dict[str, DailySpec] = {
    "visitor_daily_usage": DailySpec(
        "Per identified visitor and day: events and minutes across all apps.",
        [
            Column("visitor_id", STR, "Pendo visitor id (identified visitors only)"),
            Column("account_id", STR, "The visitor's account for these events ('' when none)"),
            Column("events", INT, "The visitor's events that day (sum of numEvents)"),
            Column("minutes", INT, "Minutes with events that day (sum of numMinutes)"),
        ],
        ["visitor_id", "account_id"],
        lambda ts, apps: (
            Pipeline(Source.events(time_series=ts, app_ids=apps))
            .identified("visitorId")
            .group(by=["day", "visitorId", "accountId"], fields=usage_fields())
        ),
        lambda r: {
            "visitor_id": r.get("visitorId"),
            "account_id": r.get("accountId") or "",
            "events": r.get("events"),
            "minutes": r.get("minutes"),
        },
    ),
    "account_daily_usage": DailySpec(
        "Per account and day: events, minutes and active visitors across all apps.",
        [
            Column("account_id", STR, "Pendo account id"),
            Column("events", INT, "Events of its identified visitors that day (sum of numEvents)"),
            Column("minutes", INT, "Minutes with events of its visitors (sum of numMinutes)"),
            Column("active_visitors", INT, "Distinct identified visitors with events that day"),
        ],
        ["account_id"],
        lambda ts, apps: (
            Pipeline(Source.events(time_series=ts, app_ids=apps))
            .identified("visitorId")
            .filter(Expr.ne("accountId", ""))
            .group(
                by=["day", "accountId"],
                fields={**usage_fields(), "activeVisitors": Agg.count("visitorId")},
            )
        ),
        lambda r: {
            "account_id": r.get("accountId"),
            "events": r.get("events"),
            "minutes": r.get("minutes"),
            "active_visitors": r.get("activeVisitors"),
        },
        deps=("visitor_daily_usage",),
        totals_of="visitor_daily_usage",
    ),
    "feature_daily_usage": _item_usage(
        Source.feature_events, "featureId", "feature_id", "feature", "features"
    ),
    "page_daily_usage": _item_usage(Source.page_events, "pageId", "page_id", "page", "pages"),
    "guide_daily_activity": DailySpec(
        "Per guide, event type (guideSeen, guideAdvanced, guideDismissed, ...) and day: "
        "events, unique visitors and unique accounts.",
        [
            Column("guide_id", STR, "Pendo guide id"),
            Column("type", STR, "Guide event type (guideSeen, guideAdvanced, guideDismissed, ...)"),
            Column("events", INT, "Guide events of the type that day"),
            Column("unique_visitors", INT, "Distinct visitors with such events that day"),
            Column("unique_accounts", INT, "Distinct accounts with such events that day"),
        ],
        ["guide_id", "type"],
        lambda ts, apps: Pipeline(Source.guide_events(time_series=ts, app_ids=apps)).group(
            by=["guideId", "type"],
            fields={
                "events": Agg.count_rows(),
                "uniqueVisitors": Agg.count("visitorId"),
                "uniqueAccounts": Agg.count("accountId"),
            },
        ),
        lambda r: {
            "guide_id": r.get("guideId"),
            "type": r.get("type"),
            "events": r.get("events"),
            "unique_visitors": r.get("uniqueVisitors"),
            "unique_accounts": r.get("uniqueAccounts"),
        },
        deps=("guides",),
        names_from="guides",
    ),
    "events_hourly": DailySpec(
        "Pendo's raw aggregated event rows of the day, per visitor, account, app, server, IP, "
        "user agent and hour (the hourRange events source, streamed).",
        [
            Column("hour", TS, "Start of the hour bucket, UTC"),
            Column("visitor_id", STR, "Pendo visitor id (anonymous ones included)"),
            Column("account_id", STR, "The visitor's account for these events ('' when none)"),
            Column("app_id", INT, "The Pendo app of the events"),
            Column("server", STR, "The host name the events happened on"),
            Column("remote_ip", STR, "The visitor's IP address"),
            Column("user_agent", STR, "The browser's user agent"),
            Column("events", INT, "Events in the hour (numEvents)"),
            Column("minutes", INT, "Minutes of the hour with events (numMinutes)"),
        ],
        ["hour", "visitor_id", "account_id", "app_id", "server", "remote_ip", "user_agent"],
        lambda ts, apps: Pipeline(Source.events(time_series=ts, app_ids=apps)),
        lambda r: {
            "hour": ms(r.get("hour")),
            "visitor_id": r.get("visitorId"),
            "account_id": r.get("accountId") or "",
            "app_id": r.get("appId"),
            "server": r.get("server"),
            "remote_ip": r.get("remoteIp"),
            "user_agent": r.get("userAgent"),
            "events": r.get("numEvents"),
            "minutes": r.get("numMinutes"),
        },
        period="hourRange",
        arrow=EVENTS_HOURLY,
    ),
}


def _catalog(noun: str, columns: list[Column], fetch: Callable[[Any], list[dict]]) -> SnapshotSpec:
    return SnapshotSpec(
        f"Every {noun} of the Pendo subscription, across all its apps.",
        columns,
        ["id"],
        lambda client: map(_catalog_row, fetch(client)),
    )


def _schema(kind: str) -> SnapshotSpec:
    return SnapshotSpec(
        f"The {kind} metadata fields Pendo knows, with their types.",
        SCHEMA_COLUMNS,
        ["group_name", "field"],
        lambda client: _schema_rows(_plain_schema(client.get_metadata_schema(kind))),
    )


def _entity(noun: str, columns: list[Column], key: str, rows: Rows) -> SnapshotSpec:
    return SnapshotSpec(
        f"Every {noun} with its metadata (auto, agent, custom), read through the "
        "aggregation API since Pendo has no list endpoint.",
        columns,
        [key],
        rows,
    )


SNAPSHOT_ASSETS: dict[str, SnapshotSpec] = {
    "features": _catalog("feature", FEATURE_COLUMNS, lambda c: c.list_features(expand_all=True)),
    "pages": _catalog("page", CATALOG_COLUMNS, lambda c: c.list_pages(expand_all=True)),
    "guides": _catalog("guide", GUIDE_COLUMNS, lambda c: c.list_guides(expand_all=True)),
    "visitor_metadata_schema": _schema("visitor"),
    "account_metadata_schema": _schema("account"),
    "visitors": _entity(
        "identified visitor",
        VISITOR_COLUMNS,
        "visitor_id",
        lambda c: map(_visitor_row, c.aggregate(Pipeline(Source.visitors()).identified())),
    ),
    "accounts": _entity(
        "account",
        ACCOUNT_COLUMNS,
        "account_id",
        lambda c: map(_account_row, c.aggregate(Pipeline(Source.accounts()))),
    ),
    **CATALOG_MORE_ASSETS,
}
DAILY_ASSETS |= VISITOR_USAGE_ASSETS

#: The names ``include`` accepts (reports are named by the ``reports`` argument).
ASSET_NAMES = (*SNAPSHOT_ASSETS, *DAILY_ASSETS, *HISTORY_ASSETS)


def check_asset_names(names: Collection[str], valid: Sequence[str], system: str) -> None:
    """A ValueError naming each unknown asset, with the closest valid name."""
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown {system} asset {name!r}{hint} Valid names: {', '.join(valid)}"
            )


def _fetch_in_chunks(
    context: dg.AssetExecutionContext,
    windows: Sequence[DayWindow],
    most: int,
    fetch: Callable[[Sequence[DayWindow]], None],
    stages: "DayStages",
    spans: AggregationSpans,
) -> None:
    """``fetch`` the step's consecutive days in chunks of at most ``most``, narrower where
    this asset's aggregations have taught that a chunk that wide would near or meet Pendo's
    cap (``spans``: asked before each chunk, so what one chunk teaches sizes the next)."""
    if len(windows) > 1 and (why := spans.why(min(most, len(windows)))):
        context.log.info(f"asking Pendo {why}")
    done = 0
    while done < len(windows):
        chunk = windows[done : done + spans.days(most)]
        _fetch_halving(context, chunk, fetch, stages, spans)
        done += len(chunk)


def _fetch_halving(
    context: dg.AssetExecutionContext,
    chunk: Sequence[DayWindow],
    fetch: Callable[[Sequence[DayWindow]], None],
    stages: "DayStages",
    spans: AggregationSpans,
) -> None:
    """``fetch`` the days of ``chunk``, in halves when Pendo's time or size cap may have
    stopped a range of several days (``may_fit_narrower``: a refusal or timeout that says
    so, or a stream that broke, as the cap cuts a response under way). The rows staged for
    those days are dropped first, so each day is still staged once, whole. A single day
    that fails raises, as a one-day run does, and so does any other error (a host out of
    reach, a key, a bad request, a rate limit)."""
    try:
        fetch(chunk)
    except ApiError as exc:
        if len(chunk) == 1 or not may_fit_narrower(exc):
            raise
        spans.capped(len(chunk))
        half = len(chunk) // 2
        context.log.warning(
            f"Pendo stopped the aggregation of {chunk[0].day}..{chunk[-1].day} "
            f"({type(exc).__name__}: {exc}); asking {chunk[0].day}..{chunk[half - 1].day} "
            f"and {chunk[half].day}..{chunk[-1].day} apart"
        )
        stages.reset(chunk)
        _fetch_halving(context, chunk[:half], fetch, stages, spans)
        _fetch_halving(context, chunk[half:], fetch, stages, spans)


def _series(windows: Sequence[DayWindow], period: str) -> TimeSeries:
    """Consecutive local days: one day bucket each, or their hour buckets."""
    if period == "dayRange":
        return TimeSeries.day_range(windows[0].start_ms, count=len(windows))
    return TimeSeries.hour_range(windows[0].start_ms, windows[-1].end_ms)


class DayStages:
    """Answer rows of a range, split by the day they belong to into one staged Parquet
    file per day (memory stays bounded whatever the order of the rows); each day is then
    loaded as its own partition, exactly as a one-day step loads it."""

    def __init__(self, windows: Sequence[DayWindow], columns: Sequence[Column]) -> None:
        self.windows = list(windows)
        self.columns = list(columns)
        self._by_start = {w.start_ms: w for w in self.windows}
        self._counts = {w.day: [0, 0] for w in self.windows}

    def __enter__(self) -> "DayStages":
        self._tmp = tempfile.TemporaryDirectory(prefix="pendo-days-")
        # Batches shrink with the days so the rows pending in memory stay at one day's.
        self._batch = batch = max(1_000, BATCH_ROWS // len(self.windows))
        self._stages = {
            w.day: ArrowStage(Path(self._tmp.name) / f"{w.day}.parquet", self.columns, batch)
            for w in self.windows
        }
        return self

    def __exit__(self, *exc: object) -> None:
        for stage in self._stages.values():
            stage.close()
        self._tmp.cleanup()

    def day_of(self, raw: Mapping[str, Any], period: str) -> DayWindow:
        """The day of an answer row: its ``day`` bucket, or the local day of its ``hour``."""
        field = "day" if period == "dayRange" else "hour"
        moment = raw.get(field)
        window = self._by_start.get(moment) if field == "day" else self._hour_day(moment)
        if window is None:
            raise dg.Failure(
                description=(
                    f"Pendo answered a row whose {field} is {moment!r}, which is no "
                    f"{'day bucket' if field == 'day' else 'hour'} of the days asked "
                    f"({self.windows[0].day} to {self.windows[-1].day}); nothing was written. "
                    "Run the partitions again; if Pendo keeps answering so, check the "
                    "subscription's time zone against the calendar's."
                ),
                metadata={"field": field, "value": repr(moment)},
            )
        return window

    def _hour_day(self, moment: Any) -> DayWindow | None:
        if isinstance(moment, bool) or not isinstance(moment, int):
            return None
        for window in self.windows:
            if window.start_ms <= moment < window.end_ms:
                return window
        return None

    def add(self, window: DayWindow, row: dict[str, Any], raw: Mapping[str, Any]) -> None:
        counts = self._counts[window.day]
        counts[0] += 1
        counts[1] += int(raw.get("events") or raw.get("numEvents") or 0)
        self._stages[window.day].add(row)

    def add_batch(self, window: DayWindow, rows: Any, answer_rows: int, events: int) -> None:
        """Table rows as Arrow (``ArrowRows.by_day``) from ``answer_rows`` answer rows."""
        counts = self._counts[window.day]
        counts[0] += answer_rows
        counts[1] += events
        self._stages[window.day].add_batch(rows)

    def reset(self, windows: Sequence[DayWindow]) -> None:
        """Drop what was staged for ``windows`` (an answer that broke midway)."""
        for window in windows:
            self._stages[window.day].close()
            self._stages[window.day] = ArrowStage(
                Path(self._tmp.name) / f"{window.day}-{uuid.uuid4().hex[:8]}.parquet",
                self.columns,
                self._batch,
            )
            self._counts[window.day] = [0, 0]

    def source_rows(self, window: DayWindow) -> tuple[int, int]:
        """The day's answer rows and the events they count."""
        rows, events = self._counts[window.day]
        return rows, events

    def load(self, window: DayWindow, warehouse: WarehouseResource, table: str) -> int:
        """Replace the day's partition with its staged rows."""
        stage = self._stages[window.day]
        stage.close()
        return warehouse.replace_partition(
            table, stage.data(), "day", window.day, columns=self.columns
        )


def _busiest(
    warehouse: WarehouseResource, table: str, id_column: str, names: str | None, day: Any
) -> dict[str, dg.MetadataValue]:
    """The day's five busiest items, with their names from the catalog (when it has been
    loaded): what a reader of the UI wants to see beside the ids."""
    if names is None:
        return {}
    named = warehouse.table_exists(names)
    join = f"LEFT JOIN {names} AS c ON c.id = u.{id_column}" if named else ""
    name = "c.name" if named else "CAST(NULL AS VARCHAR)"
    rows = warehouse.records(
        f"SELECT u.{id_column} AS id, max({name}) AS name, sum(u.events) AS events "
        f"FROM {table} AS u {join} WHERE u.day = ? GROUP BY u.{id_column} "
        f"ORDER BY events DESC, id LIMIT 5",
        [day],
    )
    lines = ["| id | name | events |", "|---|---|---|"]
    for r in rows:
        name = str(r["name"]).replace("|", "\\|") if r["name"] else "(not in the catalog)"
        lines.append(f"| {r['id']} | {name} | {r['events']} |")
    return {"busiest": dg.MetadataValue.md("\n".join(lines))}


class _Factory:
    """Builds the assets of one Pendo subscription with one calendar and one naming."""

    def __init__(
        self,
        calendar: DailyCalendar,
        naming: AssetNaming,
        app_ids: AppIds,
        built: Collection[str],
        retry: dg.RetryPolicy | None = None,
    ) -> None:
        self.retry = retry
        self.calendar = calendar
        self.naming = naming
        self.app_ids = app_ids
        self.built = built  # the assets this factory builds: deps only on those

    def snapshot(self, name: str, spec: SnapshotSpec) -> dg.AssetsDefinition:
        """An unpartitioned table refreshed whole from what ``spec.rows(client)`` streams."""
        key = self.naming.key(name)
        table = self.naming.table(name)
        columns, keys, rows = spec.columns, spec.keys, spec.rows

        @dg.asset(
            key=key,
            group_name=self.naming.group,
            kinds=KINDS,
            owners=OWNERS,
            tags=asset_tags(self.naming, SNAPSHOT),
            pool=POOL,
            description=spec.description,
            deps=[self.naming.key(d) for d in spec.deps if d in self.built],
            freshness_policy=FRESHNESS_POLICY,
            retry_policy=self.retry,
            check_specs=[checks.keys_spec(key, keys)],
        )
        def _snapshot(
            context: dg.AssetExecutionContext, pendo: PendoResource, warehouse: WarehouseResource
        ) -> dg.MaterializeResult:
            with pendo.session(context) as client:
                start = client.stats.snapshot()
                load_rows(warehouse, table, columns, rows(client))
                cost = api_metadata(client, start, "pendo")
            return dg.MaterializeResult(
                metadata={**table_metadata(warehouse, table, columns), **cost},
                check_results=[checks.check_keys_unique(warehouse, table, keys)],
            )

        _snapshot.__name__ = "_".join([*self.naming.key_prefix, "pendo", name])
        return _snapshot

    def daily(self, name: str, spec: DailySpec) -> dg.AssetsDefinition:
        key = self.naming.key(name)
        table = self.naming.table(name)
        all_columns = [DAY, *spec.columns]
        keys = ["day", *spec.keys]
        calendar, app_ids = self.calendar, self.app_ids
        totals_table = self.naming.table(spec.totals_of) if spec.totals_of else None
        names = spec.names_from if spec.names_from in self.built else None
        names_table = self.naming.table(names) if names else None
        parts = calendar.partitions_def
        by_day = name in DAY_BY_DAY
        days_per_aggregation = 1 if by_day else MAX_DAYS_PER_AGGREGATION[spec.period]
        if spec.max_days:
            days_per_aggregation = min(days_per_aggregation, spec.max_days)

        with beta_backfill_policy():  # Dagster warns at this call, not at the decoration
            as_asset = dg.asset(
                key=key,
                group_name=self.naming.group,
                kinds=KINDS,
                owners=OWNERS,
                tags=asset_tags(self.naming, DAILY),
                pool=POOL,
                description=spec.description,
                partitions_def=parts,
                backfill_policy=calendar.backfill_policy,
                deps=[self.naming.key(d) for d in spec.deps if d in self.built],
                freshness_policy=FRESHNESS_POLICY,
                retry_policy=self.retry,
                check_specs=[
                    checks.keys_spec(key, keys, parts),
                    checks.not_empty_spec(key, parts),
                    checks.volume_spec(key, parts),
                    *([checks.account_totals_spec(key, parts)] if totals_table else []),
                ],
            )

        @as_asset
        def _daily(
            context: dg.AssetExecutionContext, pendo: PendoResource, warehouse: WarehouseResource
        ) -> Iterator[Any]:
            windows = calendar.windows(context)
            with pendo.session(context) as client:
                start = client.stats.snapshot()
                complete = spec.enrich(client) if spec.enrich else None
                spans = pendo.spans(name)
                with DayStages(windows, all_columns) as stages:

                    def fetch(chunk: Sequence[DayWindow]) -> None:
                        with spans.timing(client.stats, len(chunk)):
                            _fetch_chunk(chunk)

                    def _fetch_chunk(chunk: Sequence[DayWindow]) -> None:
                        pipeline = spec.pipeline(_series(chunk, spec.period), app_ids)
                        if spec.arrow is not None:  # big tables: Arrow columns, no dict per row
                            answer = client.aggregate_arrow(pipeline, spec.arrow.arrow_fields())
                            day_of = lambda raw: stages.day_of(raw, spec.period)  # noqa: E731
                            for part in spec.arrow.by_day(
                                answer, chunk, spec.period, all_columns, day_of
                            ):
                                stages.add_batch(*part)
                            return
                        for raw in client.aggregate(pipeline):
                            window = chunk[0] if by_day else stages.day_of(raw, spec.period)
                            row = {"day": window.day, **spec.to_row(raw)}
                            stages.add(window, complete(row) if complete else row, raw)

                    _fetch_in_chunks(context, windows, days_per_aggregation, fetch, stages, spans)
                    # Every day of the step is replaced, an empty answer with no rows, as a
                    # one-day run replaces its day.
                    for window in windows:
                        stages.load(window, warehouse, table)
                cost = api_metadata(client, start, "pendo")
            days = []
            for window in windows:
                partition = ("day", window.day)
                source_rows, source_events = stages.source_rows(window)
                results = [
                    checks.check_keys_unique(warehouse, table, keys, partition),
                    checks.check_not_empty(warehouse, table, source_rows > 0, partition),
                    checks.check_volume(warehouse, table, window.day),
                ]
                if totals_table:
                    results.append(
                        checks.check_account_totals(warehouse, table, totals_table, window.day)
                    )
                metadata = {
                    **table_metadata(warehouse, table, all_columns, partition=partition),
                    **range_cost(cost, [w.day for w in windows]),
                    "source_rows": dg.MetadataValue.int(source_rows),
                    "pendo_events_total": dg.MetadataValue.int(source_events),
                    **_busiest(warehouse, table, keys[1], names_table, window.day),
                }
                days.append(DayResult(window.day.isoformat(), metadata, results))
            yield from report_days(context, days)

        _daily.__name__ = "_".join([*self.naming.key_prefix, "pendo", name])
        return _daily

    def history(self, name: str, spec: HistorySpec) -> dg.AssetsDefinition:
        columns = SNAPSHOT_ASSETS[spec.source].columns
        return history_asset(
            self.naming, name, spec, columns, self.calendar.timezone, built=self.built
        )

    def report(self, report: NamedItem) -> dg.AssetsDefinition:
        return self.snapshot(
            f"report_{report.name}",
            SnapshotSpec(
                f"The saved Pendo report {report.id} ({report.name}), as JSON rows.",
                REPORT_COLUMNS,
                ["row_number"],
                lambda client: (
                    {"row_number": i, "row": row}
                    for i, row in enumerate(client.report_results(report.id))
                ),
            ),
        )


def pendo_assets(
    *,
    calendar: DailyCalendar | None = None,
    app_ids: AppIds = "*",
    reports: Sequence[NamedItem] = (),
    naming: AssetNaming | None = None,
    include: Collection[str] | None = None,
    retry: dg.RetryPolicy | None = None,
) -> list[dg.AssetsDefinition]:
    """The Pendo assets: catalog, schemas, visitors, accounts, daily usage, and one asset per
    saved report. ``include`` keeps only the named assets (see ``ASSET_NAMES``); ``naming``
    sets key prefix, group and table schema. The assets need the resources ``pendo``
    (:class:`PendoResource`) and ``warehouse``. ``retry`` is the step retry policy of the
    assets that call the API: None, Dagster's default, runs a failed step once; the
    ``PendoSync`` component passes ``API_RETRY_POLICY`` unless told otherwise."""
    if include is not None:
        check_asset_names(include, ASSET_NAMES, "Pendo")
    wanted = set(ASSET_NAMES if include is None else include)
    factory = _Factory(
        calendar or DailyCalendar(), naming or AssetNaming("pendo"), app_ids, wanted, retry
    )
    return [
        *(factory.snapshot(n, spec) for n, spec in SNAPSHOT_ASSETS.items() if n in wanted),
        *(factory.daily(n, spec) for n, spec in DAILY_ASSETS.items() if n in wanted),
        *(factory.history(n, spec) for n, spec in HISTORY_ASSETS.items() if n in wanted),
        *(factory.report(r) for r in reports),
    ]
