"""The asset checks fail when fed broken data, and pass on sound data, on every backend."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from analytics_assets.warehouse import checks
from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.postgres import PostgresWarehouse

DAY = date(2026, 11, 17)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path) -> WarehouseResource:
    if request.param == "duckdb":
        return DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    # A database of its own on the session's Postgres server (tests/postgres_server.py).
    return PostgresWarehouse(url=request.getfixturevalue("postgres_server").new_database("checks"))


def test_keys_unique_detects_duplicates_and_nulls(warehouse) -> None:
    good = pd.DataFrame({"day": [DAY, DAY], "account_id": ["a", "b"]})
    warehouse.replace_table("pendo.t", good)
    assert checks.check_keys_unique(warehouse, "pendo.t", ["day", "account_id"]).passed
    warehouse.replace_table(
        "pendo.t", pd.DataFrame({"day": [DAY] * 3, "account_id": ["a", "a", None]})
    )
    result = checks.check_keys_unique(warehouse, "pendo.t", ["day", "account_id"])
    assert not result.passed
    assert result.metadata["null_keys"].value == 1
    assert result.metadata["duplicated_keys"].value == 1


def test_keys_unique_is_scoped_to_the_partition(warehouse) -> None:
    frame = pd.DataFrame({"day": [DAY, DAY, date(2026, 11, 18)], "k": ["a", "a", "b"]})
    warehouse.replace_table("pendo.t", frame)
    assert not checks.check_keys_unique(warehouse, "pendo.t", ["k"], ("day", DAY)).passed
    assert checks.check_keys_unique(warehouse, "pendo.t", ["k"], ("day", date(2026, 11, 18))).passed


def test_empty_partition_fails_only_when_the_source_had_data(warehouse) -> None:
    warehouse.replace_table("pendo.t", pd.DataFrame({"day": [date(2026, 11, 18)], "k": ["a"]}))
    assert not checks.check_not_empty(warehouse, "pendo.t", True, ("day", DAY)).passed
    assert checks.check_not_empty(warehouse, "pendo.t", False, ("day", DAY)).passed


def test_account_totals_must_equal_the_sum_of_visitors(warehouse) -> None:
    visitors = pd.DataFrame(
        {
            "day": [DAY] * 3,
            "visitor_id": ["v1", "v2", "v3"],
            "account_id": ["a", "a", "b"],
            "events": [3, 4, 5],
            "minutes": [1, 1, 1],
        }
    )
    warehouse.replace_table("pendo.v", visitors)
    accounts = pd.DataFrame({"day": [DAY, DAY], "account_id": ["a", "b"], "events": [7, 5]})
    warehouse.replace_table("pendo.a", accounts)
    assert checks.check_account_totals(warehouse, "pendo.a", "pendo.v", DAY).passed
    warehouse.replace_table("pendo.a", accounts.assign(events=[7, 6]))
    broken = checks.check_account_totals(warehouse, "pendo.a", "pendo.v", DAY)
    assert not broken.passed
    assert broken.metadata["examples"].value == "b"
    # An account missing on one side is a mismatch too.
    warehouse.replace_table("pendo.a", accounts.head(1))
    assert not checks.check_account_totals(warehouse, "pendo.a", "pendo.v", DAY).passed


def test_cohort_sizes_must_match_the_list(warehouse) -> None:
    members = pd.DataFrame(
        {"day": [DAY] * 3, "cohort_id": ["c1", "c1", "c2"], "user_id": ["u1", "u2", "u3"]}
    )
    warehouse.replace_table("amplitude.m", members)
    assert checks.check_cohort_sizes(warehouse, "amplitude.m", {"c1": 2, "c2": 1}, DAY).passed
    result = checks.check_cohort_sizes(warehouse, "amplitude.m", {"c1": 3, "c2": 1}, DAY)
    assert not result.passed
    assert "c1" in result.metadata["mismatched"].value
    named = checks.check_cohort_sizes(
        warehouse, "amplitude.m", {"c1": 3, "c2": 1}, DAY, names={"c1": "Power users"}
    )
    assert named.metadata["mismatched"].value == "'Power users' (id c1): list 3 vs 2 stored"
