"""The day the daily-sync tests materialize, the sandbox's frozen clock, and resources
pointed at a sandbox.

A module of its own (not ``conftest``): test files import it by name, and a name shared
with another folder's conftest would resolve to whichever folder pytest put first.
"""

from datetime import UTC, datetime

from sandbox_resources import sandbox_resources

from analytics_assets.sandbox import SandboxServer
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
DAY = "2026-11-17"  # a Tuesday, complete at NOW in New York


def make_resources(sandbox: SandboxServer, database: str) -> dict[str, object]:
    return sandbox_resources(sandbox, DuckDBWarehouse(database=database))
