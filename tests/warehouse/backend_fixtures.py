"""Warehouses of every backend for the tests: a DuckDB file, a database of its own on the
session's throwaway Postgres server (``tests/postgres_server.py``), or a database of its
own in fakesnow, the local Snowflake fake (``snowflake.connector.connect`` patched).

A module of its own (not ``conftest``): test files import it by name, and a name shared
with another folder's conftest would resolve to whichever folder pytest put first.

fakesnow runs Snowflake SQL on DuckDB. Three things the Snowflake backend sends it does
not run as Snowflake does; ``fakesnow_patched`` narrows each, and nothing else:

* it takes any ``$word`` outside a string as a session variable, so the export's
  ``$1:"$insert_id"`` fails; here a ``$`` right after a double quote is left alone;
* a COPY transformation's ``$1:"name"`` becomes DuckDB's bare ``name``, which fails for
  words DuckDB reserves (``at``); here it stays quoted;
* a COPY transformation of JSON files is not emulated at all (its reader gives one
  column): here that one statement is run as the same files COPY'd into a one-VARIANT
  table and the same SELECT list over it (``$1`` becoming the VARIANT column), so the
  field expressions the backend sends are the ones that run. The statement itself is
  asserted as sent in ``test_snowflake.py``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
from analytics_assets.warehouse.postgres import PostgresWarehouse

BACKENDS = ["duckdb", "postgres", "snowflake"]
# The raw export's loaders: Postgres's has two parsers (PostgresWarehouse.json_parser).
JSON_LOADERS = ["duckdb", "postgres", "postgres-parsed-by-postgres", "snowflake"]

_databases = itertools.count()
# The JSON COPY the Snowflake backend sends (see the module's docstring).
_JSON_COPY = re.compile(
    r"^COPY INTO (?P<table>\S+) \((?P<columns>[^)]*)\) FROM \(SELECT (?P<picked>.*) "
    r"FROM (?P<stage>@\S+)\) (?P<format>FILE_FORMAT = \(TYPE = JSON[^)]*\))",
    re.S,
)


def make_warehouse(request: pytest.FixtureRequest, backend: str, name: str) -> WarehouseResource:
    """A fresh, empty warehouse of ``backend`` (one of ``JSON_LOADERS``)."""
    if backend == "duckdb":
        tmp = request.getfixturevalue("tmp_path_factory").mktemp(name)
        return DuckDBWarehouse(database=str(tmp / "warehouse.duckdb"))
    if backend == "snowflake":
        return make_snowflake(request, name)
    server = request.getfixturevalue("postgres_server")
    parser = "postgres" if backend == "postgres-parsed-by-postgres" else "duckdb"
    return PostgresWarehouse(url=server.new_database(name), json_parser=parser)


def make_snowflake(request: pytest.FixtureRequest, name: str) -> WarehouseResource:
    """A Snowflake warehouse on fakesnow, in a database of its own, for as long as the
    requesting fixture lives."""
    pytest.importorskip("fakesnow", reason="the Snowflake tests need fakesnow (the dev extra)")
    from analytics_assets.warehouse.snowflake import SnowflakeWarehouse

    patched = fakesnow_patched()
    patched.__enter__()
    request.addfinalizer(lambda: patched.__exit__(None, None, None))
    database = f"{name}_{next(_databases)}".upper()
    # The URL form, as ANALYTICS_ASSETS_WAREHOUSE gives it; fakesnow ignores the login.
    return SnowflakeWarehouse(url=f"snowflake://tester:pw@fake-account/{database}?warehouse=WH")


@contextmanager
def fakesnow_patched() -> Iterator[None]:
    """``fakesnow.patch()`` with the three narrowings of the module's docstring (entered
    again while active, it only reuses the patch)."""
    import unittest.mock as mock

    import fakesnow
    import fakesnow.copy_into
    import fakesnow.variables
    import snowflake.connector
    from sqlglot import exp

    from analytics_assets.warehouse import snowflake as backend

    if isinstance(snowflake.connector.connect, mock.MagicMock):
        yield
        return

    def inline_variables(self: Any, sql: str) -> str:
        for var, value in self._variables.items():
            sql = re.sub(rf"\${var}", value, sql, flags=re.IGNORECASE)
        if left := re.search(r'(?<![\$\w"])\$(?!\d+)\w+', sql):
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"Session variable '{left.group().upper()}' does not exist"
            )
        return sql

    def strip_json_extract(select: exp.Select) -> exp.Select:
        dollar1 = exp.Parameter(this=exp.Literal(this="1", is_string=False))
        for p in select.find_all(exp.Parameter):
            if p == dollar1 and p.parent and (key := p.parent.expression.find(exp.JSONPathKey)):
                assert p.parent.parent, select
                p.parent.parent.args["this"] = exp.Identifier(this=key.this, quoted=True)
        return select

    run = backend._Session.run

    def run_json_copy(
        session: backend._Session, sql: str, params: Sequence[Any] | None = None
    ) -> Any:
        copy = _JSON_COPY.match(sql)
        if not copy:
            return run(session, sql, params)
        table = copy["table"]
        landing = f"{table.rpartition('.')[0]}.{chr(34)}_FAKESNOW_JSON_LINES{chr(34)}".lstrip(".")
        run(session, f'CREATE OR REPLACE TABLE {landing} ("V" VARIANT)')
        try:
            run(session, f"COPY INTO {landing} FROM {copy['stage']} {copy['format']} FORCE = TRUE")
            picked = copy["picked"].replace("$1:", '"V":')
            cursor = run(
                session,
                f"INSERT INTO {table} ({copy['columns']}) SELECT {picked} FROM {landing}",
            )
            loaded = cursor.rowcount
        finally:
            run(session, f"DROP TABLE IF EXISTS {landing}")
        return run(session, f"SELECT 'LOADED' AS status, {loaded} AS rows_loaded")

    with (
        fakesnow.patch(),
        mock.patch.object(fakesnow.variables.Variables, "inline_variables", inline_variables),
        mock.patch.object(fakesnow.copy_into, "_strip_json_extract", strip_json_extract),
        mock.patch.object(backend._Session, "run", run_json_copy),
    ):
        yield
