"""The warehouse interface: what assets, checks, sensors and the write-back may ask of it.

``WarehouseResource`` is an abstract Dagster resource; each backend subclasses it
(``DuckDBWarehouse``, the embedded default; ``PostgresWarehouse``) and loads rows its own
fastest way. Assets annotate their ``warehouse`` parameter with this class, and the
resource bound to the key ``warehouse`` decides the backend: moving to a server is
configuration (``warehouse_from_url``, the ``Warehouse`` component).

The contract, for every backend:

* Rows arrive as an Arrow table, a pandas frame, a staged Parquet file (``ParquetFile``)
  or a query over tables already in the warehouse (``Query``), with the table's declared
  columns (``types.Column``) when the caller knows them; a backend creates tables (and
  their schema) from those types, or from the data's own types when none are declared.
* ``replace_partition`` deletes the partition's rows and inserts the new ones in one
  transaction: a re-run or a backfill never duplicates or loses rows.
* ``load_json_lines`` is the bulk load of gzipped JSON-lines files (the raw Amplitude
  export), read by the database itself where it can.
* SQL handed to ``query``, ``records``, ``execute`` and ``Query`` is written in the subset
  every backend runs unchanged (ANSI joins and aggregates, ``CAST(x AS BIGINT)``,
  ``count(CASE WHEN ... THEN 1 END)`` rather than ``FILTER``, an alias on every derived
  table, no ``read_parquet`` or ``INSERT ... BY NAME``), with ``?`` placeholders; each
  backend turns them into its driver's style. The non-portable needs so far, reading a
  field of JSON text, writing a JSON column as text and hashing a row's columns, are
  ``json_text``, ``json_as_text`` and ``row_hash``.
* Errors are ``WarehouseError`` whatever the backend (the driver's error is its
  ``__cause__``): no caller catches a driver's exception type.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dagster as dg

from analytics_assets.warehouse.types import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    STR,
    TS_NAIVE,
    TS_US,
    Column,
    JsonField,
)

if TYPE_CHECKING:
    # Only for hints: pandas and pyarrow cost a step process ~80 MB to import, and most
    # steps (the raw export's load among them) never use them.
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "Column",
    "Data",
    "JsonField",
    "ParquetFile",
    "Query",
    "WarehouseError",
    "WarehouseResource",
    "check_table",
    "split_table",
    "warehouse_from_url",
]


class WarehouseError(Exception):
    """A warehouse operation failed. The message says what (never a password); the
    backend's own error, when there is one, is the ``__cause__``."""


@dataclass(frozen=True)
class Query:
    """A ``SELECT`` over tables already in the warehouse, in the portable subset, with
    ``?`` placeholders bound to ``params``."""

    sql: str
    params: Sequence[Any] = field(default=())


@dataclass(frozen=True)
class ParquetFile:
    """Rows staged to a local Parquet file (``loading.ArrowStage``)."""

    path: Path


if TYPE_CHECKING:
    # What a write accepts: rows (Arrow, pandas), a staged file, or a query (a plain
    # string is a query without parameters).
    Data = pa.Table | pd.DataFrame | ParquetFile | Query | str
else:
    Data = Any

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_FIELD = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def check_table(table: str) -> str:
    """``table`` if it is ``name`` or ``schema.name`` of plain identifiers. Table names come
    from code, never from users; still, refuse anything else before it reaches SQL text."""
    if not _IDENTIFIER.match(table):
        raise ValueError(f"invalid table name {table!r}: use schema.table with plain identifiers")
    return table


def split_table(table: str) -> tuple[str | None, str]:
    """``(schema or None, name)`` of a checked table name."""
    schema, _, name = check_table(table).rpartition(".")
    return schema or None, name


def check_json_key(key: str) -> str:
    if not _FIELD.match(key):
        raise ValueError(f"invalid JSON key {key!r}: use letters, digits, _ and $")
    return key


def as_query(data: Query | str) -> Query:
    return data if isinstance(data, Query) else Query(data)


