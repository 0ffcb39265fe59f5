"""Pendo assets: the catalog, metadata schemas, visitors and accounts, daily usage, reports.

Daily assets ask one aggregation per partition for the subscription-local day (a
``dayRange`` bucket of one day starting at local midnight) and replace exactly
that partition. Every asset that calls the API runs in the ``pendo_api`` pool.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from analytics_assets.api_session import api_metadata
from analytics_assets.partitions import DayWindow, daily_partitions, day_window
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sync_config import NamedItem, load_sync_config
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.loading import Column, load_rows, table_metadata
from analytics_assets.warehouse.types import BOOL, DATE, INT, STR, TS

GROUP = "pendo"
KINDS = {"pendo", "duckdb"}
OWNERS = ["team:data-engineering"]
POOL = "pendo_api"
DAILY_CRON = "0 4 * * *"


def _app_param() -> dict[str, Any]:
    app_ids = load_sync_config().pendo_app_ids
    return {"appId": 'expandAppIds("*")' if app_ids == "*" else list(app_ids)}


def _ms(value: Any) -> datetime | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _day_source(
    source: str, window: DayWindow, params: dict[str, Any] | None = None, period: str = "dayRange"
) -> dict[str, Any]:
    """An event source over one local day: one day bucket, or the day's hour buckets."""
    if period == "dayRange":
        time_series: dict[str, Any] = {"period": period, "first": window.start_ms, "count": 1}
    else:
        time_series = {"period": period, "first": window.start_ms, "last": window.end_ms}
    return {"source": {source: {**_app_param(), **(params or {})}, "timeSeries": time_series}}


# ----- catalog and schemas -------------------------------------------------------------------

CATALOG_COLUMNS = [
    Column("id", STR, "Pendo id"),
    Column("name", STR),
    Column("kind", STR),
    Column("app_id", INT),
    Column("created_at", TS),
    Column("last_updated_at", TS),
    Column("details", STR, "The full object as JSON"),
]
FEATURE_COLUMNS = [*CATALOG_COLUMNS[:4], Column("page_id", STR), *CATALOG_COLUMNS[4:]]
GUIDE_COLUMNS = [
    *CATALOG_COLUMNS[:4],
    Column("state", STR),
    Column("launch_method", STR),
    Column("step_count", INT),
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
        "created_at": _ms(item.get("createdAt")),
        "last_updated_at": _ms(item.get("lastUpdatedAt")),
        "details": item,
    }


def _snapshot_asset(
    name: str,
    description: str,
    columns: list[Column],
    keys: list[str],
    rows: Callable[[Any], Iterable[dict[str, Any]]],
) -> dg.AssetsDefinition:
    """An unpartitioned table refreshed whole from what ``rows(client)`` streams."""
    key = dg.AssetKey([GROUP, name])
    table = f"pendo.{name}"

    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds=KINDS,
        owners=OWNERS,
        pool=POOL,
        description=description,
        automation_condition=dg.AutomationCondition.on_cron(DAILY_CRON),
        check_specs=[checks.keys_spec(key, keys)],
    )
    def _snapshot(
        context: dg.AssetExecutionContext, pendo: PendoResource, warehouse: DuckDBWarehouse
    ) -> dg.MaterializeResult:
        with pendo.session(context) as client:
            start = client.stats.snapshot()
            load_rows(warehouse, table, columns, rows(client))
            cost = api_metadata(client, start, "pendo")
        return dg.MaterializeResult(
            metadata={**table_metadata(warehouse, table, columns), **cost},
            check_results=[checks.check_keys_unique(warehouse, table, keys)],
        )

    _snapshot.__name__ = f"pendo_{name}"
    return _snapshot


def _catalog_asset(
    name: str, noun: str, columns: list[Column], fetch: Callable[[Any], list[dict[str, Any]]]
) -> dg.AssetsDefinition:
    return _snapshot_asset(
        name,
        f"Every {noun} of the Pendo subscription, across all its apps.",
        columns,
        ["id"],
        lambda client: map(_catalog_row, fetch(client)),
    )


