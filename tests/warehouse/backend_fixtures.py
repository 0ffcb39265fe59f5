"""Warehouses of every backend for the tests: a DuckDB file, or a database of its own on
the session's throwaway Postgres server (``tests/postgres_server.py``).

A module of its own (not ``conftest``): test files import it by name, and a name shared
with another folder's conftest would resolve to whichever folder pytest put first.
"""

from __future__ import annotations

import pytest

from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.postgres import PostgresWarehouse

BACKENDS = ["duckdb", "postgres"]
# The raw export's loaders: Postgres's has two parsers (PostgresWarehouse.json_parser).
JSON_LOADERS = ["duckdb", "postgres", "postgres-parsed-by-postgres"]


def make_warehouse(request: pytest.FixtureRequest, backend: str, name: str) -> WarehouseResource:
    """A fresh, empty warehouse of ``backend`` (one of ``JSON_LOADERS``)."""
    if backend == "duckdb":
        tmp = request.getfixturevalue("tmp_path_factory").mktemp(name)
        return DuckDBWarehouse(database=str(tmp / "warehouse.duckdb"))
    server = request.getfixturevalue("postgres_server")
    parser = "postgres" if backend == "postgres-parsed-by-postgres" else "duckdb"
    return PostgresWarehouse(url=server.new_database(name), json_parser=parser)
