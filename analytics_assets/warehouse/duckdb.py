"""The warehouse resource: where every asset writes, DuckDB by default.

One mechanism for the whole project: assets write through this resource and return
``MaterializeResult`` (as Dagster's own data platform does for API ingestion), so the
raw Amplitude export can be loaded by the database straight from files, without
passing through a pandas frame. Partitioned tables are written with
``replace_partition``: delete the partition's rows and insert the new ones in one
transaction, so a re-run or a backfill never duplicates or loses rows.

Another warehouse (Snowflake, BigQuery) is another implementation of these few
methods bound to the same resource key; the assets do not change.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from analytics_assets.warehouse import isal_gzip

if TYPE_CHECKING:
    # Only for hints: pandas, pyarrow and numpy cost a step process ~80 MB and half a
    # second to import, and most steps (the raw export's load among them) never use them.
    import pandas as pd
    import pyarrow as pa

    Data = pd.DataFrame | pa.Table

ATTACH_RETRIES = 10
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _check_table(table: str) -> str:
    # Table names come from code, never from users; still, refuse anything that is
    # not a plain (schema.)identifier before it reaches SQL text.
    if not _IDENTIFIER.match(table):
        raise ValueError(f"invalid table name {table!r}: use schema.table with plain identifiers")
    return table


def _attach(conn: duckdb.DuckDBPyConnection, database: str, row_group_size: int) -> None:
    """Attach the warehouse file as the connection's default database, retrying while
    another process holds its lock, with dagster-duckdb's schedule for a connect (10
    retries, 0.1 s doubling: about 100 s in all, longer than a day's export load)."""
    path = database.replace("'", "''")
    for attempt in range(ATTACH_RETRIES + 1):
        try:
            conn.execute(f"ATTACH '{path}' AS warehouse (ROW_GROUP_SIZE {row_group_size})")
            break
        except duckdb.IOException:
            if attempt == ATTACH_RETRIES:
                raise
            time.sleep(0.1 * 2**attempt)
    conn.execute("USE warehouse")


def _schema_of(table: str) -> str | None:
    return table.split(".", 1)[0] if "." in table else None


DEFAULT_DATABASE = "data/warehouse.duckdb"


