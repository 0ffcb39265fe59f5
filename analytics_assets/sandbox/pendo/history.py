"""``GET /api/v1/visitor/{id}/history?starttime=<ms>``: one visitor's day of activity.

Shape (contract §3, from TAP's ``visitor_history`` schema decamelised back and Pendo's
own Zendesk app): a bare JSON array, oldest first, of ``{type, ts, lastTs, duration,
uri, untaggedUrl, pageId | featureId | guideId + guideStepId | trackTypeId, appId,
parsedUserAgent {name, version, os}}``, times in epoch ms. One 24-hour window per call
starting at ``starttime`` (TAP steps a day at a time; the Zendesk app passes a local
midnight), only the last ~180 days (TAP caps 179).

Built from the same generated day as the aggregation sources, so a day's page items of a
visitor are its ``pageEvents`` rows of that day (one item per visitor-hour and page, at
the ``firstTime``/``lastTime`` those rows carry), its feature and track-type items its
``featureEvents`` / ``trackEvents`` rows, and its guide items its guide events.
Anonymous visitors have no tagged activity in the generator: each of their hours is one
``untagged`` page view of the web app. [INF] ``duration`` is ``lastTs - ts`` in ms.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from analytics_assets.sandbox.company import BROWSERS, DAY_MS, HISTORY_START, HOUR_MS
from analytics_assets.sandbox.pendo.entities import SERVERS
from analytics_assets.sandbox.pendo.provider import POLL_RESPONSE, PendoProvider

RETENTION_DAYS = 180
_GOLDEN = 2654435761


def _agent(browser: int) -> dict[str, str]:
    name, version, os_name, _ = BROWSERS[browser % len(BROWSERS)]
    return {"name": name, "version": version, "os": os_name}


def page_times(
    visitor: np.ndarray, child: np.ndarray, hour: np.ndarray, minutes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) ms of page rows: the formula of ``pageEvents``' firstTime/lastTime."""
    span = np.maximum(minutes, 1) * 60_000
    room = np.maximum(HOUR_MS - span, 0) // 1000 + 1
    offset = ((visitor * _GOLDEN + child * 40503 + hour // HOUR_MS) % room) * 1000
    first = hour + offset
    return first, first + span - 1000


def _feature_times(
    visitor: np.ndarray, child: np.ndarray, hour: np.ndarray, minutes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # A click's moment inside its hour: stable, distinct from the pages' (another salt).
    span = np.maximum(minutes, 1) * 60_000
    room = np.maximum(HOUR_MS - span, 0) // 1000 + 1
    offset = ((visitor * _GOLDEN + child * 7919 + hour // HOUR_MS + 17) % room) * 1000
    first = hour + offset
    return first, first + span - 1000


def visitor_history(
    provider: PendoProvider, visitor_id: str, start_ms: int
) -> list[dict[str, Any]] | None:
    """The visitor's items with ``ts`` in [start, start + 24 h), or None if unknown."""
    view, c = provider.view, provider.company
    index = view.visitor_index(visitor_id)
    anonymous = None if index is not None else view.anonymous_index(visitor_id)
    if index is None and anonymous is None:
        return None if not view.exists("visitor", visitor_id) else []
    end_ms = min(start_ms + DAY_MS, provider.cutoff + 1)
    if end_ms <= start_ms or start_ms + DAY_MS <= provider.now_ms - RETENTION_DAYS * DAY_MS:
        return []
    first = max(c.local_day(max(start_ms, 0)), HISTORY_START)
    last = c.local_day(end_ms - 1)
    items: list[dict[str, Any]] = []
    for ordinal in range(first.toordinal(), last.toordinal() + 1):
        act = provider._activity(date.fromordinal(ordinal))
        if index is not None:
            items += _identified(provider, act, index, start_ms, end_ms)
        else:
            number = int(view.people.anonymous(provider.cutoff).number[anonymous])
            items += _anonymous(provider, act, number, start_ms, end_ms)
    items.sort(key=lambda item: (item["ts"], item["type"]))
    return items


def _item(kind: str, ts: int, last: int, uri: str, app_id: int, browser: int) -> dict[str, Any]:
    return {
        "type": kind,
        "ts": ts,
        "lastTs": last,
        "duration": last - ts,
        "uri": uri,
        "untaggedUrl": None,
        "appId": app_id,
        "parsedUserAgent": _agent(browser),
    }


def _identified(
    provider: PendoProvider, act: Any, visitor: int, start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    r, c = provider.r, provider.company
    browser = int(c.visitor_browser[visitor])
    mine = (act.visitor == visitor) & (act.hour_ms <= provider.cutoff)
    out: list[dict[str, Any]] = []
    platform = {a.id: a.platform for a in c.apps}
    page_url = {
        p.id: f"https://{SERVERS[platform[p.app_id]]}{p.url.replace('//*', '', 1)}" for p in c.pages
    }
    for kind, parent, child, minutes in (
        ("page", act.page_parent, act.page, act.page_minutes),
        ("feature", act.feature_parent, act.feature, act.feature_minutes),
        ("trackType", act.track_parent, act.track, None),
    ):
        sel = mine[parent]
        if not sel.any():
            continue
        p, ch = parent[sel], child[sel].astype(np.int64)
        hour = act.hour_ms[p]
        mins = act.num_minutes[p] if minutes is None else minutes[sel]
        v = np.full(p.size, visitor, dtype=np.int64)
        times = page_times if kind == "page" else _feature_times
        ts, last = times(v, ch, hour, mins.astype(np.int64))
        if kind == "trackType":
            last = ts  # a track event is a moment
        apps = act.app[p].tolist()
        for t0, t1, cid, a in zip(ts.tolist(), last.tolist(), ch.tolist(), apps, strict=True):
            if not start_ms <= t0 < end_ms:
                continue
            if kind == "page":
                page = c.pages[cid]
                item = _item("page", t0, t1, page_url[page.id], page.app_id, browser)
                item["pageId"] = page.id
            elif kind == "feature":
                feature = c.features[cid]
                uri = page_url[feature.page_id]
                item = _item("feature", t0, t1, uri, feature.app_id, browser)
                item["featureId"] = feature.id
            else:
                track = c.track_types[cid]
                server = SERVERS[c.apps[a].platform]
                item = _item("trackType", t0, t1, f"https://{server}/", track.app_id, browser)
                item["trackTypeId"] = track.id
            out.append(item)
    g_visitor, g_guide, g_step, g_kind, g_when = provider._guide_arrays(act)
    sel = (
        (g_visitor == visitor)
        & (g_when >= start_ms)
        & (g_when < end_ms)
        & (g_when <= provider.cutoff)
        & (g_kind != POLL_RESPONSE)
    )
    for gi, step, when in zip(
        g_guide[sel].tolist(), g_step[sel].tolist(), g_when[sel].tolist(), strict=True
    ):
        guide = c.guides[gi]
        item = _item("guide", when, when, r.step_urls[gi][step], guide.app_id, browser)
        item["guideId"] = guide.id
        item["guideStepId"] = r.step_ids[gi][step]
        out.append(item)
    return out


def _anonymous(
    provider: PendoProvider, act: Any, number: int, start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    c = provider.company
    web = c.apps[0]
    url = f"https://{SERVERS[web.platform]}/"
    out = []
    sel = (act.anon_id == number) & (act.anon_hour_ms <= provider.cutoff)
    for hour, events in zip(
        act.anon_hour_ms[sel].tolist(), act.anon_events[sel].tolist(), strict=True
    ):
        minutes = min(60, 1 + events // 3)  # as the anonymous event rows' numMinutes
        (ts,), (last,) = page_times(
            np.array([number]), np.array([0]), np.array([hour]), np.array([minutes])
        )
        if start_ms <= int(ts) < end_ms:
            item = _item("untagged", int(ts), int(last), url, web.id, number)
            item["untaggedUrl"] = url
            out.append(item)
    return out
