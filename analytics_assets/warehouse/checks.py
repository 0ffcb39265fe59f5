"""Asset checks: keys unique and not null, partitions not empty, a day's volume against its
trailing same weekdays, totals that must agree.

Each check is a plain function of the warehouse (and the partition), so tests can
feed it broken tables. Assets declare the specs (``check_specs``) and run the checks
in the same step, where the partition being written is known; the UI shows them
next to each materialization. A daily asset passes its ``partitions_def`` to the specs, so
each result is recorded against the day it checked (the UI names the partition). The SQL
is the subset every backend runs unchanged (``warehouse/base.py``): no ``FILTER``, an
alias on every derived table.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg

from analytics_assets.warehouse.base import WarehouseResource

Partitions = dg.PartitionsDefinition | None

KEYS_UNIQUE = "keys_unique_and_not_null"
NOT_EMPTY = "partition_not_empty_when_source_had_data"
ACCOUNT_TOTALS = "account_totals_equal_sum_of_visitors"
COHORT_SIZES = "cohort_sizes_match_list"
VOLUME = "rows_within_range_of_same_weekdays"

# The volume check: a day's rows against the median of the same weekday in the previous
# VOLUME_WEEKS weeks (weekly seasonality is the strongest pattern in product usage). Below
# half of it is an error (the drop a lost page or a partial answer makes; a 5x drop of
# real usage is not a thing a product sees overnight); above three times it a warning
# (launches and campaigns are real). Fewer than VOLUME_MIN_HISTORY such days: no verdict.
VOLUME_WEEKS = 4
VOLUME_MIN_HISTORY = 2
VOLUME_LOW, VOLUME_HIGH = 0.5, 3.0


def _where(partition: tuple[str, Any] | None) -> tuple[str, list[Any]]:
    if partition is None:
        return "TRUE", []
    return f"{partition[0]} = ?", [partition[1]]


def check_spec(
    name: str,
    asset_key: dg.AssetKey,
    description: str,
    partitions_def: Partitions = None,
    *,
    blocking: bool = False,
) -> dg.AssetCheckSpec:
    """The one way the project declares a check. A daily asset's checks take its
    ``partitions_def`` so results name the partition; Dagster 1.13 marks that argument as
    preview and warns once per spec, which would fill every code-location load's log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name,
            asset=asset_key,
            description=description,
            partitions_def=partitions_def,
            blocking=blocking,
        )


def keys_spec(
    asset_key: dg.AssetKey, keys: Sequence[str], partitions_def: Partitions = None
) -> dg.AssetCheckSpec:
    return check_spec(
        KEYS_UNIQUE,
        asset_key,
        f"({', '.join(keys)}) is unique and never null",
        partitions_def,
    )


def not_empty_spec(asset_key: dg.AssetKey, partitions_def: Partitions = None) -> dg.AssetCheckSpec:
    return check_spec(
        NOT_EMPTY,
        asset_key,
        "The partition has rows whenever the source reported data for the day",
        partitions_def,
    )


def volume_spec(
    asset_key: dg.AssetKey, partitions_def: Partitions = None, what: str = "rows"
) -> dg.AssetCheckSpec:
    return check_spec(
        VOLUME,
        asset_key,
        (
            f"The day's {what} are at least {VOLUME_LOW:g}x (error) and at most {VOLUME_HIGH:g}x "
            f"(warning) the median of the same weekday over the previous {VOLUME_WEEKS} weeks"
        ),
        partitions_def,
    )


