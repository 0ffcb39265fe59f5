"""The warehouse resource on a real DuckDB file: partitions, row groups, settings."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from analytics_assets.warehouse.base import WarehouseError
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.loading import load_rows
from analytics_assets.warehouse.types import INT, STR, Column


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


def _rendered(limit: str) -> str:
    with duckdb.connect(config={"memory_limit": limit}) as plain:
        return plain.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def _limits_used(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The memory_limit each connection of the warehouse is opened with (None: its own)."""
    used: list[str | None] = []
    connection = DuckDBWarehouse.connection

    def recording(self: DuckDBWarehouse, memory_limit: str | None = None):  # noqa: ANN202
        used.append(memory_limit)
        return connection(self, memory_limit)

    monkeypatch.setattr(DuckDBWarehouse, "connection", recording)
    return used


def test_staged_loads_and_records_run_under_the_stream_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Their state grows with the table (the insert's row groups, the keys check's hash
    # table): under the small limit DuckDB spills it instead of holding it.
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    (row,) = wh.records("SELECT current_setting('memory_limit') AS m")
    assert row["m"] == _rendered("64MB")
    used = _limits_used(monkeypatch)
    columns = [Column("k", STR), Column("v", INT)]
    assert load_rows(wh, "s.t", columns, [{"k": "a", "v": 1}], partition=("k", "a")) == 1
    assert load_rows(wh, "s.whole", columns, [{"k": "b", "v": 2}]) == 1
    assert used == ["64MB", "64MB"]
    # SQL over the warehouse (transforms, the JSON-lines load) keeps memory_limit.
    wh.replace_partition("s.u", _rows(3, "2026-11-01"), "day", "2026-11-01")
    assert used[-1] is None


def test_the_smaller_limit_wins(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"), memory_limit="48MB")
    (row,) = wh.records("SELECT current_setting('memory_limit') AS m")
    assert row["m"] == _rendered("48MB")
    odd = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"), stream_memory_limit="lots")
    (row,) = odd.records("SELECT current_setting('memory_limit') AS m")
    assert row["m"] == _rendered("288MB")  # sizes that cannot be compared: memory_limit


def test_work_that_does_not_fit_the_stream_limit_runs_again_under_memory_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DuckDB's spilling aggregate needs memory that grows with the groups: far too many
    # for 4MB here, as ~11 million keys were for 64MB (bench/README.md).
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"), stream_memory_limit="4MB")
    used = _limits_used(monkeypatch)
    duplicated = wh.records(
        "SELECT count(*) AS n FROM (SELECT range % 2000000 AS k FROM range(4000000) "
        "GROUP BY k HAVING count(*) > 1) AS d"
    )
    assert duplicated == [{"n": 2000000}]
    assert used == ["4MB", None]
    # A load that ran out of memory rolled back: the second one writes the rows once.
    columns = [Column("k", STR), Column("v", INT)]
    rows = ({"k": f"key-{i}", "v": i} for i in range(300_000))
    assert load_rows(wh, "s.t", columns, rows) == 300_000
    assert used[2:] == ["4MB", None]
    (row,) = wh.records("SELECT count(*) AS n, count(DISTINCT k) AS keys FROM s.t")
    assert row == {"n": 300_000, "keys": 300_000}


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
