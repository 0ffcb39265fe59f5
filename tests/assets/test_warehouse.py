"""The warehouse resource on a real DuckDB file: partitions, row groups, settings."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from analytics_assets.warehouse.base import WarehouseError
from analytics_assets.warehouse.duckdb import DuckDBWarehouse


def _rows(n: int, day: str) -> str:
    return f"SELECT range AS id, DATE '{day}' AS day FROM range({n})"


def test_replace_partition_touches_only_its_own_day(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    assert wh.replace_partition("s.t", _rows(5, "2026-11-01"), "day", "2026-11-01") == 5
    assert wh.replace_partition("s.t", _rows(3, "2026-11-02"), "day", "2026-11-02") == 3
    # A re-run of a day replaces it whole, leaving the other day alone.
    assert wh.replace_partition("s.t", _rows(4, "2026-11-01"), "day", "2026-11-01") == 4
    counts = wh.records("SELECT day::VARCHAR AS day, count(*) AS n FROM s.t GROUP BY 1 ORDER BY 1")
    assert counts == [{"day": "2026-11-01", "n": 4}, {"day": "2026-11-02", "n": 3}]
    assert wh.table_exists("s.t") and not wh.table_exists("s.missing")
    assert wh.columns("s.t") == [("id", "BIGINT"), ("day", "DATE")]


def test_row_group_size_shapes_the_stored_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(path), row_group_size=2048)
    wh.replace_partition(
        "s.t", _rows(5000, "2026-11-01"), "day", "2026-11-01", preserve_insertion_order=False
    )
    wh.execute("CHECKPOINT")
    with duckdb.connect(str(path), read_only=True) as conn:
        groups = conn.execute(
            "SELECT row_group_id, max(count) FROM pragma_storage_info('s.t') GROUP BY ALL "
            "ORDER BY 1"
        ).fetchall()
    assert [size for _, size in groups] == [2048, 2048, 904]


def test_settings_reach_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(path), memory_limit="300MB", threads=1)
    with wh.connection() as conn:
        memory, threads, temp, database = conn.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('temp_directory'), current_database()"
        ).fetchone()
    with duckdb.connect(config={"memory_limit": "300MB"}) as plain:  # DuckDB's own rendering
        expected = plain.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert (memory, threads, database) == (expected, 1, "warehouse")
    assert temp == f"{path}.tmp"  # spills beside the file, not in the working directory


@pytest.mark.parametrize("size", [0, 1000, -2048])
def test_invalid_row_group_size_says_what_to_use(tmp_path: Path, size: int) -> None:
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"), row_group_size=size)
    with pytest.raises(ValueError, match="positive multiple of 2048"):
        wh.execute("SELECT 1")


def test_a_failed_write_leaves_the_file_free_for_the_next_connection(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    try:
        wh.replace_partition("s.t", "SELECT * FROM no_such_table", "day", "2026-11-01")
    except WarehouseError as exc:
        assert isinstance(exc.__cause__, duckdb.Error)  # DuckDB's own error, wrapped
        # A retry while the error (and the frames that hold the failed connection) is
        # alive: the file must not be still attached ("Unique file handle conflict").
        assert wh.replace_partition("s.t", _rows(2, "2026-11-01"), "day", "2026-11-01") == 2
    else:
        pytest.fail("reading a missing table should have failed")


def test_a_list_of_selects_replaces_the_partition_in_one_transaction(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    day = "2026-11-01"
    assert wh.replace_partition("s.t", [_rows(3, day), _rows(4, day)], "day", day) == 7
    # A failing batch rolls back the whole replacement: the day keeps its 7 rows.
    with pytest.raises(WarehouseError) as raised:
        wh.replace_partition("s.t", [_rows(5, day), "SELECT * FROM no_such_table"], "day", day)
    assert isinstance(raised.value.__cause__, duckdb.Error)
    assert wh.records("SELECT count(*) AS n FROM s.t") == [{"n": 7}]


def test_an_empty_list_of_selects_is_refused_and_leaves_the_partition(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    wh.replace_partition("s.t", _rows(3, "2026-11-01"), "day", "2026-11-01")
    with pytest.raises(ValueError, match="nothing to write to s.t: no SELECT in the list"):
        wh.replace_partition("s.t", [], "day", "2026-11-01")
    assert wh.records("SELECT count(*) AS n FROM s.t") == [{"n": 3}]
