"""Pendo's JSON shapes for the catalog (pages, features, guides, track types, reports),
visitors and accounts, and the metadata schema.

Catalog objects are built once per region (they are small and fixed). Visitors and
accounts are never materialised: ``People`` keeps per-entity numbers in numpy arrays and
builds each row's dict as it is asked for, so a million visitors stream in constant memory.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from analytics_assets.sandbox.company import (
    BROWSERS,
    DAY_MS,
    FIRST_NAMES,
    HISTORY_START,
    HOUR_MS,
    INDUSTRIES,
    LANGUAGES,
    LAST_NAMES,
    PLANS,
    ROLES,
    Company,
    local_midnight_ms,
    stable_id,
)
from analytics_assets.sandbox.pendo.store import (
    AGENT_FIELDS,
    CUSTOM_FIELDS,
    CreatedEntity,
    PendoStore,
)
from analytics_assets.sandbox.world import World

DEFAULT_APP_ID = -323232
ANONYMOUS_PREFIX = "_PENDO_T_"
# Where each app's events come from (``server`` of event rows, ``lastservername``).
SERVERS = {"web": "app.acme-saas.example", "ios": "com.acme.ios", "android": "com.acme.android"}
# Visitors without activity in this many days get a stable, earlier ``lastvisit``.
LAST_VISIT_DAYS = 14
CHUNK = 4096


def remote_ip(visitor: int) -> str:
    """A stable (private-range) IP address per visitor."""
    return f"10.{visitor >> 16 & 255}.{visitor >> 8 & 255}.{visitor & 255}"


def _hash(text: str) -> int:
    """Pendo's ``idhash``: a 32-bit hash of the id (crc32, as the interpreter's hash())."""
    return zlib.crc32(text.encode())


def per_app_group(app_id: int) -> str:
    """``auto__323232``: Pendo's per-app metadata group drops the id's sign (sample row)."""
    return f"auto__{abs(app_id)}"


# --------------------------------------------------------------------------- the catalog


def _moment(company: Company, *parts: object, lo_days: int = 0, span_days: int = 400) -> int:
    """A stable moment (ms) after HISTORY_START, derived from ``parts``."""
    h = zlib.crc32("/".join(map(str, (company.seed, company.region, *parts))).encode())
    day = HISTORY_START + timedelta(days=lo_days + h % span_days)
    return local_midnight_ms(day, company.tz) + (h >> 8) % DAY_MS


def _user(company: Company, number: int) -> dict[str, Any]:
    """One of the subscription's Pendo users (authors of catalog objects)."""
    first, last = (("Ana", "Admin"), ("Ben", "Builder"), ("Chen", "Curator"))[number % 3]
    return {
        "id": str(4_503_599_627_370_496 + number),
        "username": f"{first.lower()}.{last.lower()}@acme-saas.example",
        "first": first,
        "last": last,
        "role": 8,
        "userType": "",
        "hasLoggedIn": True,
        "lastLogin": _moment(company, "login", number, lo_days=800, span_days=60),
        "visitorIds": None,
        "deletedAt": 0,
    }


def _common(company: Company, kind: str, obj_id: str, name: str, app_id: int) -> dict[str, Any]:
    created = _moment(company, kind, obj_id)
    updated = created + zlib.crc32(obj_id.encode()) % (200 * DAY_MS)
    author = zlib.crc32(obj_id.encode()) % 3
    group_id = stable_id(company.region, "group", app_id)
    return {
        "id": obj_id,
        "name": name,
        "kind": kind,
        "appId": app_id,
        "color": ("gray", "blue", "green", "orange")[author],
        "createdAt": created,
        "lastUpdatedAt": updated,
        "createdByUser": _user(company, author),
        "lastUpdatedByUser": _user(company, (author + 1) % 3),
        "rootVersionId": obj_id,
        "stableVersionId": f"{obj_id}-{updated}",
        "group": {
            "id": group_id,
            "name": "Core product",
            "description": "",
            "color": ".groupColor01",
            "length": 0,
            "items": [],
            "createdAt": _moment(company, "group", app_id),
            "lastUpdatedAt": _moment(company, "group", app_id) + DAY_MS,
            "createdByUser": _user(company, 0),
            "lastUpdatedByUser": _user(company, 0),
        },
        "dirty": False,
        "isCoreEvent": False,
        "validThrough": updated,
        "dailyMergeFirst": created,
        "dailyRollupFirst": created,
    }


