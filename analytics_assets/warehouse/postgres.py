"""The Postgres backend (psycopg 3): the warehouse on a server that many hosts share.

Rows are loaded with ``COPY ... FROM STDIN`` in CSV, streamed in bounded chunks: Arrow
batches (a staged Parquet file read a row group at a time, a frame, an Arrow table) are
written as CSV by pyarrow's C++ writer, ``CSV_BATCH_ROWS`` rows at a time, so the step's
memory stays flat whatever the volume. Partition replacement (``DELETE`` of the
partition + ``COPY``) runs in one transaction.

The raw export (gzipped JSON lines) goes through one ``COPY`` too, parsed by one of two
parsers (``json_parser``), measured on the same day of 5.4 million events (Postgres 15 on
the same 2-CPU host, a quiet machine; at 4 times the day the peaks stayed the same):

* ``duckdb`` (default): DuckDB's ``read_json`` in an in-memory DuckDB of this process, the
  DuckDB backend's own SELECT (explicit schema, files inflated by ISA-L), streamed out as
  Arrow batches and sent as CSV: 70,000 events/s, a peak of ~470 MB (DuckDB's
  memory_limit bounds it). DuckDB is only a parser here: it stores nothing.
* ``postgres``: each file's lines streamed verbatim into a temporary one-column ``jsonb``
  table (CSV with quote and delimiter bytes that JSON text never holds, so no line needs
  escaping), then into the typed columns by ``jsonb_to_record``: 27,000 events/s, a peak
  of ~125 MB, the parsing done by the server.

Tables are created from the declared column types (``types.SQL_TYPES["postgres"]``;
JSON columns are ``jsonb``), with their schema, in a short transaction of their own under
an advisory lock: two steps that create the same schema or table at once (a backfill's
parallel runs) would otherwise fail on Postgres's catalog constraints.

SQL arrives in the portable subset with ``?`` placeholders (``warehouse/base.py``);
``pyformat`` turns them into psycopg's ``%s``. The connection URL may hold a password:
it is never logged, and every error message has it masked.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote, urlsplit

import dagster as dg
from pydantic import Field

from analytics_assets.warehouse.base import (
    Data,
    ParquetFile,
    Query,
    WarehouseError,
    WarehouseResource,
    as_query,
    check_json_key,
    check_table,
    split_table,
    type_of_value,
)
from analytics_assets.warehouse.types import JSON, Column, JsonField, sql_type, type_of_arrow

if TYPE_CHECKING:
    # psycopg is imported on first use: a deployment on DuckDB needs no Postgres driver
    # (it is the `postgres` extra), and pandas and pyarrow cost a step ~80 MB to import.
    import pandas as pd
    import psycopg
    import pyarrow as pa

# Rows per CSV chunk handed to COPY: one staged Parquet row group (loading.BATCH_ROWS).
CSV_BATCH_ROWS = 10_000
# Bytes of inflated JSON lines per write to COPY.
COPY_CHUNK_BYTES = 1 << 20
# COPY's CSV quote and delimiter for JSON lines: control bytes that valid JSON text never
# holds unescaped, so each line passes through whole, as one field.
_JSON_LINES_COPY = "COPY {} (doc) FROM STDIN (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"

# Portable SQL's '?' placeholders in psycopg's style, written here rather than through
# sqlglot: sqlglot re-generates the whole statement (0.4-5 ms a query, and its Postgres
# output still fails on some of what DuckDB accepts); this needs only to skip quoted text
# and comments. Every literal '%' is doubled, as psycopg requires once there are params.
_SCAN = re.compile(
    r"""'(?:[^']|'')*'"""  # a string
    r'''|"(?:[^"]|"")*"'''  # a quoted identifier
    r"|--[^\n]*"  # a line comment
    r"|/\*.*?\*/"  # a block comment
    r"|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$"  # a dollar-quoted string
    r"|(?P<mark>\?)"
    r"|(?P<percent>%)",
    re.S,
)


