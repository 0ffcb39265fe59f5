"""The DuckDB backend: a DuckDB file as the warehouse, the embedded default.

Assets write through the ``WarehouseResource`` interface (``warehouse/base.py``); here it
is DuckDB reading the staged Parquet files (``read_parquet``) and the raw Amplitude export
(``read_json`` over ``isalgz://`` paths) itself, without passing rows through a pandas
frame. Partitioned tables are written with ``replace_partition``: delete the
partition's rows and insert the new ones in one transaction, so a re-run or a backfill
never duplicates or loses rows.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from analytics_assets.warehouse import isal_gzip
from analytics_assets.warehouse.base import (
    Data,
    ParquetFile,
    Query,
    WarehouseError,
    WarehouseResource,
    check_json_key,
    check_table,
    split_table,
    type_of_value,
)
from analytics_assets.warehouse.types import Column, JsonField, sql_type

if TYPE_CHECKING:
    import pandas as pd

ATTACH_RETRIES = 10
DEFAULT_DATABASE = "data/warehouse.duckdb"
# DuckDB keeps every file of a scan open until the query ends (~0.5 MB each through
# isal_gzip), so a day of JSON lines is inserted in batches of files, in one transaction:
# the step's memory does not grow with the number of files a day's volume brings.
JSON_BATCH_FILES = 24
# A memory_limit in DuckDB's units (KB = 1000 bytes, KiB = 1024), to compare two of them.
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*", re.IGNORECASE)
_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

T = TypeVar("T")


def _size_bytes(text: str) -> float | None:
    """A memory_limit such as ``288MB`` as bytes, or None when it reads otherwise."""
    found = _SIZE.fullmatch(text)
    unit = _UNITS.get(found.group(2).lower()) if found else None
    return float(found.group(1)) * unit if found and unit else None


def _attach(conn: duckdb.DuckDBPyConnection, database: str, row_group_size: int) -> None:
    """Attach the warehouse file as the connection's default database, retrying while
    another process holds its lock, with dagster-duckdb's schedule for a connect (10
    retries, 0.1 s doubling: about 100 s in all, longer than a day's export load)."""
    path = database.replace("'", "''")
    for attempt in range(ATTACH_RETRIES + 1):
        try:
            conn.execute(f"ATTACH '{path}' AS warehouse (ROW_GROUP_SIZE {row_group_size})")
            break
        except duckdb.IOException as exc:
            if attempt == ATTACH_RETRIES:
                raise _locked(database, exc) from exc
            time.sleep(0.1 * 2**attempt)
    conn.execute("USE warehouse")


def _locked(database: str, exc: duckdb.IOException) -> Exception:
    """The error of a warehouse file another process kept locked: DuckDB's message names
    the holder (its program and PID); say what to do about it."""
    text = str(exc)
    if "lock" not in text.lower():
        return exc
    holder = text.split("Conflicting lock is held in", 1)[-1].strip().rstrip(".")
    return WarehouseError(
        f"the DuckDB warehouse {database} stayed locked by another process ({holder}) "
        "through ~100 s of retries. A DuckDB file has one writer: close that process (a "
        "duckdb shell or notebook holding the file), read through `analytics-assets sql`, "
        "which reads a copy, or move to a Postgres warehouse (ANALYTICS_ASSETS_WAREHOUSE) "
        "for many readers and writers."
    )


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_list(columns: Sequence[Column]) -> str:
    return ", ".join(f"{_ident(c.name)} {sql_type(c.type, 'duckdb')}" for c in columns)


