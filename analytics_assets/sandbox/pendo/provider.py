"""The aggregation interpreter's SourceProvider over a region's World and store.

Event sources turn a day's ``DayActivity`` arrays into Pendo rows one bucket at a time:
numpy picks and (for ``dayRange``) sums the bucket's rows, then one ``zip`` over
``tolist()`` columns builds the dicts, so the only per-row Python work is the dict itself.
Entity sources (visitors, accounts) stream from ``PeopleView``; catalog sources are the
REST lists' objects.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

import numpy as np

from analytics_assets.sandbox.company import (
    BROWSERS,
    GUIDE_EVENT_TYPES,
    HISTORY_START,
    HOUR_MS,
    DayActivity,
)
from analytics_assets.sandbox.pendo.aggregation import AggregationError
from analytics_assets.sandbox.pendo.entities import (
    SERVERS,
    Catalog,
    People,
    PeopleView,
    remote_ip,
)
from analytics_assets.sandbox.pendo.store import PendoStore
from analytics_assets.sandbox.pendo.timeseries import Bucket
from analytics_assets.sandbox.world import World

Row = dict[str, Any]
EVENT_TYPES = (*GUIDE_EVENT_TYPES, "pollResponse")
POLL_RESPONSE = len(GUIDE_EVENT_TYPES)
# Where guide events come from, per region: (country, region, latitude, longitude).
PLACES = {
    "us": (
        ("US", "NY", 40.71, -74.01),
        ("US", "CA", 37.77, -122.42),
        ("US", "TX", 30.27, -97.74),
        ("CA", "ON", 43.65, -79.38),
    ),
    "us1": (("US", "WA", 47.61, -122.33), ("US", "IL", 41.88, -87.63)),
    "eu": (
        ("DE", "BE", 52.52, 13.40),
        ("FR", "IDF", 48.86, 2.35),
        ("GB", "ENG", 51.51, -0.13),
        ("NL", "NH", 52.37, 4.90),
    ),
    "jpn": (("JP", "13", 35.68, 139.69), ("JP", "27", 34.69, 135.50)),
    "au": (("AU", "NSW", -33.87, 151.21), ("AU", "VIC", -37.81, 144.96)),
}
_UA = np.array([b[3] for b in BROWSERS], dtype=object)


class PendoRegion:
    """What the Pendo half keeps for one region: world, store, catalog and people."""

    def __init__(self, region: str, world: World, store: PendoStore) -> None:
        self.region = region
        self.world = world
        self.company = world.company
        self.store = store
        self.catalog = Catalog(self.company)
        self.people = People(world, store)
        apps = self.company.apps
        self.app_ids = np.array([a.id for a in apps], dtype=object)
        self.servers = np.array([SERVERS[a.platform] for a in apps], dtype=object)
        self.page_index = {p.id: i for i, p in enumerate(self.company.pages)}
        self.feature_index = {f.id: i for i, f in enumerate(self.company.features)}
        self.track_index = {t.id: i for i, t in enumerate(self.company.track_types)}
        self.guide_index = {g.id: i for i, g in enumerate(self.company.guides)}
        app_of = {a.id: i for i, a in enumerate(apps)}
        self.guide_app = np.array([app_of[g.app_id] for g in self.company.guides])
        self.track_app = np.array([app_of[t.app_id] for t in self.company.track_types])
        self.page_ids = np.array([p.id for p in self.company.pages], dtype=object)
        self.feature_ids = np.array([f.id for f in self.company.features], dtype=object)
        self.track_ids = np.array([t.id for t in self.company.track_types], dtype=object)
        page_url = {p.id: p.url.replace("//*", "", 1) for p in self.company.pages}
        # Per (guide, step): the step's id and the URL of its page (guide event ``url``).
        self.step_ids = [[s.id for s in g.steps] for g in self.company.guides]
        self.step_urls = [
            [
                f"https://{SERVERS[apps[app_of[g.app_id]].platform]}{page_url[s.page_id]}"
                for s in g.steps
            ]
            for g in self.company.guides
        ]
        self.places = PLACES.get(region, PLACES["us"])

    def provider(self, now_ms: int, lag_hours: float) -> PendoProvider:
        return PendoProvider(self, now_ms, int(lag_hours * HOUR_MS))


def _group(
    keys: np.ndarray,
    sums: tuple[np.ndarray, ...] = (),
    mins: tuple[np.ndarray, ...] = (),
    maxs: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, list, list, list]:
    """Rows sharing a key, collapsed: (first row of each group in key order, sums, mins, maxs)."""
    if keys.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, [a[:0] for a in sums], [a[:0] for a in mins], [a[:0] for a in maxs]
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    return (
        order[starts],
        [np.add.reduceat(a[order], starts) for a in sums],
        [np.minimum.reduceat(a[order], starts) for a in mins],
        [np.maximum.reduceat(a[order], starts) for a in maxs],
    )


class PendoProvider:
    """Rows of every source, as visible at ``now_ms`` with ``lag_ms`` of processing lag.

    Visibility [INF]: an hour's event rows are visible once the hour has started at
    ``now - lag`` (so with no lag the current, still-changing hour is shown, as the
    service does); guide events once their own moment is at or before ``now - lag``.
    """

    def __init__(self, region: PendoRegion, now_ms: int, lag_ms: int) -> None:
        self.r = region
        self.company = region.company
        self.now_ms = now_ms
        self.cutoff = now_ms - lag_ms
        self.view: PeopleView = region.people.view(now_ms, self.cutoff)
        self._acts: dict[date, DayActivity] = {}
        self._guide_cache: dict[date, tuple[np.ndarray, ...]] = {}

    # ----- SourceProvider ---------------------------------------------------------------

    def rows(
        self, source: str, params: dict[str, Any] | None, buckets: list[Bucket] | None
    ) -> Iterable[Row]:
        """Checks params now (so a bad one is a 400 before streaming), rows lazily."""
        params = params or {}
        buckets = buckets or []
        if source == "visitors":
            # TAP asks ``{"identified": not include_anonymous_visitors}``: an explicit
            # false brings the anonymous visitors too. [INF] null keeps them out, as
            # before: no public client shows what Pendo does without the parameter.
            return self.view.iter_visitors(include_anonymous=params.get("identified") is False)
        if source == "accounts":
            return self.view.iter_accounts()
        if source in ("features", "pages", "guides", "trackTypes"):
            return self._catalog(source, params)
        apps = self._apps(params, source)
        if source == "events":
            return self._events(apps, buckets)
        if source == "featureEvents":
            wanted = self._one_id(params, "featureId", self.r.feature_index)
            return self._child_events("feature", apps, wanted, buckets)
        if source == "pageEvents":
            wanted = self._one_id(params, "pageId", self.r.page_index)
            return self._child_events("page", apps, wanted, buckets)
        if source == "trackEvents":
            wanted = self._one_id(params, "trackTypeId", self.r.track_index)
            return self._child_events("track", apps, wanted, buckets)
        if source in ("guideEvents", "pollEvents"):
            guide = self._one_id(params, "guideId", self.r.guide_index)
            return self._guide_events(source == "pollEvents", apps, guide, params, buckets)
        raise AggregationError(400, f"unknown source {source!r}")

    # ----- params -----------------------------------------------------------------------

    def _apps(self, params: dict[str, Any], source: str) -> np.ndarray:
        """Which apps (a mask over the company's apps) the source's ``appId`` asks for.

        No ``appId`` means the default (first, web) app only, as the REST lists do; a
        multi-app subscription must say ``expandAppIds("*")`` (EST #3010). An id given
        with ``guideId`` is a guide's own app, so a guide filter opens every app.
        """
        apps = self.company.apps
        value = params.get("appId")
        if value is None:
            if source in ("guideEvents", "pollEvents") and params.get("guideId") is not None:
                return np.ones(len(apps), dtype=bool)
            return np.array([i == 0 for i in range(len(apps))])
        if isinstance(value, str) and value.replace(" ", "").startswith("expandAppIds("):
            return np.ones(len(apps), dtype=bool)
        values = value if isinstance(value, list) else [value]
        wanted = set()
        for v in values:
            if isinstance(v, str) and v.lstrip("-").isdigit():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise AggregationError(400, f"invalid appId {v!r}")
            wanted.add(v)
        return np.array([a.id in wanted for a in apps])

    @staticmethod
    def _one_id(params: dict[str, Any], name: str, index: dict[str, int]) -> int | None:
        """-1 for an id that does not exist (no rows), None for all."""
        value = params.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise AggregationError(400, f"invalid {name} {value!r}")
        return index.get(value, -1)

    # ----- shared -----------------------------------------------------------------------

    def _activity(self, day: date) -> DayActivity:
        act = self._acts.get(day)
        if act is None:
            # The lag also holds back staged late events: they arrive, then are processed.
            act = self.r.world.activity(day, as_of_ms=self.cutoff)
            if len(self._acts) >= 2:
                self._acts.pop(next(iter(self._acts)))
            self._acts[day] = act
        return act

    def _days(self, bucket: Bucket) -> list[DayActivity]:
        """The days overlapping a bucket that have visible hours (one, in the same zone)."""
        end = min(bucket.end_ms, self.cutoff + 1)
        if end <= bucket.start_ms:
            return []
        # Nobody exists before HISTORY_START: those days are skipped, not generated empty.
        first = max(self.company.local_day(bucket.start_ms), HISTORY_START)
        last = self.company.local_day(end - 1)
        return [
            self._activity(date.fromordinal(d))
            for d in range(first.toordinal(), last.toordinal() + 1)
        ]

    def _hour_mask(self, hour_ms: np.ndarray, bucket: Bucket) -> np.ndarray:
        return (hour_ms >= bucket.start_ms) & (hour_ms < bucket.end_ms) & (hour_ms <= self.cutoff)

    def _catalog(self, source: str, params: dict[str, Any]) -> Iterator[Row]:
        apps = self._apps(params, source)
        allowed = {a.id for a, ok in zip(self.company.apps, apps, strict=True) if ok}
        objs = {
            "features": self.r.catalog.features,
            "pages": self.r.catalog.pages,
            "guides": self.r.catalog.guides,
            "trackTypes": self.r.catalog.track_types,
        }[source]
        return (obj for obj in objs if obj["appId"] in allowed)

    # ----- events -----------------------------------------------------------------------

    def _events(self, apps: np.ndarray, buckets: list[Bucket]) -> Iterator[Row]:
        for bucket in buckets:
            yield from self._events_of(apps, bucket)

    def _events_of(self, apps: np.ndarray, bucket: Bucket) -> Iterator[Row]:
        key, start, by_day = bucket.row_key, bucket.start_ms, bucket.period == "dayRange"
        vis, app, ev, mi, br = [], [], [], [], []
        anon, anon_ev = [], []
        for act in self._days(bucket):
            m = self._hour_mask(act.hour_ms, bucket) & apps[act.app]
            vis.append(act.visitor[m])
            app.append(act.app[m])
            ev.append(act.num_events[m])
            mi.append(act.num_minutes[m])
            br.append(act.browser[m])
            if apps[0]:  # anonymous traffic is the web app's
                am = self._hour_mask(act.anon_hour_ms, bucket)
                anon.append(act.anon_id[am])
                anon_ev.append(act.anon_events[am])
        if not vis:
            return
        visitor = np.concatenate(vis).astype(np.int64)
        app_i = np.concatenate(app).astype(np.int64)
        events = np.concatenate(ev).astype(np.int64)
        minutes = np.concatenate(mi).astype(np.int64)
        browser = np.concatenate(br)
        if by_day:  # one row per visitor and app: the day's hours summed
            first, (events, minutes), _, _ = _group(visitor * 4 + app_i, (events, minutes))
            visitor, app_i, browser = visitor[first], app_i[first], browser[first]
            minutes = np.minimum(minutes, 24 * 60)
        yield from self._event_rows(key, start, visitor, app_i, browser, events, minutes)

        anon_id = np.concatenate(anon) if anon else np.zeros(0, dtype=np.int64)
        anon_events = np.concatenate(anon_ev).astype(np.int64) if anon else anon_id
        if by_day and anon_id.size:
            first, (anon_events,), _, _ = _group(anon_id, (anon_events,))
            anon_id = anon_id[first]
        yield from self._anonymous_rows(key, start, anon_id, anon_events)
        if apps[0]:
            yield from self._created_rows(key, bucket)

    def _event_rows(
        self,
        key: str,
        start: int,
        visitor: np.ndarray,
        app: np.ndarray,
        browser: np.ndarray,
        events: np.ndarray,
        minutes: np.ndarray,
    ) -> Iterator[Row]:
        account_ids = self.r.people.account_ids
        accounts = self.company.visitor_account[visitor].tolist()
        for v, a, ap, srv, ua, e, m in zip(
            visitor.tolist(),
            accounts,
            self.r.app_ids[app].tolist(),
            self.r.servers[app].tolist(),
            _UA[browser].tolist(),
            events.tolist(),
            minutes.tolist(),
            strict=True,
        ):
            yield {
                "visitorId": f"visitor-{v:07d}",
                "accountId": account_ids[a],
                "appId": ap,
                key: start,
                "numEvents": e,
                "numMinutes": m,
                "remoteIp": f"10.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}",
                "server": srv,
                "userAgent": ua,
                "parameters": {},
            }

    def _anonymous_rows(
        self, key: str, start: int, anon_id: np.ndarray, events: np.ndarray
    ) -> Iterator[Row]:
        app_id = self.company.apps[0].id
        server = SERVERS[self.company.apps[0].platform]
        for n, e in zip(anon_id.tolist(), events.tolist(), strict=True):
            yield {
                "visitorId": self.company.anonymous_id(n),
                "accountId": "",
                "appId": app_id,
                key: start,
                "numEvents": e,
                # [INF] the generator draws no minutes for anonymous hours: ~3 events a minute.
                "numMinutes": min(60, 1 + e // 3),
                "remoteIp": f"172.16.{n >> 8 & 255}.{n & 255}",
                "server": server,
                "userAgent": BROWSERS[n % len(BROWSERS)][3],
                "parameters": {},
            }

    def _created_rows(self, key: str, bucket: Bucket) -> Iterator[Row]:
        """Visitors staged through the control API: a few events every hour from their start.

        [INF] they produce ``events`` rows only (no page/feature/guide events)."""
        app_id = self.company.apps[0].id
        server = SERVERS[self.company.apps[0].platform]
        for entity in self.r.store.created("visitor"):
            if entity.active_from_ms is None:
                continue
            first = max(bucket.start_ms, entity.active_from_ms - entity.active_from_ms % HOUR_MS)
            last = min(bucket.end_ms - 1, self.cutoff)
            hours = list(range(first, last + 1, HOUR_MS)) if first <= last else []
            if not hours:
                continue
            counts = [3 + zlib.crc32(f"{entity.id}/{h}".encode()) % 10 for h in hours]
            rows = [(h, c) for h, c in zip(hours, counts, strict=True)]
            if key == "day":
                rows = [(bucket.start_ms, sum(counts))]
            for hour, count in rows:
                yield {
                    "visitorId": entity.id,
                    "accountId": entity.account_id or "",
                    "appId": app_id,
                    key: hour if key == "hour" else bucket.start_ms,
                    "numEvents": count,
                    "numMinutes": min(len(hours) * 60, 1 + count // 2),
                    "remoteIp": f"192.168.{entity.number >> 8 & 255}.{entity.number & 255}",
                    "server": server,
                    "userAgent": BROWSERS[entity.number % len(BROWSERS)][3],
                    "parameters": {},
                }

    # ----- feature / page / track events -----------------------------------------------

    def _child_events(
        self, kind: str, apps: np.ndarray, wanted: int | None, buckets: list[Bucket]
    ) -> Iterator[Row]:
        if wanted == -1:
            return
        for bucket in buckets:
            yield from self._children_of(kind, apps, wanted, bucket)

    def _children_of(
        self, kind: str, apps: np.ndarray, wanted: int | None, bucket: Bucket
    ) -> Iterator[Row]:
        by_day = bucket.period == "dayRange"
        parts: list[tuple[np.ndarray, ...]] = []
        for act in self._days(bucket):
            if kind == "feature":
                parent, child, events, minutes = (
                    act.feature_parent,
                    act.feature,
                    act.feature_events,
                    act.feature_minutes,
                )
            elif kind == "page":
                parent, child, events, minutes = (
                    act.page_parent,
                    act.page,
                    act.page_events,
                    act.page_minutes,
                )
            else:
                parent, child, events = act.track_parent, act.track, act.track_events
                # [INF] track rows carry no minutes: at most the hour's, one per event.
                minutes = np.minimum(act.num_minutes[parent], events)
            visible = self._hour_mask(act.hour_ms, bucket)
            if kind == "track":  # a track type's events belong to the track type's app
                m = visible[parent] & apps[self.r.track_app[child]]
            else:
                m = visible[parent] & apps[act.app[parent]]
            if wanted is not None:
                m &= child == wanted
            p = parent[m]
            parts.append(
                (
                    act.visitor[p].astype(np.int64),
                    act.app[p].astype(np.int64),
                    act.hour_ms[p],
                    act.browser[p],
                    child[m].astype(np.int64),
                    events[m].astype(np.int64),
                    minutes[m].astype(np.int64),
                )
            )
        if not parts:
            return
        visitor, app, hour, browser, child, events, minutes = (
            np.concatenate(cols) for cols in zip(*parts, strict=True)
        )
        if kind == "track":
            app = self.r.track_app[child].astype(np.int64)
        first_time = last_time = None
        if kind == "page":
            # [INF] when in its hour the page was viewed: a stable offset, as long as its minutes.
            span = np.maximum(minutes, 1) * 60_000
            room = np.maximum(HOUR_MS - span, 0) // 1000 + 1
            offset = ((visitor * 2654435761 + child * 40503 + hour // HOUR_MS) % room) * 1000
            first_time = hour + offset
            last_time = first_time + span - 1000
        if by_day:
            key = (visitor * 4 + app) * 4096 + child
            if kind == "page":
                first, (events, minutes), (first_time,), (last_time,) = _group(
                    key, (events, minutes), (first_time,), (last_time,)
                )
            else:
                first, (events, minutes), _, _ = _group(key, (events, minutes))
            visitor, app, browser, child = visitor[first], app[first], browser[first], child[first]
        yield from self._child_rows(
            kind, bucket, visitor, app, browser, child, events, minutes, first_time, last_time
        )

    def _child_rows(
        self,
        kind: str,
        bucket: Bucket,
        visitor: np.ndarray,
        app: np.ndarray,
        browser: np.ndarray,
        child: np.ndarray,
        events: np.ndarray,
        minutes: np.ndarray,
        first_time: np.ndarray | None,
        last_time: np.ndarray | None,
    ) -> Iterator[Row]:
        key, start = bucket.row_key, bucket.start_ms
        account_ids = self.r.people.account_ids
        accounts = self.company.visitor_account[visitor].tolist()
        id_key = {"feature": "featureId", "page": "pageId", "track": "trackTypeId"}[kind]
        ids = {"feature": self.r.feature_ids, "page": self.r.page_ids, "track": self.r.track_ids}[
            kind
        ][child].tolist()
        columns = [
            visitor.tolist(),
            accounts,
            self.r.app_ids[app].tolist(),
            self.r.servers[app].tolist(),
            _UA[browser].tolist(),
            ids,
            events.tolist(),
            minutes.tolist(),
        ]
        if kind == "page":
            for (v, a, ap, srv, ua, cid, e, m), ft, lt in zip(
                zip(*columns, strict=True), first_time.tolist(), last_time.tolist(), strict=True
            ):
                yield {
                    "visitorId": f"visitor-{v:07d}",
                    "accountId": account_ids[a],
                    "appId": ap,
                    key: start,
                    "pageId": cid,
                    "numEvents": e,
                    "numMinutes": m,
                    "firstTime": ft,
                    "lastTime": lt,
                    "remoteIp": f"10.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}",
                    "server": srv,
                    "userAgent": ua,
                    "parameters": {},
                }
        elif kind == "track":
            for v, a, ap, srv, ua, cid, e, m in zip(*columns, strict=True):
                yield {
                    "visitorId": f"visitor-{v:07d}",
                    "accountId": account_ids[a],
                    "appId": ap,
                    key: start,
                    "trackTypeId": cid,
                    "numEvents": e,
                    "numMinutes": m,
                    "remoteIp": f"10.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}",
                    "server": srv,
                    "userAgent": ua,
                    "properties": {},
                    "parameters": {},
                }
        else:
            for v, a, ap, srv, ua, cid, e, m in zip(*columns, strict=True):
                yield {
                    "visitorId": f"visitor-{v:07d}",
                    "accountId": account_ids[a],
                    "appId": ap,
                    key: start,
                    id_key: cid,
                    "numEvents": e,
                    "numMinutes": m,
                    "remoteIp": f"10.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}",
                    "server": srv,
                    "userAgent": ua,
                    "parameters": {},
                }

    # ----- guide and poll events -------------------------------------------------------

    def _guide_arrays(self, act: DayActivity) -> tuple[np.ndarray, ...]:
        """The day's guide events plus NPS poll responses, sorted by time.

        [INF] a poll guide's viewer who did not dismiss it answers about half the time,
        15 s after seeing it, with a stable 0-10 score.
        """
        cached = self._guide_cache.get(act.day)
        if cached is not None:
            return cached
        visitor = act.guide_visitor.astype(np.int64)
        guide = act.guide.astype(np.int64)
        step = act.guide_step.astype(np.int64)
        kind = act.guide_type.astype(np.int64)
        when = act.guide_time_ms.astype(np.int64)
        add_v, add_g, add_t = [], [], []
        for gi, g in enumerate(self.company.guides):
            if g.poll_id is None:
                continue
            mine = guide == gi
            dismissed = set(
                zip(
                    visitor[mine & (kind == 2)].tolist(),
                    (when[mine & (kind == 2)] - 5_000).tolist(),
                    strict=True,
                )
            )
            seen = np.flatnonzero(mine & (kind == 0) & (step == 0))
            for v, t in zip(visitor[seen].tolist(), when[seen].tolist(), strict=True):
                if (v, t) not in dismissed and (v * 2654435761 + t // 1000) % 100 < 50:
                    add_v.append(v)
                    add_g.append(gi)
                    add_t.append(t + 15_000)
        if add_v:
            visitor = np.concatenate([visitor, np.array(add_v, dtype=np.int64)])
            guide = np.concatenate([guide, np.array(add_g, dtype=np.int64)])
            step = np.concatenate([step, np.zeros(len(add_v), dtype=np.int64)])
            kind = np.concatenate([kind, np.full(len(add_v), POLL_RESPONSE, dtype=np.int64)])
            when = np.concatenate([when, np.array(add_t, dtype=np.int64)])
        order = np.argsort(when, kind="stable")
        result = (visitor[order], guide[order], step[order], kind[order], when[order])
        if len(self._guide_cache) >= 2:
            self._guide_cache.pop(next(iter(self._guide_cache)))
        self._guide_cache[act.day] = result
        return result

    def _guide_events(
        self,
        polls_only: bool,
        apps: np.ndarray,
        guide: int | None,
        params: dict[str, Any],
        buckets: list[Bucket],
    ) -> Iterator[Row]:
        if guide == -1:
            return
        poll_id = params.get("pollId")
        for bucket in buckets:
            for act in self._days(bucket):
                visitor, g, step, kind, when = self._guide_arrays(act)
                m = (when >= bucket.start_ms) & (when < bucket.end_ms) & (when <= self.cutoff)
                m &= apps[self.r.guide_app[g]]
                if guide is not None:
                    m &= g == guide
                if polls_only:
                    m &= kind == POLL_RESPONSE
                if not m.any():
                    continue
                rows = self._guide_rows(polls_only, visitor[m], g[m], step[m], kind[m], when[m])
                if poll_id is not None:
                    rows = (row for row in rows if row["pollId"] == poll_id)
                yield from rows

    def _guide_rows(
        self,
        polls_only: bool,
        visitor: np.ndarray,
        guide: np.ndarray,
        step: np.ndarray,
        kind: np.ndarray,
        when: np.ndarray,
    ) -> Iterator[Row]:
        c, r = self.company, self.r
        account_ids = r.people.account_ids
        guides = c.guides
        places = r.places
        accounts = c.visitor_account[visitor].tolist()
        browsers = c.visitor_browser[visitor].tolist()
        apps = r.guide_app[guide].tolist()
        for v, a, b, ap, gi, s, k, t in zip(
            visitor.tolist(),
            accounts,
            browsers,
            apps,
            guide.tolist(),
            step.tolist(),
            kind.tolist(),
            when.tolist(),
            strict=True,
        ):
            g = guides[gi]
            aid = account_ids[a]
            country, region, lat, lon = places[v % len(places)]
            is_poll = k == POLL_RESPONSE
            response = (v * 7 + t // 1000) % 11 if is_poll else None
            row = {
                "guideId": g.id,
                "guideStepId": r.step_ids[gi][s],
                "type": EVENT_TYPES[k],
                "browserTime": t,
                # [INF] the server stamps the event a little after the browser sent it.
                "guideTimestamp": t + 50 + v % 450,
                "visitorId": f"visitor-{v:07d}",
                "accountId": aid,
                "accountIds": [aid],
                "appId": c.apps[ap].id,
                "url": r.step_urls[gi][s],
                "country": country,
                "region": region,
                "latitude": lat,
                "longitude": lon,
                "loadTime": 200 + (v * 37 + t) % 1800,
                "remoteIp": remote_ip(v),
                "serverName": SERVERS[c.apps[ap].platform],
                "userAgent": BROWSERS[b][3],
                "pollId": g.poll_id if is_poll else None,
                "pollResponse": response,
            }
            if polls_only:
                del row["guideStepId"], row["accountIds"], row["url"]
            yield row
