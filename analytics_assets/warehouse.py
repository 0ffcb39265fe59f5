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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from analytics_assets.settings import warehouse_path

if TYPE_CHECKING:
    # Only for hints: pandas, pyarrow and numpy cost a step process ~80 MB and half a
    # second to import, and most steps (the raw export's load among them) never use them.
    import pandas as pd
    import pyarrow as pa

    Data = pd.DataFrame | pa.Table

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _check_table(table: str) -> str:
    # Table names come from code, never from users; still, refuse anything that is
    # not a plain (schema.)identifier before it reaches SQL text.
    if not _IDENTIFIER.match(table):
        raise ValueError(f"invalid table name {table!r}: use schema.table with plain identifiers")
    return table


def _schema_of(table: str) -> str | None:
    return table.split(".", 1)[0] if "." in table else None


class DuckDBWarehouse(dg.ConfigurableResource):
    """A DuckDB file as the warehouse; schemas follow the asset key prefixes."""

    database: str = Field(
        default_factory=lambda: str(warehouse_path()),
        description="Path of the DuckDB file (default: warehouse.duckdb in the data directory).",
    )
    memory_limit: str = Field(
        default="192MB",
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

    def _duckdb(self) -> DuckDBResource:
        config: dict[str, Any] = {"memory_limit": self.memory_limit, "threads": self.threads}
        if self.temp_directory:
            config["temp_directory"] = self.temp_directory
        return DuckDBResource(database=self.database, connection_config=config)

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; DuckDB allows one writing process at a time, and
        dagster-duckdb retries while another process holds the file."""
        from pathlib import Path

        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self._duckdb().get_connection() as conn:
            yield conn

    # ----- writes ---------------------------------------------------------------------

    def replace_partition(
        self,
        table: str,
        data: Data | str,
        partition_column: str,
        partition_value: Any,
        *,
        preserve_insertion_order: bool = True,
    ) -> int:
        """Replace the rows of one partition with ``data`` atomically; returns rows written.

        ``data`` is a frame, an Arrow table, or a SQL ``SELECT`` (for loads the
        database reads itself, such as ``read_json`` over downloaded files).
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
                source = self._register(conn, data)
                self._ensure_table(conn, table, source)
                conn.execute(f"DELETE FROM {table} WHERE {partition_column} = ?", [partition_value])
                before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
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
                "WHERE table_name = ? AND (? = '' OR table_schema = ?)",
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
                    "WHERE table_name = ? AND (? = '' OR table_schema = ?) "
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