def _page_regex(rule: str) -> str:
    path = rule.replace("//*", "", 1)
    return f"^https?://[^/]*{path}/?(?:;.*)?(?:\\?.*)?(?:#.*)?$"


class Catalog:
    """A region's pages, features, guides, track types and reports as Pendo returns them."""

    def __init__(self, company: Company) -> None:
        self.company = company
        self.app_ids = [app.id for app in company.apps]
        self.app_platform = {app.id: app.platform for app in company.apps}
        page_url = {p.id: p.url for p in company.pages}
        self.pages = [self._page(p) for p in company.pages]
        self.features = [self._feature(f) for f in company.features]
        self.guides = [self._guide(g, page_url) for g in company.guides]
        self.track_types = [self._track_type(t) for t in company.track_types]
        self.reports = [self._report(r) for r in company.reports]
        self.lists: dict[str, list[dict[str, Any]]] = {
            "page": self.pages,
            "feature": self.features,
            "guide": self.guides,
            "tracktype": self.track_types,
            "report": self.reports,
        }
        self.by_id = {kind: {obj["id"]: obj for obj in objs} for kind, objs in self.lists.items()}

    # What the control API may change on a catalog object, as an editor in Pendo's UI would.
    EDITABLE = ("name", "state")

    def edit(self, kind: str, obj_id: str, changes: dict[str, Any], now_ms: int) -> dict[str, Any]:
        """Change an object in place (name, a guide's state) and stamp ``lastUpdatedAt``, so
        the REST lists and the catalog sources serve the new version. Raises KeyError or
        ValueError for an unknown object or field."""
        obj = self.by_id[kind][obj_id]
        unknown = sorted(set(changes) - set(self.EDITABLE))
        if unknown or ("state" in changes and kind != "guide"):
            raise ValueError(
                f"only {self.EDITABLE} can be changed (state on guides), not {unknown}"
            )
        obj.update(changes)
        obj["lastUpdatedAt"] = obj["validThrough"] = now_ms
        obj["stableVersionId"] = f"{obj_id}-{now_ms}"
        return obj

    def _page(self, page: Any) -> dict[str, Any]:
        obj = _common(self.company, "Page", page.id, page.name, page.app_id)
        obj.update(
            {
                "rules": [
                    {
                        "rule": page.url,
                        "parsedRule": _page_regex(page.url),
                        "designerHint": page.url,
                    }
                ],
                "rulesjson": "",
                "isAutoTagged": False,
                "suggestedName": "",
            }
        )
        return obj

    def _feature(self, feature: Any) -> dict[str, Any]:
        obj = _common(self.company, "Feature", feature.id, feature.name, feature.app_id)
        obj.update(
            {
                "pageId": feature.page_id,
                "elementPathRules": [feature.selector],
                "elementSelectionType": "",
                "elementInitialTag": "BUTTON",
                "appWide": False,
                "eventPropertyConfigurations": [],
                "createdDesignerVersion": "2.262.0",
                "suggestedMatch": "",
            }
        )
        return obj

    def _guide(self, guide: Any, page_url: dict[str, str]) -> dict[str, Any]:
        obj = _common(self.company, "Guide", guide.id, guide.name, guide.app_id)
        published = obj["createdAt"] + DAY_MS if guide.state in ("public", "disabled") else 0
        obj.update(
            {
                "state": guide.state,
                "launchMethod": guide.launch_method,
                "isMultiStep": len(guide.steps) > 1,
                "appIds": [guide.app_id],
                "publishedAt": published,
                "resetAt": 0,
                "audience": [],
                "attributes": {
                    "type": guide.kind,
                    "device": {
                        "desktop": self.app_platform[guide.app_id] == "web",
                        "mobile": self.app_platform[guide.app_id] != "web",
                    },
                    "badge": {"position": "top-right"} if guide.launch_method == "badge" else None,
                    "priority": self.company.guides.index(guide),
                    "activation": {"event": [guide.launch_method], "selector": ""},
                },
                "polls": (
                    [
                        {
                            "id": guide.poll_id,
                            "question": "How likely are you to recommend us?",
                            "attributes": {"type": "NPSRating", "minLabel": "0", "maxLabel": "10"},
                        }
                    ]
                    if guide.poll_id
                    else []
                ),
                "steps": [
                    {
                        "id": step.id,
                        "guideId": guide.id,
                        "type": step.type,
                        "pageId": step.page_id,
                        "regexUrlRule": _page_regex(page_url[step.page_id]),
                        "elementPathRule": "",
                        "contentType": "text/html; charset=utf-8",
                        "contentUrl": f"https://cdn.acme-saas.example/guide-content/{step.id}.html",
                        "contentUrlCss": f"https://cdn.acme-saas.example/guide-content/{step.id}.css",
                        "contentUrlJs": f"https://cdn.acme-saas.example/guide-content/{step.id}.js",
                        "rank": (step.rank + 1) * 5_000_000,
                        "advanceMethod": "button",
                        "attributes": {"height": 400, "width": 600},
                        "lastUpdatedAt": obj["lastUpdatedAt"],
                        "resetAt": 0,
                    }
                    for step in guide.steps
                ],
            }
        )
        return obj

    def _track_type(self, track: Any) -> dict[str, Any]:
        obj = _common(self.company, "TrackType", track.id, track.name, track.app_id)
        obj.update(
            {
                "trackTypeName": track.name,
                "trackTypeRules": [track.name],
                "eventPropertyNameList": [],
            }
        )
        return obj

    def _report(self, report: Any) -> dict[str, Any]:
        created = _moment(self.company, "Report", report.id)
        fields = [
            {"type": field_type_of(report.level, path), "field": path, "title": title}
            for title, path in report.columns
        ]
        return {
            "id": report.id,
            "name": report.name,
            "kind": "Report",
            "type": "List",
            "level": report.level,
            "scope": "global",
            "share": "public",
            "shared": True,
            "target": report.level,
            "ownedByUser": _user(self.company, 0),
            "definition": {
                "kind": f"{report.level}List",
                "config": {"columns": [{"fieldName": p, "title": t} for t, p in report.columns]},
            },
            "aggregation": {"fields": fields, "pipeline": [dict(s) for s in report.pipeline]},
            "lastRunAt": created + 30 * DAY_MS,
            "lastSuccessRunAt": created + 30 * DAY_MS,
            "lastSuccessRunObj": "",
            "createdAt": created,
            "lastUpdatedAt": created + DAY_MS,
        }