SCHEMA_COLUMNS = [
    Column("group_name", STR, "Metadata group: auto, agent, custom, ..."),
    Column("field", STR),
    Column("type", STR, "Pendo's Type: string, boolean, integer, float, time"),
    Column("display_name", STR),
    Column("is_hidden", BOOL),
    Column("is_deleted", BOOL),
    Column("is_calculated", BOOL),
    Column("is_per_app", BOOL),
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


def _schema_asset(kind: str) -> dg.AssetsDefinition:
    return _snapshot_asset(
        f"{kind}_metadata_schema",
        f"The {kind} metadata fields Pendo knows, with their types.",
        SCHEMA_COLUMNS,
        ["group_name", "field"],
        lambda client: _schema_rows(_plain_schema(client.get_metadata_schema(kind))),
    )


def _plain_schema(schema: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Pendo's own descriptors (the client's ``FieldSchema.raw``), as the table stores them."""
    return {
        group: {field: dict(descriptor.raw) for field, descriptor in (fields or {}).items()}
        for group, fields in (schema or {}).items()
    }


# ----- visitors and accounts ----------------------------------------------------------------

VISITOR_COLUMNS = [
    Column("visitor_id", STR),
    Column("account_id", STR, "metadata.auto.accountid"),
    Column("first_visit", TS),
    Column("last_visit", TS),
    Column("email", STR),
    Column("name", STR),
    Column("role", STR),
    Column("language", STR),
    Column("agent", STR, "metadata.agent as JSON"),
    Column("custom", STR, "metadata.custom as JSON"),
]
ACCOUNT_COLUMNS = [
    Column("account_id", STR),
    Column("name", STR),
    Column("plan", STR),
    Column("first_visit", TS),
    Column("last_visit", TS),
    Column("agent", STR, "metadata.agent as JSON"),
    Column("custom", STR, "metadata.custom as JSON"),
]


def _visitor_row(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("metadata") or {}
    auto, agent = meta.get("auto") or {}, meta.get("agent") or {}
    return {
        "visitor_id": row.get("visitorId"),
        "account_id": auto.get("accountid"),
        "first_visit": _ms(auto.get("firstvisit")),
        "last_visit": _ms(auto.get("lastvisit")),
        "email": agent.get("email"),
        "name": agent.get("name"),
        "role": agent.get("role"),
        "language": agent.get("language"),
        "agent": agent,
        "custom": meta.get("custom") or {},
    }


def _account_row(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("metadata") or {}
    auto, agent = meta.get("auto") or {}, meta.get("agent") or {}
    return {
        "account_id": row.get("accountId"),
        "name": agent.get("name"),
        "plan": agent.get("plan"),
        "first_visit": _ms(auto.get("firstvisit")),
        "last_visit": _ms(auto.get("lastvisit")),
        "agent": agent,
        "custom": meta.get("custom") or {},
    }


def _entity_asset(
    name: str,
    source: str,
    columns: list[Column],
    key_column: str,
    to_row: Callable[[dict[str, Any]], dict[str, Any]],
    noun: str,
    pipeline_tail: list[dict[str, Any]],
) -> dg.AssetsDefinition:
    pipeline = [{"source": {source: None}}, *pipeline_tail]
    return _snapshot_asset(
        name,
        f"Every {noun} with its metadata (auto, agent, custom), read through the "
        "aggregation API since Pendo has no list endpoint.",
        columns,
        [key_column],
        lambda client: map(to_row, client.aggregate(pipeline)),
    )


# ----- daily usage ---------------------------------------------------------------------------

DAY = Column("day", DATE, "The subscription-local day (the partition)")


def _daily_asset(
    name: str,
    description: str,
    columns: list[Column],
    keys: list[str],
    pipeline: Callable[[DayWindow], list[dict[str, Any]]],
    to_row: Callable[[dict[str, Any]], dict[str, Any]],
    deps: Iterable[dg.AssetKey] = (),
    extra_checks: Callable[[DuckDBWarehouse, Any], list[dg.AssetCheckResult]] | None = None,
    extra_specs: Iterable[dg.AssetCheckSpec] = (),
) -> dg.AssetsDefinition:
    key = dg.AssetKey([GROUP, name])
    table = f"pendo.{name}"
    all_columns = [DAY, *columns]

    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds=KINDS,
        owners=OWNERS,
        pool=POOL,
        description=description,
        partitions_def=daily_partitions(),
        deps=list(deps),
        check_specs=[
            checks.keys_spec(key, ["day", *keys]),
            checks.not_empty_spec(key),
            *extra_specs,
        ],
    )
    def _daily(
        context: dg.AssetExecutionContext, pendo: PendoResource, warehouse: DuckDBWarehouse
    ) -> dg.MaterializeResult:
        window = day_window(context.partition_key)
        source_rows = 0
        source_events = 0

        def rows() -> Iterator[dict[str, Any]]:
            nonlocal source_rows, source_events
            for raw in client.aggregate(pipeline(window)):
                source_rows += 1
                source_events += int(raw.get("events") or raw.get("numEvents") or 0)
                yield {"day": window.day, **to_row(raw)}

        with pendo.session(context) as client:
            start = client.stats.snapshot()
            load_rows(warehouse, table, all_columns, rows(), partition=("day", window.day))
            cost = api_metadata(client, start, "pendo")
        partition = ("day", window.day)
        results = [
            checks.check_keys_unique(warehouse, table, ["day", *keys], partition),
            checks.check_not_empty(warehouse, table, source_rows > 0, partition),
        ]
        if extra_checks is not None:
            results.extend(extra_checks(warehouse, window.day))
        return dg.MaterializeResult(
            metadata={
                **table_metadata(warehouse, table, all_columns, partition=partition),
                **cost,
                "source_rows": dg.MetadataValue.int(source_rows),
                "pendo_events_total": dg.MetadataValue.int(source_events),
            },
            check_results=results,
        )

    _daily.__name__ = f"pendo_{name}"
    return _daily


def _sum(field: str) -> dict[str, str]:
    return {"sum": field}


def _distinct(field: str) -> dict[str, str]:
    # Pendo's group "count" counts the distinct non-null values of a field.
    return {"count": field}


visitor_daily_usage = _daily_asset(
    "visitor_daily_usage",
    "Per identified visitor and day: events and minutes across all apps.",
    [
        Column("visitor_id", STR),
        Column("account_id", STR),
        Column("events", INT),
        Column("minutes", INT),
    ],
    ["visitor_id", "account_id"],
    lambda w: [
        _day_source("events", w),
        {"identified": "visitorId"},
        {
            "group": {
                "group": ["visitorId", "accountId"],
                "fields": {"events": _sum("numEvents"), "minutes": _sum("numMinutes")},
            }
        },
    ],
    lambda r: {
        "visitor_id": r.get("visitorId"),
        "account_id": r.get("accountId") or "",
        "events": r.get("events"),
        "minutes": r.get("minutes"),
    },
)

VISITOR_USAGE_KEY = dg.AssetKey([GROUP, "visitor_daily_usage"])

account_daily_usage = _daily_asset(
    "account_daily_usage",
    "Per account and day: events, minutes and active visitors across all apps.",
    [
        Column("account_id", STR),
        Column("events", INT),
        Column("minutes", INT),
        Column("active_visitors", INT),
    ],
    ["account_id"],
    lambda w: [
        _day_source("events", w),
        {"identified": "visitorId"},
        {"filter": 'accountId != ""'},
        {
            "group": {
                "group": ["accountId"],
                "fields": {
                    "events": _sum("numEvents"),
                    "minutes": _sum("numMinutes"),
                    "activeVisitors": _distinct("visitorId"),
                },
            }
        },
    ],
    lambda r: {
        "account_id": r.get("accountId"),
        "events": r.get("events"),
        "minutes": r.get("minutes"),
        "active_visitors": r.get("activeVisitors"),
    },
    deps=[VISITOR_USAGE_KEY],
    extra_checks=lambda wh, day: [
        checks.check_account_totals(
            wh, "pendo.account_daily_usage", "pendo.visitor_daily_usage", day
        )
    ],
    extra_specs=[checks.account_totals_spec(dg.AssetKey([GROUP, "account_daily_usage"]))],
)

_ITEM_COLUMNS = [
    Column("events", INT),
    Column("minutes", INT),
    Column("unique_visitors", INT),
    Column("unique_accounts", INT),
]


def _item_usage(name: str, source: str, id_field: str, column: str, noun: str):
    return _daily_asset(
        name,
        f"Per {noun} and day: events, minutes, unique visitors and unique accounts.",
        [Column(column, STR), *_ITEM_COLUMNS],
        [column],
        lambda w: [
            _day_source(source, w, {id_field: None}),
            {
                "group": {
                    "group": [id_field],
                    "fields": {
                        "events": _sum("numEvents"),
                        "minutes": _sum("numMinutes"),
                        "uniqueVisitors": _distinct("visitorId"),
                        "uniqueAccounts": _distinct("accountId"),
                    },
                }
            },
        ],
        lambda r: {
            column: r.get(id_field),
            "events": r.get("events"),
            "minutes": r.get("minutes"),
            "unique_visitors": r.get("uniqueVisitors"),
            "unique_accounts": r.get("uniqueAccounts"),
        },
    )


feature_daily_usage = _item_usage(
    "feature_daily_usage", "featureEvents", "featureId", "feature_id", "feature"
)
page_daily_usage = _item_usage("page_daily_usage", "pageEvents", "pageId", "page_id", "page")

guide_daily_activity = _daily_asset(
    "guide_daily_activity",
    "Per guide, event type (guideSeen, guideAdvanced, guideDismissed, ...) and day: "
    "events, unique visitors and unique accounts.",
    [
        Column("guide_id", STR),
        Column("type", STR),
        Column("events", INT),
        Column("unique_visitors", INT),
        Column("unique_accounts", INT),
    ],
    ["guide_id", "type"],
    lambda w: [
        _day_source("guideEvents", w),
        {
            "group": {
                "group": ["guideId", "type"],
                "fields": {
                    "events": {"count": None},
                    "uniqueVisitors": _distinct("visitorId"),
                    "uniqueAccounts": _distinct("accountId"),
                },
            }
        },
    ],
    lambda r: {
        "guide_id": r.get("guideId"),
        "type": r.get("type"),
        "events": r.get("events"),
        "unique_visitors": r.get("uniqueVisitors"),
        "unique_accounts": r.get("uniqueAccounts"),
    },
)

events_hourly = _daily_asset(
    "events_hourly",
    "Pendo's raw aggregated event rows of the day, per visitor, account, app, server, IP, "
    "user agent and hour (the hourRange events source, streamed).",
    [
        Column("hour", TS),
        Column("visitor_id", STR),
        Column("account_id", STR),
        Column("app_id", INT),
        Column("server", STR),
        Column("remote_ip", STR),
        Column("user_agent", STR),
        Column("events", INT),
        Column("minutes", INT),
    ],
    ["hour", "visitor_id", "account_id", "app_id", "server", "remote_ip", "user_agent"],
    lambda w: [_day_source("events", w, period="hourRange")],
    lambda r: {
        "hour": _ms(r.get("hour")),
        "visitor_id": r.get("visitorId"),
        "account_id": r.get("accountId") or "",
        "app_id": r.get("appId"),
        "server": r.get("server"),
        "remote_ip": r.get("remoteIp"),
        "user_agent": r.get("userAgent"),
        "events": r.get("numEvents"),
        "minutes": r.get("numMinutes"),
    },
)


# ----- saved reports ---------------------------------------------------------------------------

REPORT_COLUMNS = [Column("row_number", INT), Column("row", STR, "The report row as JSON")]


def report_asset(report: NamedItem) -> dg.AssetsDefinition:
    return _snapshot_asset(
        f"report_{report.name}",
        f"The saved Pendo report {report.id} ({report.name}), as JSON rows.",
        REPORT_COLUMNS,
        ["row_number"],
        lambda client: (
            {"row_number": i, "row": row} for i, row in enumerate(client.report_results(report.id))
        ),
    )


def pendo_assets() -> list[dg.AssetsDefinition]:
    """Every Pendo asset, including one per saved report named in the sync config."""
    return [
        _catalog_asset(
            "features", "feature", FEATURE_COLUMNS, lambda c: c.list_features(expand_all=True)
        ),
        _catalog_asset("pages", "page", CATALOG_COLUMNS, lambda c: c.list_pages(expand_all=True)),
        _catalog_asset("guides", "guide", GUIDE_COLUMNS, lambda c: c.list_guides(expand_all=True)),
        _schema_asset("visitor"),
        _schema_asset("account"),
        _entity_asset(
            "visitors",
            "visitors",
            VISITOR_COLUMNS,
            "visitor_id",
            _visitor_row,
            "identified visitor",
            [{"identified": "visitorId"}],
        ),
        _entity_asset(
            "accounts", "accounts", ACCOUNT_COLUMNS, "account_id", _account_row, "account", []
        ),
        visitor_daily_usage,
        account_daily_usage,
        feature_daily_usage,
        page_daily_usage,
        guide_daily_activity,
        events_hourly,
        *(report_asset(r) for r in load_sync_config().pendo_reports),
    ]
