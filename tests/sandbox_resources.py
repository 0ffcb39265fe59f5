"""The product's resources pointed at a sandbox: one definition for every test folder.

A module of its own (not ``conftest``): test files import it by name, and a name shared
with another folder's conftest would resolve to whichever folder pytest put first.
"""

from __future__ import annotations

from typing import Any

from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sandbox import SandboxServer
from analytics_assets.warehouse.base import WarehouseResource


def sandbox_resources(
    sandbox: SandboxServer, warehouse: WarehouseResource, **amplitude: Any
) -> dict[str, Any]:
    """``pendo``, ``pendo_write``, ``amplitude`` and ``warehouse`` for the US region of
    ``sandbox``; ``amplitude`` options (e.g. ``budget_window_scale``) go to its resource."""
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
            **amplitude,
        ),
        "warehouse": warehouse,
    }