def field_type_of(kind: str, path: str) -> str:
    """The schema type of a row path such as ``metadata.agent.plan`` (``string`` if unknown)."""
    parts = path.split(".")
    if len(parts) == 3 and parts[0] == "metadata":
        group, field = parts[1], parts[2]
        if group == "auto":
            return AUTO_FIELDS[kind].get(field, "string") or "string"
        if group == "agent":
            return AGENT_FIELDS[kind].get(field, "string")
        if group == "custom":
            return CUSTOM_FIELDS[kind].get(field, "string")
    return "string"


# ----------------------------------------------------------------------------- the schema

AUTO_FIELDS: dict[str, dict[str, str]] = {
    "visitor": {
        "id": "string",
        "idhash": "integer",
        "accountid": "string",
        # A list: Pendo's list-valued fields carry an empty Type (§6's hubspot.list).
        "accountids": "",
        "firstvisit": "time",
        "lastvisit": "time",
        "lastupdated": "time",
        "lastbrowsername": "string",
        "lastbrowserversion": "string",
        "lastoperatingsystem": "string",
        "lastservername": "string",
        "lastuseragent": "string",
        "nid": "integer",
    },
    "account": {
        "id": "string",
        "idhash": "integer",
        "firstvisit": "time",
        "lastvisit": "time",
        "lastupdated": "time",
    },
}


def descriptor(field: str, field_type: str, sample: Any, *, element: str = "") -> dict[str, Any]:
    """One field of ``GET /metadata/schema/{kind}``, keys spelled as Pendo returns them."""
    return {
        "Type": field_type,
        "DisplayName": field.replace("_", " ").title(),
        "ElementType": element,
        "ElementFormat": "unix_ms" if field_type == "time" else "",
        "Dirty": False,
        "isHidden": False,
        "isDeleted": False,
        "isCalculated": False,
        "isPerApp": False,
        "isPromoted": False,
        "neverIndex": False,
        "sample": sample,
    }


