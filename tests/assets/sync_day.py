"""The day the daily-sync tests materialize, the sandbox's frozen clock, and resources
pointed at a sandbox.

A module of its own (not ``conftest``): test files import it by name, and a name shared
with another folder's conftest would resolve to whichever folder pytest put first.
"""

from datetime import UTC, datetime

from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sandbox import SandboxServer
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
DAY = "2026-11-17"  # a Tuesday, complete at NOW in New York


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