def table_ddl(table: str, columns: Sequence[Column]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of ``columns`` in DuckDB's types (for benches that
    drive a DuckDB connection themselves; the resource's ``create_table`` does the same)."""
    return f"CREATE TABLE IF NOT EXISTS {check_table(table)} ({_column_list(columns)})"


def _run(conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> None:
    # Without parameters the statement is run exactly as the load has always run it.
    if params:
        conn.execute(sql, list(params))
    else:
        conn.execute(sql)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """DuckDB's errors as the interface's ``WarehouseError`` (the original as its cause)."""
    try:
        yield
    except duckdb.Error as exc:
        raise WarehouseError(f"{what}: {type(exc).__name__}: {exc}") from exc


def export_select_sql(
    files: Sequence[Path], day: date, fields: Sequence[JsonField], *, isal: bool = True
) -> str:
    """A SELECT that makes DuckDB read gzipped JSON lines into table columns, with the
    partition column ``day``.

    An explicit schema makes DuckDB skip type inference (the slow, memory-hungry part of
    read_json) and makes a record with an unexpected shape fail loudly instead of being
    coerced or dropped. With ``isal`` the files are inflated by ISA-L
    (``warehouse/isal_gzip.py``, read through a warehouse connection), about twice as fast
    as DuckDB's own inflate; a file too big for that (its gzip trailer's size could have
    wrapped) is read by DuckDB's."""
    return json_select_sql(files, "day", day, fields, isal=isal)


def json_select_sql(
    files: Sequence[Path],
    partition_column: str,
    partition_value: Any,
    fields: Sequence[JsonField],
    *,
    isal: bool = True,
) -> str:
    """``export_select_sql`` for any partition column and value."""
    columns = ", ".join(f"{_sql_string(f.source)}: '{sql_type(f.type, 'duckdb')}'" for f in fields)
    select = ", ".join(f'"{f.source}" AS {f.name}' for f in fields)
    part = _literal(partition_value)
    fast = [f for f in files if isal and isal_gzip.can_read(f)]
    sources = [([isal_gzip.url(f) for f in fast], "none")] if fast else []
    if rest := [f.as_posix() for f in files if f not in fast]:
        sources.append((rest, "gzip"))
    return " UNION ALL ".join(
        f"SELECT {part} AS {partition_column}, {select} "
        f"FROM read_json([{', '.join(map(_sql_string, paths))}], format='newline_delimited', "
        f"compression='{compression}', columns={{{columns}}}, "
        f"timestampformat='%Y-%m-%d %H:%M:%S.%f', maximum_object_size=16777216)"
        for paths, compression in sources
    )


def _literal(value: Any) -> str:
    # The partition value as SQL text in the export's SELECT (one per batch of files,
    # inserted BY NAME): a date as DuckDB's DATE literal, as the load has always written it.
    if isinstance(value, datetime):
        return f"TIMESTAMP {_sql_string(value.isoformat(sep=' '))}"
    if isinstance(value, date):
        return f"DATE {_sql_string(value.isoformat())}"
    if isinstance(value, bool | int | float):
        return str(value)
    return _sql_string(str(value))


class DuckDBWarehouse(WarehouseResource):
    """A DuckDB file as the warehouse; schemas follow the asset key prefixes."""

    backend = "duckdb"

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
    stream_memory_limit: str = Field(
        default="64MB",
        description=(
            "DuckDB's memory_limit (when smaller than memory_limit) for loading a staged "
            "Parquet file (the rows an API streamed: loading.load_rows) and for records "
            "(checks, counts, previews). Their state grows with the table (the insert's row "
            "groups, the keys check's hash table) and DuckDB holds it in memory up to its "
            "limit before it spills: under 288MB a 1.38-million-row visitor table's keys "
            "check took 200 MB, under 64MB 70 MB, 0.05 s longer. Where DuckDB cannot work "
            "within it (its spilling aggregate needed more for ~11 million keys), the "
            "statement runs again under memory_limit (bench/README.md, Visitor-level Pendo "
            "usage)."
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

    def _duckdb(self, memory_limit: str | None = None) -> DuckDBResource:
        # The file is attached, not opened, so that its row group size can be set; the
        # connection itself is an empty in-memory database.
        temp = self.temp_directory or f"{self.database}.tmp"
        config: dict[str, Any] = {
            "memory_limit": memory_limit or self.memory_limit,
            "threads": self.threads,
            "temp_directory": temp,
        }
        return DuckDBResource(database=":memory:", connection_config=config)

    @contextmanager
    def connection(self, memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection (DuckDB's own; for this backend's tests and benches,
        not part of the interface), under ``memory_limit`` (default: the warehouse's).
        DuckDB allows one writing process at a time, so attaching retries while another
        process holds the file. The connection also reads ``isalgz://`` paths: gzip files
        inflated by ISA-L (``warehouse/isal_gzip.py``)."""
        if self.row_group_size <= 0 or self.row_group_size % 2048:
            raise ValueError(
                f"row_group_size {self.row_group_size} is invalid: use a positive multiple "
                "of 2048 (DuckDB's vector size), such as 61440 or 122880"
            )
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self._duckdb(memory_limit).get_connection() as conn:
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

    def create_table(self, table: str, columns: Sequence[Column]) -> None:
        check_table(table)
        with _errors(f"creating {table}"), self.connection() as conn:
            self._create(conn, table, columns)

    def replace_partition(
        self,
        table: str,
        data: Data | Sequence[Data],
        partition_column: str,
        partition_value: Any,
        *,
        columns: Sequence[Column] | None = None,
        preserve_insertion_order: bool = True,
    ) -> int:
        """Replace the rows of one partition with ``data`` atomically; returns rows written.

        ``data`` is a frame, an Arrow table, a staged Parquet file, or a ``SELECT`` (a
        ``Query``, or a plain string), or a list of them inserted one after the other in
        the same transaction. ``preserve_insertion_order=False`` lets DuckDB insert the
        rows in any order: for big loads under ``memory_limit``, where keeping the order
        makes DuckDB run the insert on one thread (measured on the raw Amplitude export:
        45,000 events/s with the order kept, 70,000 without, at the same memory;
        bench/README.md). A table has no order, so nothing a query may rely on changes.
        """
        check_table(table)
        items = list(data) if isinstance(data, list | tuple) else [data]
        if not items:
            raise ValueError(f"nothing to write to {table}: no SELECT in the list")
        what = f"replacing {table} where {partition_column} = {partition_value}"
        with _errors(what):
            return self._bounded(
                lambda conn: self._replace_partition(
                    conn,
                    table,
                    items,
                    partition_column,
                    partition_value,
                    columns,
                    preserve_insertion_order,
                ),
                stream=all(isinstance(item, ParquetFile) for item in items),
            )

    def _replace_partition(
        self,
        conn: duckdb.DuckDBPyConnection,
        table: str,
        items: Sequence[Data],
        partition_column: str,
        partition_value: Any,
        columns: Sequence[Column] | None,
        preserve_insertion_order: bool,
    ) -> int:
        if not preserve_insertion_order:
            conn.execute("SET preserve_insertion_order = false")
        conn.execute("BEGIN TRANSACTION")
        try:
            sources = [self._register(conn, item, i) for i, item in enumerate(items)]
            self._ensure_table(conn, table, sources[0], columns)
            conn.execute(f"DELETE FROM {table} WHERE {partition_column} = ?", [partition_value])
            before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for source, params in sources:
                _run(conn, f"INSERT INTO {table} BY NAME SELECT * FROM {source}", params)
            after = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        finally:
            if not preserve_insertion_order:
                conn.execute("RESET preserve_insertion_order")
        return int(after - before)

    def replace_table(
        self, table: str, data: Data, *, columns: Sequence[Column] | None = None
    ) -> int:
        """Replace a whole (unpartitioned) table; returns rows written."""
        check_table(table)

        def write(conn: duckdb.DuckDBPyConnection) -> int:
            conn.execute("BEGIN TRANSACTION")
            try:
                source, params = self._register(conn, data)
                schema, _ = split_table(table)
                if schema:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                if columns:
                    conn.execute(f"CREATE OR REPLACE TABLE {table} ({_column_list(columns)})")
                    names = ", ".join(_ident(c.name) for c in columns)
                    _run(
                        conn, f"INSERT INTO {table} ({names}) SELECT {names} FROM {source}", params
                    )
                else:
                    _run(conn, f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {source}", params)
                rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            return int(rows)

        with _errors(f"replacing {table}"):
            return self._bounded(write, stream=isinstance(data, ParquetFile))

    def append(self, table: str, data: Data, *, columns: Sequence[Column] | None = None) -> int:
        """Append rows (logs and alert history); returns rows written."""
        check_table(table)

        def write(conn: duckdb.DuckDBPyConnection) -> int:
            source, params = self._register(conn, data)
            self._ensure_table(conn, table, (source, params), columns)
            before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            _run(conn, f"INSERT INTO {table} BY NAME SELECT * FROM {source}", params)
            after = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            return int(after - before)

        with _errors(f"appending to {table}"):
            return self._bounded(write, stream=isinstance(data, ParquetFile))

    def load_json_lines(
        self,
        table: str,
        files: Sequence[Path],
        fields: Sequence[JsonField],
        partition_column: str,
        partition_value: Any,
    ) -> int:
        """DuckDB's ``read_json`` over the files, with the fields' explicit schema, in
        batches of ``JSON_BATCH_FILES`` files inserted in one transaction (DuckDB holds a
        scan's files open until it ends). Files are inflated by ISA-L (``isal_gzip``); a
        file whose gzip trailer misstates its size makes the whole load start again with
        DuckDB's own gzip reader, which needs no size (nothing was written: the
        transaction rolled back)."""
        check_table(table)
        for f in fields:
            check_json_key(f.name)
        columns = [Column(partition_column, type_of_value(partition_value))]
        columns += [Column(f.name, f.type) for f in fields]
        files = list(files)
        batches = [files[i : i + JSON_BATCH_FILES] for i in range(0, len(files), JSON_BATCH_FILES)]
        what = f"loading {len(files)} JSON-lines files into {table}"

        def load(conn: duckdb.DuckDBPyConnection, isal: bool) -> int:
            if not batches:
                return self._empty_partition(conn, table, partition_column, partition_value)
            selects = [
                Query(json_select_sql(b, partition_column, partition_value, fields, isal=isal))
                for b in batches
            ]
            # Millions of wide rows under the warehouse's memory_limit: without insertion
            # order DuckDB reads and inserts on every thread (bench/README.md, Daily sync).
            return self._replace_partition(
                conn, table, selects, partition_column, partition_value, None, False
            )

        with _errors(what), self.connection() as conn:
            # The table exists with its explicit schema even before the first records
            # arrive, so an empty day still replaces its partition, with nothing.
            self._create(conn, table, columns)
            try:
                return load(conn, isal=True)
            except duckdb.Error as exc:
                if isal_gzip.GzipSizeError.__name__ not in str(exc):
                    raise
                reason = next(line for line in str(exc).splitlines() if "GzipSizeError" in line)
                dg.get_dagster_logger().warning(
                    f"{reason}; loading {table} where {partition_column} = {partition_value} "
                    "with DuckDB's own gzip reader instead"
                )
                return load(conn, isal=False)

    def _empty_partition(
        self, conn: duckdb.DuckDBPyConnection, table: str, column: str, value: Any
    ) -> int:
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", [value])
        return 0

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with _errors("executing a statement"), self.connection() as conn:
            conn.execute(sql, list(params or []))

    # ----- reads ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """The answer as a pandas frame (pandas is imported on first use)."""
        with _errors("running a query"), self.connection() as conn:
            return conn.execute(sql, list(params or [])).df()

    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """A small answer (checks, counts, previews) as dicts, without pandas, under
        ``stream_memory_limit``: the work behind it may grow with the table."""

        def answer(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
            cursor = conn.execute(sql, list(params or []))
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        with _errors("running a query"):
            return self._bounded(answer, stream=True)

    def table_exists(self, table: str) -> bool:
        schema, name = split_table(table)
        with _errors(f"looking up {table}"), self.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_catalog = current_database() AND table_name = ? "
                "AND (? = '' OR table_schema = ?)",
                [name, schema or "", schema or ""],
            ).fetchone()
        return bool(row and row[0])

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of each column, for the column schema shown in the UI."""
        schema, name = split_table(table)
        with _errors(f"describing {table}"), self.connection() as conn:
            return [
                (str(col), str(typ))
                for col, typ in conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_catalog = current_database() AND table_name = ? "
                    "AND (? = '' OR table_schema = ?) "
                    "ORDER BY ordinal_position",
                    [name, schema or "", schema or ""],
                ).fetchall()
            ]

    def tables(self) -> list[str]:
        with _errors("listing tables"), self.connection() as conn:
            return [
                f"{schema}.{name}"
                for schema, name in conn.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_catalog = current_database() AND table_type = 'BASE TABLE' "
                    "ORDER BY 1, 2"
                ).fetchall()
            ]

    def json_text(self, column: str, key: str) -> str:
        check_json_key(key)
        return f"CAST(json_extract({column}, '$.\"{key}\"') AS VARCHAR)"

    def json_as_text(self, column: str) -> str:
        return f"CAST({column} AS VARCHAR)"

    def row_hash(self, columns: Sequence[str]) -> str:
        return f"hash({', '.join(columns)})"

    def describe(self) -> str:
        return str(Path(self.database).resolve())

    @contextmanager
    def reading_copy(self, scratch: Path) -> Iterator[WarehouseResource]:
        """A copy of the file (and its WAL) in ``scratch``: DuckDB lets one process hold a
        file, so a reader on the file itself would lock a run out of it."""
        copy = snapshot_copy(Path(self.database), scratch)
        yield DuckDBWarehouse(
            database=str(copy),
            memory_limit=self.memory_limit,
            stream_memory_limit=self.stream_memory_limit,
            threads=self.threads,
        )

    # ----- helpers --------------------------------------------------------------------

    def _stream_limit(self) -> str:
        """``stream_memory_limit``, unless ``memory_limit`` is no bigger (or either reads
        otherwise than a size)."""
        small, big = _size_bytes(self.stream_memory_limit), _size_bytes(self.memory_limit)
        return self.stream_memory_limit if small and big and small < big else self.memory_limit

    def _bounded(self, work: Callable[[duckdb.DuckDBPyConnection], T], *, stream: bool) -> T:
        """``work`` on a connection: under the stream limit when it loads staged rows or
        answers ``records`` (``stream``), and once more under ``memory_limit`` if DuckDB
        ran out of memory there (a load rolled back: nothing was written). Other work
        (SQL over the warehouse, the JSON-lines load) runs under ``memory_limit``."""
        limit = self._stream_limit() if stream else self.memory_limit
        if limit != self.memory_limit:
            try:
                with self.connection(limit) as conn:
                    return work(conn)
            except duckdb.OutOfMemoryException as exc:
                reason = str(exc).splitlines()[0]
                dg.get_dagster_logger().info(
                    f"DuckDB needed more than {limit} ({reason}); running the statement "
                    f"again under memory_limit {self.memory_limit}"
                )
        with self.connection() as conn:
            return work(conn)

    @staticmethod
    def _register(
        conn: duckdb.DuckDBPyConnection, data: Data, index: int = 0
    ) -> tuple[str, list[Any]]:
        """``data`` as something to select from, and the parameters that go with it."""
        if isinstance(data, str):
            return f"({data})", []
        if isinstance(data, Query):
            return f"({data.sql})", list(data.params)
        if isinstance(data, ParquetFile):
            # The same SELECT the stage has always been loaded with.
            return f"(SELECT * FROM read_parquet('{Path(data.path).as_posix()}'))", []
        name = f"_incoming_{index}" if index else "_incoming"
        conn.register(name, data)
        return name, []

    @staticmethod
    def _create(conn: duckdb.DuckDBPyConnection, table: str, columns: Sequence[Column]) -> None:
        schema, _ = split_table(table)
        if schema:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(table_ddl(table, columns))

    @classmethod
    def _ensure_table(
        cls,
        conn: duckdb.DuckDBPyConnection,
        table: str,
        source: tuple[str, list[Any]],
        columns: Sequence[Column] | None = None,
    ) -> None:
        """Create the table from the declared columns or the data's shape, or add the
        columns the data brings anew."""
        if columns:
            cls._create(conn, table, columns)
        sql, params = source
        schema, _ = split_table(table)
        if schema:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        _run(conn, f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {sql} LIMIT 0", params)
        existing = {row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()}
        described = conn.execute(f"DESCRIBE SELECT * FROM {sql}", params or None)
        for name, typ, *_ in described.fetchall():
            if name not in existing:
                conn.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {typ}')


def snapshot_copy(source: Path, target_dir: Path, attempts: int = 5) -> Path:
    """Copy the DuckDB file and its WAL into ``target_dir``, retrying while a writer changes
    them during the copy: the copy is read, never the file a run may be writing."""
    if not source.exists():
        raise WarehouseError(f"no warehouse at {source}: materialize something first")
    target = target_dir / source.name
    wal = source.with_name(source.name + ".wal")

    def stamp() -> tuple:
        return tuple(
            (p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None for p in (source, wal)
        )

    for _ in range(attempts):
        before = stamp()
        shutil.copyfile(source, target)
        target_wal = target.with_name(target.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, target_wal)
        elif target_wal.exists():
            target_wal.unlink()
        if stamp() == before:
            return target
        time.sleep(0.5)
    raise WarehouseError(f"{source} kept changing while it was copied; try again")