def type_of_value(value: Any) -> str:
    """The column type of a partition value (the partition column's type, for a table the
    load creates)."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, datetime):
        return TS_US if value.tzinfo else TS_NAIVE
    if isinstance(value, date):
        return DATE
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    return STR


class WarehouseResource(dg.ConfigurableResource, ABC):
    """The warehouse every asset, check, sensor and the write-back use (resource key
    ``warehouse``). Abstract: bind a backend (``DuckDBWarehouse``, ``PostgresWarehouse``),
    or let ``warehouse_from_url`` pick one."""

    #: The backend's name: the key of its SQL types in ``types.SQL_TYPES``, and its Dagster kind.
    backend: ClassVar[str]

    # ----- writes ---------------------------------------------------------------------

    @abstractmethod
    def create_table(self, table: str, columns: Sequence[Column]) -> None:
        """Create ``table`` (and its schema) with ``columns`` unless it exists."""

    @abstractmethod
    def replace_partition(
        self,
        table: str,
        data: Data | Sequence[Data],
        partition_column: str,
        partition_value: Any,
        *,
        columns: Sequence[Column] | None = None,
    ) -> int:
        """Replace the rows of one partition with ``data`` in one transaction; returns rows
        written. A sequence of sources is inserted one after the other in that
        transaction. The table is created from ``columns`` (or the data's types)."""

    @abstractmethod
    def replace_table(
        self, table: str, data: Data, *, columns: Sequence[Column] | None = None
    ) -> int:
        """Replace a whole (unpartitioned) table in one transaction; returns rows written."""

    @abstractmethod
    def append(self, table: str, data: Data, *, columns: Sequence[Column] | None = None) -> int:
        """Append rows (logs, alert history), creating the table or adding the columns the
        data brings anew; returns rows written."""

    @abstractmethod
    def load_json_lines(
        self,
        table: str,
        files: Sequence[Path],
        fields: Sequence[JsonField],
        partition_column: str,
        partition_value: Any,
    ) -> int:
        """Replace one partition with the records of gzipped JSON-lines ``files`` (the raw
        export), in one transaction: each record's ``field.source`` key into the column
        ``field.name``, the partition column set to ``partition_value``. Creates the table
        from ``fields`` if needed; no files empties the partition. Returns rows written."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement in the portable subset (``?`` placeholders)."""

    # ----- reads ----------------------------------------------------------------------

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """The answer as a pandas frame (pandas is imported on first use)."""

    @abstractmethod
    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """A small answer (checks, counts, previews) as dicts, without pandas."""

    @abstractmethod
    def table_exists(self, table: str) -> bool: ...

    @abstractmethod
    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, the backend's type name) of each column, in order."""

    @abstractmethod
    def tables(self) -> list[str]:
        """``schema.name`` of every table the warehouse holds (not the system's own)."""

    # ----- the few expressions no common subset has -----------------------------------

    def describe(self) -> str:
        """Where the warehouse is, for messages: never a password."""
        return self.backend

    @contextmanager
    def reading_copy(self, scratch: Path) -> Iterator[WarehouseResource]:
        """The warehouse to read from without getting in a writer's way (``analytics-assets
        sql``, the demo's summaries). A server database serves readers beside writers, so
        it is itself; a backend with one writer at a time (DuckDB) reads a copy made in
        ``scratch``."""
        yield self

    @abstractmethod
    def json_text(self, column: str, key: str) -> str:
        """An SQL expression: the JSON text of the top-level ``key`` of the JSON document in
        ``column`` (a text or JSON column), NULL when absent; ``json.loads`` reads it."""

    @abstractmethod
    def json_as_text(self, column: str) -> str:
        """An SQL expression: the whole document of a JSON column (``types.JSON``) as JSON
        text, NULL when NULL; ``json.loads`` reads it (key order and spacing are the
        backend's)."""

    @abstractmethod
    def row_hash(self, columns: Sequence[str]) -> str:
        """An SQL expression: a 64-bit hash of ``columns``' values. Equal values hash
        equal; distinct values may collide, so a caller treats equal hashes as "maybe
        equal" and confirms exactly."""


def is_server_url(location: str) -> bool:
    return "://" in location


def warehouse_from_url(url: str, **options: Any) -> WarehouseResource:
    """The backend a location names: a DuckDB file path, ``postgresql://...`` or
    ``snowflake://user:password@account/database[/schema][?warehouse=WH&role=R]``.
    ``options`` are the backend's own fields (DuckDB's ``memory_limit``, ``threads``,
    ``temp_directory``; Postgres's and Snowflake's ``password``), each given only to the
    backend that has it."""
    scheme = url.split("://", 1)[0].lower() if is_server_url(url) else ""
    if scheme in ("postgresql", "postgres"):
        from analytics_assets.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(url=url, **_known(PostgresWarehouse, options))
    if scheme == "snowflake":
        from analytics_assets.warehouse.snowflake import SnowflakeWarehouse, parse_url

        parse_url(url)  # a malformed URL fails here, not at the first step
        return SnowflakeWarehouse(url=url, **_known(SnowflakeWarehouse, options))
    if scheme == "":
        from analytics_assets.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(database=url, **_known(DuckDBWarehouse, options))
    if scheme == "duckdb":
        from analytics_assets.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(database=url.split("://", 1)[1], **_known(DuckDBWarehouse, options))
    # The scheme only: the rest of a URL may hold a password.
    raise ValueError(
        f"unknown warehouse URL scheme {scheme!r}: use a DuckDB file path, postgresql://... "
        "or snowflake://..."
    )


def _known(cls: type[dg.ConfigurableResource], options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in cls.model_fields and v is not None}
