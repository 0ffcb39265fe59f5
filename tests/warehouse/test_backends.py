"""Every operation of the warehouse interface, the same test on DuckDB, on a real
Postgres server and on Snowflake's local fake (fakesnow): what assets, checks, sensors and
the write-back rely on."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from isal import igzip

from analytics_assets.warehouse import checks
from analytics_assets.warehouse.base import (
    ParquetFile,
    Query,
    WarehouseError,
    WarehouseResource,
    warehouse_from_url,
)
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.loading import load_rows, staged, table_metadata
from analytics_assets.warehouse.postgres import PostgresWarehouse, pyformat
from analytics_assets.warehouse.snowflake import SnowflakeWarehouse
from analytics_assets.warehouse.types import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    INT32,
    JSON,
    STR,
    TS,
    TS_NAIVE,
    TS_US,
    Column,
    JsonField,
)

DAY, NEXT = date(2026, 11, 17), date(2026, 11, 18)
# The type name each backend's catalog gives a 64-bit integer column (Snowflake has NUMBER).
BIGINT = {"duckdb": "bigint", "postgres": "bigint", "snowflake": "number"}
# The module of each backend's driver errors.
DRIVER = {"duckdb": "duckdb", "postgres": "psycopg", "snowflake": "snowflake"}
EVERY_TYPE = [
    Column("day", DATE),
    Column("name", STR),
    Column("n", INT),
    Column("small", INT32),
    Column("x", FLOAT),
    Column("flag", BOOL),
    Column("at", TS),
    Column("at_us", TS_US),
    Column("naive", TS_NAIVE),
    Column("doc", JSON),
]


def _rows(day: date, count: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "day": pa.array([day] * count, pa.date32()),
            "id": pa.array(range(start, start + count), pa.int64()),
            "name": pa.array([f"row {i}" for i in range(start, start + count)]),
        }
    )


def _count(warehouse: WarehouseResource, table: str, where: str = "1 = 1", params=()) -> int:
    return int(
        warehouse.records(f"SELECT count(*) AS n FROM {table} WHERE {where}", params)[0]["n"]
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# ----- writes ------------------------------------------------------------------------------


def test_create_table_makes_schema_and_declared_types(warehouse: WarehouseResource) -> None:
    warehouse.create_table("fresh.every_type", EVERY_TYPE)
    warehouse.create_table("fresh.every_type", EVERY_TYPE)  # again: nothing happens
    assert warehouse.table_exists("fresh.every_type")
    assert not warehouse.table_exists("fresh.missing") and not warehouse.table_exists("x.y")
    columns = warehouse.columns("fresh.every_type")
    assert [name for name, _ in columns] == [c.name for c in EVERY_TYPE]
    types = {name: kind.lower() for name, kind in columns}
    assert types["n"] == BIGINT[warehouse.backend]
    assert types["day"] == "date" and types["flag"] == "boolean"
    assert "fresh.every_type" in warehouse.tables()
    assert _count(warehouse, "fresh.every_type") == 0


def test_replace_partition_touches_only_its_own_day(warehouse: WarehouseResource) -> None:
    assert warehouse.replace_partition("s.t", _rows(DAY, 5), "day", DAY) == 5
    assert warehouse.replace_partition("s.t", _rows(NEXT, 3), "day", NEXT) == 3
    # A re-run of a day replaces it whole, leaving the other day alone.
    assert warehouse.replace_partition("s.t", _rows(DAY, 4, start=100), "day", DAY) == 4
    counts = warehouse.records("SELECT day, count(*) AS n FROM s.t GROUP BY day ORDER BY day")
    assert counts == [{"day": DAY, "n": 4}, {"day": NEXT, "n": 3}]
    assert _count(warehouse, "s.t", "day = ? AND id >= ?", [DAY, 100]) == 4


def test_a_list_of_sources_replaces_the_partition_in_one_transaction(
    warehouse: WarehouseResource,
) -> None:
    sources = [_rows(DAY, 3), pd.DataFrame({"day": [DAY] * 4, "id": range(3, 7), "name": "df"})]
    assert warehouse.replace_partition("s.t", sources, "day", DAY) == 7
    # A failing source rolls back the whole replacement: the day keeps its 7 rows.
    with pytest.raises(WarehouseError, match="s.t"):
        warehouse.replace_partition(
            "s.t", [_rows(DAY, 5), Query("SELECT * FROM no_such_table")], "day", DAY
        )
    assert _count(warehouse, "s.t") == 7
    with pytest.raises(ValueError, match="nothing to write to s.t"):
        warehouse.replace_partition("s.t", [], "day", DAY)
    assert _count(warehouse, "s.t") == 7


def test_a_query_over_warehouse_tables_replaces_a_partition(warehouse: WarehouseResource) -> None:
    warehouse.replace_table("s.src", _rows(DAY, 6))
    usage = [Column("day", DATE), Column("bucket", STR), Column("rows_in", INT)]
    # Portable SQL: parameters for values, CAST for types, CASE in aggregates.
    query = Query(
        "SELECT day, bucket, count(*) AS rows_in FROM ("
        "  SELECT CAST(? AS DATE) AS day, CASE WHEN id < ? THEN 'low' ELSE 'high' END AS bucket"
        "  FROM s.src WHERE day = ?"
        ") AS b GROUP BY day, bucket",
        [DAY, 2, DAY],
    )
    assert warehouse.replace_partition("s.usage", query, "day", DAY, columns=usage) == 2
    assert warehouse.replace_partition("s.usage", query, "day", DAY, columns=usage) == 2
    got = warehouse.records("SELECT bucket, rows_in FROM s.usage ORDER BY bucket")
    assert got == [{"bucket": "high", "rows_in": 4}, {"bucket": "low", "rows_in": 2}]
    assert [t.lower() for _, t in warehouse.columns("s.usage")][2] == BIGINT[warehouse.backend]


def test_staged_parquet_rows_keep_every_type(warehouse: WarehouseResource) -> None:
    at = datetime(2026, 11, 17, 9, 30, 15, 123000, tzinfo=UTC)
    rows = [
        {
            "day": DAY,
            "name": 'quote " comma , newline \n tab \t backslash \\ percent % mark ?',
            "n": 2**40,
            "small": -7,
            "x": 0.1,
            "flag": True,
            "at": at,
            "at_us": at.replace(microsecond=123456),
            "naive": datetime(2026, 11, 17, 9, 30, 15, 654321),
            "doc": {"nested": [1, "two", None], "é": "ü"},
        },
        {"day": DAY, "name": "", "n": None, "doc": None},  # empty text is not NULL
        {"day": DAY, "name": None},
    ]
    written = load_rows(warehouse, "s.every", EVERY_TYPE, rows, partition=("day", DAY))
    assert written == 3
    got = warehouse.records("SELECT * FROM s.every ORDER BY small, name")
    first = next(r for r in got if r["small"] == -7)
    assert first["name"] == rows[0]["name"]
    assert (first["n"], first["x"], first["flag"], first["day"]) == (2**40, 0.1, True, DAY)
    assert _utc(first["at"]) == at and _utc(first["at_us"]) == rows[0]["at_us"]
    assert first["naive"] == rows[0]["naive"]
    assert json.loads(first["doc"]) == rows[0]["doc"]
    names = sorted((r["name"] is None, r["name"]) for r in got if r["small"] is None)
    assert names == [(False, ""), (True, None)]
    meta = table_metadata(warehouse, "s.every", EVERY_TYPE, partition=("day", DAY))
    assert meta["dagster/row_count"].value == 3


def test_staged_rows_replace_a_whole_table(warehouse: WarehouseResource) -> None:
    columns = [Column("k", STR), Column("v", INT)]
    assert load_rows(warehouse, "s.whole", columns, [{"k": "a", "v": 1}, {"k": "b", "v": 2}]) == 2
    assert load_rows(warehouse, "s.whole", columns, [{"k": "c", "v": 3}]) == 1
    assert warehouse.records("SELECT k, v FROM s.whole") == [{"k": "c", "v": 3}]
    # The staged file itself, handed over directly.
    with staged(columns) as stage:
        stage.extend({"k": str(i), "v": i} for i in range(25_000))  # several row groups
        stage.close()
        assert warehouse.replace_table("s.whole", ParquetFile(stage.path)) == 25_000
    assert warehouse.records("SELECT sum(v) AS s FROM s.whole") == [{"s": sum(range(25_000))}]


def test_replace_table_takes_frames_arrow_and_queries(warehouse: WarehouseResource) -> None:
    frame = pd.DataFrame({"day": [DAY, DAY], "account_id": ["a", None], "events": [3, 4]})
    assert warehouse.replace_table("s.frame", frame) == 2
    # The new table's columns follow the new data.
    assert warehouse.replace_table("s.frame", pa.table({"other": ["x"]})) == 1
    assert [name for name, _ in warehouse.columns("s.frame")] == ["other"]
    warehouse.replace_table("s.frame", frame)
    assert warehouse.replace_table("s.copy", "SELECT account_id, events FROM s.frame") == 2
    assert (
        warehouse.replace_table(
            "s.copy",
            Query("SELECT account_id, events * 2 AS events FROM s.frame WHERE events > ?", [3]),
            columns=[Column("account_id", STR), Column("events", INT)],
        )
        == 1
    )
    assert warehouse.records("SELECT account_id, events FROM s.copy") == [
        {"account_id": None, "events": 8}
    ]


def test_append_creates_then_adds_rows_and_new_columns(warehouse: WarehouseResource) -> None:
    first = pa.table(
        {"alert_id": ["a1"], "at": pa.array([datetime.now(UTC)], pa.timestamp("us", "UTC"))}
    )
    assert warehouse.append("analytics.alerts", first) == 1
    assert warehouse.append("analytics.alerts", first) == 1
    more = pa.table({"alert_id": ["a2"], "severity": ["critical"]})
    assert warehouse.append("analytics.alerts", more) == 1
    got = warehouse.records("SELECT alert_id, severity FROM analytics.alerts ORDER BY alert_id")
    assert [(r["alert_id"], r["severity"]) for r in got] == [
        ("a1", None),
        ("a1", None),
        ("a2", "critical"),
    ]
    marks = ", ".join("?" for _ in range(2))
    found = warehouse.query(
        f"SELECT alert_id FROM analytics.alerts WHERE alert_id IN ({marks})", ["a2", "zz"]
    )
    assert found["alert_id"].tolist() == ["a2"]


# ----- the JSON-lines bulk load ---------------------------------------------------------------

FIELDS = [
    JsonField("$insert_id", "insert_id", STR),
    JsonField("uuid", "uuid", STR),
    JsonField("event_id", "event_id", INT),
    JsonField("event_time", "event_time", TS_NAIVE),
    JsonField("event_properties", "event_properties", JSON),
    JsonField("location_lat", "location_lat", FLOAT),
    JsonField("is_attribution_event", "is_attribution_event", BOOL),
    JsonField("productId", "product_id", STR),
]


def _event(i: int) -> dict:
    return {
        "$insert_id": f"ins-{i}",
        "uuid": f"u-{i:06d}",
        "event_id": i,
        "event_time": f"2026-11-17 {i % 24:02d}:{i % 60:02d}:01.{i % 1000:03d}000",
        "event_properties": {"feature": f"f{i % 7}", "text": 'a "quote" \\ back\tslash', "n": i},
        "location_lat": i / 8,
        "is_attribution_event": i % 2 == 0,
        "productId": None if i % 3 else f"p{i}",
        "not_a_column": "ignored",
    }


def _jsonl(events: list[dict]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def _export_files(tmp_path: Path) -> list[Path]:
    one = tmp_path / "one.json.gz"
    one.write_bytes(gzip.compress(_jsonl([_event(i) for i in range(0, 500)])))
    # Several gzip members in one file, and a blank line: both are valid gzip JSON lines.
    two = tmp_path / "two.json.gz"
    two.write_bytes(
        igzip.compress(_jsonl([_event(i) for i in range(500, 700)]) + b"\n")
        + igzip.compress(_jsonl([_event(i) for i in range(700, 750)]))
    )
    # The last line without its newline: the next file must still start a line.
    three = tmp_path / "three.json.gz"
    three.write_bytes(gzip.compress(_jsonl([_event(i) for i in range(750, 760)]).rstrip(b"\n")))
    return [one, two, three]


def test_json_lines_load_replaces_the_partition(loader: WarehouseResource, tmp_path) -> None:
    files = _export_files(tmp_path)
    loaded = loader.load_json_lines("amplitude.events", files, FIELDS, "day", DAY)
    assert loaded == 760
    assert loader.load_json_lines("amplitude.events", files[:1], FIELDS, "day", NEXT) == 500
    again = loader.load_json_lines("amplitude.events", files, FIELDS, "day", DAY)
    assert again == 760
    assert _count(loader, "amplitude.events", "day = ?", [DAY]) == 760
    got = loader.records(
        "SELECT insert_id, uuid, event_id, event_time, event_properties, location_lat, "
        "is_attribution_event, product_id FROM amplitude.events WHERE day = ? AND event_id = ?",
        [DAY, 123],
    )
    (row,) = got
    event = _event(123)
    assert (row["insert_id"], row["uuid"], row["event_id"]) == ("ins-123", "u-000123", 123)
    assert row["event_time"] == datetime(2026, 11, 17, 3, 3, 1, 123000)
    assert json.loads(row["event_properties"]) == event["event_properties"]
    assert row["location_lat"] == 123 / 8 and row["is_attribution_event"] is False
    assert row["product_id"] == "p123"
    assert _count(loader, "amplitude.events", "product_id IS NULL AND day = ?", [DAY]) == 506
    # No files: the partition is emptied, the other day kept.
    assert loader.load_json_lines("amplitude.events", [], FIELDS, "day", DAY) == 0
    assert _count(loader, "amplitude.events") == 500


def test_json_lines_load_fails_whole_on_a_bad_record(loader: WarehouseResource, tmp_path):
    files = _export_files(tmp_path)
    loader.load_json_lines("amplitude.events", files, FIELDS, "day", DAY)
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(_jsonl([_event(1)]) + b'{"uuid": "broken\n'))
    with pytest.raises(WarehouseError, match="amplitude.events"):
        loader.load_json_lines("amplitude.events", [files[0], bad], FIELDS, "day", DAY)
    assert _count(loader, "amplitude.events", "day = ?", [DAY]) == 760  # rolled back


def test_an_empty_day_creates_the_table(loader: WarehouseResource) -> None:
    assert loader.load_json_lines("amplitude.events", [], FIELDS, "day", DAY) == 0
    assert [n for n, _ in loader.columns("amplitude.events")] == [
        "day",
        *(f.name for f in FIELDS),
    ]


# ----- reads, SQL and errors ----------------------------------------------------------------


def test_portable_sql_runs_with_placeholders_and_literals(warehouse: WarehouseResource) -> None:
    warehouse.execute("CREATE SCHEMA IF NOT EXISTS s")
    warehouse.execute("CREATE TABLE s.words (w VARCHAR, n BIGINT)")
    warehouse.execute("INSERT INTO s.words VALUES (?, 1), ('100%?', 2), (?, 3)", ["a?b", "c"])
    got = warehouse.records(
        "SELECT w, n, '?' AS mark FROM s.words WHERE w LIKE '%?%' OR n = ? ORDER BY n", [3]
    )
    assert got == [
        {"w": "a?b", "n": 1, "mark": "?"},
        {"w": "100%?", "n": 2, "mark": "?"},
        {"w": "c", "n": 3, "mark": "?"},
    ]
    frame = warehouse.query("SELECT w FROM s.words WHERE w LIKE '1%'")  # no parameters
    assert frame["w"].tolist() == ["100%?"]
    assert warehouse.records("SELECT sum(n) AS s, avg(n) AS a FROM s.words") == [{"s": 6, "a": 2}]


def test_json_text_reads_one_key_of_json_text(warehouse: WarehouseResource) -> None:
    docs = ['{"plan": "free", "seats": 3, "x": {"a": 1}}', '{"plan": null}', "{}"]
    warehouse.replace_table("s.docs", pa.table({"i": [0, 1, 2], "values_json": docs}))
    picks = ", ".join(
        f"{warehouse.json_text('values_json', key)} AS {key}" for key in ("plan", "seats", "x")
    )
    got = warehouse.records(f"SELECT i, {picks} FROM s.docs ORDER BY i")
    parsed = [
        {k: None if r[k] is None else json.loads(r[k]) for k in ("plan", "seats", "x")} for r in got
    ]
    assert parsed == [
        {"plan": "free", "seats": 3, "x": {"a": 1}},
        {"plan": None, "seats": None, "x": None},
        {"plan": None, "seats": None, "x": None},
    ]
    with pytest.raises(ValueError, match="invalid JSON key"):
        warehouse.json_text("values_json", "a'; DROP TABLE s.docs; --")


def test_errors_are_warehouse_errors_with_the_drivers_as_cause(warehouse) -> None:
    with pytest.raises(WarehouseError) as raised:
        warehouse.records("SELECT * FROM s.no_such_table")
    driver = type(raised.value.__cause__).__module__.split(".")[0].lstrip("_")
    assert driver == DRIVER[warehouse.backend]
    with pytest.raises(ValueError, match="invalid table name"):
        warehouse.replace_table("s.t; DROP TABLE x", _rows(DAY, 1))


def test_checks_run_on_every_backend(warehouse: WarehouseResource) -> None:
    frame = pd.DataFrame({"day": [DAY] * 3, "account_id": ["a", "a", None]})
    warehouse.replace_table("pendo.t", frame)
    result = checks.check_keys_unique(warehouse, "pendo.t", ["day", "account_id"], ("day", DAY))
    assert not result.passed
    assert (result.metadata["null_keys"].value, result.metadata["duplicated_keys"].value) == (1, 1)
    assert result.metadata["rows"].value == 3


def test_unique_keys_pass_on_their_hashes_alone(warehouse: WarehouseResource) -> None:
    # Typed key columns (a day, text with '' beside NULL-free values, a timestamp, an int):
    # every row distinct, so the distinct hashes equal the rows and the check passes.
    at = datetime(2026, 11, 17, 5, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "day": [DAY] * 4,
            "account_id": ["a", "a", "", "b"],
            "hour": [at, at.replace(hour=6), at, at],
            "n": [1, 1, 1, 2],
        }
    )
    warehouse.replace_table("pendo.t", frame)
    keys = ["day", "account_id", "hour", "n"]
    result = checks.check_keys_unique(warehouse, "pendo.t", keys, ("day", DAY))
    assert result.passed
    assert (result.metadata["null_keys"].value, result.metadata["duplicated_keys"].value) == (0, 0)
    same = warehouse.records(
        f"SELECT count(DISTINCT {warehouse.row_hash(['account_id', 'n'])}) AS h FROM pendo.t "
        "WHERE account_id = 'a'"
    )
    assert int(same[0]["h"]) == 1  # equal values hash equal


class _CollidingDuckDB(DuckDBWarehouse):
    """Every row hashes alike: the check must fall back to the exact GROUP BY."""

    def row_hash(self, columns) -> str:  # type: ignore[override]
        return "0"


def test_a_hash_collision_is_confirmed_exactly_not_taken_for_a_duplicate(tmp_path) -> None:
    warehouse = _CollidingDuckDB(database=str(tmp_path / "w.duckdb"))
    warehouse.replace_table("pendo.t", pd.DataFrame({"day": [DAY] * 3, "k": ["a", "b", "c"]}))
    assert checks.check_keys_unique(warehouse, "pendo.t", ["day", "k"], ("day", DAY)).passed
    warehouse.replace_table("pendo.t", pd.DataFrame({"day": [DAY] * 3, "k": ["a", "b", "b"]}))
    failed = checks.check_keys_unique(warehouse, "pendo.t", ["day", "k"], ("day", DAY))
    assert not failed.passed and failed.metadata["duplicated_keys"].value == 1


# ----- choosing and configuring a backend ------------------------------------------------------


def test_the_location_picks_the_backend(tmp_path) -> None:
    duck = warehouse_from_url(str(tmp_path / "w.duckdb"), memory_limit="200MB", password="x")
    assert isinstance(duck, DuckDBWarehouse) and duck.memory_limit == "200MB"
    server = warehouse_from_url("postgresql://u@db:5432/w", memory_limit="200MB")
    assert isinstance(server, PostgresWarehouse) and server.backend == "postgres"
    assert isinstance(warehouse_from_url("postgres://u@db/w"), PostgresWarehouse)
    snow = warehouse_from_url("snowflake://me:secret-pw@acct/db/sch?role=R", memory_limit="1GB")
    assert isinstance(snow, SnowflakeWarehouse) and snow.backend == "snowflake"
    with pytest.raises(ValueError, match="account, user or database is missing") as raised:
        warehouse_from_url("snowflake://me:secret-pw@account")
    assert "secret-pw" not in str(raised.value)
    with pytest.raises(ValueError, match="unknown warehouse URL scheme 'mysql'"):
        warehouse_from_url("mysql://u:pw@h/db")


def test_a_password_never_reaches_a_message_or_repr(postgres_server) -> None:
    url = postgres_server.new_database("secret", password="s3cr3t-pw")
    warehouse = PostgresWarehouse(url=url)
    assert warehouse.records("SELECT 1 AS one") == [{"one": 1}]  # trust auth ignores it
    assert "s3cr3t-pw" not in repr(warehouse) and "s3cr3t-pw" not in str(warehouse)
    down = PostgresWarehouse(url="postgresql://u:s3cr3t-pw@127.0.0.1:9/nowhere", connect_timeout=2)
    with pytest.raises(WarehouseError, match="cannot connect") as raised:
        down.records("SELECT 1")
    assert "s3cr3t-pw" not in str(raised.value) and raised.value.__cause__ is None
    bad = PostgresWarehouse(url=url.replace("/secret", "/secret?sslmode=s3cr3t-pw"))
    with pytest.raises(WarehouseError) as raised:
        bad.records("SELECT 1")
    assert "s3cr3t-pw" not in str(raised.value)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ? AS a", "SELECT %s AS a"),
        ("SELECT '?' || ? AS a", "SELECT '?' || %s AS a"),
        (
            "SELECT \"we?ird\" FROM t WHERE x LIKE '5%'",
            "SELECT \"we?ird\" FROM t WHERE x LIKE '5%%'",
        ),
        ("SELECT 'it''s ?', ? -- a ? comment\n", "SELECT 'it''s ?', %s -- a ? comment\n"),
        ("SELECT /* ? */ $$ ? $$, $q$?$q$, ?", "SELECT /* ? */ $$ ? $$, $q$?$q$, %s"),
        ("SELECT 10 % 3, ?", "SELECT 10 %% 3, %s"),
    ],
)
def test_placeholders_become_psycopgs(sql: str, expected: str) -> None:
    assert pyformat(sql) == expected
