"""How rows travel from an API to the warehouse, and what the UI is told about them.

Rows are staged to a Parquet file in bounded Arrow batches while the API streams,
then handed to the warehouse, which loads the file in one short transaction its own
way (DuckDB's ``read_parquet``, Postgres's ``COPY``). Memory stays flat whatever the
volume, and the warehouse is locked only for the load, not for the whole time the API
takes to answer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import orjson

from analytics_assets.warehouse.base import ParquetFile, WarehouseResource
from analytics_assets.warehouse.types import (
    JSON,
    STR,
    Column,
    arrow_type,
    dagster_type,
    type_of_sql,
)
from analytics_assets.warehouse.types import arrow_schema as schema_of

if TYPE_CHECKING:
    import pyarrow as pa

# Rows per Arrow batch (one Parquet row group): 10,000 rather than 50,000 took 50 MB off
# the peak of a 523,028-row Pendo load at the same CPU time (bench/README.md, Pendo vs dlt).
BATCH_ROWS = 10_000
# Columns staged as text: nested objects become JSON text.
_TEXT = (STR, JSON)


__all__ = [
    "BATCH_ROWS",
    "ArrowStage",
    "Column",
    "arrow_schema",
    "load_rows",
    "staged",
    "table_metadata",
    "table_schema",
]


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    return schema_of((c.name, c.type) for c in columns)


def table_schema(columns: Sequence[Column]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, dagster_type(c.type), description=c.description) for c in columns
        ]
    )


def _text(value: Any) -> str:
    """A non-string value of a text column: nested objects become JSON text, never dropped."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _column(rows: Sequence[Mapping[str, Any]], column: Column) -> pa.Array:
    """One column of a batch, converted once per column rather than once per value: the
    type test runs once, and text that already is text (almost all of it) is passed on
    without a function call."""
    import pyarrow as pa

    name = column.name
    values = [r.get(name) for r in rows]
    if column.type in _TEXT:
        values = [v if v is None or v.__class__ is str else _text(v) for v in values]
    return pa.array(values, type=arrow_type(column.type))


class ArrowStage:
    """Accumulates rows into Arrow batches and writes them to one Parquet file."""

    def __init__(self, path: Path, columns: Sequence[Column], batch_rows: int = BATCH_ROWS):
        import pyarrow.parquet as pq

        self.path = path
        self.columns = list(columns)
        self.schema = arrow_schema(columns)
        self.batch_rows = batch_rows
        self.rows = 0
        self._pending: list[dict[str, Any]] = []
        self._tables: list[pa.Table] = []  # Arrow rows not written yet (add_batch)
        self._table_rows = 0
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def add(self, row: Mapping[str, Any]) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.batch_rows:
            self._flush()

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def add_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Rows already in Arrow, with the stage's columns by name (the fast path: no
        Python object per row). Small batches are gathered into row groups of about
        ``batch_rows``."""
        import pyarrow as pa

        self._flush_rows()
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        self._tables.append(table.select(self.schema.names).cast(self.schema))
        self._table_rows += table.num_rows
        if self._table_rows >= self.batch_rows:
            self._flush_tables()

    def _flush(self) -> None:
        self._flush_tables()
        self._flush_rows()

    def _flush_rows(self) -> None:
        if not self._pending:
            return
        import pyarrow as pa

        arrays = [_column(self._pending, c) for c in self.columns]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.rows += len(self._pending)
        self._pending = []

    def _flush_tables(self) -> None:
        if not self._tables:
            return
        import pyarrow as pa

        self._writer.write_table(pa.concat_tables(self._tables), row_group_size=self._table_rows)
        self.rows += self._table_rows
        self._tables, self._table_rows = [], 0

    def close(self) -> None:
        import pyarrow as pa

        self._flush()
        self._writer.close()
        # pyarrow keeps freed memory for reuse; the warehouse's load that follows is the
        # step's peak (14 MB back after the events_hourly day's staging, measured alone).
        pa.default_memory_pool().release_unused()

    def data(self) -> ParquetFile:
        """The staged rows, for the warehouse to load (after ``close``)."""
        return ParquetFile(self.path)


@contextmanager
def staged(columns: Sequence[Column], batch_rows: int = BATCH_ROWS) -> Iterator[ArrowStage]:
    """A staging Parquet file in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="analytics-assets-") as tmp:
        stage = ArrowStage(Path(tmp) / "rows.parquet", columns, batch_rows)
        try:
            yield stage
        finally:
            stage._writer.close()


def load_rows(
    warehouse: WarehouseResource,
    table: str,
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    *,
    partition: tuple[str, Any] | None = None,
) -> int:
    """Stage ``rows`` and load them as the whole table or as one partition of it."""
    with staged(columns) as stage:
        stage.extend(rows)
        stage.close()
        if partition is None:
            return warehouse.replace_table(table, stage.data(), columns=columns)
        return warehouse.replace_partition(
            table, stage.data(), partition[0], partition[1], columns=columns
        )


def table_metadata(
    warehouse: WarehouseResource,
    table: str,
    columns: Sequence[Column] | None = None,
    *,
    partition: tuple[str, Any] | None = None,
    preview_rows: int = 5,
) -> dict[str, Any]:
    """Row count, column schema and a small preview for the Dagster UI."""
    where, params = ("", [])
    if partition is not None:
        where, params = (f" WHERE {partition[0]} = ?", [partition[1]])
    count = int(warehouse.records(f"SELECT count(*) AS n FROM {table}{where}", params)[0]["n"])
    preview = warehouse.records(f"SELECT * FROM {table}{where} LIMIT {preview_rows}", params)
    schema = (
        table_schema(columns)
        if columns
        else dg.TableSchema(
            columns=[
                dg.TableColumn(n, _vocabulary(warehouse.backend, t))
                for n, t in warehouse.columns(table)
            ]
        )
    )
    return {
        "dagster/row_count": dg.MetadataValue.int(count),
        "dagster/column_schema": schema,
        "dagster/table_name": dg.MetadataValue.text(table),
        "preview": dg.MetadataValue.md(_markdown(preview)),
    }


def _vocabulary(backend: str, sql: str) -> str:
    """The project's type name for a backend's type: one vocabulary across the catalog."""
    name = type_of_sql(backend, sql)
    return dagster_type(name) if name else sql.lower()


def _markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A small Markdown table of a few rows."""
    if not rows:
        return "_no rows_"

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    names = list(rows[0])
    header = "| " + " | ".join(names) + " |"
    rule = "|" + "---|" * len(names)
    body = ["| " + " | ".join(cell(row[n]) for n in names) + " |" for row in rows]
    return "\n".join([header, rule, *body])
