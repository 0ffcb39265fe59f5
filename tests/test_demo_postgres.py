"""`ANALYTICS_ASSETS_WAREHOUSE=postgresql://...` makes `analytics-assets demo` fill Postgres
with the same tables and row counts as the DuckDB default, and the URL's password never
reaches the demo's output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_assets.warehouse.base import WarehouseResource, warehouse_from_url

# Two demos side by side (900 s allowed each): more than the default 300.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PASSWORD = "s3cret-never-printed"


def _demo(data: Path, warehouse: str | None) -> subprocess.Popen[str]:
    env = {**os.environ, "ANALYTICS_ASSETS_DATA_DIR": str(data)}
    env.pop("ANALYTICS_ASSETS_WAREHOUSE", None)
    if warehouse:
        env["ANALYTICS_ASSETS_WAREHOUSE"] = warehouse
    # Scale 1 (100 accounts), not the demo's 5: the same tables, runs and code paths on
    # both backends, in a fifth of the rows (the browser test runs the demo at scale 5).
    return subprocess.Popen(
        [sys.executable, "-m", "analytics_assets.cli", "demo", "--days", "1", "--scale", "1"],
        cwd=data,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(demo: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = demo.communicate(timeout=900)
    assert demo.returncode == 0, out[-3000:] + err[-3000:]
    return out, err


def _counts(warehouse: WarehouseResource) -> dict[str, int]:
    return {
        table: int(warehouse.records(f"SELECT count(*) AS n FROM {table}")[0]["n"])
        for table in warehouse.tables()
    }


def test_the_demo_fills_postgres_as_it_fills_duckdb(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.new_database("demo", password=PASSWORD)
    assert PASSWORD in url
    on_duckdb, on_postgres = tmp_path / "duckdb", tmp_path / "postgres"
    on_duckdb.mkdir()
    on_postgres.mkdir()

    # Side by side: each demo has its own data directory, sandbox and Dagster home.
    first, second = _demo(on_duckdb, None), _demo(on_postgres, url)
    _finish(first)
    out, err = _finish(second)

    assert PASSWORD not in out + err
    assert "postgres 127.0.0.1:" in out  # where the tables went, said safely
    assert not (on_postgres / "warehouse.duckdb").exists()

    duckdb_counts = _counts(warehouse_from_url(str(on_duckdb / "warehouse.duckdb")))
    postgres_counts = _counts(warehouse_from_url(url))
    assert len(duckdb_counts) >= 20
    assert postgres_counts == duckdb_counts

    # `analytics-assets sql` reads the same warehouse the demo wrote.
    env = {**os.environ, "ANALYTICS_ASSETS_WAREHOUSE": url}
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "analytics_assets.cli",
            "sql",
            "SELECT count(*) AS n FROM analytics.alerts",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert str(duckdb_counts["analytics.alerts"]) in answer.stdout
    assert PASSWORD not in answer.stdout + answer.stderr
