"""Asset checks: keys unique and not null, partitions not empty, totals that must agree.

Each check is a plain function of the warehouse (and the partition), so tests can
feed it broken tables. Assets declare the specs (``check_specs``) and run the checks
in the same step, where the partition being written is known; the UI shows them
next to each materialization. The SQL is the subset every backend runs unchanged
(``warehouse/base.py``): no ``FILTER``, an alias on every derived table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from analytics_assets.warehouse.base import WarehouseResource

KEYS_UNIQUE = "keys_unique_and_not_null"
NOT_EMPTY = "partition_not_empty_when_source_had_data"
ACCOUNT_TOTALS = "account_totals_equal_sum_of_visitors"
COHORT_SIZES = "cohort_sizes_match_list"


def _where(partition: tuple[str, Any] | None) -> tuple[str, list[Any]]:
    if partition is None:
        return "TRUE", []
    return f"{partition[0]} = ?", [partition[1]]


def keys_spec(asset_key: dg.AssetKey, keys: Sequence[str]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        KEYS_UNIQUE, asset=asset_key, description=f"({', '.join(keys)}) is unique and never null"
    )


def not_empty_spec(asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NOT_EMPTY,
        asset=asset_key,
        description="The partition has rows whenever the source reported data for the day",
    )


def check_keys_unique(
    warehouse: WarehouseResource,
    table: str,
    keys: Sequence[str],
    partition: tuple[str, Any] | None = None,
) -> dg.AssetCheckResult:
    where, params = _where(partition)
    key_list = ", ".join(keys)
    nulls = " OR ".join(f"{k} IS NULL" for k in keys)
    stats = warehouse.records(
        f"SELECT count(*) AS n_rows, count(CASE WHEN {nulls} THEN 1 END) AS null_keys, "
        f"(SELECT count(*) FROM (SELECT {key_list} FROM {table} WHERE {where} "
        f"GROUP BY {key_list} HAVING count(*) > 1) AS dup) AS duplicated_keys "
        f"FROM {table} WHERE {where}",
        params + params,
    )[0]
    null_keys, duplicated = int(stats["null_keys"]), int(stats["duplicated_keys"])
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


def account_totals_spec(asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        ACCOUNT_TOTALS,
        asset=asset_key,
        description="Each account's Pendo events and minutes equal the sum over its visitors",
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
    return dg.AssetCheckSpec(
        COHORT_SIZES,
        asset=asset_key,
        description="Each snapshotted cohort has as many members as the cohort list says",
    )


def check_cohort_sizes(
    warehouse: WarehouseResource,
    membership_table: str,
    expected: dict[str, int | None],
    day: Any,
    *,
    day_column: str = "day",
) -> dg.AssetCheckResult:
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
            "mismatched": ", ".join(f"{c}: list {e} vs {a}" for c, (e, a) in bad.items()) or "none",
        },
    )
