"""Daily partitions in the Pendo subscription's time zone, and the windows of a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from analytics_assets.sync_config import load_sync_config


def daily_partitions() -> dg.DailyPartitionsDefinition:
    config = load_sync_config()
    return dg.DailyPartitionsDefinition(
        start_date=config.start_date.isoformat(), timezone=config.timezone
    )


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


def day_window(partition_key: str, timezone: str | None = None) -> DayWindow:
    tz = ZoneInfo(timezone or load_sync_config().timezone)
    day = date.fromisoformat(partition_key)
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz)
    return DayWindow(day, start, end)
