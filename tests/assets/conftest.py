"""Fixtures for the daily-sync tests: a sandbox with a frozen clock, resources pointed at
it, and a fresh warehouse per test module."""

from __future__ import annotations

import pytest
from sync_day import NOW

from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture(scope="module")
def sandbox():
    config = SandboxConfig(seed=11, scale=2, now=NOW, amplitude_timezone="America/New_York")
    with SandboxServer(config) as server:
        yield server


def make_resources(sandbox: SandboxServer, database: str) -> dict[str, object]:
    pendo_keys = sandbox.config.pendo_keys["us"]
    amplitude_keys = sandbox.config.amplitude_keys["us"]
    base = sandbox.urls.base
    return {
        "pendo": PendoResource(integration_key=pendo_keys.read, base_url=base, rate_per_second=50),
        "pendo_write": PendoResource(
            integration_key=pendo_keys.write, base_url=base, rate_per_second=50
        ),
        "amplitude": AmplitudeResource(
            api_key=amplitude_keys.api_key,
            secret_key=amplitude_keys.secret_key,
            base_url=base,
            ingestion_url=base,
            profile_url=base,
        ),
        "warehouse": DuckDBWarehouse(database=database),
    }


@pytest.fixture(scope="module")
def warehouse_file(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def resources(sandbox, warehouse_file):
    return make_resources(sandbox, warehouse_file)
