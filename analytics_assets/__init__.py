"""analytics_assets: Pendo and Amplitude in sync with a warehouse, as Dagster components.

In YAML (``defs.yaml`` of a ``dg`` project)::

    type: analytics_assets.PendoSync
    attributes:
      key_env_var: PENDO_INTEGRATION_KEY
      timezone: America/New_York

In Python, the same assets come from the factories (``pendo_assets``, ``amplitude_assets``,
``analytics_assets``) with an ``AssetNaming`` (key prefix, group, table schema) and a
``DailyCalendar``. Names are imported on first use, so that importing a plain client
(``analytics_assets.pendo.client``) does not import Dagster.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "API_RETRY_POLICY": "analytics_assets.api_session",
    "AccountAnalytics": "analytics_assets.analytics.component",
    "AmplitudeResource": "analytics_assets.amplitude.resource",
    "AmplitudeSync": "analytics_assets.amplitude.component",
    "AssetNaming": "analytics_assets.naming",
    "ChangeAlerts": "analytics_assets.alerts.component",
    "CrmToPendo": "analytics_assets.crm_writeback.component",
    "DailyCalendar": "analytics_assets.partitions",
    "DuckDBWarehouse": "analytics_assets.warehouse.duckdb",
    "PendoResource": "analytics_assets.pendo.resource",
    "PostgresWarehouse": "analytics_assets.warehouse.postgres",
    "PendoSync": "analytics_assets.pendo.component",
    "SnowflakeWarehouse": "analytics_assets.warehouse.snowflake",
    "SyncJobs": "analytics_assets.jobs",
    "Warehouse": "analytics_assets.warehouse.component",
    "WarehouseError": "analytics_assets.warehouse.base",
    "WarehouseResource": "analytics_assets.warehouse.base",
    "amplitude_assets": "analytics_assets.amplitude.assets",
    "analytics_assets": "analytics_assets.analytics.assets",
    "pendo_assets": "analytics_assets.pendo.assets",
    "sync_jobs": "analytics_assets.jobs",
    "warehouse_from_url": "analytics_assets.warehouse.base",
    "with_warehouse_kind": "analytics_assets.warehouse.asset_kinds",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analytics_assets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
