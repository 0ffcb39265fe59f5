"""The Dashboard REST endpoints (contract §2) over the same expansion as the export.

Each endpoint is a *plan* (parse the parameters, price the query) and a *compute*
(numpy over the days' frames, run in a worker thread). A plan's cost is charged and
a concurrency slot taken before computing (``budget``); a bad parameter is answered
400 before anything is charged. Every answer is ``{"data": ..., <live metadata>}``
with ``novaCost`` = the cost charged.

Numbers agree with the export by construction: a day's segmentation totals are the
visible events of that project-time-zone day, the same events the export serves by
upload hour.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.budget import (
    QUERY_TYPE_COST,
    conditions_count,
    error_body,
    funnel_type_cost,
    query_cost,
    segmentation_type_cost,
)
from analytics_assets.sandbox.amplitude.query import (
    Codes,
    Evaluator,
    QueryError,
    buckets,
    date_range,
    interval,
    json_param,
)

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.events import Frame
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

DAY_MS = 86_400_000
METRICS = ("uniques", "totals", "pct_dau", "average")
LTV_DAYS = (1, 2, 3, 4, 5, 6, 7, 14, 30, 60, 90, 120, 180)
LTV_NEW = (1, 2, 3, 4, 5, 6, 7, 14, 30, 60, 90, 120, 180)


@dataclass
class Plan:
    """A priced query: what it costs and how to compute its ``data`` (and extra keys)."""

    cost: int
    query_type: str
    compute: Callable[[], tuple[Any, dict[str, Any]]]


def invalid(details: str) -> JSONResponse:
    body = error_body(400, details, "invalid")
    body["error"]["message"] = "Invalid chart definition"
    return JSONResponse(body, status_code=400)


def _segment(params: Any) -> list[dict[str, Any]]:
    seg = json_param(params, "s", [])
    if isinstance(seg, dict):
        seg = [seg]
    if not isinstance(seg, list):
        raise QueryError("Invalid segment definition")
    return seg


def _group_by_param(params: Any, *names: str) -> list[dict[str, Any]]:
    return [{"type": "user", "value": params[n]} for n in names if params.get(n)]


def _user_groups(users: np.ndarray, codes: np.ndarray | None) -> dict[int, np.ndarray]:
    """Distinct users per group code (one group when ``codes`` is None)."""
    if codes is None:
        return {0: np.unique(users)}
    out = {}
    for code in np.unique(codes).tolist():
        out[code] = np.unique(users[codes == code])
    return out


class Dashboard:
    """The Dashboard REST endpoints of one tenant."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.tenant = tenant
        self.events = tenant.events
        self.eval = Evaluator(tenant)

    # ----- plumbing ------------------------------------------------------------------------

    async def serve(self, request: Request, planner: Callable[[Any], Plan]) -> Response:
        refused = check_basic(self.tenant, request)
        if refused is not None:
            return refused
        try:
            plan = planner(request.query_params)
        except QueryError as exc:
            return invalid(str(exc))
        return await self.run(plan)

    async def run(self, plan: Plan) -> Response:
        """Charge, hold a slot while computing, answer with the live envelope."""
        admission = self.tenant.gates.admit_dashboard(plan.cost)
        if not admission.allowed:
            return admission.response()
        started = time.monotonic()
        try:
            delay = self.tenant.gates.query_delay_seconds
            if delay > 0:
                await asyncio.sleep(delay)
            data, extra = await run_in_threadpool(plan.compute)
        except QueryError as exc:
            return invalid(str(exc))
        finally:
            admission.release()
        runtime = int((time.monotonic() - started) * 1000)
        return JSONResponse({"data": data, **extra, **self.metadata(plan, runtime)})

    def metadata(self, plan: Plan, runtime_ms: int) -> dict[str, Any]:
        query_id = format(zlib.crc32(f"{plan.query_type}{time.time_ns()}".encode()), "x")
        return {
            "timeComputed": self.tenant.now_ms(),
            "wasCached": False,
            "cacheFreshness": "FRESH",
            "novaRuntime": runtime_ms,
            "novaRequestDuration": runtime_ms,
            "novaCost": plan.cost,
            "throttleTime": 0,
            "minSampleRate": 1,
            "transformationIds": [],
            "queryIds": [query_id],
            "perQueryMetadata": [
                {
                    "queryId": query_id,
                    "queryType": plan.query_type,
                    "cached": False,
                    "novaCost": plan.cost,
                    "costMetadata": {"cost": plan.cost},
                }
            ],
        }

    def frames(self, days: list[date]) -> list[Frame]:
        return self.events.day_frames(days)

    # ----- /api/2/users ----------------------------------------------------------------------

    def plan_users(self, params: Any) -> Plan:
        days = date_range(params)
        i = interval(params)
        metric = params.get("m", "active")
        if metric not in ("active", "new"):
            raise QueryError(f"Invalid metric {metric!r}; use active or new")
        segment = _segment(params)
        group = params.get("g")
        cost = query_cost(len(days), conditions_count([segment], 1 if group else 0), 1)

        def compute() -> tuple[Any, dict[str, Any]]:
            index, labels, _ = buckets(days, i)
            frames = self.frames(days)
            performed = self.eval.performed(segment, frames)
            per_bucket: list[list[np.ndarray]] = [[] for _ in labels]
            group_labels: list[str] = []
            for day, frame, b in zip(days, frames, index, strict=True):
                mask = self.eval.segment_mask(frame, segment, performed)
                if metric == "new":
                    mask &= np.isin(frame.amp, self.events.new_users(day))
                codes = None
                if group:
                    c = self.eval.user_prop(frame, group)
                    codes, group_labels = self._relabel(c, group_labels)
                    codes = codes[mask]
                pairs = self._pairs(frame.amp[mask], codes)
                per_bucket[b].append(pairs)
            return self._user_series(per_bucket, labels, group_labels, bool(group)), {}

        return Plan(cost, "USERS", compute)

    @staticmethod
    def _relabel(codes: Codes, known: list[str]) -> tuple[np.ndarray, list[str]]:
        """Map a day's codes onto a label list shared across days."""
        labels = list(known)
        lut = []
        for label in codes.labels:
            if label not in labels:
                labels.append(label)
            lut.append(labels.index(label))
        return np.array(lut, dtype=np.int64)[codes.codes] if codes.codes.size else np.zeros(
            0, np.int64
        ), labels

    def _pairs(self, amps: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        """(group, user) pairs as one int64 (group << 40 | user offset)."""
        offset = amps - self.events.amp_base
        if codes is None:
            return offset
        return (codes.astype(np.int64) << 40) | offset

    @staticmethod
    def _user_series(
        per_bucket: list[list[np.ndarray]], x: list[str], group_labels: list[str], grouped: bool
    ) -> dict[str, Any]:
        merged = [np.unique(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in per_bucket]
        everything = np.unique(np.concatenate(merged)) if merged else np.zeros(0, np.int64)
        n_groups = len(group_labels) if grouped else 1
        series = [[0] * len(x) for _ in range(n_groups)]
        for b, pairs in enumerate(merged):
            for g, n in zip(*np.unique(pairs >> 40, return_counts=True), strict=True):
                series[int(g)][b] = int(n)
        collapsed_counts = np.bincount((everything >> 40).astype(np.int64), minlength=n_groups)
        order = list(range(n_groups))
        if grouped:
            order.sort(key=lambda g: -int(collapsed_counts[g]))
            order = [g for g in order if collapsed_counts[g] > 0]
        labels = [group_labels[g] for g in order] if grouped else [0]
        return {
            "xValues": x,
            "series": [series[g] for g in order],
            "seriesLabels": labels,
            "seriesMeta": labels if grouped else ["All Users"],
            "seriesCollapsed": [[{"setId": "", "value": int(collapsed_counts[g])}] for g in order],
        }

    # ----- /api/2/events/list ---------------------------------------------------------------

    def plan_events_list(self, params: Any) -> Plan:
        def compute() -> tuple[Any, dict[str, Any]]:
            today = self.tenant.today()
            this_week = np.zeros(0, np.int64)
            last_week = np.zeros(0, np.int64)
            for back in range(14):
                totals, _ = self.events.type_counts(today - timedelta(days=back))
                target = this_week if back < 7 else last_week
                size = max(target.size, totals.size)
                target = np.pad(target, (0, size - target.size)) + np.pad(
                    totals, (0, size - totals.size)
                )
                if back < 7:
                    this_week = target
                else:
                    last_week = target
            hidden = self.tenant.hidden_event_types
            out = []
            for index, name in enumerate(self.events.catalog.type_names()):
                if name in hidden:
                    continue
                week = int(this_week[index]) if index < this_week.size else 0
                before = int(last_week[index]) if index < last_week.size else 0
                out.append(
                    {
                        "autohidden": False,
                        "id": 895_000_000 + zlib.crc32(name.encode()) % 10**6,
                        "value": name,
                        "display": name,
                        "hidden": False,
                        "deleted": False,
                        "flow_hidden": False,
                        "timeline_hidden": False,
                        "non_active": False,
                        "in_waitroom": False,
                        "waitroom_approved": None,
                        "name": name,
                        "totals": week,
                        "totals_delta": week - before,
                    }
                )
            return out, {}

        return Plan(1, "EVENTS_LIST", compute)

    # ----- /api/2/events/segmentation --------------------------------------------------------

    def plan_segmentation(self, params: Any) -> Plan:
        days = date_range(params)
        i = interval(params)
        events = [json_param(params, "e", required=True)]
        if params.get("e2"):
            events.append(json_param(params, "e2"))
        if not all(isinstance(e, dict) for e in events):
            raise QueryError("Invalid event definition")
        for e in events:
            if len(e.get("group_by") or []) > 2:
                raise QueryError("At most 2 group-bys per event")
        metric = params.get("m", "uniques")
        if metric not in METRICS:
            raise QueryError(
                f"Metric {metric!r} is not supported by the sandbox; use one of {list(METRICS)}"
            )
        segment = _segment(params)
        seg_groups = _group_by_param(params, "g", "g2")
        try:
            limit = min(1000, max(1, int(params.get("limit", 100))))
        except ValueError as exc:
            raise QueryError("Invalid limit") from exc
        cost = query_cost(
            len(days), conditions_count([segment], len(seg_groups)), segmentation_type_cost(events)
        )

        def compute() -> tuple[Any, dict[str, Any]]:
            index, x, _ = buckets(days, i)
            frames = self.frames(days)
            performed = self.eval.performed(segment, frames)
            series, labels, collapsed = [], [], []
            for e_index, event in enumerate(events):
                group_bys = seg_groups + list(event.get("group_by") or [])
                result = self._segmentation_event(
                    frames, index, len(x), event, segment, performed, group_bys, metric
                )
                ranked = sorted(result.items(), key=lambda kv: -kv[1][1])[:limit]
                for label, (values, total) in ranked:
                    series.append(values)
                    labels.append([e_index, label] if group_bys else e_index)
                    collapsed.append([{"setId": "", "value": total}])
            return {
                "series": series,
                "seriesLabels": labels,
                "seriesCollapsed": collapsed,
                "xValues": x,
            }, {}

        return Plan(cost, "MULTI_SEGMENTATION", compute)

    def _segmentation_event(
        self,
        frames: list[Frame],
        index: list[int],
        n_x: int,
        event: dict[str, Any],
        segment: list[dict[str, Any]],
        performed: dict[int, np.ndarray],
        group_bys: list[dict[str, Any]],
        metric: str,
    ) -> dict[Any, tuple[list[float], float]]:
        """Per group label: (value per bucket, collapsed value over the range)."""
        group_labels: list[str] = []
        per_bucket: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(n_x)]
        dau: list[list[np.ndarray]] = [[] for _ in range(n_x)]
        for frame, b in zip(frames, index, strict=True):
            seg = self.eval.segment_mask(frame, segment, performed)
            mask = seg & self.eval.event_mask(frame, event)
            codes = None
            if group_bys:
                c = self.eval.group_codes(frame, group_bys)
                codes, group_labels = self._relabel(c, group_labels)
                codes = codes[mask]
            amps = frame.amp[mask] - self.events.amp_base
            per_bucket[b].append(
                (amps, np.zeros(amps.size, np.int64) if codes is None else codes.astype(np.int64))
            )
            if metric == "pct_dau":
                dau[b].append(frame.amp[seg] - self.events.amp_base)
        n_groups = len(group_labels) if group_bys else 1
        values = np.zeros((n_groups, n_x), dtype=np.float64)
        all_pairs, all_totals = [], np.zeros(n_groups)
        for b, parts in enumerate(per_bucket):
            if not parts:
                continue
            amps = np.concatenate([p[0] for p in parts])
            codes = np.concatenate([p[1] for p in parts])
            totals = np.bincount(codes, minlength=n_groups).astype(np.float64)
            pairs = np.unique(codes << 40 | amps)
            all_pairs.append(pairs)
            uniques = np.bincount(pairs >> 40, minlength=n_groups).astype(np.float64)
            all_totals += totals
            if metric == "totals":
                values[:, b] = totals
            elif metric == "uniques":
                values[:, b] = uniques
            elif metric == "average":
                values[:, b] = np.divide(totals, uniques, out=np.zeros(n_groups), where=uniques > 0)
            else:  # pct_dau
                active = np.unique(np.concatenate(dau[b])).size if dau[b] else 0
                values[:, b] = uniques * 100.0 / active if active else 0.0
        pairs = np.unique(np.concatenate(all_pairs)) if all_pairs else np.zeros(0, np.int64)
        all_uniques = np.bincount(pairs >> 40, minlength=n_groups).astype(np.float64)
        if metric == "totals":
            collapsed = all_totals
        elif metric == "average":
            collapsed = np.divide(
                all_totals, all_uniques, out=np.zeros(n_groups), where=all_uniques > 0
            )
        elif metric == "pct_dau":
            everyone = np.unique(np.concatenate([np.concatenate(d) for d in dau if d] or [[]]))
            collapsed = all_uniques * 100.0 / everyone.size if everyone.size else all_uniques * 0
        else:
            collapsed = all_uniques
        out: dict[Any, tuple[list[float], float]] = {}
        for g in range(n_groups):
            if group_bys and all_totals[g] == 0:
                continue
            label = group_labels[g] if group_bys else 0
            out[label] = ([_number(v) for v in values[g]], _number(collapsed[g]))
        return out

    # ----- /api/2/funnels ----------------------------------------------------------------------

    def plan_funnels(self, params: Any) -> Plan:
        days = date_range(params)
        steps = [json_param({"e": raw}, "e") for raw in params.getlist("e")]
        if len(steps) < 2 or not all(isinstance(s, dict) for s in steps):
            raise QueryError("A funnel needs at least two events (repeat e once per step)")
        mode = params.get("mode", "ordered")
        if mode not in ("ordered", "unordered", "sequential"):
            raise QueryError(f"Invalid mode {mode!r}")
        try:
            window = int(params.get("cs", 2_592_000)) * 1000
        except ValueError as exc:
            raise QueryError("Invalid conversion window cs") from exc
        segment = _segment(params)
        group = params.get("g")
        new_only = params.get("n") == "new"
        cost = query_cost(
            len(days), conditions_count([segment], 1 if group else 0), funnel_type_cost(steps)
        )

        def compute() -> tuple[Any, dict[str, Any]]:
            data = self._funnel(days, steps, mode, window, segment, group, new_only)
            return data, {"numSeries": len(data)}

        return Plan(cost, "FUNNEL", compute)

    def _funnel(
        self,
        days: list[date],
        steps: list[dict[str, Any]],
        mode: str,
        window: int,
        segment: list[dict[str, Any]],
        group: str | None,
        new_only: bool,
    ) -> list[dict[str, Any]]:
        lo, _ = self.tenant.day_bounds(days[0])
        _, hi = self.tenant.day_bounds(days[-1])
        # Later steps may convert after the range, within the window (up to today).
        extra_days = min(int(window // DAY_MS) + 1, max(0, (self.tenant.today() - days[-1]).days))
        all_days = days + [days[-1] + timedelta(days=k + 1) for k in range(extra_days)]
        frames = self.frames(all_days)
        performed = self.eval.performed(segment, frames[: len(days)])
        step_events: list[tuple[np.ndarray, np.ndarray]] = []
        user_group: dict[int, str] = {}
        for s, step in enumerate(steps):
            amps, times = [], []
            for d, frame in enumerate(frames):
                mask = self.eval.event_mask(frame, step)
                mask &= self.eval.segment_mask(frame, segment, performed)
                if s == 0:
                    mask &= frame.t < hi if d < len(days) else False
                    if new_only:
                        mask &= np.isin(frame.amp, self.events.new_users(frame.day))
                    if group and mask.any():
                        codes = self.eval.user_prop(frame, group)
                        for a, c in zip(
                            frame.amp[mask].tolist(), codes.codes[mask].tolist(), strict=True
                        ):
                            user_group.setdefault(a, codes.labels[c])
                amps.append(frame.amp[mask])
                times.append(frame.t[mask])
            a, t = np.concatenate(amps), np.concatenate(times)
            order = np.lexsort((t, a))
            step_events.append((a[order], t[order]))
        first_users, first_t = _first_per_user(*step_events[0])
        keep = first_t >= lo
        first_users, first_t = first_users[keep], first_t[keep]
        reached = [first_t]
        current = first_t.copy()
        alive = np.ones(first_users.size, dtype=bool)
        for s in range(1, len(steps)):
            a, t = step_events[s]
            if mode == "unordered":
                found = _next_event(a, t, first_users, first_t - window - 1)
                ok = alive & (found >= 0) & (np.abs(found - first_t) <= window)
            else:
                found = _next_event(a, t, first_users, current)
                ok = alive & (found >= 0) & (found - first_t <= window)
            alive = ok
            current = np.where(ok, found, current)
            reached.append(np.where(ok, found, -1))
        groups = {"": np.ones(first_users.size, dtype=bool)}
        if group:
            labels = np.array([user_group.get(int(u), "(none)") for u in first_users.tolist()])
            groups = (
                {str(g): labels == g for g in np.unique(labels).tolist()} if labels.size else {}
            )
        out = []
        names = [s.get("event_type") for s in steps]
        entry_day = np.array(
            [(self.tenant.local_day(int(t)) - days[0]).days for t in first_t], dtype=np.int64
        )
        for label, members in groups.items():
            if not members.any():
                continue
            raw = [int(((r >= 0) & members).sum()) for r in reached]
            out.append(
                self._funnel_series(
                    label, names, raw, reached, members, entry_day, days, group is not None
                )
            )
        return out

    def _funnel_series(
        self,
        label: str,
        names: list[Any],
        raw: list[int],
        reached: list[np.ndarray],
        members: np.ndarray,
        entry_day: np.ndarray,
        days: list[date],
        grouped: bool,
    ) -> dict[str, Any]:
        top = raw[0] or 1
        trans_median, trans_avg = [0], [0]
        for s in range(1, len(reached)):
            ok = members & (reached[s] >= 0)
            delta = (reached[s][ok] - reached[s - 1][ok]).astype(np.float64)
            trans_median.append(int(np.median(delta)) if delta.size else 0)
            trans_avg.append(int(delta.mean()) if delta.size else 0)
        day_series, day_median, day_avg = [], [], []
        for d in range(len(days)):
            on_day = members & (entry_day == d)
            day_series.append([int(((r >= 0) & on_day).sum()) for r in reached])
            med, avg = [0], [0]
            for s in range(1, len(reached)):
                ok = on_day & (reached[s] >= 0)
                delta = (reached[s][ok] - reached[s - 1][ok]).astype(np.float64)
                med.append(int(np.median(delta)) if delta.size else 0)
                avg.append(int(delta.mean()) if delta.size else 0)
            day_median.append(med)
            day_avg.append(avg)
        x = [d.isoformat() for d in days]
        fx = [f"{d:%b} {d.day}" for d in days]
        meta: dict[str, Any] = {"segmentIndex": 0}
        if grouped:
            meta["groupValue"] = label
        return {
            "meta": meta,
            "events": names,
            "cumulative": [round(r / top, 6) for r in raw],
            "cumulativeRaw": raw,
            "stepByStep": [1.0]
            + [round(raw[s] / raw[s - 1], 6) if raw[s - 1] else 0.0 for s in range(1, len(raw))],
            "medianTransTimes": trans_median,
            "avgTransTimes": trans_avg,
            "dayFunnels": {"series": day_series, "xValues": x, "formattedXValues": fx},
            "dayMedianTransTimes": {"series": day_median, "xValues": x, "formattedXValues": fx},
            "dayAvgTransTimes": {"series": day_avg, "xValues": x, "formattedXValues": fx},
        }

    # ----- /api/2/retention ---------------------------------------------------------------------

    def plan_retention(self, params: Any) -> Plan:
        days = date_range(params)
        i = interval(params)
        start_event = json_param(params, "se", required=True)
        return_event = json_param(params, "re", required=True)
        if not isinstance(start_event, dict) or not isinstance(return_event, dict):
            raise QueryError("Invalid event definition in se/re")
        mode = params.get("rm", "n-day")
        if mode not in ("n-day", "rolling", "bracket"):
            raise QueryError(f"Invalid retention mode {mode!r}")
        brackets = json_param(params, "rb", [])
        if mode == "bracket" and (not isinstance(brackets, list) or not brackets):
            raise QueryError("Bracket retention needs rb, e.g. [[0,5],[6,10]]")
        segment = _segment(params)
        group = params.get("g")
        cost = query_cost(
            len(days), conditions_count([segment], 1 if group else 0), QUERY_TYPE_COST["retention"]
        )

        def compute() -> tuple[Any, dict[str, Any]]:
            return self._retention(days, i, start_event, return_event, mode, brackets, segment), {}

        return Plan(cost, "RETENTION", compute)

    def _retention(
        self,
        days: list[date],
        i: int,
        se: dict[str, Any],
        re: dict[str, Any],
        mode: str,
        brackets: list[list[int]],
        segment: list[dict[str, Any]],
    ) -> dict[str, Any]:
        today = self.tenant.today()
        # Returns are looked for up to today (later intervals are "incomplete").
        all_days = [days[0] + timedelta(days=k) for k in range((today - days[0]).days + 1)]
        index, labels, firsts = buckets(all_days, i)
        n_range = len(buckets(days, i)[1])
        frames = self.frames(all_days)
        performed = self.eval.performed(segment, frames[: len(days)])
        cohort_sets: list[list[np.ndarray]] = [[] for _ in labels]
        return_sets: list[list[np.ndarray]] = [[] for _ in labels]
        for d, (frame, b) in enumerate(zip(frames, index, strict=True)):
            seg = self.eval.segment_mask(frame, segment, performed)
            if d < len(days):
                cohort_sets[b].append(frame.amp[seg & self.eval.event_mask(frame, se)])
            return_sets[b].append(frame.amp[seg & self.eval.event_mask(frame, re)])
        cohorts = [
            np.unique(np.concatenate(c)) if c else np.zeros(0, np.int64) for c in cohort_sets
        ]
        returns = [
            np.unique(np.concatenate(r)) if r else np.zeros(0, np.int64) for r in return_sets
        ]
        current = index[-1]
        n_out = n_range if mode != "bracket" else len(brackets)
        values, dates = {}, []
        combined = [
            {
                "count": 0,
                "outof": 0,
                "incomplete": False,
                "retainedSetId": None,
                "dropoffSetId": None,
            }
            for _ in range(n_out + 1)
        ]
        for b in range(n_range):
            label = f"{firsts[b]:%b} {firsts[b].day}, {firsts[b].year}"
            dates.append(label)
            cohort = cohorts[b]
            row = [
                {
                    "count": int(cohort.size),
                    "outof": int(cohort.size),
                    "incomplete": False,
                    "retainedSetId": None,
                    "dropoffSetId": None,
                }
            ]
            for n in range(n_out):
                if mode == "bracket":
                    lo_n, hi_n = (int(v) for v in brackets[n])
                    span = range(b + lo_n, b + hi_n + 1)
                elif mode == "rolling":
                    span = range(b + n, len(returns))
                else:
                    span = range(b + n, b + n + 1)
                span = [k for k in span if k < len(returns)]
                incomplete = (max(span) if span else b + n) >= current
                hit = (
                    np.isin(cohort, np.concatenate([returns[k] for k in span]))
                    if span
                    else np.zeros(cohort.size, dtype=bool)
                )
                count = int(hit.sum())
                row.append(
                    {
                        "count": count,
                        "outof": int(cohort.size),
                        "incomplete": incomplete,
                        "retainedSetId": None,
                        "dropoffSetId": None,
                    }
                )
                combined[n + 1]["count"] += count
                combined[n + 1]["outof"] += int(cohort.size)
                combined[n + 1]["incomplete"] |= incomplete
            combined[0]["count"] += int(cohort.size)
            combined[0]["outof"] += int(cohort.size)
            values[label] = row
        dates.reverse()
        return {
            "series": [{"dates": dates, "values": values, "combined": combined}],
            "seriesLabels": [""],
            "seriesMeta": [{"segmentIndex": 0, "eventIndex": 0}],
        }

    # ----- /api/2/revenue/ltv -------------------------------------------------------------------

    def plan_revenue(self, params: Any) -> Plan:
        days = date_range(params)
        i = interval(params)
        try:
            metric = int(params.get("m", 0))
        except ValueError as exc:
            raise QueryError("Invalid metric m") from exc
        if metric not in (0, 1, 2, 3):
            raise QueryError("m must be 0 (ARPU), 1 (ARPPU), 2 (total revenue) or 3 (paying)")
        segment = _segment(params)
        group = params.get("g")
        cost = query_cost(len(days), conditions_count([segment], 1 if group else 0), 1)

        def compute() -> tuple[Any, dict[str, Any]]:
            return self._ltv(days, i, metric, segment), {}

        return Plan(cost, "LTV", compute)

    def _ltv(
        self, days: list[date], i: int, metric: int, segment: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Cohorts of new users by day; cumulative revenue per user N days after."""
        today = self.tenant.today()
        horizon = min(today, days[-1] + timedelta(days=max(LTV_DAYS)))
        all_days = [days[0] + timedelta(days=k) for k in range((horizon - days[0]).days + 1)]
        index, labels, firsts = buckets(days, i)
        frames = self.frames(all_days)
        performed = self.eval.performed(segment, frames[: len(days)])
        cohort_parts: list[list[np.ndarray]] = [[] for _ in labels]
        revenue: list[tuple[int, np.ndarray, np.ndarray]] = []  # (day offset, amps, amounts)
        for d, frame in enumerate(frames):
            seg = self.eval.segment_mask(frame, segment, performed)
            if d < len(days):
                new = np.isin(frame.amp, self.events.new_users(frame.day)) & seg
                cohort_parts[index[d]].append(frame.amp[new])
            paid = frame.revenue != 0
            revenue.append((d, frame.amp[paid], frame.revenue[paid]))
        values, dates = {}, []
        for b, first in enumerate(firsts):
            cohort = (
                np.unique(np.concatenate(cohort_parts[b]))
                if cohort_parts[b]
                else np.zeros(0, np.int64)
            )
            start = (first - days[0]).days if first >= days[0] else 0
            row: dict[str, Any] = {"count": int(cohort.size)}
            total, payers = 0.0, np.zeros(0, np.int64)
            cumulative = {}
            for d, amps, amounts in revenue:
                if d < start:
                    continue
                inside = np.isin(amps, cohort)
                total += float(amounts[inside].sum())
                payers = np.union1d(payers, amps[inside])
                cumulative[d - start + 1] = (total, payers.size)
            for n in LTV_DAYS:
                past = [k for k in cumulative if k <= n]
                amount, paying = cumulative[max(past)] if past else (0.0, 0)
                value = {
                    0: amount / cohort.size if cohort.size else 0.0,
                    1: amount / paying if paying else 0.0,
                    2: amount,
                    3: float(paying),
                }[metric]
                row[f"r{n}d"] = round(value, 4)
            for n in LTV_NEW:
                row[f"r{n}new"] = row[f"r{n}d"]
            row["paid"] = int(payers.size)
            row["total_amount"] = round(total, 2)
            label = f"{first:%b} {first.day}"
            dates.append(label)
            values[label] = row
        dates.reverse()
        return {"seriesLabels": [0], "series": [{"dates": dates, "values": values}]}

    # ----- /api/2/realtime ----------------------------------------------------------------------

    def plan_realtime(self, params: Any) -> Plan:
        def compute() -> tuple[Any, dict[str, Any]]:
            now = self.tenant.now_ms()
            today = self.tenant.today()
            start_today, _ = self.tenant.day_bounds(today)
            n = int((now - start_today) // 300_000) + 1
            series = []
            for day in (today, today - timedelta(days=1)):
                frame = self.events.day_frame(day)
                lo, _ = self.tenant.day_bounds(day)
                bucket = (frame.t - lo) // 300_000
                keep = bucket < n
                pairs = np.unique(bucket[keep] << 40 | (frame.amp[keep] - self.events.amp_base))
                counts = np.bincount((pairs >> 40).astype(np.int64), minlength=n)[:n]
                series.append([int(c) for c in counts])
            x = [f"{(k * 5) // 60:02d}:{(k * 5) % 60:02d}" for k in range(n)]
            return {"xValues": x, "seriesLabels": ["Today", "Yesterday"], "series": series}, {}

        return Plan(1, "REALTIME", compute)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 6)


def _first_per_user(amps: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Events sorted by (amp, time) -> each user's first event time."""
    if amps.size == 0:
        return amps, times
    first = np.flatnonzero(np.concatenate([[True], amps[1:] != amps[:-1]]))
    return amps[first], times[first]


def _next_event(
    amps: np.ndarray, times: np.ndarray, users: np.ndarray, after: np.ndarray
) -> np.ndarray:
    """For each (user, moment): the time of the user's first event strictly after it, or -1."""
    if amps.size == 0 or users.size == 0:
        return np.full(users.size, -1, dtype=np.int64)
    base = int(min(times.min(), after.min())) - 1
    # One sortable key per event: dense user rank, then time since ``base``.
    _, inverse = np.unique(np.concatenate([amps, users]), return_inverse=True)
    span = np.int64(1) << 41
    key = inverse[: amps.size].astype(np.int64) * span + (times - base)
    query = inverse[amps.size :].astype(np.int64) * span + (after - base) + 1
    pos = np.searchsorted(key, query)
    found = np.full(users.size, -1, dtype=np.int64)
    ok = pos < key.size
    same = np.zeros(users.size, dtype=bool)
    same[ok] = amps[pos[ok]] == users[ok]
    found[same] = times[pos[same]]
    return found


def dashboard_routes(tenant: AmplitudeTenant) -> tuple[list[Route], Dashboard]:
    board = Dashboard(tenant)

    def endpoint(planner: Callable[[Any], Plan]):
        async def handler(request: Request) -> Response:
            return await board.serve(request, planner)

        return handler

    routes = [
        Route("/api/2/users", endpoint(board.plan_users)),
        Route("/api/2/events/list", endpoint(board.plan_events_list)),
        Route("/api/2/events/segmentation", endpoint(board.plan_segmentation)),
        Route("/api/2/funnels", endpoint(board.plan_funnels)),
        Route("/api/2/retention", endpoint(board.plan_retention)),
        Route("/api/2/revenue/ltv", endpoint(board.plan_revenue)),
        Route("/api/2/realtime", endpoint(board.plan_realtime)),
    ]
    return routes, board


def today_range(tenant: AmplitudeTenant, days: int) -> tuple[str, str]:
    """``start``/``end`` parameters of the last ``days`` days up to today (project tz)."""
    end = tenant.today()
    start = end - timedelta(days=days - 1)
    return f"{start:%Y%m%d}", f"{end:%Y%m%d}"
