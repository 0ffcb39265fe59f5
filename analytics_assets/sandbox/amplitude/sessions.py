"""Sessions and user composition of the Dashboard REST API (contract §2), over the same
day frames as every other Dashboard endpoint, so their figures agree with the export.

* ``GET /api/2/sessions/length``: sessions of the range per length bucket;
* ``GET /api/2/sessions/average``: average session length (seconds) per day;
* ``GET /api/2/sessions/peruser``: average sessions per user per day;
* ``GET /api/2/composition``: distinct users per value of a user property.

A session is the events of one user sharing a ``session_id``; its length is the time
from its first to its last event (Amplitude's definition), so a one-event session lasts
0 s. Synthetic events carry the time of their visitor-hour's ``Session Start`` as their
session id (``events``); an ingested event carries its own ``session_id`` and, at -1
(none), belongs to no session. A session is counted on the project-time-zone day of
its events (synthetic sessions never cross midnight: they stay inside one hour).

Costs (the docs' cost model): ``days × conditions × 4`` for the three sessions
endpoints ("User Sessions: the cost for this chart is 4"), ``days × conditions × 1``
for composition ("for all endpoints not listed here, the cost is 1").
"""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from analytics_assets.sandbox.amplitude.budget import QUERY_TYPE_COST, query_cost
from analytics_assets.sandbox.amplitude.catalog import BUILTIN_USER_PROPS
from analytics_assets.sandbox.amplitude.dashboard import Dashboard, Plan
from analytics_assets.sandbox.amplitude.query import QueryError, date_range

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.events import Frame

# The docs' default bins (ms), used when the custom bin parameters are missing or invalid.
DEFAULT_BINS_MS = (0, 3_000, 10_000, 30_000, 60_000, 180_000, 600_000, 1_800_000, 3_600_000)
MAX_SESSION_MS = 86_400_000  # "Session lengths have a max length of 1 day"
BIN_UNITS_MS = {"seconds": 1_000, "minutes": 60_000, "hours": 3_600_000}
# Without a bin size "Amplitude tries to find the best bin sizing": the docs' example
# (0-10 minutes, no size) shows ten one-minute bins, so aim for ten.
TARGET_BINS = 10