# ------------------------------------------------------------------------ people (views)


@dataclass(frozen=True)
class _Stored:
    """Written values of a kind, copied once per pass (or for one entity)."""

    custom: dict[str, dict[str, Any]]
    agent: dict[str, dict[str, Any]]
    updated: dict[str, int]

    @classmethod
    def all(cls, store: PendoStore, kind: str) -> _Stored:
        return cls(
            store.snapshot(kind, "custom"), store.snapshot(kind, "agent"), store.updated(kind)
        )

    @classmethod
    def one(cls, store: PendoStore, kind: str, entity_id: str) -> _Stored:
        return cls(
            {entity_id: store.values(kind, "custom", entity_id)},
            {entity_id: store.values(kind, "agent", entity_id)},
            {entity_id: store.updated_at(kind, entity_id) or 0},
        )


@dataclass(frozen=True)
class AnonymousVisitors:
    """Anonymous (``_PENDO_T_…``) visitors of the last-visit window, as numpy columns.

    They exist in the event rows only (the generator draws a number per anonymous
    visitor-hour); the visitors source and a lookup by id need them as visitors. Ids are
    found through a sorted crc32 of the id, so no dict of strings is kept at any scale.
    """

    number: np.ndarray  # the generator's anonymous number (sorted, unique)
    first: np.ndarray  # first visible hour (ms) in the window
    last: np.ndarray  # last visible hour (ms)
    hashes: np.ndarray  # crc32 of each id, sorted
    by_hash: np.ndarray  # index into ``number`` of each sorted hash

    @classmethod
    def build(cls, company: Company, ids: np.ndarray, hours: np.ndarray) -> AnonymousVisitors:
        if ids.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty, np.zeros(0, dtype=np.uint32), empty)
        order = np.lexsort((hours, ids))
        ids, hours = ids[order], hours[order]
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        ends = np.concatenate((starts[1:], [ids.size])) - 1
        number = ids[starts].astype(np.int64)
        hashes = np.fromiter(
            (zlib.crc32(company.anonymous_id(n).encode()) for n in number.tolist()),
            dtype=np.uint32,
            count=number.size,
        )
        by_hash = np.argsort(hashes, kind="stable")
        return cls(number, hours[starts], hours[ends], hashes[by_hash], by_hash)

    def find(self, company: Company, visitor_id: str) -> int | None:
        """Index of an anonymous visitor id in ``number``, or None."""
        h = zlib.crc32(visitor_id.encode())
        lo, hi = np.searchsorted(self.hashes, [h, h + 1])
        for k in range(int(lo), int(hi)):
            index = int(self.by_hash[k])
            if company.anonymous_id(int(self.number[index])) == visitor_id:
                return index
        return None


