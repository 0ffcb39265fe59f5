"""Fetch the snapshots that rules need, with as few and as small API calls as possible.

Rules are grouped into *plans*: rules reading the same source the same way share one call.
Each plan costs exactly one request:

* Pendo event sources (``events``, ``featureEvents``...): one aggregation over the window,
  ``group`` by entity and bucket (``day``/``hour``) with the sums or distinct counts the
  rules' metrics need. For 100,000 accounts over 8 days that is at most 800,000 small rows,
  streamed (the client parses them as they arrive) into a numpy matrix.
* ``guideEvents``: one aggregation, ``group`` by guide, event type and bucket counting
  distinct visitors (a multi-step guide sends one ``guideSeen`` per step; a visitor is one
  view).
* accounts/visitors, ``first_seen``: one aggregation filtered on
  ``metadata.auto.firstvisit >= now - within_hours``: only the new ones come back, so the
  answer stays tiny and nothing about the known ones is kept anywhere (stateless).
* accounts/visitors, ``field_changed``: one aggregation selecting only the watched fields of
  the entities that have any of them set.
* Amplitude cohorts: one ``GET /api/3/cohorts``; active users: one ``/api/2/users`` query.

Every Pendo pipeline is built with ``pendo/pipeline.py`` (values quoted by ``Expr``, fields
checked), and handed to the client as a ``Pipeline``. Nothing here knows Dagster; clients are
protocols (``aggregate``, ``list_cohorts``, ``active_users``), so tests can pass fakes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from analytics_assets.alerts.engine import RecordSnapshot, SeriesSnapshot, window_start
from analytics_assets.alerts.rules import (
    FieldChangedCondition,
    FirstSeenCondition,
    RuleSpec,
    SourceSpec,
)
from analytics_assets.pendo.pipeline import Agg, AggSpec, AppIds, Expr, Pipeline, Source, TimeSeries

if TYPE_CHECKING:
    import numpy as np  # imported where computed: most processes never need it

logger = logging.getLogger(__name__)

ENTITY_KEYS = {
    "account": "accountId",
    "visitor": "visitorId",
    "feature": "featureId",
    "page": "pageId",
    "trackType": "trackTypeId",
    "guide": "guideId",
}
EVENT_METRICS: dict[str, AggSpec] = {
    "numEvents": Agg.sum("numEvents"),
    "numMinutes": Agg.sum("numMinutes"),
    "visitors": Agg.count("visitorId"),
    "accounts": Agg.count("accountId"),
}
# The builder's constructor of each event source a rule can read.
EVENT_SOURCES = {
    "events": Source.events,
    "featureEvents": Source.feature_events,
    "pageEvents": Source.page_events,
    "trackEvents": Source.track_events,
    "guideEvents": Source.guide_events,
}
# Sources without a time series (the entities themselves), over the default app.
ENTITY_SOURCES = {"accounts": Source.accounts, "visitors": Source.visitors}
GUIDE_TYPES = {"guideSeen": "seen", "guideAdvanced": "advanced", "guideDismissed": "dismissed"}
HOUR_MS = 3_600_000
MAX_NAMED = 200  # ids per name lookup: Pendo has no `in`, so each id is an `||` term


class PendoLike(Protocol):
    def aggregate(self, pipeline: Pipeline) -> Iterable[dict]: ...


class AmplitudeLike(Protocol):
    def list_cohorts(self) -> list[dict]: ...

    def active_users(self, start: Any, end: Any) -> list[dict]: ...


# ------------------------------------------------------------------------------ plans


@dataclass(frozen=True)
class PlanKey:
    """What makes two rules share one call."""

    kind: str  # series | first_seen | fields | cohorts | active_users
    source: str
    entity: str
    detail: str = ""  # JSON of the source spec / the field


@dataclass
class Plan:
    key: PlanKey
    spec: SourceSpec
    rules: list[str] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)
    fields: dict[str, str] = field(default_factory=dict)  # name -> path
    within_hours: float = 0.0

    @property
    def system(self) -> str:
        return self.spec.system

    def describe(self) -> str:
        return f"{self.key.source} ({self.key.kind}, {self.key.entity})"


def plan_for(rule: RuleSpec) -> PlanKey:
    spec, cond = rule.source, rule.condition
    if spec.name == "amplitude.cohorts":
        return PlanKey("cohorts", spec.name, rule.entity)
    if spec.name == "amplitude.active_users":
        return PlanKey("active_users", spec.name, rule.entity, _spec_json(spec))
    if isinstance(cond, FirstSeenCondition):
        return PlanKey("first_seen", spec.name, rule.entity, cond.field)
    if isinstance(cond, FieldChangedCondition):
        return PlanKey("fields", spec.name, rule.entity, spec.filter or "")
    return PlanKey("series", spec.name, rule.entity, _spec_json(spec))


def _spec_json(spec: SourceSpec) -> str:
    return json.dumps(spec.model_dump(), sort_keys=True)


def make_plans(rules: Sequence[RuleSpec]) -> dict[PlanKey, Plan]:
    """Rules grouped by the call that serves them, in rule-file order."""
    plans: dict[PlanKey, Plan] = {}
    for rule in rules:
        key = plan_for(rule)
        plan = plans.setdefault(key, Plan(key, rule.source))
        plan.rules.append(rule.name)
        if rule.metric:
            plan.metrics.add(rule.metric)
        cond = rule.condition
        if isinstance(cond, FirstSeenCondition):
            plan.within_hours = max(plan.within_hours, cond.within_hours)
        if isinstance(cond, FieldChangedCondition):
            plan.fields.update(cond.paths())
    return plans


# ------------------------------------------------------------------------------ Pendo


@dataclass
class FetchContext:
    """What every fetch needs besides the client: the time and the time zones."""

    now: datetime
    pendo_timezone: str = "UTC"
    amplitude_timezone: str = "UTC"
    app_ids: AppIds = "*"  # "*" (all apps), an int, or a list of ints

    def apps(self) -> AppIds:
        # None would mean the default app to Pendo; the sensors have always meant all apps.
        return "*" if self.app_ids is None else self.app_ids


def _buckets(ctx: FetchContext, spec: SourceSpec) -> tuple[list[int], str]:
    tz = ZoneInfo(ctx.pendo_timezone)
    first = window_start(ctx.now, spec.period, spec.window, spec.include_current, tz)
    starts = []
    for i in range(spec.window):
        if spec.period == "day":
            day = first.date() + timedelta(days=i)
            starts.append(int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000))
        else:
            starts.append(int((first + timedelta(hours=i)).timestamp() * 1000))
    return starts, ("day" if spec.period == "day" else "hour")


def _event_source(kind: str, ctx: FetchContext, time_series: TimeSeries) -> Source:
    return EVENT_SOURCES[kind](time_series=time_series, app_ids=ctx.apps())


def _entity_source(kind: str) -> Source:
    return ENTITY_SOURCES[kind]()


def series_pipeline(plan: Plan, ctx: FetchContext, starts: list[int]) -> Pipeline:
    spec = plan.spec
    bucket = "day" if spec.period == "day" else "hour"
    key = ENTITY_KEYS[plan.key.entity]
    period = TimeSeries.day_range if spec.period == "day" else TimeSeries.hour_range
    pipeline = Pipeline(_event_source(spec.kind, ctx, period(starts[0], count=spec.window)))
    if spec.kind == "guideEvents":
        # Guide events are single events without a bucket field: bucket them by UTC hour
        # (arithmetic on browserTime); hours map onto local days client-side, since every
        # local midnight is an hour boundary.
        pipeline = pipeline.filter(Expr.ne(key, ""))
        if spec.filter:
            pipeline = pipeline.filter(spec.filter)  # the rule file's own expression
        return pipeline.eval({"hour": f"browserTime - browserTime % {HOUR_MS}"}).group(
            by=[key, "type", "hour"], fields={"n": Agg.count("visitorId")}
        )
    # Anonymous visitors' events belong to no account and no one to call: leave them out,
    # as the daily usage assets do, so per-day totals match theirs (the late-data check).
    pipeline = pipeline.identified("visitorId").filter(Expr.ne(key, ""))
    if spec.filter:
        pipeline = pipeline.filter(spec.filter)
    fields = {m: EVENT_METRICS[m] for m in sorted(plan.metrics or {"numEvents"})}
    return pipeline.group(by=[key, bucket], fields=fields)


def fetch_series(client: PendoLike, plan: Plan, ctx: FetchContext) -> SeriesSnapshot:
    """One aggregation -> per-entity, per-bucket matrices (float32, so 100k x 8 is 3 MB)."""
    import numpy as np

    starts, bucket = _buckets(ctx, plan.spec)
    position = {start: i for i, start in enumerate(starts)}
    key = ENTITY_KEYS[plan.key.entity]
    guide = plan.spec.kind == "guideEvents"
    columns = list(GUIDE_TYPES.values()) if guide else sorted(plan.metrics or {"numEvents"})
    index: dict[str, int] = {}
    # Grow in chunks: the number of entities is unknown until the stream ends.
    data = np.zeros((len(columns), 1024, len(starts)), dtype=np.float32)
    row_bucket = "hour" if guide else bucket
    for row in client.aggregate(series_pipeline(plan, ctx, starts)):
        entity = row.get(key)
        col = _bucket_index(row.get(row_bucket), position, starts)
        if not entity or col is None:
            continue
        i = index.get(entity)
        if i is None:
            i = index[entity] = len(index)
            if i >= data.shape[1]:
                data = np.concatenate([data, np.zeros_like(data)], axis=1)
        if guide:
            metric = GUIDE_TYPES.get(row.get("type") or "")
            if metric is not None:
                data[columns.index(metric), i, col] += float(row.get("n") or 0)
        else:
            for m, name in enumerate(columns):
                data[m, i, col] += float(row.get(name) or 0)
    n = len(index)
    matrices = {name: data[m, :n, :] for m, name in enumerate(columns)}
    metrics: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if guide:
        seen = matrices["seen"]
        metrics = {name: (matrices[name], None) for name in GUIDE_TYPES.values()}
        metrics["dismissal_rate"] = (matrices["dismissed"], seen)
        metrics["advance_rate"] = (matrices["advanced"], seen)
    else:
        metrics = {name: (matrix, None) for name, matrix in matrices.items()}
    totals = {name: [float(x) for x in matrix.sum(axis=0)] for name, (matrix, _) in metrics.items()}
    return SeriesSnapshot(
        source=plan.key.source,
        observed_at=ctx.now,
        period=plan.spec.period,
        bucket_starts=starts,
        entities=list(index),
        metrics=metrics,
        timezone=ctx.pendo_timezone,
        totals=totals,
    )


def _bucket_index(value: Any, position: Mapping[int, int], starts: list[int]) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return None
    if ms in position:
        return position[ms]
    # A server in another time zone snaps days to its own midnight: take the bucket the
    # row's start falls into, rather than dropping the row.
    for i in range(len(starts) - 1, -1, -1):
        if ms >= starts[i]:
            return i
    return None


def fetch_first_seen(client: PendoLike, plan: Plan, ctx: FetchContext) -> RecordSnapshot:
    field_path = plan.key.detail
    key = ENTITY_KEYS[plan.key.entity]
    since = int(ctx.now.timestamp() * 1000) - int(plan.within_hours * 3_600_000)
    select = {"id": key, "first": field_path}
    if plan.key.entity == "account":
        select["name"] = "metadata.agent.name"
    pipeline = (
        Pipeline(_entity_source(plan.spec.kind)).filter(Expr.ge(field_path, since)).select(select)
    )
    records: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for row in client.aggregate(pipeline):
        entity = row.get("id")
        if not entity:
            continue
        records[str(entity)] = {field_path: row.get("first")}
        if row.get("name"):
            names[str(entity)] = str(row["name"])
    return RecordSnapshot(plan.key.source, ctx.now, records, names)


def fetch_fields(client: PendoLike, plan: Plan, ctx: FetchContext) -> RecordSnapshot:
    """The watched fields of every entity that has at least one of them set."""
    key = ENTITY_KEYS[plan.key.entity]
    paths = dict(sorted(plan.fields.items()))
    any_set = Expr.or_(*(Expr.not_(Expr.is_null(path)) for path in paths.values()))
    select = {"id": key, **{f"f{i}": path for i, path in enumerate(paths.values())}}
    pipeline = Pipeline(_entity_source(plan.spec.kind)).filter(any_set)
    if plan.spec.filter:
        pipeline = pipeline.filter(plan.spec.filter)  # the rule file's own expression
    pipeline = pipeline.select(select)
    names = list(paths)
    records: dict[str, dict[str, Any]] = {}
    for row in client.aggregate(pipeline):
        entity = row.get("id")
        if entity:
            records[str(entity)] = {name: row.get(f"f{i}") for i, name in enumerate(names)}
    return RecordSnapshot(plan.key.source, ctx.now, records)


def fetch_names(client: PendoLike, entity: str, ids: Sequence[str]) -> dict[str, str]:
    """Display names of a few accounts (one small aggregation), for alert messages."""
    if entity != "account" or not ids:
        return {}
    wanted = sorted(set(ids))[:MAX_NAMED]
    pipeline = (
        Pipeline(Source.accounts())
        .filter(Expr.in_("accountId", wanted))
        .select({"id": "accountId", "name": "metadata.agent.name"})
    )
    return {
        str(row["id"]): str(row["name"])
        for row in client.aggregate(pipeline)
        if row.get("id") and row.get("name")
    }


# ------------------------------------------------------------------------------ Amplitude


def fetch_cohorts(client: AmplitudeLike, plan: Plan, ctx: FetchContext) -> RecordSnapshot:
    records: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for cohort in client.list_cohorts():
        cid = cohort.get("id")
        if not cid or cohort.get("archived"):
            continue
        records[str(cid)] = {
            "size": cohort.get("size"),
            "lastComputed": cohort.get("lastComputed"),
        }
        if cohort.get("name"):
            names[str(cid)] = str(cohort["name"])
    return RecordSnapshot(plan.key.source, ctx.now, records, names)


def fetch_active_users(client: AmplitudeLike, plan: Plan, ctx: FetchContext) -> SeriesSnapshot:
    import numpy as np

    tz = ZoneInfo(ctx.amplitude_timezone)
    today = ctx.now.astimezone(tz).date()
    last = today if plan.spec.include_current else today - timedelta(days=1)
    first = last - timedelta(days=plan.spec.window - 1)
    days = [first + timedelta(days=i) for i in range(plan.spec.window)]
    values = np.zeros((1, len(days)), dtype=np.float32)
    position = {d: i for i, d in enumerate(days)}
    for row in client.active_users(first, last):
        when = row.get("date")
        day = when if isinstance(when, date) else _parse_day(when)
        if day in position:
            values[0, position[day]] += float(row.get("value") or 0)
    starts = [int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000) for d in days]
    return SeriesSnapshot(
        source=plan.key.source,
        observed_at=ctx.now,
        period="day",
        bucket_starts=starts,
        entities=["project"],
        metrics={"active_users": (values, None)},
        timezone=ctx.amplitude_timezone,
    )


def _parse_day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


# ------------------------------------------------------------------------------ dispatch


def fetch(
    plan: Plan, ctx: FetchContext, pendo: Any = None, amplitude: Any = None
) -> SeriesSnapshot | RecordSnapshot:
    """The snapshot of one plan (one API call)."""
    kind = plan.key.kind
    if kind == "cohorts":
        return fetch_cohorts(_need(amplitude, "amplitude"), plan, ctx)
    if kind == "active_users":
        return fetch_active_users(_need(amplitude, "amplitude"), plan, ctx)
    client = _need(pendo, "pendo")
    if kind == "first_seen":
        return fetch_first_seen(client, plan, ctx)
    if kind == "fields":
        return fetch_fields(client, plan, ctx)
    return fetch_series(client, plan, ctx)


def _need(client: Any, name: str) -> Any:
    if client is None:
        raise LookupError(f"no {name} client: add the {name!r} resource to the sensor")
    return client


def fetch_day_totals(client: PendoLike, ctx: FetchContext, days: int) -> SeriesSnapshot:
    """Events per complete local day over ``days`` days, all accounts together (tiny)."""
    spec = SourceSpec(name="pendo.events", period="day", window=days)
    starts, _ = _buckets(ctx, spec)
    position = {start: i for i, start in enumerate(starts)}
    pipeline = (
        Pipeline(_event_source("events", ctx, TimeSeries.day_range(starts[0], count=days)))
        .identified("visitorId")
        .filter(Expr.ne("accountId", ""))
        .group(by=["day"], fields={"numEvents": Agg.sum("numEvents")})
    )
    totals = [0.0] * days
    for row in client.aggregate(pipeline):
        col = _bucket_index(row.get("day"), position, starts)
        if col is not None:
            totals[col] += float(row.get("numEvents") or 0)
    return SeriesSnapshot(
        source="pendo.events",
        observed_at=ctx.now,
        period="day",
        bucket_starts=starts,
        entities=[],
        metrics={},
        timezone=ctx.pendo_timezone,
        totals={"numEvents": totals},
    )