def pyformat(sql: str) -> str:
    """``sql`` with its ``?`` placeholders as ``%s`` and every other ``%`` doubled."""

    def swap(m: re.Match[str]) -> str:
        if m.group("mark"):
            return "%s"
        return m.group(0).replace("%", "%%")

    return _SCAN.sub(swap, sql)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_ident(table: str) -> str:
    schema, name = split_table(table)
    return f"{_ident(schema)}.{_ident(name)}" if schema else _ident(name)


def _lock_key(kind: str, name: str) -> str:
    return f"analytics_assets:{kind}:{name}"


@cache
def _loaders() -> tuple[type, type]:
    """psycopg loaders for answers shaped like DuckDB's: ``numeric`` (what ``sum`` of a
    bigint gives) as int when whole, else float; JSON as its text."""
    from psycopg.adapt import Loader
    from psycopg.types.string import TextLoader

    class NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data)
            try:
                return int(text)
            except ValueError:
                return float(text)

    return NumericLoader, TextLoader


def _resolved(value: str | None) -> str | None:
    return value.get_value() if isinstance(value, dg.EnvVar) else value


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the extra is missing
        raise WarehouseError(
            "the Postgres warehouse needs psycopg: pip install 'analytics_assets[postgres]'"
        ) from None
    return psycopg


