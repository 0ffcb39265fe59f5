"""Where the project keeps its files: the data directory, the warehouse, the Dagster home."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The project's data directory (``ANALYTICS_ASSETS_DATA_DIR``, default ``./data``)."""
    return Path(os.environ.get("ANALYTICS_ASSETS_DATA_DIR", "data")).resolve()


def warehouse_path() -> Path:
    """The DuckDB file (``ANALYTICS_ASSETS_WAREHOUSE``, default under the data directory)."""
    explicit = os.environ.get("ANALYTICS_ASSETS_WAREHOUSE")
    return Path(explicit).resolve() if explicit else data_dir() / "warehouse.duckdb"


def dagster_home() -> Path:
    """The Dagster home the demo leaves behind for ``dagster dev``."""
    return data_dir() / "dagster_home"


def amplitude_budget_ledger() -> str:
    """The SQLite file of Amplitude's budgets shared by every process on this host
    (``AMPLITUDE_BUDGET_LEDGER``, default under the data directory); ``memory`` keeps the
    budgets in each process instead."""
    explicit = os.environ.get("AMPLITUDE_BUDGET_LEDGER", "").strip()
    if explicit.lower() == "memory":
        return "memory"
    return str(Path(explicit).resolve() if explicit else data_dir() / "amplitude-budgets.sqlite")
