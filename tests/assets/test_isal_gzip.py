"""Gzip files inflated by ISA-L for DuckDB: the rows DuckDB itself reads, or a loud error."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest
from isal import igzip

from analytics_assets.amplitude.assets import EVENTS_COLUMNS, EXPORT_FIELDS, _load_export
from analytics_assets.warehouse import duckdb as duckdb_backend
from analytics_assets.warehouse import isal_gzip
from analytics_assets.warehouse.duckdb import DuckDBWarehouse, export_select_sql

DAY = date(2026, 11, 17)
COLUMNS = "columns={'uuid': 'VARCHAR', 'n': 'BIGINT', 'event_properties': 'JSON'}"


def _lines(first: int, count: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "uuid": f"u-{i:09d}",
                "n": i,
                "event_type": "Feature Used",
                "event_properties": {"feature": f"f{i % 97}", "pad": "x" * (i % 300)},
            }
        )
        + b"\n"
        for i in range(first, first + count)
    )


def _write(path: Path, *members: bytes) -> Path:
    # Several members make one valid gzip file whose trailer gives only the last one's size.
    path.write_bytes(b"".join(igzip.compress(m, compresslevel=0) for m in members))
    return path


def _read(conn: duckdb.DuckDBPyConnection, paths: list[str], compression: str) -> list[tuple]:
    listed = ", ".join(f"'{p}'" for p in paths)
    return conn.execute(
        f"SELECT uuid, n, event_properties::VARCHAR FROM read_json([{listed}], "
        f"format='newline_delimited', compression='{compression}', {COLUMNS}) ORDER BY n"
    ).fetchall()


@pytest.fixture
def conn():
    con = duckdb.connect(config={"threads": 2})
    isal_gzip.register(con)
    yield con
    isal_gzip.unregister(con)
    con.close()


def test_duckdb_reads_the_same_rows_through_isal_as_through_its_own_gzip(tmp_path, conn):
    # 95,000 lines of ~270 bytes: over 16 MB inflated, so DuckDB reads the file in
    # several buffers on both threads, each through its own handle on one inflater.
    files = [
        _write(tmp_path / "big.json.gz", _lines(0, 95_000)),
        _write(tmp_path / "small.json.gz", _lines(95_000, 3)),
        _write(tmp_path / "empty.json.gz", b""),
    ]
    assert len(gzip.decompress(files[0].read_bytes())) > 16 * 1024 * 1024
    ours = _read(conn, [isal_gzip.url(f) for f in files], "none")
    theirs = _read(conn, [f.as_posix() for f in files], "gzip")
    assert len(ours) == 95_003
    assert ours == theirs


def test_reads_ahead_of_and_behind_the_inflater_return_the_right_bytes(tmp_path):
    data = _lines(0, 20_000)
    path = _write(tmp_path / "x.json.gz", data)
    fs = isal_gzip.IsalGzipFileSystem(skip_instance_cache=True)
    assert fs.size(isal_gzip.url(path)) == len(data)
    a, b = fs.open(isal_gzip.url(path)), fs.open(isal_gzip.url(path))
    step = len(data) // 4
    b.seek(2 * step)
    assert b.read(step) == data[2 * step : 3 * step]  # inflates [0, 2 step) for others
    a.seek(0)
    assert a.read(step) == data[:step]
    assert a.read(step) == data[step : 2 * step]
    a.seek(step // 2)  # behind the inflater: it starts the file again
    assert a.read(step) == data[step // 2 : step // 2 + step]
    b.seek(3 * step)
    assert b.read() == data[3 * step :]
    assert b.read(10) == b""
    # Read to its end, the file is closed while DuckDB still holds its handles (it keeps
    # them until the whole scan ends, and an open inflater holds buffers).
    assert fs._inflaters[str(path.resolve())]._file is None
    a.close()
    b.close()


def test_a_far_jump_keeps_only_a_bounded_part_of_what_it_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(isal_gzip, "_PIECE", 4096)
    monkeypatch.setattr(isal_gzip, "_MAX_AHEAD", 3 * 4096)
    data = _lines(0, 5_000)
    path = _write(tmp_path / "x.json.gz", data)
    fs = isal_gzip.IsalGzipFileSystem(skip_instance_cache=True)
    far, near = fs.open(isal_gzip.url(path)), fs.open(isal_gzip.url(path))
    far.seek(len(data) - 100)
    assert far.read() == data[-100:]
    inflater = fs._inflaters[str(path.resolve())]
    assert sum(map(len, inflater._ahead.values())) <= 3 * 4096
    assert near.read(50_000) == data[:50_000]  # kept, then inflated again from the start
    far.close()
    near.close()
    assert not fs._inflaters  # the last handle closed the file


def test_a_file_with_several_members_fails_loudly_instead_of_loading_short(tmp_path, conn):
    path = _write(tmp_path / "two.json.gz", _lines(0, 5_000), _lines(5_000, 10))
    with pytest.raises(duckdb.Error, match=r"GzipSizeError: .*two\.json\.gz inflates to more"):
        _read(conn, [isal_gzip.url(path)], "none")


def test_an_empty_last_member_after_data_fails_before_duckdb_reads_nothing(tmp_path, conn):
    path = _write(tmp_path / "tail.json.gz", _lines(0, 10), b"")
    with pytest.raises(duckdb.Error, match=r"GzipSizeError: .*tail\.json\.gz inflates to more"):
        _read(conn, [isal_gzip.url(path)], "none")


def test_a_truncated_file_is_an_error_that_names_it(tmp_path, conn):
    whole = igzip.compress(_lines(0, 2_000))
    path = tmp_path / "cut.json.gz"
    # Keep the trailer so the size is read, but drop part of the deflate stream.
    path.write_bytes(whole[: len(whole) // 2] + whole[-8:])
    with pytest.raises(duckdb.Error, match=r"cut\.json\.gz cannot be inflated"):
        _read(conn, [isal_gzip.url(path)], "none")


def test_a_file_that_is_not_gzip_is_refused(tmp_path, conn):
    path = tmp_path / "plain.json.gz"
    path.write_bytes(_lines(0, 10))
    with pytest.raises(duckdb.Error, match=r"plain\.json\.gz is not a gzip file"):
        _read(conn, [isal_gzip.url(path)], "none")


def test_files_too_big_for_the_trailer_are_left_to_duckdbs_reader(tmp_path, monkeypatch):
    files = [_write(tmp_path / f"{i}.json.gz", _lines(i * 10, 10)) for i in range(2)]
    assert "compression='gzip'" not in export_select_sql(files, DAY, EXPORT_FIELDS)
    monkeypatch.setattr(isal_gzip, "MAX_COMPRESSED_BYTES", files[1].stat().st_size)
    sql = export_select_sql(files, DAY, EXPORT_FIELDS)
    assert sql.count("compression='none'") == 1 and sql.count("compression='gzip'") == 1
    assert isal_gzip.url(files[0]) in sql and f"'{files[1].as_posix()}'" in sql


def test_the_export_load_falls_back_to_duckdbs_reader_for_a_misstated_size(tmp_path, monkeypatch):
    # One file a batch: the bad file is in the second batch, after the first was inserted.
    monkeypatch.setattr(duckdb_backend, "JSON_BATCH_FILES", 1)
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    warehouse.create_table("amplitude.events", EVENTS_COLUMNS)
    files = [
        _write(tmp_path / "a.json.gz", _lines(0, 1_000)),
        _write(tmp_path / "b.json.gz", _lines(1_000, 500), _lines(1_500, 500)),
    ]
    context = dg.build_asset_context(partition_key=DAY.isoformat())
    assert _load_export(context, warehouse, files, DAY) == 2_000
    assert warehouse.records("SELECT count(DISTINCT uuid) AS n FROM amplitude.events") == [
        {"n": 2_000}
    ]
