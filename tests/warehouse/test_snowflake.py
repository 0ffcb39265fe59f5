"""The Snowflake backend beyond the interface tests it shares (``test_backends.py``, on
fakesnow): configuration, secrets, errors, and the exact SQL of the loads fakesnow runs
only in part (the JSON COPY transformation, COPY GRANTS, stage options)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from backend_fixtures import make_snowflake

from analytics_assets.warehouse import snowflake as backend
from analytics_assets.warehouse.base import WarehouseError, warehouse_from_url
from analytics_assets.warehouse.snowflake import SnowflakeWarehouse, parse_url
from analytics_assets.warehouse.types import DATE, INT, JSON, STR, TS_NAIVE, Column, JsonField

pytest.importorskip("fakesnow", reason="the Snowflake tests need fakesnow (the dev extra)")

DAY = date(2026, 11, 17)
SECRET = "s3cr3t/pw?"


@pytest.fixture
def warehouse(request: pytest.FixtureRequest) -> SnowflakeWarehouse:
    return make_snowflake(request, "snowflake")  # type: ignore[return-value]


@pytest.fixture
def sent(warehouse: SnowflakeWarehouse, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement the backend sends, in order (recorded at ``_Session.run``)."""
    statements: list[str] = []
    run = backend._Session.run

    def record(session: Any, sql: str, params: Sequence[Any] | None = None) -> Any:
        statements.append(sql)
        return run(session, sql, params)

    monkeypatch.setattr(backend._Session, "run", record)
    yield statements


def _gz(path: Path, events: list[dict]) -> Path:
    path.write_bytes(gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in events)))
    return path


# ----- configuration ------------------------------------------------------------------------


def test_the_url_gives_every_field_percent_decoded() -> None:
    url = "snowflake://me%40corp:s3cr3t%2Fpw%3F@myorg-acct/ANALYTICS/RAW?warehouse=WH&role=LOADER"
    assert parse_url(url) == {
        "account": "myorg-acct",
        "user": "me@corp",
        "password": SECRET,
        "database": "ANALYTICS",
        "schema": "RAW",
        "warehouse": "WH",
        "role": "LOADER",
    }
    assert parse_url("snowflake://me@acct/db") == {
        "account": "acct",
        "user": "me",
        "database": "db",
    }


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("snowflake://me:s3cr3t@acct", "account, user or database is missing"),
        ("snowflake://s3cr3t@acct/db/sch/extra", "account, user or database is missing"),
        (
            "snowflake://me:s3cr3t@acct/db?warehous=WH",
            r"unknown snowflake:// URL options \['warehous'\]",
        ),
        ("snowflake://me:s3cr3t@acct:port/db", "cannot be parsed"),
        ("snowflake://me:s3cr3t@acct:443/db", "an account, not a host and port"),
    ],
)
def test_a_bad_url_says_what_is_wrong_without_the_password(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error) as raised:
        warehouse_from_url(url)
    assert "s3cr3t" not in str(raised.value)


def test_fields_win_over_the_url_and_missing_ones_are_named(monkeypatch) -> None:
    monkeypatch.setenv("SNOWFLAKE_PW", SECRET)
    import dagster as dg

    chosen = SnowflakeWarehouse(
        url="snowflake://me@acct/db?role=R",
        schema="RAW",
        role="OTHER",
        password=dg.EnvVar("SNOWFLAKE_PW"),
    )
    settings = chosen._settings()
    assert (settings["schema"], settings["role"], settings["password"]) == ("RAW", "OTHER", SECRET)
    assert SECRET not in repr(chosen) and SECRET not in str(chosen)
    assert chosen.describe() == "snowflake acct/db"
    with pytest.raises(WarehouseError, match="needs account, database"):
        SnowflakeWarehouse(user="me").records("SELECT 1")


def test_a_password_never_reaches_a_message_or_repr(monkeypatch) -> None:
    import snowflake.connector

    url = "snowflake://me:s3cr3t%2Fpw%3F@acct/db"
    warehouse = SnowflakeWarehouse(url=url)
    assert "s3cr3t" not in repr(warehouse) and "s3cr3t" not in str(warehouse)

    def refuse(**settings: Any) -> None:
        # What a driver may do: quote what it was given.
        raise snowflake.connector.errors.DatabaseError(f"250001: login failed: {settings}")

    monkeypatch.setattr(snowflake.connector, "connect", refuse)
    with pytest.raises(WarehouseError, match="cannot connect to the Snowflake warehouse acct/db"):
        warehouse.records("SELECT 1")
    with pytest.raises(WarehouseError) as raised:
        warehouse.records("SELECT 1")
    assert "s3cr3t" not in str(raised.value) and raised.value.__cause__ is None


