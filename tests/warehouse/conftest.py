"""The ``warehouse`` fixture of the interface tests: each test runs on every backend
(DuckDB, Postgres, Snowflake on fakesnow)."""

from __future__ import annotations

import pytest
from backend_fixtures import BACKENDS, JSON_LOADERS, make_warehouse

from analytics_assets.warehouse.base import WarehouseResource


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest) -> WarehouseResource:
    return make_warehouse(request, request.param, "backends")


@pytest.fixture(params=JSON_LOADERS)
def loader(request: pytest.FixtureRequest) -> WarehouseResource:
    """A warehouse for the raw export's load: every backend, and each Postgres parser."""
    return make_warehouse(request, request.param, "loads")


def pytest_configure(config: pytest.Config) -> None:
    # fakesnow's own note about how it reads DuckDB's answers: nothing the tests act on.
    config.addinivalue_line(
        "filterwarnings", "ignore:Arrow output on a DB-API result:UserWarning:fakesnow"
    )
