"""The volume check: a day's rows against the median of the same weekday before it, on
every backend. A 5x drop fails; a spike warns; too little history gives no verdict."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pandas as pd

from analytics_assets.warehouse import checks
from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.types import DATE, INT, Column

DAY = date(2026, 11, 17)  # a Tuesday
TABLE = "pendo.usage"
COLUMNS = [Column("day", DATE), Column("n", INT)]


def _fill(warehouse: WarehouseResource, rows_by_day: dict[date, int]) -> None:
    frame = pd.DataFrame(
        [{"day": d, "n": i} for d, rows in rows_by_day.items() for i in range(rows)]
    )
    warehouse.append(TABLE, frame, columns=COLUMNS)


def _weeks_before(*rows: int) -> dict[date, int]:
    return {DAY - timedelta(weeks=n): r for n, r in enumerate(rows, start=1)}


def test_a_five_fold_drop_fails(warehouse: WarehouseResource) -> None:
    # Other weekdays are busier or emptier: only the same weekday counts.
    _fill(warehouse, {**_weeks_before(100, 90, 110, 100), DAY: 20, DAY - timedelta(days=1): 5})
    result = checks.check_volume(warehouse, TABLE, DAY)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["median_of_same_weekdays"].value == 100
    assert result.metadata["ratio"].value == 0.2


def test_a_normal_day_passes_and_a_spike_warns(warehouse: WarehouseResource) -> None:
    _fill(warehouse, {**_weeks_before(100, 90, 110), DAY: 80})
    assert checks.check_volume(warehouse, TABLE, DAY).passed
    _fill(warehouse, {DAY: 300})  # 380 rows now
    spike = checks.check_volume(warehouse, TABLE, DAY)
    assert not spike.passed and spike.severity == dg.AssetCheckSeverity.WARN


def test_without_two_same_weekdays_there_is_no_verdict(warehouse: WarehouseResource) -> None:
    _fill(warehouse, {DAY - timedelta(weeks=1): 100, DAY: 1})
    result = checks.check_volume(warehouse, TABLE, DAY)
    assert result.passed
    assert result.metadata["verdict"].value == "not enough history yet"


def test_a_table_read_back_without_declared_columns_shows_the_one_type_vocabulary(
    warehouse: WarehouseResource,
) -> None:
    """Assets that do not pass their columns still show int/string/date, never a backend's
    BIGINT/VARCHAR: one vocabulary across the catalog."""
    from analytics_assets.warehouse.loading import table_metadata

    _fill(warehouse, {DAY: 1})
    schema = table_metadata(warehouse, TABLE)["dagster/column_schema"]
    assert {c.name: c.type for c in schema.columns} == {"day": "date", "n": "int"}
