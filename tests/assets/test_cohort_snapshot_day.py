"""Which day an ``amplitude/cohort_membership`` snapshot is of: the local day of the
cohorts' newest lastComputed (read from Amplitude, not the local clock), in the sync's
time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime

from analytics_assets.amplitude.assets import membership_as_of

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