def check_volume(
    warehouse: WarehouseResource,
    table: str,
    day: date,
    *,
    column: str = "day",
    measure: str = "count(*)",
) -> dg.AssetCheckResult:
    """The partition's rows (or ``measure``, an aggregate such as ``sum(active_users)`` for
    a table of one row a day) against the median of the same weekday's partitions before
    it."""
    weeks = [day - timedelta(weeks=n) for n in range(1, VOLUME_WEEKS + 1)]
    marks = ", ".join("?" for _ in weeks)
    counted = warehouse.records(
        f"SELECT {column} AS d, {measure} AS n FROM {table} WHERE {column} IN (?, {marks}) "
        f"GROUP BY {column}",
        [day, *weeks],
    )
    by_day = {_as_date(r["d"]): _number(r["n"]) for r in counted}
    rows = by_day.pop(day, 0)
    history = [by_day[d] for d in weeks if d in by_day]
    label = "rows" if measure == "count(*)" else measure
    metadata: dict[str, Any] = {label: rows, "same_weekdays_found": len(history)}
    if len(history) < VOLUME_MIN_HISTORY:
        return dg.AssetCheckResult(
            check_name=VOLUME,
            passed=True,
            metadata={**metadata, "verdict": "not enough history yet"},
        )
    median = statistics.median(history)
    ratio = rows / median if median else (1.0 if rows == 0 else float("inf"))
    metadata |= {"median_of_same_weekdays": median, "ratio": round(ratio, 3)}
    if ratio < VOLUME_LOW:
        return dg.AssetCheckResult(check_name=VOLUME, passed=False, metadata=metadata)
    return dg.AssetCheckResult(
        check_name=VOLUME,
        passed=ratio <= VOLUME_HIGH,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def check_none_match(
    warehouse: WarehouseResource,
    table: str,
    check_name: str,
    condition: str,
    params: Sequence[Any],
    partition: tuple[str, Any],
) -> dg.AssetCheckResult:
    """Passes when no row of the partition matches ``condition`` (portable SQL, ``?``
    placeholders for ``params``); the metadata says how many did."""
    where, where_params = _where(partition)
    (row,) = warehouse.records(
        f"SELECT count(*) AS n FROM {table} WHERE {where} AND ({condition})",
        [*where_params, *params],
    )
    return dg.AssetCheckResult(
        check_name=check_name, passed=int(row["n"]) == 0, metadata={"rows_matching": int(row["n"])}
    )


def _number(value: Any) -> int | float:
    """A count or sum as the backend returns it (int, float, Decimal, None) as a plain
    number: an int when it is whole, so metadata reads 120, not 120.0."""
    number = float(value or 0)
    return int(number) if number.is_integer() else number


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def check_keys_unique(
    warehouse: WarehouseResource,
    table: str,
    keys: Sequence[str],
    partition: tuple[str, Any] | None = None,
) -> dg.AssetCheckResult:
    where, params = _where(partition)
    nulls = " OR ".join(f"{k} IS NULL" for k in keys)
    # Distinct hashes first: a set of 64-bit numbers is far smaller than a GROUP BY over
    # the key columns (the peak of the Pendo pull was this check). As many distinct
    # hashes as rows proves the keys unique; fewer is a duplicate or a collision, which
    # only the exact GROUP BY tells apart.
    stats = warehouse.records(
        f"SELECT count(*) AS n_rows, count(CASE WHEN {nulls} THEN 1 END) AS null_keys, "
        f"count(DISTINCT {warehouse.row_hash(keys)}) AS hashes FROM {table} WHERE {where}",
        params,
    )[0]
    null_keys, duplicated = int(stats["null_keys"]), 0
    if int(stats["hashes"]) < int(stats["n_rows"]):
        key_list = ", ".join(keys)
        duplicated = int(
            warehouse.records(
                f"SELECT count(*) AS n FROM (SELECT {key_list} FROM {table} WHERE {where} "
                f"GROUP BY {key_list} HAVING count(*) > 1) AS dup",
                params,
            )[0]["n"]
        )
    return dg.AssetCheckResult(
        check_name=KEYS_UNIQUE,
        passed=null_keys == 0 and duplicated == 0,
        metadata={
            "rows": int(stats["n_rows"]),
            "null_keys": null_keys,
            "duplicated_keys": duplicated,
            "keys": ", ".join(keys),
        },
    )


def check_not_empty(
    warehouse: WarehouseResource,
    table: str,
    source_had_data: bool,
    partition: tuple[str, Any] | None = None,
) -> dg.AssetCheckResult:
    where, params = _where(partition)
    counted = warehouse.records(f"SELECT count(*) AS n FROM {table} WHERE {where}", params)
    rows = int(counted[0]["n"])
    return dg.AssetCheckResult(
        check_name=NOT_EMPTY,
        passed=rows > 0 or not source_had_data,
        metadata={"rows": rows, "source_had_data": source_had_data},
    )


def account_totals_spec(
    asset_key: dg.AssetKey, partitions_def: Partitions = None
) -> dg.AssetCheckSpec:
    return check_spec(
        ACCOUNT_TOTALS,
        asset_key,
        "Each account's Pendo events and minutes equal the sum over its visitors",
        partitions_def,
    )


def check_account_totals(
    warehouse: WarehouseResource, account_table: str, visitor_table: str, day: Any
) -> dg.AssetCheckResult:
    mismatched = warehouse.records(
        f"""
        WITH v AS (
            SELECT account_id, sum(events) AS events, sum(minutes) AS minutes
            FROM {visitor_table} WHERE day = ? AND account_id <> '' GROUP BY account_id
        )
        SELECT a.account_id, a.events AS account_events, v.events AS visitor_events
        FROM {account_table} a FULL OUTER JOIN v USING (account_id)
        WHERE a.day = ? OR a.day IS NULL
        """,
        [day, day],
    )
    bad = [
        r
        for r in mismatched
        if r["account_events"] is None
        or r["visitor_events"] is None
        or r["account_events"] != r["visitor_events"]
    ]
    return dg.AssetCheckResult(
        check_name=ACCOUNT_TOTALS,
        passed=not bad,
        metadata={
            "accounts_checked": len(mismatched),
            "accounts_mismatched": len(bad),
            "examples": ", ".join(str(r["account_id"]) for r in bad[:5]) or "none",
        },
    )


def cohort_sizes_spec(asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    return check_spec(
        COHORT_SIZES,
        asset_key,
        "Each snapshotted cohort has as many members as the cohort list says",
    )


def check_cohort_sizes(
    warehouse: WarehouseResource,
    membership_table: str,
    expected: dict[str, int | None],
    day: Any,
    *,
    day_column: str = "day",
    names: dict[str, str] | None = None,
) -> dg.AssetCheckResult:
    """Each cohort's stored members against the size the cohort list gave; a mismatch is
    named by the cohort's name (from ``names``) beside its id."""
    counts = warehouse.records(
        f"SELECT cohort_id, count(*) AS members FROM {membership_table} WHERE {day_column} = ? "
        "GROUP BY cohort_id",
        [day],
    )
    actual = {r["cohort_id"]: int(r["members"]) for r in counts}
    bad = {
        cid: (size, actual.get(cid, 0))
        for cid, size in expected.items()
        if size is not None and actual.get(cid, 0) != size
    }
    return dg.AssetCheckResult(
        check_name=COHORT_SIZES,
        passed=not bad,
        metadata={
            "cohorts_checked": len(expected),
            "mismatched": ", ".join(
                f"{_named(c, names)}: list {e} vs {a} stored" for c, (e, a) in bad.items()
            )
            or "none",
        },
    )


def _named(item_id: str, names: dict[str, str] | None) -> str:
    """``'Power users' (id abc)`` when the name is known, else the id."""
    name = (names or {}).get(item_id)
    return f"{name!r} (id {item_id})" if name else item_id
