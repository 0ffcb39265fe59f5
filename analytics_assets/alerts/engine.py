"""Evaluate one rule against a snapshot of its metric and the rule's previous state.

Pure: no I/O, no Dagster, no clock (the snapshot carries its time). The sensors fetch
snapshots (``sources.py``), call ``evaluate`` per rule, and hand the alerts to the sinks.

Two kinds of conditions:

* **holding** conditions (``threshold``, ``change_pct``, ``first_seen``, and
  ``field_changed`` against the write-back's log) are true for an entity for a while. An
  alert fires when one starts holding (its key enters ``RuleState.active``); nothing fires
  while it keeps holding; when it clears, the key leaves ``active`` and the entity is re-armed.
  A holding condition can also carry a digest of the offending value, so that a field that
  changes again (to yet another wrong value) alerts again.
* **change** conditions (``count_changed``, ``field_changed`` against the previous
  observation) compare with the value remembered from the last tick (``RuleState.memory``)
  and fire once per change. Their first observation only primes the memory.

A rule whose entities in alert would outgrow ``max_tracked`` is *saturated*: it raises one
summary alert instead of thousands (a storm usually means a data problem, not thousands of
customers at once), keeps nothing per entity, and, once the storm has passed, quietly adopts
the entities still holding as already alerted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from analytics_assets.alerts.model import Alert, utc_iso
from analytics_assets.alerts.rules import (
    ChangePctCondition,
    CountChangedCondition,
    FieldChangedCondition,
    FirstSeenCondition,
    RuleSpec,
    ThresholdCondition,
)
from analytics_assets.alerts.state import RuleState, entity_key, value_digest

if TYPE_CHECKING:
    import numpy as np  # imported where computed: most processes never need it

HOUR_MS = 3_600_000
SUMMARY_SAMPLE = 20

# ------------------------------------------------------------------------------ snapshots


@dataclass
class SeriesSnapshot:
    """Per-entity values in time buckets (oldest first), e.g. events per account per day.

    ``metrics[name] = (numerator, denominator)``, arrays of shape (entities, buckets). A
    ``None`` denominator means a count, averaged per bucket; otherwise a rate, pooled over the
    buckets (sum of numerators / sum of denominators). ``totals`` holds per-bucket totals over
    every row, including rows without an entity, for the late-data check.
    """

    source: str
    observed_at: datetime
    period: str
    bucket_starts: list[int]
    entities: list[str]
    metrics: dict[str, tuple[np.ndarray, np.ndarray | None]]
    names: dict[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    complete: bool = True
    totals: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class RecordSnapshot:
    """One record of fields per entity (account metadata, cohorts).

    ``reference`` (entity -> field -> expected value) is what the write-back last wrote,
    when known; ``complete`` says whether entities absent from ``records`` are gone (True)
    or merely not looked at this time (False).
    """

    source: str
    observed_at: datetime
    records: dict[str, dict[str, Any]]
    names: dict[str, str] = field(default_factory=dict)
    complete: bool = True
    reference: dict[str, dict[str, Any]] | None = None
    reference_label: str = ""


Snapshot = SeriesSnapshot | RecordSnapshot


@dataclass
class Finding:
    """An entity (and sub-key) for which the condition holds now, or a change happened."""

    entity_id: str
    values: dict[str, Any]
    message: str
    sub: str | None = None
    digest: int = 0

    @property
    def key(self) -> int:
        return entity_key(self.entity_id, self.sub)


@dataclass
class Verdict:
    """A condition's answer for a whole snapshot."""

    findings: list[Finding]
    change: bool = False  # a change condition (memory), not a holding one
    memory: dict[int, int] | None = None  # new memory for change conditions
    visited: set[int] | None = None  # keys looked at (None: all, when complete)
    absent_holds: bool = False  # does the condition hold for an entity with no data?
    skipped: str = ""  # why the rule was not evaluated this tick (state kept)
    # key -> (entity id, sub-key) of keys looked at, to name cleared keys with a sub-key
    names: dict[int, tuple[str, str | None]] = field(default_factory=dict)


@dataclass
class Evaluation:
    rule: str
    alerts: list[Alert]
    state: RuleState
    holding: int = 0
    fired: int = 0
    cleared: int = 0
    note: str = ""


# ------------------------------------------------------------------------------ formatting


