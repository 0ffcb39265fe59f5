"""When ``amplitude/cohort_membership`` fetches: the day Amplitude's membership is as of
(the cohorts' newest lastComputed, in the sync's time zone), the allowed lag, and its
setting in the sync config."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from analytics_assets.assets.amplitude import membership_as_of, snapshot_lag_days
from analytics_assets.sync_config import SyncConfigError, parse_sync_config

NY = "America/New_York"
# 2026-11-18 03:30 UTC is still 2026-11-17 (22:30) in New York.
LATE_EVENING = int(datetime(2026, 11, 18, 3, 30, tzinfo=UTC).timestamp())
MORNING = int(datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp())


def test_as_of_is_the_newest_last_computed_in_the_sync_time_zone() -> None:
    cohorts = [
        {"id": "a", "lastComputed": LATE_EVENING},
        {"id": "b", "lastComputed": MORNING},
        {"id": "c", "lastComputed": None},  # never computed
    ]
    as_of, basis = membership_as_of(cohorts, NY)
    assert as_of == datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
    assert as_of.date() == date(2026, 11, 18) and as_of.utcoffset().total_seconds() == -5 * 3600
    assert "lastComputed" in basis
    # The local day decides, not the UTC day.
    as_of, _ = membership_as_of([{"id": "a", "lastComputed": LATE_EVENING}], NY)
    assert as_of.date() == date(2026, 11, 17)


def test_as_of_falls_back_to_the_wall_clock_without_last_computed() -> None:
    now = datetime(2026, 11, 18, 3, 30, tzinfo=UTC)
    as_of, basis = membership_as_of([{"id": "a", "lastComputed": None}, {"id": "b"}], NY, now)
    assert as_of == now and as_of.date() == date(2026, 11, 17)
    assert "wall clock" in basis
    as_of, _ = membership_as_of([], NY)  # the real clock
    assert abs((as_of - datetime.now(UTC)).total_seconds()) < 60


def test_lag_counts_local_days() -> None:
    as_of, _ = membership_as_of([{"lastComputed": MORNING}], NY)
    assert snapshot_lag_days(date(2026, 11, 18), as_of) == 0
    assert snapshot_lag_days(date(2026, 11, 17), as_of) == 1  # the 04:00 run: fetched
    assert snapshot_lag_days(date(2026, 11, 10), as_of) == 8  # a backfill: skipped
    assert snapshot_lag_days(date(2026, 11, 19), as_of) == -1


def test_max_lag_defaults_to_one_day_and_is_configurable() -> None:
    assert parse_sync_config({}).amplitude_cohort_snapshot_max_lag_days == 1
    config = parse_sync_config({"amplitude": {"cohort_snapshot_max_lag_days": 3}})
    assert config.amplitude_cohort_snapshot_max_lag_days == 3
    config = parse_sync_config({"amplitude": {"cohort_snapshot_max_lag_days": 0}})
    assert config.amplitude_cohort_snapshot_max_lag_days == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, None, [1]])
def test_a_bad_max_lag_is_refused_with_the_field_named(bad: object) -> None:
    with pytest.raises(SyncConfigError) as error:
        parse_sync_config({"amplitude": {"cohort_snapshot_max_lag_days": bad}}, "sync.yaml")
    message = str(error.value)
    assert message.startswith("sync.yaml: amplitude.cohort_snapshot_max_lag_days must be")
    assert "whole number of days, 0 or more" in message and repr(bad) in message