# ----- errors -------------------------------------------------------------------------------


def test_a_failed_statement_names_its_first_line(warehouse: SnowflakeWarehouse) -> None:
    with pytest.raises(WarehouseError) as raised:
        warehouse.records("SELECT *\nFROM s.no_such_table\nWHERE 1 = 1")
    message = str(raised.value)
    assert message.startswith("running a query: SELECT *: ")
    assert "NO_SUCH_TABLE" in message.upper()
    assert type(raised.value.__cause__).__module__.startswith("snowflake.connector")


def test_a_file_copy_skipped_is_an_error_never_a_short_table(
    warehouse: SnowflakeWarehouse, tmp_path: Path
) -> None:
    # Why every COPY says FORCE = TRUE: Snowflake skips a file it loaded into the table
    # before; the answer then says LOAD_SKIPPED, which must not pass as 0 rows.
    path = _gz(tmp_path / "a.json.gz", [{"k": 1}])
    with warehouse._session("testing") as session:
        session.run('CREATE SCHEMA "S"')
        session.run('CREATE TABLE "S"."RAW_DOCS" ("V" VARIANT)')
        session.run('CREATE TEMPORARY STAGE "S"."ST"')
        session.run(f'PUT \'file://{path}\' @"S"."ST"/ AUTO_COMPRESS = FALSE')
        copy = 'COPY INTO "S"."RAW_DOCS" FROM @"S"."ST"/ FILE_FORMAT = (TYPE = JSON)'
        assert backend._copied(session.run(copy)) == 1
        with pytest.raises(WarehouseError, match="COPY did not load 1 files: .*LOAD_SKIPPED"):
            backend._copied(session.run(copy))


# ----- the SQL sent -------------------------------------------------------------------------

FIELDS = [
    JsonField("$insert_id", "insert_id", STR),
    JsonField("event_id", "event_id", INT),
    JsonField("event_time", "event_time", TS_NAIVE),
    JsonField("event_properties", "event_properties", JSON),
]


def test_the_export_is_put_as_is_and_copied_with_a_json_file_format(
    warehouse: SnowflakeWarehouse, sent: list[str], tmp_path: Path
) -> None:
    events = [
        {"$insert_id": f"i{i}", "event_id": i, "event_time": "2026-11-17 01:02:03.000000"}
        | {"event_properties": {"n": i} if i else None}
        for i in range(3)
    ]
    files = [_gz(tmp_path / "a.json.gz", events[:2]), _gz(tmp_path / "b.json.gz", events[2:])]
    assert warehouse.load_json_lines("amplitude.events", files, FIELDS, "day", DAY) == 3

    stage = next(s.split()[-1] for s in sent if s.startswith("CREATE TEMPORARY STAGE"))
    assert stage.startswith('"AMPLITUDE"."_ANALYTICS_ASSETS_')
    puts = [s for s in sent if s.startswith("PUT")]
    assert puts == [
        f"PUT 'file://{f.resolve().as_posix()}' @{stage}/{i}/ "
        "AUTO_COMPRESS = FALSE SOURCE_COMPRESSION = GZIP OVERWRITE = TRUE"
        for i, f in enumerate(files)
    ]
    transaction = sent[sent.index("BEGIN") :]
    assert transaction == [
        "BEGIN",
        'DELETE FROM "AMPLITUDE"."EVENTS" WHERE "DAY" = ?',
        'COPY INTO "AMPLITUDE"."EVENTS" ("DAY", "INSERT_ID", "EVENT_ID", "EVENT_TIME", '
        "\"EVENT_PROPERTIES\") FROM (SELECT CAST('2026-11-17' AS DATE), "
        '$1:"$insert_id"::VARCHAR, $1:"event_id"::NUMBER(19, 0), '
        '$1:"event_time"::TIMESTAMP_NTZ, STRIP_NULL_VALUE($1:"event_properties") '
        f"FROM @{stage}/) FILE_FORMAT = (TYPE = JSON COMPRESSION = GZIP) "
        "ON_ERROR = ABORT_STATEMENT FORCE = TRUE",
        "COMMIT",
    ]
    # And what it loaded (fakesnow running the same SELECT list; see backend_fixtures).
    got = warehouse.records(
        "SELECT insert_id, event_id, event_properties FROM amplitude.events ORDER BY event_id"
    )
    assert [(r["insert_id"], r["event_id"]) for r in got] == [("i0", 0), ("i1", 1), ("i2", 2)]
    assert got[0]["event_properties"] is None and json.loads(got[1]["event_properties"]) == {"n": 1}


