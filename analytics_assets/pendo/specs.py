"""What one Pendo asset asks for and how each answer row becomes a table row.

The specs are plain data: ``pendo.assets`` turns each into a Dagster asset with the
project's conventions (keys, tags, pool, checks, metadata), so a module that adds tables
(``visitor_usage``, ``catalog_more``) only says what to ask and what to keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from analytics_assets.pendo.pipeline import Agg, AppIds, Pipeline, TimeSeries
from analytics_assets.warehouse.loading import Column
from analytics_assets.warehouse.types import DATE

if TYPE_CHECKING:
    from analytics_assets.pendo.arrow_rows import ArrowRows

Row = dict[str, Any]
Rows = Callable[[Any], Iterable[Row]]
DailyPipeline = Callable[[TimeSeries, AppIds], Pipeline]
# Given the step's client, a function that completes a table row (e.g. a name from a
# catalog list fetched once per step).
Enrich = Callable[[Any], Callable[[Row], Row]]

DAY = Column("day", DATE, "The subscription-local day (the partition)")


def ms(value: Any) -> datetime | None:
    """An epoch-milliseconds value as an aware UTC datetime (None when absent or odd)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def usage_fields() -> dict[str, Any]:
    return {"events": Agg.sum("numEvents"), "minutes": Agg.sum("numMinutes")}


@dataclass(frozen=True)
class DailySpec:
    """A daily table: one aggregation per partition, each answer row one table row."""

    description: str
    columns: list[Column]
    keys: list[str]
    pipeline: DailyPipeline
    to_row: Callable[[Row], Row]
    period: str = "dayRange"
    deps: tuple[str, ...] = ()
    totals_of: str | None = None  # the visitor table whose sums this account table must equal
    # The catalog whose names the materialization shows beside the day's busiest ids.
    names_from: str | None = None
    enrich: Enrich | None = None
    # The same rows read as Arrow columns (big tables; no enrich): the step's fast path.
    arrow: ArrowRows | None = None
    # Days one aggregation of a backfill range asks at most, below the period's cap: a
    # visitor-level answer is rows per visitor and item, so big that a month nears
    # Pendo's 4 GB cap at 100,000 accounts.
    max_days: int | None = None


@dataclass(frozen=True)
class SnapshotSpec:
    """An unpartitioned table refreshed whole from what ``rows(client)`` streams."""

    description: str
    columns: list[Column]
    keys: list[str]
    rows: Rows
    deps: tuple[str, ...] = ()