class PostgresWarehouse(WarehouseResource):
    """A Postgres database as the warehouse; schemas follow the asset key prefixes."""

    backend = "postgres"

    url: str = Field(
        description=(
            "postgresql://user[:password]@host[:port]/database[?options]. Give it as an "
            "EnvVar when it holds a password: the UI then shows the variable's name only."
        )
    )
    password: str | None = Field(
        default=None, description="The password, when not in the URL (an EnvVar)."
    )
    connect_timeout: int = Field(default=30, description="Seconds to wait for a connection.")
    json_parser: Literal["duckdb", "postgres"] = Field(
        default="duckdb",
        description=(
            "Who parses the raw export's JSON lines: 'duckdb' (its read_json in this "
            "process, rows sent to COPY as CSV: 2.6 times the events/s, a step peaking near "
            "470 MB) or 'postgres' (lines sent verbatim, parsed by the server: a step of "
            "~125 MB)."
        ),
    )
    duckdb_memory_limit: str = Field(
        default="192MB", description="The memory_limit of DuckDB when it parses the export."
    )

    def __repr__(self) -> str:
        # Pydantic's repr would print the URL, password and all.
        return f"PostgresWarehouse(url={self._masked(self._url())!r})"

    __str__ = __repr__

    # ----- connections and errors -----------------------------------------------------

    def _url(self) -> str:
        # Inside a run Dagster has resolved an EnvVar field to its value; a resource used
        # directly (a script, the demo) still holds the EnvVar, so read it here.
        return _resolved(self.url) or ""

    def _password(self) -> str | None:
        return _resolved(self.password)

    def _secrets(self) -> list[str]:
        found = [p] if (p := self._password()) else []
        try:
            embedded = urlsplit(self._url()).password
        except ValueError:
            embedded = None
        if embedded:
            found += [embedded, unquote(embedded), quote(unquote(embedded), safe="")]
        return [s for s in found if s]

    def _masked(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def describe(self) -> str:
        return f"postgres {self._where()}"

    def _where(self) -> str:
        # host:port/database, for messages; never the user's password.
        try:
            parts = urlsplit(self._url())
            return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
        except ValueError:
            return "(an unparsable URL)"

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        psycopg = _psycopg()
        try:
            yield
        except psycopg.Error as exc:
            message = self._masked(f"{what}: {type(exc).__name__}: {exc}".strip())
            raise WarehouseError(message) from exc

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A short-lived autocommit connection (psycopg's own; for this backend's tests,
        not part of the interface), in UTC, with answers shaped like DuckDB's."""
        psycopg = _psycopg()
        options: dict[str, Any] = {
            "autocommit": True,
            "application_name": "analytics_assets",
            "connect_timeout": self.connect_timeout,
            "options": "-c TimeZone=UTC",
        }
        if password := self._password():
            options["password"] = password
        try:
            conn = psycopg.connect(self._url(), **options)
        except psycopg.Error as exc:
            # No cause attached: a driver error about the connection string may quote it.
            raise WarehouseError(
                self._masked(
                    f"cannot connect to the Postgres warehouse at {self._where()}: "
                    f"{type(exc).__name__}: {exc}".strip()
                )
            ) from None
        numeric, text = _loaders()
        conn.adapters.register_loader("numeric", numeric)
        conn.adapters.register_loader("json", text)
        conn.adapters.register_loader("jsonb", text)
        try:
            yield conn
        finally:
            conn.close()

    # ----- writes ---------------------------------------------------------------------

    def create_table(self, table: str, columns: Sequence[Column]) -> None:
        check_table(table)
        with self._errors(f"creating {table}"), self.connection() as conn:
            self._ensure(conn, table, self._declared(columns))

    def replace_partition(
        self,
        table: str,
        data: Data | Sequence[Data],
        partition_column: str,
        partition_value: Any,
        *,
        columns: Sequence[Column] | None = None,
    ) -> int:
        check_table(table)
        items = list(data) if isinstance(data, list | tuple) else [data]
        if not items:
            raise ValueError(f"nothing to write to {table}: no SELECT in the list")
        what = f"replacing {table} where {partition_column} = {partition_value}"
        with self._errors(what), self.connection() as conn:
            wanted = self._declared(columns) if columns else self._shape(conn, items[0])
            self._ensure(conn, table, wanted)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    f"DELETE FROM {_table_ident(table)} WHERE {_ident(partition_column)} = %s",
                    [partition_value],
                )
                return sum(self._insert(cur, table, item, columns) for item in items)

    def replace_table(
        self, table: str, data: Data, *, columns: Sequence[Column] | None = None
    ) -> int:
        check_table(table)
        with self._errors(f"replacing {table}"), self.connection() as conn:
            wanted = self._declared(columns) if columns else self._shape(conn, data)
            schema, _ = split_table(table)
            if schema:
                self._ensure_schema(conn, schema)
            # Readers see the old table or the new one, never an empty one: DROP and
            # CREATE are transactional in Postgres.
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {_table_ident(table)}")
                cur.execute(f"CREATE TABLE {_table_ident(table)} ({_column_sql(wanted)})")
                return self._insert(cur, table, data, columns)

    def append(self, table: str, data: Data, *, columns: Sequence[Column] | None = None) -> int:
        check_table(table)
        with self._errors(f"appending to {table}"), self.connection() as conn:
            wanted = self._declared(columns) if columns else self._shape(conn, data)
            self._ensure(conn, table, wanted)
            with conn.transaction(), conn.cursor() as cur:
                return self._insert(cur, table, data, columns)

    def load_json_lines(
        self,
        table: str,
        files: Sequence[Path],
        fields: Sequence[JsonField],
        partition_column: str,
        partition_value: Any,
    ) -> int:
        """Replace the partition with the files' records in one transaction, parsed by
        ``json_parser`` (see the field) and sent with ``COPY``."""
        check_table(table)
        for f in fields:
            check_json_key(f.name)
        declared = [Column(partition_column, type_of_value(partition_value))]
        declared += [Column(f.name, f.type) for f in fields]
        what = f"loading {len(files)} JSON-lines files into {table}"
        with self._errors(what), self.connection() as conn:
            self._ensure(conn, table, self._declared(declared))
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    f"DELETE FROM {_table_ident(table)} WHERE {_ident(partition_column)} = %s",
                    [partition_value],
                )
                if not files:
                    return 0
                if self.json_parser == "postgres":
                    return _parsed_by_postgres(cur, table, files, fields, declared, partition_value)
                return _parsed_by_duckdb(
                    cur, table, files, fields, declared, partition_value, self.duckdb_memory_limit
                )

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self._errors("executing a statement"), self.connection() as conn:
            self._run(conn.cursor(), sql, params)

    # ----- reads ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        with self._errors("running a query"), self.connection() as conn, conn.cursor() as cur:
            self._run(cur, sql, params)
            names = [d.name for d in cur.description or []]
            return pd.DataFrame.from_records(cur.fetchall(), columns=names)

    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self._errors("running a query"), self.connection() as conn, conn.cursor() as cur:
            self._run(cur, sql, params)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def table_exists(self, table: str) -> bool:
        schema, name = split_table(table)
        with self._errors(f"looking up {table}"), self.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = %s "
                "AND table_schema = coalesce(%s, current_schema())",
                [name, schema],
            ).fetchone()
        return bool(row and row[0])

    def columns(self, table: str) -> list[tuple[str, str]]:
        schema, name = split_table(table)
        with self._errors(f"describing {table}"), self.connection() as conn:
            return [
                (str(col), str(typ))
                for col, typ in conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = %s AND table_schema = coalesce(%s, current_schema()) "
                    "ORDER BY ordinal_position",
                    [name, schema],
                ).fetchall()
            ]

    def tables(self) -> list[str]:
        with self._errors("listing tables"), self.connection() as conn:
            return [
                f"{schema}.{name}"
                for schema, name in conn.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
                    "('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg\\_%' "
                    "ORDER BY 1, 2"
                ).fetchall()
            ]

    def json_text(self, column: str, key: str) -> str:
        check_json_key(key)
        return f"CAST(CAST({column} AS jsonb) -> '{key}' AS text)"

    def json_as_text(self, column: str) -> str:
        return f"CAST({column} AS text)"

    def row_hash(self, columns: Sequence[str]) -> str:
        # The row's text form keeps NULL and '' apart; hashtextextended is 64-bit.
        return f"hashtextextended(CAST(ROW({', '.join(columns)}) AS text), 0)"

    # ----- helpers --------------------------------------------------------------------

    @staticmethod
    def _run(cur: psycopg.Cursor, sql: str, params: Sequence[Any] | None) -> None:
        if params:
            cur.execute(pyformat(sql), list(params))
        else:
            # Without parameters psycopg reads '%' literally: the statement goes as written.
            cur.execute(sql)

    @staticmethod
    def _declared(columns: Sequence[Column]) -> list[tuple[str, str]]:
        return [(c.name, sql_type(c.type, "postgres")) for c in columns]

    @staticmethod
    def _shape(conn: psycopg.Connection, data: Data) -> list[tuple[str, str]]:
        """(name, Postgres type) of each column the data brings, for a table created
        without declared columns."""
        if isinstance(data, str | Query):
            query = as_query(data)
            with conn.cursor() as cur:
                PostgresWarehouse._run(
                    cur, f"SELECT * FROM ({query.sql}) AS q LIMIT 0", query.params
                )
                described = [(d.name, d.type_code) for d in cur.description or []]
                types = {
                    oid: name
                    for oid, name in conn.execute(
                        "SELECT oid, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(%s)",
                        [[oid for _, oid in described]],
                    ).fetchall()
                }
            return [(name, types[oid]) for name, oid in described]
        schema = _arrow_schema(data)
        return [(f.name, sql_type(type_of_arrow(f.type), "postgres")) for f in schema]

    def _ensure_schema(self, conn: psycopg.Connection, schema: str) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_lock_key("schema", schema)])
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")

    def _ensure(self, conn: psycopg.Connection, table: str, wanted: list[tuple[str, str]]) -> None:
        """Create the table (and schema) or add the columns it lacks, in a transaction of
        its own under an advisory lock (see the module's docstring)."""
        schema, name = split_table(table)
        if schema:
            self._ensure_schema(conn, schema)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_lock_key("table", table)])
            cur.execute(f"CREATE TABLE IF NOT EXISTS {_table_ident(table)} ({_column_sql(wanted)})")
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND table_schema = coalesce(%s, current_schema())",
                [name, schema],
            )
            existing = {row[0] for row in cur.fetchall()}
            for column, typ in wanted:
                if column not in existing:
                    cur.execute(
                        f"ALTER TABLE {_table_ident(table)} ADD COLUMN {_ident(column)} {typ}"
                    )

    def _insert(
        self, cur: psycopg.Cursor, table: str, data: Data, columns: Sequence[Column] | None
    ) -> int:
        if isinstance(data, str | Query):
            query = as_query(data)
            if columns:
                names = [c.name for c in columns]
            else:
                self._run(cur, f"SELECT * FROM ({query.sql}) AS q LIMIT 0", query.params)
                names = [d.name for d in cur.description or []]
            listed = ", ".join(_ident(n) for n in names)
            self._run(
                cur,
                f"INSERT INTO {_table_ident(table)} ({listed}) "
                f"SELECT {listed} FROM ({query.sql}) AS q",
                query.params,
            )
            return max(cur.rowcount, 0)
        schema, batches = _arrow_batches(data)
        return _copy_csv(cur, table, schema.names, batches)


