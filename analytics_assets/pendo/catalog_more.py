"""The rest of the catalog: track types, guide steps, polls (each one question) and apps.

Guide steps and polls are parts of the guide objects (``steps``, ``polls``), flattened to
one row each. Pendo's v1 API documents no list of apps (``../shared/api/pendo.md`` §5
names none; every catalog object carries its ``appId``), so ``apps`` is built from the
catalog lists: each app id seen, what it holds and when it first did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analytics_assets.pendo.specs import Row, SnapshotSpec, ms
from analytics_assets.warehouse.loading import Column
from analytics_assets.warehouse.types import INT, STR, TS

ID = Column("id", STR, "Pendo id")
APP = Column("app_id", INT, "The Pendo app it belongs to")
CREATED = Column("created_at", TS, "When it was created")
UPDATED = Column("last_updated_at", TS, "When it was last changed")
DETAILS = Column("details", STR, "The full object as JSON")


def _track_type_row(item: dict[str, Any]) -> Row:
    return {
        "id": item.get("id"),
        "name": item.get("name"),
        "app_id": item.get("appId"),
        "rules": item.get("trackTypeRules") or [],
        "created_at": ms(item.get("createdAt")),
        "last_updated_at": ms(item.get("lastUpdatedAt")),
        "details": item,
    }


def _guide_steps(client: Any) -> Iterator[Row]:
    for guide in client.list_guides(expand_all=True):
        for position, step in enumerate(guide.get("steps") or []):
            yield {
                "id": step.get("id"),
                "guide_id": guide.get("id"),
                "position": position,
                "type": step.get("type"),
                "page_id": step.get("pageId"),
                "advance_method": step.get("advanceMethod"),
                "rank": step.get("rank"),
                "last_updated_at": ms(step.get("lastUpdatedAt")),
                "details": step,
            }


def _polls(client: Any) -> Iterator[Row]:
    for guide in client.list_guides(expand_all=True):
        for poll in guide.get("polls") or []:
            attributes = poll.get("attributes") or {}
            yield {
                "id": poll.get("id"),
                "guide_id": guide.get("id"),
                "question": poll.get("question"),
                "type": attributes.get("type"),
                "attributes": attributes,
                "details": poll,
            }


# Where each kind of catalog object is counted in ``apps``.
_APP_COUNTS = (
    ("features", "list_features"),
    ("pages", "list_pages"),
    ("guides", "list_guides"),
    ("track_types", "list_track_types"),
)


def _apps(client: Any) -> Iterator[Row]:
    apps: dict[int, Row] = {}
    for column, method in _APP_COUNTS:
        for item in getattr(client, method)(expand_all=True):
            app_id = item.get("appId")
            if app_id is None:
                continue
            app = apps.setdefault(
                app_id, {"app_id": app_id, **dict.fromkeys((c for c, _ in _APP_COUNTS), 0)}
            )
            app[column] += 1
            created = ms(item.get("createdAt"))
            first = app.get("first_created_at")
            if created is not None and (first is None or created < first):
                app["first_created_at"] = created
    yield from (apps[a] for a in sorted(apps))


CATALOG_MORE_ASSETS: dict[str, SnapshotSpec] = {
    "track_types": SnapshotSpec(
        "Every track event type of the Pendo subscription, across all its apps.",
        [
            ID,
            Column("name", STR, "The track event's name, as the app sends it"),
            APP,
            Column("rules", STR, "trackTypeRules as JSON: the event names it matches"),
            CREATED,
            UPDATED,
            DETAILS,
        ],
        ["id"],
        lambda client: map(_track_type_row, client.list_track_types(expand_all=True)),
    ),
    "guide_steps": SnapshotSpec(
        "Every step of every guide, in order (position 0 is the first step).",
        [
            ID,
            Column("guide_id", STR, "The guide the step belongs to"),
            Column("position", INT, "0-based position of the step in its guide"),
            Column("type", STR, "Step type (lightbox, tooltip, banner, ...)"),
            Column("page_id", STR, "The page the step shows on"),
            Column("advance_method", STR, "How the visitor moves on (button, element, ...)"),
            Column("rank", INT, "Pendo's ordering rank of the step"),
            UPDATED,
            DETAILS,
        ],
        ["id"],
        _guide_steps,
        deps=("guides",),
    ),
    "polls": SnapshotSpec(
        "Every poll of every guide: one row per question, with its type (NPSRating, "
        "FreeForm, ...) and attributes.",
        [
            ID,
            Column("guide_id", STR, "The guide that asks it"),
            Column("question", STR, "The question's text"),
            Column("type", STR, "attributes.type: NPSRating, FreeForm, PickList, ..."),
            Column("attributes", STR, "The poll's attributes as JSON (labels, choices)"),
            DETAILS,
        ],
        ["id"],
        _polls,
        deps=("guides",),
    ),
    "apps": SnapshotSpec(
        "Every Pendo app the catalog refers to, with how many features, pages, guides and "
        "track types it holds (Pendo's v1 API lists no apps: they are read off the catalog).",
        [
            Column("app_id", INT, "Pendo app id (the default web app is -323232)"),
            Column("features", INT, "Features tagged in the app"),
            Column("pages", INT, "Pages tagged in the app"),
            Column("guides", INT, "Guides whose app it is"),
            Column("track_types", INT, "Track event types of the app"),
            Column("first_created_at", TS, "The oldest catalog object of the app"),
        ],
        ["app_id"],
        _apps,
        deps=("features", "pages", "guides", "track_types"),
    ),
}