def _fmt(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric.endswith("_rate"):
        return f"{value:.0%}"
    if value == int(value) or abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _round(value: float) -> float:
    return float(round(value, 4))


# ------------------------------------------------------------------------------ series


def _bucket_label(snap: SeriesSnapshot, cols: list[int]) -> str:
    if snap.period == "hour":
        n = len(cols)
        return "in the last hour" if n == 1 else f"in the last {n} hours"
    tz = ZoneInfo(snap.timezone)
    days = [datetime.fromtimestamp(snap.bucket_starts[i] / 1000, tz).date() for i in cols]
    return f"on {days[0]}" if len(days) == 1 else f"from {days[0]} to {days[-1]}"


def _windows(snap: SeriesSnapshot, cond: Any) -> tuple[list[int], list[int]] | str:
    """Column indexes of the current and the baseline buckets, or why there are none."""
    cols = list(range(len(snap.bucket_starts)))
    if getattr(cond, "weekdays_only", False):
        tz = ZoneInfo(snap.timezone)
        cols = [
            i
            for i in cols
            if datetime.fromtimestamp(snap.bucket_starts[i] / 1000, tz).weekday() < 5
        ]
    if len(cols) < cond.current:
        return f"only {len(cols)} usable buckets, {cond.current} needed"
    current, rest = cols[-cond.current :], cols[: -cond.current]
    baseline = getattr(cond, "baseline", None)
    if baseline:
        rest = rest[-baseline:]
    return current, rest


def _period(num: np.ndarray, den: np.ndarray | None, cols: list[int]):
    """Per-entity value over some buckets: mean per bucket, or pooled rate; and samples."""
    import numpy as np

    if not cols:
        return np.full(num.shape[0], np.nan), None
    n = num[:, cols].sum(axis=1)
    if den is None:
        return n / len(cols), None
    d = den[:, cols].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan), d


def _samples_label(metric: str) -> str:
    return "views" if metric in ("dismissal_rate", "advance_rate") else "samples"


def _series_verdict(rule: RuleSpec, snap: SeriesSnapshot) -> Verdict:
    import numpy as np

    cond = rule.condition
    metric = rule.metric or ""
    if metric not in snap.metrics:
        return Verdict([], skipped=f"metric {metric!r} missing from the snapshot")
    windows = _windows(snap, cond)
    if isinstance(windows, str):
        return Verdict([], skipped=windows)
    current_cols, baseline_cols = windows
    num, den = snap.metrics[metric]
    current, samples = _period(num, den, current_cols)
    valid = ~np.isnan(current)
    min_samples = getattr(cond, "min_samples", 0)
    if samples is not None:
        valid &= samples >= max(min_samples, 1e-12)
    label = _bucket_label(snap, current_cols)
    base = pct = None
    if isinstance(cond, ChangePctCondition):
        base, base_samples = _period(num, den, baseline_cols)
        valid &= ~np.isnan(base) & (base > 0) & (base >= cond.min_baseline)
        zscore = None
        if cond.min_zscore and den is None and len(baseline_cols) >= 2:
            # How unusual the change is for this entity: a small account whose days swing
            # between 0 and 80 needs a bigger move than a steady one (floor of 1 event).
            spread = np.maximum(num[:, baseline_cols].std(axis=1, ddof=1), 1.0)
            zscore = np.abs(current - base) / spread
            valid &= zscore >= cond.min_zscore
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(valid, (current - base) / np.where(base > 0, base, 1) * 100, 0.0)
        holds = valid & (pct <= -cond.percent if cond.direction == "drop" else pct >= cond.percent)
        absent = False  # no data: no baseline, so no drop and no rise
    else:
        assert isinstance(cond, ThresholdCondition)
        holds = valid & (current > cond.above if cond.above is not None else current < cond.below)
        zero_ok = den is None and min_samples == 0
        absent = zero_ok and (cond.above < 0 if cond.above is not None else (cond.below or 0) > 0)
    findings = []
    unit = _samples_label(metric)
    unit_word = "weekdays" if getattr(cond, "weekdays_only", False) else f"{snap.period}s"
    base_label = f"the {len(baseline_cols)} {unit_word} before"
    per = "" if den is not None else f" per {snap.period}"
    for i in np.flatnonzero(holds):
        entity = snap.entities[i]
        values: dict[str, Any] = {
            "metric": metric,
            "current": _round(float(current[i])),
            "period": label,
        }
        if samples is not None:
            values[unit] = int(samples[i])
        if isinstance(cond, ChangePctCondition):
            assert base is not None and pct is not None
            values.update(baseline=_round(float(base[i])), change_pct=_round(float(pct[i])))
            if zscore is not None:
                values["zscore"] = _round(float(zscore[i]))
            verb = "fell" if cond.direction == "drop" else "rose"
            message = (
                f"{metric} {verb} {abs(pct[i]):.0f}% to {_fmt(current[i], metric)} {label}, "
                f"against {_fmt(base[i], metric)}{per} over {base_label}"
            )
        else:
            limit = cond.above if cond.above is not None else cond.below
            side = "above" if cond.above is not None else "below"
            values["threshold"] = limit
            message = f"{metric} is {_fmt(current[i], metric)} {label}, {side} {limit:g}"
        if samples is not None:
            message += f" ({int(samples[i])} {unit})"
        findings.append(Finding(entity, values, message))
    return Verdict(findings, absent_holds=absent)