def day_sessions(tenant: Any, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """(Amplitude ID, length in ms) of every session in a day's frame, one entry each."""
    n_syn = len(frame.batch)
    session = frame.session.copy()
    for i in range(n_syn, len(frame)):
        sid = tenant.ingested.get(int(frame.ing[i])).record.get("session_id")
        session[i] = sid if isinstance(sid, int) and not isinstance(sid, bool) else -1
    keep = session >= 0
    amp, sid, t = frame.amp[keep], session[keep], frame.t[keep]
    if amp.size == 0:
        return amp, np.zeros(0, np.int64)
    order = np.lexsort((t, sid, amp))
    amp, sid, t = amp[order], sid[order], t[order]
    starts = np.flatnonzero(np.concatenate(([True], (amp[1:] != amp[:-1]) | (sid[1:] != sid[:-1]))))
    ends = np.concatenate((starts[1:], [amp.size])) - 1
    lengths = np.minimum(t[ends] - t[starts], MAX_SESSION_MS)
    return amp[starts], lengths


def _number(params: Any, name: str) -> float | None:
    try:
        value = float(params.get(name, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def length_bins(params: Any) -> list[tuple[int, int]]:
    """[lo, hi) bucket edges in ms: the custom bins when valid, else the docs' defaults."""
    unit = BIN_UNITS_MS.get(str(params.get("timeHistogramConfigBinTimeUnit", "")).lower())
    lo, hi = (
        _number(params, "timeHistogramConfigBinMin"),
        _number(params, "timeHistogramConfigBinMax"),
    )
    size = _number(params, "timeHistogramConfigBinSize")
    if unit is None or lo is None or hi is None or lo < 0 or hi <= lo:
        edges = [*DEFAULT_BINS_MS, MAX_SESSION_MS]
        return list(zip(edges[:-1], edges[1:], strict=True))
    if size is None or size <= 0:
        size = max(1.0, math.ceil((hi - lo) / TARGET_BINS))
    out, start = [], lo
    while start < hi and len(out) < 1000:
        end = min(start + size, hi)
        out.append((int(start * unit), int(end * unit)))
        start = end
    return out


def _label(lo_ms: int, hi_ms: int) -> str:
    """``[bucketStartInSeconds]s-[bucketEndInSeconds]s`` (the docs' xValues)."""
    return f"{lo_ms / 1000:g}s-{hi_ms / 1000:g}s"


def _day_x(day: date) -> str:
    # Live answers carry a midnight time (the docs show the bare date).
    return f"{day.isoformat()}T00:00:00"


class SessionQueries:
    """The sessions and composition endpoints of one tenant, on the Dashboard's plumbing."""

    def __init__(self, board: Dashboard) -> None:
        self.board = board
        self.tenant = board.tenant

    def _sessions(self, days: list[date]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [day_sessions(self.tenant, f) for f in self.board.frames(days)]

    def _cost(self, days: list[date], type_cost: int) -> int:
        return query_cost(len(days), 1, type_cost)

    def plan_length(self, params: Any) -> Plan:
        days = date_range(params)
        bins = length_bins(params)

        def compute() -> tuple[Any, dict[str, Any]]:
            counts = [0] * len(bins)
            edges = np.array([lo for lo, _ in bins] + [bins[-1][1]], dtype=np.int64)
            for _, lengths in self._sessions(days):
                # A session on an edge belongs to the bin that starts there: [lo, hi).
                index = np.searchsorted(edges, lengths, side="right") - 1
                inside = (index >= 0) & (index < len(bins))
                for b, n in zip(*np.unique(index[inside], return_counts=True), strict=True):
                    counts[int(b)] += int(n)
            data = {
                "series": [counts],
                "seriesLabels": [0],
                "seriesMeta": [{"segmentIndex": 0}],
                "seriesCollapsed": [[{"setId": "", "value": sum(counts)}]],
                "xValues": [_label(lo, hi) for lo, hi in bins],
            }
            return data, {"withSets": False}

        return Plan(self._cost(days, QUERY_TYPE_COST["sessions"]), "SESSIONS", compute)

    def _per_day(self, params: Any, per_user: bool) -> Plan:
        days = date_range(params)

        def compute() -> tuple[Any, dict[str, Any]]:
            values, total_sessions, total_length, users = [], 0, 0, []
            for amps, lengths in self._sessions(days):
                n = int(lengths.size)
                day_users = int(np.unique(amps).size)
                if per_user:
                    values.append(n / day_users if day_users else 0.0)
                else:
                    values.append(float(lengths.sum()) / n / 1000 if n else 0.0)
                total_sessions += n
                total_length += int(lengths.sum())
                users.append(np.unique(amps))
            if per_user:
                distinct = int(np.unique(np.concatenate(users)).size) if users else 0
                overall = total_sessions / distinct if distinct else 0.0
            else:
                overall = total_length / total_sessions / 1000 if total_sessions else 0.0
            data = {
                "series": [values],
                "seriesMeta": [{"segmentIndex": 0, "sessionIndex": 0}],
                "seriesCollapsed": [[{"setId": "", "value": overall}]],
                "xValues": [_day_x(d) for d in days],
            }
            return data, {}

        return Plan(self._cost(days, QUERY_TYPE_COST["sessions"]), "SESSIONS", compute)

    def plan_average(self, params: Any) -> Plan:
        return self._per_day(params, per_user=False)

    def plan_peruser(self, params: Any) -> Plan:
        return self._per_day(params, per_user=True)

    def plan_composition(self, params: Any) -> Plan:
        days = date_range(params)
        prop = params.get("p")
        if not prop:
            raise QueryError("Missing required parameter p")
        name = prop[3:] if prop.startswith("gp:") else prop
        catalog = self.board.events.catalog
        if not (
            prop.startswith("gp:")
            or name in BUILTIN_USER_PROPS
            or catalog.user_property_table(prop) is not None
            or catalog.device_property(name) is not None
        ):
            # Refused before anything is charged, as the other endpoints' bad parameters.
            raise QueryError(f"Invalid user property {prop}")

        def compute() -> tuple[Any, dict[str, Any]]:
            # "The number of unique users who had the corresponding property value in the
            # specified date range": a user counts once per value they had on an event.
            labels: list[str] = []
            pairs = []
            for frame in self.board.frames(days):
                codes, labels = self.board._relabel(self.board.eval.user_prop(frame, prop), labels)
                offset = frame.amp - self.board.events.amp_base
                pairs.append(codes.astype(np.int64) << 40 | offset)
            merged = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
            counts = np.bincount((merged >> 40).astype(np.int64), minlength=len(labels))
            order = sorted(
                (g for g in range(len(labels)) if counts[g] > 0),
                key=lambda g: (-int(counts[g]), labels[g]),
            )
            data = {
                "series": [[int(counts[g]) for g in order]],
                "seriesLabels": [prop],
                "xValues": [labels[g] for g in order],
            }
            return data, {}

        return Plan(self._cost(days, 1), "COMPOSITION", compute)


def session_routes(board: Dashboard) -> list[Route]:
    queries = SessionQueries(board)

    def endpoint(planner):
        async def handler(request: Request) -> Response:
            return await board.serve(request, planner)

        return handler

    return [
        Route("/api/2/sessions/length", endpoint(queries.plan_length)),
        Route("/api/2/sessions/average", endpoint(queries.plan_average)),
        Route("/api/2/sessions/peruser", endpoint(queries.plan_peruser)),
        Route("/api/2/composition", endpoint(queries.plan_composition)),
    ]