def _column_sql(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{_ident(name)} {typ}" for name, typ in columns)


def _arrow_schema(data: Data) -> pa.Schema:
    if isinstance(data, ParquetFile):
        import pyarrow.parquet as pq

        return pq.read_schema(data.path)
    return _arrow_table(data).schema


def _arrow_table(data: Data) -> pa.Table:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    # A pandas frame (what the checks' tests and small writes hand over).
    return pa.Table.from_pandas(data, preserve_index=False)


def _arrow_batches(data: Data) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The data's schema and its rows, ``CSV_BATCH_ROWS`` at a time."""
    if isinstance(data, ParquetFile):
        import pyarrow.parquet as pq

        file = pq.ParquetFile(data.path)
        return file.schema_arrow, file.iter_batches(batch_size=CSV_BATCH_ROWS)
    table = _arrow_table(data)
    return table.schema, iter(table.to_batches(max_chunksize=CSV_BATCH_ROWS))


def _copy_csv(
    cur: psycopg.Cursor, table: str, names: Sequence[str], batches: Iterable[pa.RecordBatch]
) -> int:
    """``COPY`` the batches in as CSV, one batch in memory at a time. pyarrow's writer
    quotes every string and leaves a null unquoted and empty: Postgres's CSV reads the
    first as the text (the empty string included) and the second as NULL."""
    import pyarrow as pa
    import pyarrow.csv as csv

    options = csv.WriteOptions(include_header=False, quoting_style="needed")
    listed = ", ".join(_ident(n) for n in names)
    rows = 0
    with cur.copy(f"COPY {_table_ident(table)} ({listed}) FROM STDIN (FORMAT csv)") as copy:
        for batch in batches:
            if not batch.num_rows:
                continue
            sink = pa.BufferOutputStream()
            csv.write_csv(batch, sink, options)
            copy.write(memoryview(sink.getvalue()))
            rows += batch.num_rows
    return rows


def _json_lines(path: Path) -> Iterator[bytes]:
    """The inflated bytes of a gzipped JSON-lines file (every gzip member), in chunks of
    ``COPY_CHUNK_BYTES``, ending with a newline so the next file starts a line."""
    from isal import igzip

    last = b"\n"
    with igzip.open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK_BYTES):
            last = chunk[-1:]
            yield chunk
    if last != b"\n":
        yield b"\n"


