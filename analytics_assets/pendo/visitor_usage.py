"""Who used what: one row per visitor, account, item and day, from Pendo's per-item sources.

Feature, page, guide, track-event and poll tables at visitor level, each asked of every
app (``appId: expandAppIds("*")``) with one aggregation per step (its day, or a backfill
run's range of days: ``day`` leads every group), grouped by Pendo so the answer already
has one row per table row, and streamed into the warehouse in bounded Arrow batches:
memory stays flat however many visitors the days had. Anonymous visitors (``_PENDO_T_…``,
no account) are kept, so a visitor table sums to its item table (``feature_daily_usage``,
``page_daily_usage``, ``guide_daily_activity``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analytics_assets.pendo.pipeline import Agg, AppIds, Pipeline, Source, TimeSeries
from analytics_assets.pendo.specs import DailySpec, Row, ms, usage_fields
from analytics_assets.warehouse.loading import Column
from analytics_assets.warehouse.types import INT, STR, TS

VISITOR = Column("visitor_id", STR, "Pendo visitor id (anonymous ones start with _PENDO_T_)")
ACCOUNT = Column("account_id", STR, "The visitor's account for these events ('' when none)")
EVENTS = Column("events", INT, "Events of the visitor on the item that day (numEvents)")
MINUTES = Column("minutes", INT, "Minutes with at least one such event (numMinutes)")
APP = Column("app_id", INT, "The item's Pendo app")
# Days a backfill range asks in one aggregation: about a million rows a day at 100,000
# accounts, so a week stays far from Pendo's 4 GB cap (a month would not). A bigger
# subscription that still hits it gets the range halved until it fits (pendo/assets.py).
VISITOR_RANGE_DAYS = 7


def _who(r: Row) -> Row:
    return {"visitor_id": r.get("visitorId"), "account_id": r.get("accountId") or ""}


def _item_usage(
    source: Callable[..., Source], id_field: str, column: str, noun: str, catalog: str
) -> DailySpec:
    """Per visitor, account and item (feature, page): events and minutes of the day."""
    return DailySpec(
        f"Per visitor, account, {noun} and day: events and minutes, all apps. Sums to "
        f"{noun}_daily_usage per {noun}.",
        [VISITOR, ACCOUNT, Column(column, STR, f"Pendo {noun} id"), APP, EVENTS, MINUTES],
        ["visitor_id", "account_id", column],
        lambda ts, apps: Pipeline(source(time_series=ts, app_ids=apps)).group(
            by=["day", "visitorId", "accountId", id_field, "appId"],
            fields=usage_fields(),
        ),
        lambda r: {
            **_who(r),
            column: r.get(id_field),
            "app_id": r.get("appId"),
            "events": r.get("events"),
            "minutes": r.get("minutes"),
        },
        deps=(catalog,),
        max_days=VISITOR_RANGE_DAYS,
    )


def _guides(ts: TimeSeries, apps: AppIds) -> Pipeline:
    return Pipeline(Source.guide_events(time_series=ts, app_ids=apps)).group(
        by=["visitorId", "accountId", "guideId", "guideStepId", "type"],
        fields={
            "events": Agg.count_rows(),
            "firstTime": Agg.min("browserTime"),
            "lastTime": Agg.max("browserTime"),
        },
    )


def _guide_row(r: Row) -> Row:
    return {
        **_who(r),
        "guide_id": r.get("guideId"),
        "guide_step_id": r.get("guideStepId") or "",
        "type": r.get("type"),
        "events": r.get("events"),
        "first_at": ms(r.get("firstTime")),
        "last_at": ms(r.get("lastTime")),
    }


def _track_names(client: Any) -> Callable[[Row], Row]:
    """Track type names from the catalog, fetched once per step: the rows carry only ids."""
    names = {t.get("id"): t.get("name") for t in client.list_track_types(expand_all=True)}
    return lambda row: {**row, "track_type_name": names.get(row["track_type_id"])}


def _polls(ts: TimeSeries, apps: AppIds) -> Pipeline:
    # Sorted by time first, so ``last`` is the visitor's latest answer of the day.
    return (
        Pipeline(Source.poll_events(time_series=ts, app_ids=apps))
        .sort("browserTime")
        .group(
            by=["visitorId", "accountId", "pollId", "guideId"],
            fields={
                "response": Agg.last("pollResponse"),
                "responses": Agg.count_rows(),
                "firstTime": Agg.min("browserTime"),
                "lastTime": Agg.max("browserTime"),
            },
        )
    )


def _response_text(value: Any) -> str | None:
    # NPS answers are numbers, free-text polls strings: one text column holds both.
    return None if value is None else str(value)


VISITOR_USAGE_ASSETS: dict[str, DailySpec] = {
    "feature_visitor_daily_usage": _item_usage(
        Source.feature_events, "featureId", "feature_id", "feature", "features"
    ),
    "page_visitor_daily_usage": _item_usage(
        Source.page_events, "pageId", "page_id", "page", "pages"
    ),
    "guide_visitor_daily_activity": DailySpec(
        "Per visitor, account, guide, guide step, event type (guideSeen, guideAdvanced, "
        "guideDismissed, pollResponse, ...) and day: events and the first and last moment. "
        "Guides have no minutes. Sums to guide_daily_activity per guide and type.",
        [
            VISITOR,
            ACCOUNT,
            Column("guide_id", STR, "Pendo guide id"),
            Column("guide_step_id", STR, "The step the event happened on"),
            Column("type", STR, "Guide event type"),
            Column("events", INT, "Guide events of this type, step and visitor that day"),
            Column("first_at", TS, "The first such event (browserTime)"),
            Column("last_at", TS, "The last such event (browserTime)"),
        ],
        ["visitor_id", "account_id", "guide_id", "guide_step_id", "type"],
        _guides,
        _guide_row,
        deps=("guides", "guide_steps"),
    ),
    "track_event_visitor_daily_usage": DailySpec(
        "Per visitor, account, track event type and day: events and minutes, all apps, with "
        "the track type's name.",
        [
            VISITOR,
            ACCOUNT,
            Column("track_type_id", STR, "Pendo track type id"),
            Column("track_type_name", STR, "The track type's name (the event name sent)"),
            EVENTS,
            MINUTES,
        ],
        ["visitor_id", "account_id", "track_type_id"],
        lambda ts, apps: Pipeline(Source.track_events(time_series=ts, app_ids=apps)).group(
            by=["day", "visitorId", "accountId", "trackTypeId"], fields=usage_fields()
        ),
        lambda r: {
            **_who(r),
            "track_type_id": r.get("trackTypeId"),
            "events": r.get("events"),
            "minutes": r.get("minutes"),
        },
        deps=("track_types",),
        enrich=_track_names,
        max_days=VISITOR_RANGE_DAYS,
    ),
    "poll_responses": DailySpec(
        "Per visitor, account, poll and day: the visitor's (latest) response to the poll "
        "that day, how many times they answered, and when.",
        [
            VISITOR,
            ACCOUNT,
            Column("poll_id", STR, "Pendo poll id (one question of a guide)"),
            Column("guide_id", STR, "The guide that holds the poll"),
            Column("response", STR, "The latest response as text (a number for NPS)"),
            Column("responses", INT, "Responses of the visitor to the poll that day"),
            Column("first_response_at", TS, "The first response of the day (browserTime)"),
            Column("last_response_at", TS, "The latest response of the day (browserTime)"),
        ],
        ["visitor_id", "account_id", "poll_id"],
        _polls,
        lambda r: {
            **_who(r),
            "poll_id": r.get("pollId"),
            "guide_id": r.get("guideId"),
            "response": _response_text(r.get("response")),
            "responses": r.get("responses"),
            "first_response_at": ms(r.get("firstTime")),
            "last_response_at": ms(r.get("lastTime")),
        },
        deps=("polls",),
    ),
}
