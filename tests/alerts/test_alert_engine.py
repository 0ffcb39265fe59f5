"""The condition engine: transitions, re-arming, change conditions, storms. Pure, no I/O."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics_assets.alerts.engine import (
    AlertContext,
    RecordSnapshot,
    SeriesSnapshot,
    evaluate,
    window_start,
)
from analytics_assets.alerts.rules import RuleSpec, parse_rules

NY = "America/New_York"
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # Wednesday, 10:00 in New York
CTX = AlertContext("warning", ("log",), "test_sensor")


def rule(body: str, name: str = "r") -> RuleSpec:
    text = f"version: 1\nrules:\n  - name: {name}\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )
    return parse_rules(text).model.rules[0]


DROP = """\
source: {name: pendo.events, period: day, window: 8}
entity: account
metric: numEvents
condition: {type: change_pct, direction: drop, percent: 50, min_baseline: 10}
"""


def day_starts(days: int = 8, end: datetime = NOW) -> list[int]:
    tz = ZoneInfo(NY)
    first = window_start(end, "day", days, False, tz)
    return [
        int(datetime.combine(first.date() + timedelta(days=i), datetime.min.time(), tz)
            .timestamp() * 1000)
        for i in range(days)
    ]  # fmt: skip


def series(values: dict[str, list[float]], observed: datetime = NOW) -> SeriesSnapshot:
    entities = list(values)
    matrix = np.array([values[e] for e in entities], dtype=np.float32).reshape(len(entities), -1)
    return SeriesSnapshot(
        source="pendo.events",
        observed_at=observed,
        period="day",
        bucket_starts=day_starts(matrix.shape[1]),
        entities=entities,
        metrics={"numEvents": (matrix, None)},
        timezone=NY,
    )


STEADY = [100.0] * 8
QUIET = [100.0] * 7 + [10.0]


def run(spec: RuleSpec, snapshots, state=None):
    fired = []
    for snap in snapshots:
        result = evaluate(spec, snap, state, CTX, log=lambda _: None)
        state = result.state
        fired.append(sorted(a.entity_id for a in result.alerts if a.kind == "fired"))
    return fired, state


def test_a_drop_fires_once_stays_quiet_while_it_holds_and_fires_again_after_clearing() -> None:
    spec = rule(DROP)
    ticks = [
        series({"a": STEADY, "b": STEADY}),  # nothing
        series({"a": QUIET, "b": STEADY}),  # a starts holding
        series({"a": QUIET, "b": STEADY}),  # still holding: no repeat
        series({"a": QUIET, "b": STEADY}),
        series({"a": STEADY, "b": STEADY}),  # cleared: re-armed
        series({"a": QUIET, "b": QUIET}),  # holds again: fires again, with b
    ]
    fired, state = run(spec, ticks)
    assert fired == [[], ["a"], [], [], [], ["a", "b"]]
    assert len(state.active) == 2


def test_alert_carries_values_and_a_readable_message() -> None:
    spec = rule(DROP)
    result = evaluate(spec, series({"acct-1": QUIET}), None, CTX)
    (alert,) = result.alerts
    assert alert.rule == "r" and alert.entity_type == "account" and alert.severity == "warning"
    assert alert.values["current"] == 10 and alert.values["baseline"] == 100
    assert alert.values["change_pct"] == -90
    assert alert.message == (
        "numEvents fell 90% to 10 on 2026-11-17, against 100 per day over the 7 days before"
    )
    assert alert.observed_at == "2026-11-18T15:00:00+00:00" and alert.sinks == ("log",)


def test_small_baselines_and_rises_do_not_count_as_drops() -> None:
    spec = rule(DROP)
    snap = series({"tiny": [4] * 7 + [0], "up": [100] * 7 + [400], "zero": [0] * 8})
    assert evaluate(spec, snap, None, CTX).alerts == []


def test_an_entity_that_disappears_from_a_complete_snapshot_is_re_armed() -> None:
    spec = rule(DROP)
    fired, state = run(spec, [series({"a": QUIET}), series({"b": STEADY}), series({"a": QUIET})])
    assert fired == [["a"], [], ["a"]]


def test_min_zscore_asks_noisy_entities_for_a_bigger_move() -> None:
    spec = rule(DROP.replace("min_baseline: 10}", "min_baseline: 10, min_zscore: 3}"))
    snap = series({"steady": [100, 98, 102, 100, 99, 101, 100, 40],
                   "noisy": [10, 190, 20, 180, 100, 150, 50, 40]})  # fmt: skip
    (alert,) = evaluate(spec, snap, None, CTX).alerts
    assert alert.entity_id == "steady" and alert.values["zscore"] > 3


def test_weekdays_only_skips_weekends_on_both_sides() -> None:
    spec = rule(DROP.replace("min_baseline: 10}", "min_baseline: 10, weekdays_only: true}"))
    monday = datetime(2026, 11, 17, 15, 0, tzinfo=UTC)  # the window ends on Monday the 16th
    starts = day_starts(8, monday)
    weekdays = [datetime.fromtimestamp(s / 1000, ZoneInfo(NY)).weekday() for s in starts]
    values = [10.0 if w >= 5 else 100.0 for w in weekdays]  # quiet weekends, steady weekdays
    snap = series({"a": values}, observed=monday)
    snap.bucket_starts = starts
    assert evaluate(spec, snap, None, CTX).alerts == []  # plain rule would see Sunday's 10


def test_threshold_below_keeps_absent_entities_in_alert() -> None:
    spec = rule(
        """\
        source: {name: pendo.events, window: 3}
        entity: account
        metric: numEvents
        condition: {type: threshold, below: 5}
        """
    )
    fired, state = run(spec, [series({"a": [1, 1, 1]}), series({"b": [9, 9, 9]})])
    assert fired == [["a"], []]
    # "a" has no data at all now: still below 5, so it stays in alert (no repeat later).
    fired, _ = run(spec, [series({"a": [1, 1, 1]})], state)
    assert fired == [[]]


def test_rates_pool_numerators_and_denominators_and_respect_min_samples() -> None:
    spec = rule(
        """\
        source: {name: pendo.guideEvents, period: hour, window: 4, include_current: true}
        entity: guide
        metric: dismissal_rate
        condition: {type: change_pct, direction: rise, percent: 50, current: 2, min_samples: 20}
        """
    )
    dismissed = np.array([[2, 2, 18, 18], [2, 2, 9, 9]], dtype=np.float32)
    seen = np.array([[10, 10, 20, 20], [10, 10, 5, 5]], dtype=np.float32)
    snap = SeriesSnapshot(
        "pendo.guideEvents", NOW, "hour", [0, 3_600_000, 7_200_000, 10_800_000],
        ["g1", "g2"], {"dismissal_rate": (dismissed, seen)}, timezone=NY,
    )  # fmt: skip
    (alert,) = evaluate(spec, snap, None, CTX).alerts  # g2 has only 10 views: not judged
    assert alert.entity_id == "g1"
    assert alert.values["current"] == pytest.approx(0.9) and alert.values["views"] == 40
    assert "dismissal_rate rose 350% to 90% in the last 2 hours, against 20% over" in alert.message


def test_first_seen_holds_within_the_window_and_never_repeats() -> None:
    spec = rule(
        """\
        source: pendo.accounts
        entity: account
        condition: {type: first_seen, within_hours: 24}
        """
    )
    now_ms = int(NOW.timestamp() * 1000)
    fresh = RecordSnapshot("pendo.accounts", NOW, {"new": {"metadata.auto.firstvisit": now_ms}})
    old = RecordSnapshot("pendo.accounts", NOW, {"old": {"metadata.auto.firstvisit": 1}})
    fired, state = run(spec, [fresh, fresh, old])
    assert fired == [["new"], [], []]
    assert state.active == {}  # aged out: the cursor forgets it


FIELDS = """\
source: pendo.accounts
entity: account
condition: {type: field_changed, fields: [plan, arr]}
"""


def records(values: dict[str, dict], reference=None) -> RecordSnapshot:
    return RecordSnapshot("pendo.accounts", NOW, values, reference=reference,
                          reference_label="analytics.writeback_log")  # fmt: skip


def test_field_changed_against_the_writeback_log_fires_per_field_and_per_new_value() -> None:
    spec = rule(FIELDS)
    ref = {"a": {"plan": "pro", "arr": 1200}, "b": {"plan": "free"}}
    same = records({"a": {"plan": "pro", "arr": 1200.0}, "b": {"plan": "free"}}, ref)
    changed = records({"a": {"plan": "starter", "arr": 1200}, "b": {"plan": "free"}}, ref)
    again = records({"a": {"plan": "enterprise", "arr": 1200}, "b": {"plan": "free"}}, ref)
    results = []
    state = None
    for snap in [same, changed, changed, again, same, changed]:
        result = evaluate(spec, snap, state, CTX)
        state = result.state
        results.append([(a.entity_id, a.values["field"], a.values["pendo_value"])
                        for a in result.alerts])  # fmt: skip
    assert results == [
        [],
        [("a", "plan", "starter")],
        [],
        [("a", "plan", "enterprise")],  # changed again to another wrong value
        [],  # the write-back's value is back: re-armed
        [("a", "plan", "starter")],
    ]
    assert "write-back last wrote 'pro'" in evaluate(spec, changed, None, CTX).alerts[0].message


def test_field_changed_without_a_log_compares_with_the_previous_observation() -> None:
    spec = rule(FIELDS)
    first = records({"a": {"plan": "pro"}, "b": {"plan": None, "arr": None}})
    second = records({"a": {"plan": "starter"}, "b": {"plan": None, "arr": None}})
    third = records({"a": {"plan": "starter"}, "b": {"plan": "pro"}})
    fired, state = run(spec, [first, second, second, third])
    assert fired == [[], ["a"], [], ["b"]]  # first observation only primes the memory
    assert len(state.memory) == 2  # only entities with a watched field set are remembered


def test_count_changed_reports_old_and_new_and_primes_on_first_sight() -> None:
    spec = rule(
        """\
        source: amplitude.cohorts
        entity: cohort
        metric: size
        condition: {type: count_changed, min_change: 2}
        """
    )

    def cohorts(**sizes):
        return RecordSnapshot("amplitude.cohorts", NOW, {k: {"size": v} for k, v in sizes.items()})

    snaps = [cohorts(c1=100, c2=5), cohorts(c1=100, c2=6), cohorts(c1=150, c2=8), cohorts(c1=150)]
    results = []
    state = None
    for snap in snaps:
        result = evaluate(spec, snap, state, CTX)
        state = result.state
        results.append([(a.entity_id, a.values["previous"], a.values["current"])
                        for a in result.alerts])  # fmt: skip
    assert results == [[], [], [("c1", 100, 150), ("c2", 5, 8)], []]


def test_a_storm_raises_one_summary_then_adopts_what_still_holds() -> None:
    spec = rule(DROP + "max_tracked: 3\n")
    quiet = series({f"a{i}": QUIET for i in range(10)})
    first = evaluate(spec, quiet, None, CTX)
    assert [a.kind for a in first.alerts] == ["summary"]
    assert first.alerts[0].values["count"] == 10 and first.state.active == {}
    second = evaluate(spec, quiet, first.state, CTX)
    assert second.alerts == []  # the storm goes on: no repeat
    calm = series({"a0": QUIET, "a1": STEADY})
    third = evaluate(spec, calm, second.state, CTX)
    assert third.alerts == [] and len(third.state.active) == 1  # adopted silently
    fourth = evaluate(spec, calm, third.state, CTX)
    assert fourth.alerts == []


def test_notify_on_clear_tells_when_an_entity_recovers() -> None:
    spec = rule(DROP + "notify_on_clear: true\n")
    result = evaluate(spec, series({"a": QUIET}), None, CTX)
    result = evaluate(spec, series({"a": STEADY}), result.state, CTX)
    assert [(a.kind, a.entity_id, a.severity) for a in result.alerts] == [("cleared", "a", "info")]


def test_a_changed_rule_definition_starts_from_a_fresh_state() -> None:
    old = evaluate(rule(DROP), series({"a": QUIET}), None, CTX)
    stricter = rule(DROP.replace("percent: 50", "percent: 60"))
    notes = []
    again = evaluate(stricter, series({"a": QUIET}), old.state, CTX, log=notes.append)
    assert [a.entity_id for a in again.alerts] == ["a"]
    assert notes and "definition changed" in notes[0]


def test_window_start_uses_local_midnights_across_dst() -> None:
    tz = ZoneInfo(NY)
    now = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)  # DST ended on Nov 1
    first = window_start(now, "day", 3, False, tz)
    assert first == datetime(2026, 10, 31, tzinfo=tz)
    assert window_start(now, "hour", 24, True, tz) == datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