def _parsed_by_postgres(
    cur: psycopg.Cursor,
    table: str,
    files: Sequence[Path],
    fields: Sequence[JsonField],
    declared: Sequence[Column],
    partition_value: Any,
) -> int:
    """Each file's lines verbatim into a temporary ``jsonb`` column (COPY), then into the
    table's typed columns by ``jsonb_to_record`` (one INSERT ... SELECT a file)."""
    target = ", ".join(_ident(c.name) for c in declared)
    record = ", ".join(f"{_ident(f.source)} {sql_type(f.type, 'postgres')}" for f in fields)
    picked = ", ".join(f"r.{_ident(f.source)}" for f in fields)
    # Blank lines come through COPY as NULL documents: skipped, as DuckDB's reader does.
    insert = (
        f"INSERT INTO {_table_ident(table)} ({target}) SELECT %s, {picked} "
        f"FROM _json_lines, jsonb_to_record(doc) AS r({record}) WHERE doc IS NOT NULL"
    )
    cur.execute("CREATE TEMP TABLE _json_lines (doc jsonb) ON COMMIT DROP")
    rows = 0
    # One file at a time: the temporary table (on the server, not in this process) holds
    # at most one file's lines.
    for path in files:
        with cur.copy(_JSON_LINES_COPY.format("_json_lines")) as copy:
            for chunk in _json_lines(Path(path)):
                copy.write(chunk)
        cur.execute(insert, [partition_value])
        rows += cur.rowcount
        cur.execute("TRUNCATE _json_lines")
    return rows


