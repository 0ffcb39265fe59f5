"""Daily partitions in the Pendo subscription's time zone, and the windows of a day.

A ``DailyCalendar`` is handed to every factory of daily assets (by the components, or by a
user calling the factories in Python), so the partitions, the backfill policy and the day
windows a step asks the APIs for always agree, and no module reads the time zone on its own.

A step covers one day (the schedule's run) or, in a backfill, a range of days: the
calendar's ``BackfillPolicy`` puts up to ``days_per_run`` days in one run, and ``windows``
gives the step its days either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

DEFAULT_TIMEZONE = "America/New_York"
DEFAULT_START_DATE = date(2026, 9, 1)
#: When a day is synced, local time: after Amplitude's ~2 h export lag and Pendo's late events.
DAILY_CRON = "0 4 * * *"
#: When the catalogs and snapshots are refreshed, before the daily sync reads them.
CATALOG_CRON = "30 3 * * *"
#: Every asset is refreshed once a day (the schedules above), so it is fresh while its
#: newest materialization is under a day old: a warning after 25 h (the run is late), a
#: failure after 28 h (a day's run and its retries were missed).
FRESHNESS_POLICY = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=28), warn_window=timedelta(hours=25)
)
#: Days a backfill run covers at most. Pendo asks aggregations of at most 30 days (contract
#: section 2, "Time windows"), and a run's days share each Pendo aggregation; Amplitude's
#: Dashboard queries cost per day whatever their width, and its export goes day by day.
DAYS_PER_BACKFILL_RUN = 30


@contextmanager
def beta_backfill_policy() -> Iterator[None]:
    """Around an ``@asset`` that passes ``backfill_policy``: Dagster 1.13 marks the parameter
    beta and warns once per asset at every code-location load, which says nothing new.
    Silenced per call, not process-wide, so a project that imports the library keeps its
    own warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning
        )
        yield


@dataclass(frozen=True)
class DayWindow:
    """One partition's local day, in the forms each API wants."""

    day: date
    start: datetime  # local midnight (aware)
    end: datetime  # next local midnight (aware); 23 or 25 hours away on DST days

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    def utc_hours(self) -> tuple[datetime, datetime]:
        """First and last UTC hour (inclusive) covering the local day: Amplitude's export."""
        first = self.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        last_moment = self.end.astimezone(UTC) - timedelta(microseconds=1)
        return first, last_moment.replace(minute=0, second=0, microsecond=0)


def check_timezone(timezone: str) -> str:
    """``timezone`` if it is an IANA name, else a ValueError that names it."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {timezone!r}: use an IANA name such as 'America/New_York'"
        ) from exc
    return timezone


def day_window(partition_key: str, timezone: str) -> DayWindow:
    tz = ZoneInfo(timezone)
    day = date.fromisoformat(partition_key)
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz)
    return DayWindow(day, start, end)


@dataclass(frozen=True)
class DailyCalendar:
    """The subscription's days: its time zone and the first daily partition."""

    timezone: str = DEFAULT_TIMEZONE
    start_date: date = DEFAULT_START_DATE
    #: Days one backfill run covers at most (1: a run per day, as before ranges).
    days_per_run: int = DAYS_PER_BACKFILL_RUN
    _partitions: dg.DailyPartitionsDefinition = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_timezone(self.timezone)
        if isinstance(self.days_per_run, bool) or not isinstance(self.days_per_run, int):
            raise ValueError(f"days_per_run must be a whole number, got {self.days_per_run!r}")
        if self.days_per_run < 1:
            raise ValueError(f"days_per_run must be at least 1, got {self.days_per_run}")
        start = self.start_date
        if isinstance(start, str):
            start = date.fromisoformat(start)
            object.__setattr__(self, "start_date", start)
        # One definition object per calendar: every asset of a job shares it.
        object.__setattr__(
            self,
            "_partitions",
            dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=self.timezone),
        )

    @property
    def partitions_def(self) -> dg.DailyPartitionsDefinition:
        return self._partitions

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        """Every daily asset's policy: a job's backfill runs as ranges only when all its
        partitioned assets share one (Dagster takes the smallest)."""
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=self.days_per_run)

    def window(self, partition_key: str) -> DayWindow:
        """The local day of a partition key (``YYYY-MM-DD``)."""
        return day_window(partition_key, self.timezone)

    def windows(self, context: dg.AssetExecutionContext) -> list[DayWindow]:
        """The days of a step, oldest first: its partition, or its backfill range."""
        return [self.window(key) for key in context.partition_keys]