class DuckDBWarehouse(dg.ConfigurableResource):
    """A DuckDB file as the warehouse; schemas follow the asset key prefixes."""

    database: str = Field(
        default=DEFAULT_DATABASE,
        description="Path of the DuckDB file (relative paths start at the working directory).",
    )
    memory_limit: str = Field(
        default="288MB",
        description=(
            "DuckDB's memory_limit: the most its buffers hold. Loads stream through it and "
            "checks and queries that need more spill to temp_directory, so a step's memory "
            "stays flat whatever the day's volume (see bench/README.md, Daily sync)."
        ),
    )
    threads: int = Field(default=2, description="DuckDB worker threads.")
    temp_directory: str | None = Field(
        default=None,
        description="Where DuckDB spills beyond memory_limit (default: <database>.tmp).",
    )
    row_group_size: int = Field(
        default=61_440,
        description=(
            "Rows per row group, for every connection that writes the file (DuckDB does not "
            "store it; a connection with another size rewrites the row groups it checkpoints). "
            "Half DuckDB's default: each loading thread builds one row group in memory, and at "
            "this size two of them fit under memory_limit instead of spilling (bench/README.md)."
        ),
    )

    def _duckdb(self) -> DuckDBResource:
        # The file is attached, not opened, so that its row group size can be set; the
        # connection itself is an empty in-memory database.
        temp = self.temp_directory or f"{self.database}.tmp"
        config: dict[str, Any] = {
            "memory_limit": self.memory_limit,
            "threads": self.threads,
            "temp_directory": temp,
        }
        return DuckDBResource(database=":memory:", connection_config=config)

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; DuckDB allows one writing process at a time, so
        attaching retries while another process holds the file. The connection also reads
        ``isalgz://`` paths: gzip files inflated by ISA-L (``warehouse/isal_gzip.py``)."""
        from pathlib import Path

        if self.row_group_size <= 0 or self.row_group_size % 2048:
            raise ValueError(
                f"row_group_size {self.row_group_size} is invalid: use a positive multiple "
                "of 2048 (DuckDB's vector size), such as 61440 or 122880"
            )
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self._duckdb().get_connection() as conn:
            try:
                _attach(conn, self.database, self.row_group_size)
                isal_gzip.register(conn)
                try:
                    yield conn
                finally:
                    isal_gzip.unregister(conn)
            finally:
                # dagster-duckdb closes the connection only when the block succeeds; after
                # an error the file would stay attached, and locked against every other
                # connection, until the garbage collector found the connection.
                conn.close()

    # ----- writes ---------------------------------------------------------------------

    def replace_partition(
        self,
        table: str,
        data: Data | str | list[str],
        partition_column: str,
        partition_value: Any,
        *,
        preserve_insertion_order: bool = True,
    ) -> int:
        """Replace the rows of one partition with ``data`` atomically; returns rows written.

        ``data`` is a frame, an Arrow table, or a SQL ``SELECT`` (for loads the
        database reads itself, such as ``read_json`` over downloaded files), or a list of
        ``SELECT``s inserted one after the other in the same transaction (a query holds
        what it opened until it ends: a long list of files is read in batches).
        ``preserve_insertion_order=False`` lets DuckDB insert the rows in any order: for
        big loads under ``memory_limit``, where keeping the order makes DuckDB run the
        insert on one thread (measured on the raw Amplitude export: 45,000 events/s with
        the order kept, 70,000 without, at the same memory; bench/README.md). A table has
        no order, so nothing a query may rely on changes.
        """
        _check_table(table)
        with self.connection() as conn:
            if not preserve_insertion_order:
                conn.execute("SET preserve_insertion_order = false")
            conn.execute("BEGIN TRANSACTION")
            try:
                if isinstance(data, list):
                    if not data:
                        raise ValueError(f"nothing to write to {table}: no SELECT in the list")
                    sources = [f"({sql})" for sql in data]
                else:
                    sources = [self._register(conn, data)]
                self._ensure_table(conn, table, sources[0])
                conn.execute(f"DELETE FROM {table} WHERE {partition_column} = ?", [partition_value])
                before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for source in sources:
                    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {source}")
                after = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            finally:
                if not preserve_insertion_order:
                    conn.execute("RESET preserve_insertion_order")
        return int(after - before)

    def replace_table(self, table: str, data: Data | str) -> int:
        """Replace a whole (unpartitioned) table; returns rows written."""
        _check_table(table)
        with self.connection() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                source = self._register(conn, data)
                schema = _schema_of(table)
                if schema:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {source}")
                rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
        return int(rows)

    def append(self, table: str, data: Data | str) -> int:
        """Append rows (logs and alert history); returns rows written."""
        _check_table(table)
        with self.connection() as conn:
            source = self._register(conn, data)
            self._ensure_table(conn, table, source)
            before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {source}")
            after = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return int(after - before)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.connection() as conn:
            conn.execute(sql, list(params or []))

    # ----- reads ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """The answer as a pandas frame (pandas is imported on first use)."""
        with self.connection() as conn:
            return conn.execute(sql, list(params or [])).df()

    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """A small answer (checks, counts, previews) as dicts, without pandas."""
        with self.connection() as conn:
            cursor = conn.execute(sql, list(params or []))
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def table_exists(self, table: str) -> bool:
        _check_table(table)
        schema, _, name = table.rpartition(".")
        with self.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_catalog = current_database() AND table_name = ? "
                "AND (? = '' OR table_schema = ?)",
                [name, schema, schema],
            ).fetchone()
        return bool(row and row[0])

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of each column, for the column schema shown in the UI."""
        _check_table(table)
        schema, _, name = table.rpartition(".")
        with self.connection() as conn:
            return [
                (str(col), str(typ))
                for col, typ in conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_catalog = current_database() AND table_name = ? "
                    "AND (? = '' OR table_schema = ?) "
                    "ORDER BY ordinal_position",
                    [name, schema, schema],
                ).fetchall()
            ]

    # ----- helpers --------------------------------------------------------------------

    @staticmethod
    def _register(conn: duckdb.DuckDBPyConnection, data: Data | str) -> str:
        if isinstance(data, str):
            return f"({data})"
        conn.register("_incoming", data)
        return "_incoming"

    @staticmethod
    def _ensure_table(conn: duckdb.DuckDBPyConnection, table: str, source: str) -> None:
        """Create the table from the data's shape, or add columns the data brings anew."""
        schema = _schema_of(table)
        if schema:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {source} LIMIT 0")
        existing = {row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()}
        for name, typ, *_ in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall():
            if name not in existing:
                conn.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {typ}')
