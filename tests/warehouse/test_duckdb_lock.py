"""A DuckDB warehouse file another process keeps open: the run fails naming the holder and
what to do, instead of DuckDB's bare IOException."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analytics_assets.warehouse import duckdb as duckdb_backend
from analytics_assets.warehouse.base import WarehouseError
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""


def test_a_file_locked_by_another_process_names_the_holder(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "warehouse.duckdb"
    DuckDBWarehouse(database=str(path)).records("SELECT 1 AS one")  # the file exists
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        monkeypatch.setattr(duckdb_backend, "ATTACH_RETRIES", 1)  # not ~100 s in a test
        with pytest.raises(WarehouseError) as caught:
            DuckDBWarehouse(database=str(path)).records("SELECT 1 AS one")
        text = str(caught.value)
        assert f"PID {holder.pid}" in text
        assert "analytics-assets sql" in text and str(path) in text
    finally:
        holder.kill()
        holder.wait()