def test_staged_rows_are_put_and_copied_inside_the_partitions_transaction(
    warehouse: SnowflakeWarehouse, sent: list[str]
) -> None:
    columns = [Column("day", DATE), Column("name", STR), Column("doc", JSON)]
    rows = pa.table(
        {"day": pa.array([DAY], pa.date32()), "name": ["a"], "doc": ['{"plan": "free"}']}
    )
    assert warehouse.replace_partition("s.t", rows, "day", DAY, columns=columns) == 1

    put = next(s for s in sent if s.startswith("PUT"))
    assert put.endswith("rows-0.parquet' @" + put.split("@")[1])
    assert put.split("@")[1].endswith("/0/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE")
    stage = put.split("@")[1].split("/")[0]
    assert sent.index(put) < sent.index("BEGIN")  # PUT is no part of a transaction
    assert sent[sent.index("BEGIN") :] == [
        "BEGIN",
        'DELETE FROM "S"."T" WHERE "DAY" = ?',
        'COPY INTO "S"."T" ("DAY", "NAME", "DOC") FROM (SELECT $1:"day", $1:"name", '
        f'PARSE_JSON($1:"doc"::VARCHAR) FROM @{stage}/0/) '
        "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) "
        "ON_ERROR = ABORT_STATEMENT FORCE = TRUE",
        "COMMIT",
    ]
    # No DDL between BEGIN and COMMIT: in Snowflake it would commit the DELETE alone.
    assert [s for s in sent if s.startswith(("CREATE", "ALTER", "DROP"))] == [
        s for s in sent[: sent.index("BEGIN")] if s.startswith(("CREATE", "ALTER", "DROP"))
    ]
    (row,) = warehouse.records("SELECT doc FROM s.t")
    assert json.loads(row["doc"]) == {"plan": "free"}


def test_a_whole_table_is_replaced_in_one_statement_keeping_its_grants(
    warehouse: SnowflakeWarehouse, sent: list[str]
) -> None:
    assert warehouse.replace_table("s.whole", pa.table({"k": ["a", "b"]})) == 2
    load = next(s for s in sent if s.startswith('CREATE TABLE IF NOT EXISTS "S"."_ANALYTICS'))
    load_table = load.split()[5]
    replace = f'CREATE OR REPLACE TABLE "S"."WHOLE" COPY GRANTS AS SELECT * FROM {load_table}'
    assert replace in sent
    assert sent[sent.index(replace) + 1] == f"DROP TABLE IF EXISTS {load_table}"
    assert warehouse.tables() == ["s.whole"]  # the load table is gone
    sent.clear()
    query = "SELECT k, 1 AS n FROM s.whole"
    assert (
        warehouse.replace_table("s.copy", query, columns=[Column("k", STR), Column("n", INT)]) == 2
    )
    assert (
        'CREATE OR REPLACE TABLE "S"."COPY" COPY GRANTS AS SELECT CAST("K" AS VARCHAR) AS "K", '
        f'CAST("N" AS NUMBER(19, 0)) AS "N" FROM ({query}) AS q'
    ) in sent


def test_json_text_reads_text_and_variant_columns(warehouse: SnowflakeWarehouse) -> None:
    warehouse.create_table("s.docs", [Column("i", INT), Column("doc", JSON), Column("txt", STR)])
    warehouse.execute(
        "INSERT INTO s.docs (i, doc, txt) SELECT 1, PARSE_JSON(?), ?",
        ['{"plan": {"seats": 3}}', '{"plan": "free"}'],
    )
    plan_doc, plan_txt = warehouse.json_text("doc", "plan"), warehouse.json_text("txt", "plan")
    (row,) = warehouse.records(f"SELECT {plan_doc} AS a, {plan_txt} AS b FROM s.docs")
    assert (json.loads(row["a"]), json.loads(row["b"])) == ({"seats": 3}, "free")


# ----- installs without the extra -----------------------------------------------------------


def test_the_backend_imports_without_the_connector() -> None:
    # A deployment without the `snowflake` extra loads the code location; only a
    # Snowflake warehouse in use asks for the driver, and says how to install it.
    probe = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "snowflake":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
from analytics_assets.warehouse.base import warehouse_from_url, WarehouseError
w = warehouse_from_url("snowflake://me:pw@acct/db")
try:
    w.records("SELECT 1")
except WarehouseError as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'analytics_assets[snowflake]'" in out