# ------------------------------------------------------------------------------ records


def _scalar_threshold(rule: RuleSpec, snap: RecordSnapshot) -> Verdict:
    cond = rule.condition
    assert isinstance(cond, ThresholdCondition)
    metric = rule.metric or ""
    findings = []
    for entity, record in snap.records.items():
        value = _num(record.get(metric))
        if value is None:
            continue
        if (cond.above is not None and value > cond.above) or (
            cond.below is not None and value < cond.below
        ):
            limit = cond.above if cond.above is not None else cond.below
            side = "above" if cond.above is not None else "below"
            findings.append(
                Finding(
                    entity,
                    {"metric": metric, "current": value, "threshold": limit},
                    f"{metric} is {_fmt(value, metric)}, {side} {limit:g}",
                )
            )
    return Verdict(findings)


def _first_seen(rule: RuleSpec, snap: RecordSnapshot) -> Verdict:
    cond = rule.condition
    assert isinstance(cond, FirstSeenCondition)
    now_ms = int(snap.observed_at.timestamp() * 1000)
    since = now_ms - int(cond.within_hours * HOUR_MS)
    findings = []
    for entity, record in snap.records.items():
        first = _num(record.get(cond.field))
        if first is None or not since <= first <= now_ms + HOUR_MS:
            continue
        when = utc_iso(datetime.fromtimestamp(first / 1000, UTC))
        findings.append(
            Finding(
                entity,
                {"first_seen": when, "field": cond.field},
                f"new {rule.entity}, first seen {when}",
            )
        )
    return Verdict(findings)


