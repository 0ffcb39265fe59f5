"""Fixtures for the daily-sync tests: a sandbox with a frozen clock, resources pointed at
it, and a fresh warehouse per test module."""

from __future__ import annotations

import pytest
from sync_day import NOW, make_resources

from analytics_assets.sandbox import SandboxConfig, SandboxServer


@pytest.fixture(scope="module")
def sandbox():
    config = SandboxConfig(seed=11, scale=2, now=NOW, amplitude_timezone="America/New_York")
    with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def warehouse_file(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def resources(sandbox, warehouse_file):
    return make_resources(sandbox, warehouse_file)