def _parsed_by_duckdb(
    cur: psycopg.Cursor,
    table: str,
    files: Sequence[Path],
    fields: Sequence[JsonField],
    declared: Sequence[Column],
    partition_value: Any,
    memory_limit: str,
) -> int:
    """DuckDB's ``read_json`` (the DuckDB backend's own SELECT, files inflated by ISA-L)
    in an in-memory DuckDB, streamed out as Arrow batches and into one ``COPY`` as CSV.
    DuckDB here is only a parser: it stores nothing, and its memory_limit bounds it."""
    import duckdb

    from analytics_assets.warehouse import isal_gzip
    from analytics_assets.warehouse.duckdb import JSON_BATCH_FILES, json_select_sql

    partition = declared[0].name
    # JSON documents leave DuckDB as their text; every other column keeps its type.
    picked = ", ".join(
        f"CAST({_ident(c.name)} AS VARCHAR) AS {_ident(c.name)}"
        if c.type == JSON
        else _ident(c.name)
        for c in declared
    )
    paths = [Path(p) for p in files]
    batches = [paths[i : i + JSON_BATCH_FILES] for i in range(0, len(paths), JSON_BATCH_FILES)]

    def copy_all(isal: bool) -> int:
        names = [c.name for c in declared]
        # Rows in any order (a table has none): DuckDB then streams on every thread, 40 %
        # faster in our measurement. Anything it spills goes to a directory of its own.
        with (
            tempfile.TemporaryDirectory(prefix="analytics-assets-json-") as spill,
            duckdb.connect(
                config={
                    "memory_limit": memory_limit,
                    "threads": 2,
                    "preserve_insertion_order": False,
                    "temp_directory": spill,
                }
            ) as parser,
        ):
            isal_gzip.register(parser)
            try:
                readers = (
                    parser.sql(
                        f"SELECT {picked} FROM ("
                        f"{json_select_sql(batch, partition, partition_value, fields, isal=isal)})"
                    ).to_arrow_reader(CSV_BATCH_ROWS)
                    for batch in batches
                )
                return _copy_csv(cur, table, names, (b for r in readers for b in r))
            finally:
                isal_gzip.unregister(parser)

    # DuckDB's errors, and the same errors as Arrow reports them while a reader streams.
    parse_errors = (duckdb.Error, OSError, ValueError)
    try:
        # A savepoint: a file whose gzip trailer misstates its size is found only once
        # rows are on their way; they are rolled back and the files read again by DuckDB's
        # own gzip reader, which needs no size (as the DuckDB backend does).
        with cur.connection.transaction():
            return copy_all(isal=True)
    except parse_errors as exc:
        text = str(exc)
        if isal_gzip.GzipSizeError.__name__ not in text:
            raise WarehouseError(f"parsing the JSON lines for {table}: {text}") from exc
        reason = next(line for line in text.splitlines() if "GzipSizeError" in line)
        dg.get_dagster_logger().warning(
            f"{reason.strip()}; loading {table} where {partition} = {partition_value} with "
            "DuckDB's own gzip reader instead"
        )
    try:
        with cur.connection.transaction():
            return copy_all(isal=False)
    except parse_errors as exc:
        raise WarehouseError(f"parsing the JSON lines for {table}: {exc}") from exc