def _same(actual: Any, expected: Any) -> bool:
    """Equal as a person would judge Pendo vs the write-back (1 == 1.0, ' a' == 'a')."""
    if actual is None or expected is None:
        return actual is None and expected is None
    a, b = _num(actual), _num(expected)
    if a is not None and b is not None and not isinstance(actual, str | bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return str(actual).strip().lower() == str(expected).strip().lower()
    return str(actual).strip() == str(expected).strip()


def _field_changed(rule: RuleSpec, snap: RecordSnapshot, state: RuleState) -> Verdict:
    cond = rule.condition
    assert isinstance(cond, FieldChangedCondition)
    if snap.reference is not None:
        return _field_vs_reference(rule, cond, snap)
    return _field_vs_previous(rule, cond, snap, state)


def _field_vs_reference(rule: RuleSpec, cond: FieldChangedCondition, snap: RecordSnapshot):
    """Holding: Pendo's value differs from what the write-back last wrote."""
    findings: list[Finding] = []
    visited: set[int] = set()
    names: dict[int, tuple[str, str | None]] = {}
    assert snap.reference is not None
    for entity, expected_fields in snap.reference.items():
        record = snap.records.get(entity)
        if record is None:
            continue  # not in Pendo (or not fetched): no verdict, state kept
        for name in cond.fields:
            if name not in expected_fields:
                continue
            key = entity_key(entity, name)
            visited.add(key)
            names[key] = (entity, name)
            actual, expected = record.get(name), expected_fields[name]
            if _same(actual, expected):
                continue
            findings.append(
                Finding(
                    entity,
                    {
                        "field": name,
                        "pendo_value": actual,
                        "writeback_value": expected,
                        "reference": snap.reference_label or "writeback_log",
                    },
                    f"custom field {name!r} is {actual!r} in Pendo, but the write-back last "
                    f"wrote {expected!r}: changed by someone else",
                    sub=name,
                    digest=value_digest(actual),
                )
            )
    return Verdict(findings, visited=visited, names=names)


def _field_vs_previous(rule, cond: FieldChangedCondition, snap: RecordSnapshot, state):
    """Change: the owned fields differ from the previous observation (one digest each)."""
    memory: dict[int, int] = {}
    findings = []
    for entity, record in snap.records.items():
        values = {name: record.get(name) for name in cond.fields}
        if all(v is None for v in values.values()):
            continue  # nothing owned is set: nothing to remember (keeps the cursor small)
        key, digest = entity_key(entity), value_digest(values)
        memory[key] = digest
        old = state.memory.get(key)
        if state.primed and old != digest:
            shown = {k: v for k, v in values.items() if v is not None}
            what = "were set" if old is None else "changed since the previous check"
            findings.append(
                Finding(
                    entity,
                    {"fields": shown, "reference": "previous"},
                    f"write-back-owned fields {what} (no write-back log to compare with): "
                    + ", ".join(f"{k}={v!r}" for k, v in shown.items()),
                )
            )
    return Verdict(findings, change=True, memory=memory)


def _count_changed(rule: RuleSpec, snap: RecordSnapshot, state: RuleState) -> Verdict:
    cond = rule.condition
    assert isinstance(cond, CountChangedCondition)
    metric = rule.metric or ""
    memory: dict[int, int] = {}
    findings = []
    for entity, record in snap.records.items():
        value = _num(record.get(metric))
        if value is None:
            continue  # e.g. a cohort never computed: nothing to compare yet
        key, current = entity_key(entity), int(round(value))
        old = state.memory.get(key)
        memory[key] = current if old is None else old
        if not state.primed or old is None:
            continue
        change = current - old
        pct = (change / old * 100) if old else (math.inf if change else 0.0)
        if abs(change) >= max(cond.min_change, 1e-12) and abs(pct) >= cond.min_change_pct:
            # Remember the value reported; below the bar, keep comparing with the last
            # reported one, so that a slow drift adds up to an alert instead of hiding.
            memory[key] = current
            values = {"metric": metric, "previous": old, "current": current, "change": change,
                      "change_pct": None if math.isinf(pct) else _round(pct)}  # fmt: skip
            message = f"{metric} changed from {old:,} to {current:,} ({change:+,})"
            findings.append(Finding(entity, values, message))
    return Verdict(findings, change=True, memory=memory)


def verdict(rule: RuleSpec, snapshot: Snapshot, state: RuleState) -> Verdict:
    """What the rule's condition says about the snapshot."""
    cond = rule.condition
    if isinstance(snapshot, SeriesSnapshot):
        if isinstance(cond, ThresholdCondition | ChangePctCondition):
            return _series_verdict(rule, snapshot)
    elif isinstance(cond, ThresholdCondition):
        return _scalar_threshold(rule, snapshot)
    elif isinstance(cond, FirstSeenCondition):
        return _first_seen(rule, snapshot)
    elif isinstance(cond, FieldChangedCondition):
        return _field_changed(rule, snapshot, state)
    elif isinstance(cond, CountChangedCondition):
        return _count_changed(rule, snapshot, state)
    kind = type(snapshot).__name__
    return Verdict([], skipped=f"condition {cond.type} cannot read a {kind}")


# ------------------------------------------------------------------------------ transitions


@dataclass(frozen=True)
class AlertContext:
    """Where alerts of a rule go and how they are labelled."""

    severity: str
    sinks: tuple[str, ...]
    sensor: str = ""


def _alert(rule: RuleSpec, ctx: AlertContext, snap: Snapshot, finding: Finding, kind: str):
    observed = utc_iso(snap.observed_at)
    return Alert(
        rule=rule.name,
        kind=kind,
        severity=ctx.severity if kind != "cleared" else "info",
        entity_type=rule.entity,
        entity_id=finding.entity_id,
        entity_name=snap.names.get(finding.entity_id),
        message=finding.message,
        observed_at=observed,
        values=finding.values,
        condition=rule.condition.type,
        source=snap.source,
        sensor=ctx.sensor,
        sinks=ctx.sinks,
    )


def _summary(rule: RuleSpec, ctx: AlertContext, snap: Snapshot, ids: Iterable[str], count: int):
    sample = sorted(ids)[:SUMMARY_SAMPLE]
    observed = utc_iso(snap.observed_at)
    return Alert(
        rule=rule.name,
        kind="summary",
        severity=ctx.severity,
        entity_type="rule",
        entity_id=rule.name,
        message=(
            f"{count:,} {rule.entity}s meet the condition at once (more than max_tracked="
            f"{rule.max_tracked:,}): individual alerts are held back until it passes; this "
            f"often means a data delay rather than {count:,} real changes. "
            f"First ones: {', '.join(sample)}"
        ),
        observed_at=observed,
        values={"count": count, "sample": sample},
        condition=rule.condition.type,
        source=snap.source,
        sensor=ctx.sensor,
        sinks=ctx.sinks,
    )


def evaluate(
    rule: RuleSpec,
    snapshot: Snapshot,
    state: RuleState | None,
    ctx: AlertContext,
    log: Callable[[str], None] | None = None,
) -> Evaluation:
    """Alerts for the transitions in ``snapshot`` and the rule's next state."""
    note = log or logging.getLogger(__name__).info
    fingerprint = rule.fingerprint()
    if state is None or state.fingerprint != fingerprint:
        if state is not None:
            note(f"rule {rule.name}: definition changed, its state starts afresh")
        state = RuleState(fingerprint=fingerprint)
    result = verdict(rule, snapshot, state)
    if result.skipped:
        return Evaluation(rule.name, [], state, note=result.skipped)
    if result.change:
        return _apply_changes(rule, snapshot, state, result, ctx, note)
    return _apply_holding(rule, snapshot, state, result, ctx, note)


def _apply_changes(rule, snap, state: RuleState, result: Verdict, ctx, note) -> Evaluation:
    memory = result.memory or {}
    if len(memory) > rule.max_tracked:
        # Keep a stable subset (smallest hashes) so the same entities stay watched.
        keep = sorted(memory)[: rule.max_tracked]
        note(
            f"rule {rule.name}: {len(memory):,} entities to remember, tracking "
            f"{rule.max_tracked:,} (raise max_tracked to watch them all)"
        )
        memory = {k: memory[k] for k in keep}
    if not snap.complete:
        memory = {**state.memory, **memory}
    alerts = [_alert(rule, ctx, snap, f, "fired") for f in result.findings]
    new_state = RuleState(fingerprint=state.fingerprint, active={}, memory=memory, primed=True)
    return Evaluation(rule.name, alerts, new_state, holding=len(alerts), fired=len(alerts))


def _apply_holding(rule, snap, state: RuleState, result: Verdict, ctx, note) -> Evaluation:
    holding = {f.key: f for f in result.findings}
    previous = state.active
    # Keys not looked at this time keep their state: an incremental snapshot, or entities
    # absent from a complete one for which "no data" would still satisfy the condition.
    if result.visited is not None or not snap.complete:
        seen = result.visited if result.visited is not None else set(holding)
        carried = {k: v for k, v in previous.items() if k not in seen and k not in holding}
    elif result.absent_holds:
        present = {entity_key(e) for e in _entities(snap)}
        carried = {k: v for k, v in previous.items() if k not in present}
    else:
        carried = {}
    active = {k: f.digest for k, f in holding.items()} | carried

    if len(active) > rule.max_tracked:
        alerts = []
        if not state.saturated:
            alerts.append(
                _summary(rule, ctx, snap, (f.entity_id for f in holding.values()), len(active))
            )
            note(f"rule {rule.name}: {len(active):,} entities hold at once; summarised")
        new_state = RuleState(state.fingerprint, {}, {}, True, saturated=len(active))
        return Evaluation(rule.name, alerts, new_state, holding=len(active), note="saturated")
    if state.saturated:
        # The storm has passed: whatever still holds was covered by the summary alert.
        note(f"rule {rule.name}: storm over ({len(active):,} still holding, adopted silently)")
        new_state = RuleState(state.fingerprint, active, {}, True)
        return Evaluation(rule.name, [], new_state, holding=len(active), note="storm over")

    fired = [f for k, f in holding.items() if k not in previous or previous[k] != f.digest]
    alerts = [_alert(rule, ctx, snap, f, "fired") for f in fired]
    cleared = [k for k in previous if k not in active]
    if rule.notify_on_clear and cleared:
        ids = result.names or {entity_key(e): (e, None) for e in _entities(snap)}
        for key in cleared:
            if key in ids:
                entity, sub = ids[key]
                values = {"field": sub} if sub else {}
                alerts.append(
                    _alert(
                        rule,
                        ctx,
                        snap,
                        Finding(entity, values, f"{rule.name} no longer holds", sub=sub),
                        "cleared",
                    )
                )
    new_state = RuleState(state.fingerprint, active, {}, True)
    return Evaluation(
        rule.name, alerts, new_state, holding=len(holding), fired=len(fired), cleared=len(cleared)
    )


def _entities(snap: Snapshot) -> Iterable[str]:
    return snap.entities if isinstance(snap, SeriesSnapshot) else snap.records.keys()


def window_start(
    now: datetime, period: str, window: int, include_current: bool, tz: ZoneInfo
) -> datetime:
    """Start of the first bucket of a window of ``window`` buckets ending now (or before)."""
    local = now.astimezone(tz)
    if period == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        # Calendar days, not 24-hour steps: local midnights across DST are 23 or 25 h apart.
        first_day = start.date() - timedelta(days=window - (1 if include_current else 0))
        return datetime(first_day.year, first_day.month, first_day.day, tzinfo=tz)
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start - timedelta(hours=window - (1 if include_current else 0))