class People:
    """Visitors and accounts of one region: static arrays plus a cached last-visit pass."""

    def __init__(self, world: World, store: PendoStore) -> None:
        self.world = world
        self.company = world.company
        self.store = store
        c = self.company
        # Local midnights of every creation day, so first visits are one array lookup.
        days = int(max(c.visitor_created.max(initial=0), c.account_created.max(initial=0))) + 1
        midnight = np.array(
            [local_midnight_ms(HISTORY_START + timedelta(days=d), c.tz) for d in range(days)],
            dtype=np.int64,
        )
        index = np.arange(c.n_visitors, dtype=np.int64)
        self.visitor_firstvisit = midnight[c.visitor_created] + 10 * HOUR_MS + (index % 3600) * 1000
        self.account_firstvisit = midnight[c.account_created] + 9 * HOUR_MS
        self.account_ids = [c.account_id(a) for a in range(c.n_accounts)]
        self.account_domains = [c.account_domain(a) for a in range(c.n_accounts)]
        self.account_names = [c.account_name(a) for a in range(c.n_accounts)]
        self.default_group = per_app_group(c.apps[0].id)
        self.server = SERVERS[c.apps[0].platform]
        self._lock = threading.Lock()
        self._last_cache: tuple[tuple, tuple[np.ndarray, np.ndarray, AnonymousVisitors]] | None = (
            None
        )

    # ----- last visits --------------------------------------------------------------------

    def last_visits(self, cutoff_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """(visitor lastvisit, account lastvisit) as of ``cutoff_ms``, -1 = never visited.

        Read through ``world.activity`` (not ``company.last_visits``) so a staged quiet
        account stops visiting and late events count; cached per visible hour and world
        version, since it costs ``LAST_VISIT_DAYS`` days of activity.
        """
        last, account_last, _ = self._pass(cutoff_ms)
        return last, account_last

    def anonymous(self, cutoff_ms: int) -> AnonymousVisitors:
        """The anonymous visitors seen in the last-visit window, as of ``cutoff_ms``."""
        return self._pass(cutoff_ms)[2]

    def _pass(self, cutoff_ms: int) -> tuple[np.ndarray, np.ndarray, AnonymousVisitors]:
        key = (cutoff_ms // HOUR_MS, self.world.version, LAST_VISIT_DAYS)
        # One lock around check and compute: concurrent requests wait for one pass
        # instead of each generating the same two weeks of activity.
        with self._lock:
            if self._last_cache is None or self._last_cache[0] != key:
                self._last_cache = (key, self._compute_last_visits(cutoff_ms))
            return self._last_cache[1]

    def _compute_last_visits(
        self, cutoff_ms: int
    ) -> tuple[np.ndarray, np.ndarray, AnonymousVisitors]:
        c = self.company
        last = np.full(c.n_visitors, -1, dtype=np.int64)
        today = c.local_day(cutoff_ms)
        anon_ids, anon_hours = [], []
        for back in range(LAST_VISIT_DAYS):
            act = self.world.activity(today - timedelta(days=back), as_of_ms=cutoff_ms)
            seen = act.hour_ms <= cutoff_ms
            np.maximum.at(last, act.visitor[seen], act.hour_ms[seen])
            # Anonymous visitors come and go within the window; the same pass collects them.
            anon_seen = act.anon_hour_ms <= cutoff_ms
            anon_ids.append(act.anon_id[anon_seen])
            anon_hours.append(act.anon_hour_ms[anon_seen])
        # Visitors quiet for the whole window: a stable moment between their first visit
        # and the window's start (what an older visit would have left behind).
        window = c.day_bounds(today - timedelta(days=LAST_VISIT_DAYS - 1))[0]
        first = self.visitor_firstvisit
        frac = (np.arange(c.n_visitors, dtype=np.int64) * 2654435761 % 1000) / 1000.0
        older = first + ((window - first) * frac).astype(np.int64)
        fallback = np.where(first < window, older, first)
        exists = first <= cutoff_ms
        last = np.where(last >= 0, last, np.where(exists, fallback, -1))
        starts = c.account_first.astype(np.int64)  # company's first visitor of each account
        account_last = np.maximum.reduceat(last, starts) if c.n_visitors else last
        anonymous = AnonymousVisitors.build(c, np.concatenate(anon_ids), np.concatenate(anon_hours))
        return last, account_last, anonymous

    def view(self, now_ms: int, cutoff_ms: int) -> PeopleView:
        return PeopleView(self, now_ms, cutoff_ms)


class PeopleView:
    """Visitors and accounts as seen at one moment (one request)."""

    def __init__(self, people: People, now_ms: int, cutoff_ms: int) -> None:
        self.people = people
        self.company = people.company
        self.store = people.store
        self.now_ms = now_ms
        self.cutoff_ms = cutoff_ms
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._created_accounts: dict[str, tuple[int, int]] | None = None

    def _lasts(self) -> tuple[np.ndarray, np.ndarray]:
        if self._last is None:
            self._last = self.people.last_visits(self.cutoff_ms)
        return self._last

    # ----- existence ------------------------------------------------------------------------

    def visitor_index(self, visitor_id: str) -> int | None:
        index = self.company.visitor_index(visitor_id)
        if index is None or self.people.visitor_firstvisit[index] > self.now_ms:
            return None  # not created yet at this moment
        return index

    def account_index(self, account_id: str) -> int | None:
        index = self.company.account_index(account_id)
        if index is None or self.people.account_firstvisit[index] > self.now_ms:
            return None
        return index

    def anonymous_index(self, visitor_id: str) -> int | None:
        """Index of an anonymous visitor seen in the window, or None."""
        if not visitor_id.startswith(ANONYMOUS_PREFIX):
            return None
        return self.people.anonymous(self.cutoff_ms).find(self.company, visitor_id)

    def exists(self, kind: str, entity_id: str) -> bool:
        if kind == "visitor":
            found = (
                self.visitor_index(entity_id) is not None
                or self.anonymous_index(entity_id) is not None
            )
        else:
            found = self.account_index(entity_id) is not None
        return found or self.store.created_entity(kind, entity_id) is not None

    # ----- created entities -------------------------------------------------------------

    def _created_visits(self, entity: CreatedEntity) -> tuple[int, int]:
        """(firstvisit, lastvisit) of a created visitor: active every hour since staged."""
        start = entity.active_from_ms
        if start is None or start > self.cutoff_ms:
            return 0, 0
        return start, self.cutoff_ms - self.cutoff_ms % HOUR_MS

    def _created_account_visits(self, account_id: str) -> tuple[int, int]:
        """(firstvisit, lastvisit) of a created account: those of its active visitors."""
        if self._created_accounts is None:  # one pass over created visitors per view
            visits: dict[str, tuple[int, int]] = {}
            for v in self.store.created("visitor"):
                first, last = self._created_visits(v)
                if v.account_id and first:
                    old = visits.get(v.account_id, (first, last))
                    visits[v.account_id] = (min(old[0], first), max(old[1], last))
            self._created_accounts = visits
        return self._created_accounts.get(account_id, (0, 0))

    # ----- visitors -----------------------------------------------------------------------

    def visitor_row(self, visitor_id: str) -> dict[str, Any] | None:
        """The ``visitors`` source row of one visitor, or None if unknown."""
        index = self.visitor_index(visitor_id)
        if index is not None:
            stored = _Stored.one(self.store, "visitor", visitor_id)
            return next(self._visitor_rows(np.array([index], dtype=np.int64), stored))
        anonymous = self.anonymous_index(visitor_id)
        if anonymous is not None:
            stored = _Stored.one(self.store, "visitor", visitor_id)
            return next(self._anonymous_rows(np.array([anonymous], dtype=np.int64), stored))
        entity = self.store.created_entity("visitor", visitor_id)
        return None if entity is None else self._created_visitor_row(entity)

    def iter_visitors(self, include_anonymous: bool = False) -> Iterator[dict[str, Any]]:
        """Every visitor existing now (generated ones, then created ones, then with
        ``include_anonymous`` the anonymous ones of the last-visit window), lazily."""
        c = self.company
        exists = np.flatnonzero(self.people.visitor_firstvisit <= self.now_ms)
        stored = _Stored.all(self.store, "visitor")
        for lo in range(0, exists.size, CHUNK):
            yield from self._visitor_rows(exists[lo : lo + CHUNK], stored)
        for entity in self.store.created("visitor"):
            if c.visitor_index(entity.id) is None:
                yield self._created_visitor_row(entity)
        if include_anonymous:
            anonymous = self.people.anonymous(self.cutoff_ms)
            every = np.arange(anonymous.number.size, dtype=np.int64)
            for lo in range(0, every.size, CHUNK):
                yield from self._anonymous_rows(every[lo : lo + CHUNK], stored)

    def _anonymous_rows(self, indices: np.ndarray, stored: _Stored) -> Iterator[dict[str, Any]]:
        """Rows of anonymous visitors: no account, browser and visits from their events.

        [INF] an anonymous visitor carries the ``auto`` fields the snippet fills in (no
        ``nid``, no account) and whatever was written to it; the browser is the one its
        event rows show.
        """
        c, people = self.company, self.people
        anonymous = people.anonymous(self.cutoff_ms)
        group = people.default_group
        for number, first, last in zip(
            anonymous.number[indices].tolist(),
            anonymous.first[indices].tolist(),
            anonymous.last[indices].tolist(),
            strict=True,
        ):
            vid = c.anonymous_id(number)
            browser = BROWSERS[number % len(BROWSERS)]
            lu = stored.updated.get(vid, 0)
            yield {
                "visitorId": vid,
                "metadata": {
                    "auto": {
                        "id": vid,
                        "idhash": _hash(vid),
                        "accountid": "",
                        "accountids": [],
                        "firstvisit": first,
                        "lastvisit": last,
                        "lastupdated": lu if lu > last else last,
                        "lastbrowsername": browser[0],
                        "lastbrowserversion": browser[1],
                        "lastoperatingsystem": browser[2],
                        "lastservername": people.server,
                        "lastuseragent": browser[3],
                    },
                    group: {"firstvisit": first, "lastvisit": last},
                    "agent": stored.agent.get(vid) or {},
                    "custom": stored.custom.get(vid) or {},
                },
            }

    def _visitor_rows(self, indices: np.ndarray, stored: _Stored) -> Iterator[dict[str, Any]]:
        c, people = self.company, self.people
        last, _ = self._lasts()
        seed = c.seed
        accounts = c.visitor_account[indices].tolist()
        firsts = people.visitor_firstvisit[indices].tolist()
        lasts = last[indices].tolist()
        browsers = c.visitor_browser[indices].tolist()
        roles = c.visitor_role[indices].tolist()
        languages = c.visitor_language[indices].tolist()
        group = people.default_group
        server = people.server
        custom_of, agent_of, updated_of = stored.custom.get, stored.agent.get, stored.updated.get
        for i, a, first, lv, b, r, lang in zip(
            indices.tolist(), accounts, firsts, lasts, browsers, roles, languages, strict=True
        ):
            vid = f"visitor-{i:07d}"
            aid = people.account_ids[a]
            fn = FIRST_NAMES[(i * 31 + seed) % len(FIRST_NAMES)]
            ln = LAST_NAMES[(i * 17 + seed) % len(LAST_NAMES)]
            agent_over = agent_of(vid)
            lu = updated_of(vid, 0)
            browser = BROWSERS[b]
            agent = {
                "email": f"{fn.lower()}.{ln.lower()}{i}@{people.account_domains[a]}",
                "name": f"{fn} {ln}",
                "role": ROLES[r],
                "language": LANGUAGES[lang],
                "ipaddress": remote_ip(i),
            }
            if agent_over:
                agent.update(agent_over)
            yield {
                "visitorId": vid,
                "metadata": {
                    "auto": {
                        "id": vid,
                        "idhash": _hash(vid),
                        "accountid": aid,
                        "accountids": [aid],
                        "firstvisit": first,
                        "lastvisit": lv,
                        "lastupdated": lu if lu > lv else lv,
                        "lastbrowsername": browser[0],
                        "lastbrowserversion": browser[1],
                        "lastoperatingsystem": browser[2],
                        "lastservername": server,
                        "lastuseragent": browser[3],
                        "nid": i,
                    },
                    group: {"firstvisit": first, "lastvisit": lv},
                    "agent": agent,
                    "custom": custom_of(vid) or {},
                },
            }

    def _created_visitor_row(self, entity: CreatedEntity) -> dict[str, Any]:
        first, last = self._created_visits(entity)
        vid = entity.id
        aid = entity.account_id or ""
        browser = BROWSERS[entity.number % len(BROWSERS)]
        lu = max(self.store.updated_at("visitor", vid) or 0, last)
        auto = {
            "id": vid,
            "idhash": _hash(vid),
            "accountid": aid,
            "accountids": [aid] if aid else [],
            "firstvisit": first,
            "lastvisit": last,
            "lastupdated": lu,
            "nid": self.company.n_visitors + entity.number,
        }
        if first:  # browser fields exist only once the snippet has seen the visitor
            auto.update(
                {
                    "lastbrowsername": browser[0],
                    "lastbrowserversion": browser[1],
                    "lastoperatingsystem": browser[2],
                    "lastservername": self.people.server,
                    "lastuseragent": browser[3],
                }
            )
        return {
            "visitorId": vid,
            "metadata": {
                "auto": auto,
                self.people.default_group: {"firstvisit": first, "lastvisit": last},
                "agent": self.store.values("visitor", "agent", vid),
                "custom": self.store.values("visitor", "custom", vid),
            },
        }

    # ----- accounts -----------------------------------------------------------------------

    def account_row(self, account_id: str) -> dict[str, Any] | None:
        index = self.account_index(account_id)
        if index is not None:
            return next(self._account_rows([index], _Stored.one(self.store, "account", account_id)))
        entity = self.store.created_entity("account", account_id)
        return None if entity is None else self._created_account_row(entity)

    def iter_accounts(self) -> Iterator[dict[str, Any]]:
        c = self.company
        exists = np.flatnonzero(self.people.account_firstvisit <= self.now_ms).tolist()
        stored = _Stored.all(self.store, "account")
        for lo in range(0, len(exists), CHUNK):
            yield from self._account_rows(exists[lo : lo + CHUNK], stored)
        for entity in self.store.created("account"):
            if c.account_index(entity.id) is None:
                yield self._created_account_row(entity)

    def _account_rows(self, indices: list[int], stored: _Stored) -> Iterator[dict[str, Any]]:
        c, people = self.company, self.people
        _, account_last = self._lasts()
        plans = c.account_plan[indices].tolist()
        industries = c.account_industry[indices].tolist()
        firsts = people.account_firstvisit[indices].tolist()
        lasts = account_last[indices].tolist()
        for a, plan, industry, first, lv in zip(
            indices, plans, industries, firsts, lasts, strict=True
        ):
            aid = people.account_ids[a]
            agent_over = stored.agent.get(aid)
            agent = {
                "name": people.account_names[a],
                "plan": PLANS[plan],
                "industry": INDUSTRIES[industry],
                "domain": people.account_domains[a],
            }
            if agent_over:
                agent.update(agent_over)
            lu = stored.updated.get(aid, 0)
            yield {
                "accountId": aid,
                "metadata": {
                    "auto": {
                        "id": aid,
                        "idhash": _hash(aid),
                        "firstvisit": first,
                        "lastvisit": lv,
                        "lastupdated": lu if lu > lv else lv,
                    },
                    "agent": agent,
                    "custom": stored.custom.get(aid) or {},
                },
            }

    def _created_account_row(self, entity: CreatedEntity) -> dict[str, Any]:
        aid = entity.id
        first, last = self._created_account_visits(aid)
        lu = max(self.store.updated_at("account", aid) or 0, last)
        return {
            "accountId": aid,
            "metadata": {
                "auto": {
                    "id": aid,
                    "idhash": _hash(aid),
                    "firstvisit": first,
                    "lastvisit": last,
                    "lastupdated": lu,
                },
                "agent": self.store.values("account", "agent", aid),
                "custom": self.store.values("account", "custom", aid),
            },
        }

    # ----- REST shapes --------------------------------------------------------------------

    def visitor_json(self, visitor_id: str) -> dict[str, Any] | None:
        """``GET /api/v1/visitor/{id}``: ``{id, accountIds, metadata}``."""
        row = self.visitor_row(visitor_id)
        if row is None:
            return None
        return {
            "id": row["visitorId"],
            "accountIds": row["metadata"]["auto"]["accountids"],
            "metadata": row["metadata"],
        }

    def account_json(self, account_id: str) -> dict[str, Any] | None:
        """``GET /api/v1/account/{id}``: ``{id, metadata}``."""
        row = self.account_row(account_id)
        return None if row is None else {"id": row["accountId"], "metadata": row["metadata"]}

    def schema(self, kind: str) -> dict[str, dict[str, dict[str, Any]]]:
        """``GET /api/v1/metadata/schema/{kind}`` with samples from entity 0 and writes."""
        sample_id = "visitor-0000000" if kind == "visitor" else "account-000000"
        row = (self.visitor_row if kind == "visitor" else self.account_row)(sample_id)
        meta = row["metadata"] if row else {}
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for field, field_type in AUTO_FIELDS[kind].items():
            out.setdefault("auto", {})[field] = descriptor(
                field,
                field_type,
                meta.get("auto", {}).get(field),
                element="string" if field_type == "" else "",
            )
        for group in ("agent", "custom"):
            out[group] = {}
            for field, field_type in self.store.fields(kind, group).items():
                sample = self.store.sample(kind, group, field)
                if sample is None:
                    sample = meta.get(group, {}).get(field)
                out[group][field] = descriptor(field, field_type, sample)
        return out
