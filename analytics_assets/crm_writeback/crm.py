"""Read a CRM export (CSV, Parquet, or a warehouse table) into numbered rows.

Every row of the source comes out either as a ``CrmRow`` or as a ``RowProblem`` (a row
the reader could not split into the header's columns), so nothing is dropped silently.
Values are kept as the source gives them (strings from CSV, typed values from Parquet
or a table); the mapping converts them later, so a bad value is reported with the text
the CRM actually holds.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from analytics_assets.crm_writeback.gc_pause import gc_paused

__all__ = [
    "EMPTY_EXPORT_POLICIES",
    "CrmExport",
    "CrmReadError",
    "CrmRow",
    "EmptyExportError",
    "RowProblem",
    "check_empty_export_policy",
    "check_not_empty",
    "read_crm",
]

# What an export with a header and no rows does: a warning (the run sends nothing and
# succeeds), or a failure, for a CRM whose export is never legitimately empty.
EMPTY_EXPORT_POLICIES = ("warn", "fail")

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class CrmReadError(ValueError):
    """The export cannot be read at all (missing file, no header, duplicate columns)."""


class EmptyExportError(CrmReadError):
    """The export has a header but no rows, and the write-back is set to fail on that."""


@dataclass(frozen=True, slots=True)
class CrmRow:
    """One data row. ``number`` counts data rows from 1 (the header is not a row);
    ``line`` is the CSV line the row starts on (None for Parquet and tables)."""

    number: int
    values: dict[str, Any]
    line: int | None = None

    def where(self) -> str:
        return f"row {self.number}" + (f" (line {self.line})" if self.line else "")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a row is set aside: one entry per (row, column) problem."""

    row: int
    account_id: str | None
    column: str | None
    value: str | None
    reason: str
    line: int | None = None


@dataclass
class CrmExport:
    """The rows of one export, the rows that could not be split, and blank lines skipped."""

    source: str
    columns: list[str]
    rows: list[CrmRow]
    malformed: list[RowProblem] = field(default_factory=list)
    blank_rows: int = 0

    @property
    def rows_read(self) -> int:
        """Every non-blank data row of the source, well-formed or not."""
        return len(self.rows) + len(self.malformed)


def check_empty_export_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`EMPTY_EXPORT_POLICIES`, else a ValueError."""
    if policy not in EMPTY_EXPORT_POLICIES:
        raise ValueError(
            f"empty_export must be one of {', '.join(EMPTY_EXPORT_POLICIES)}, not {policy!r}"
        )
    return policy


def check_not_empty(export: CrmExport, policy: str = "warn") -> str | None:
    """None when ``export`` has rows. An export with a header and no rows (blank lines at
    most) is a warning to log (``policy`` ``"warn"``) or :class:`EmptyExportError`
    (``"fail"``): an empty file is more often a CRM export that failed than a CRM with no
    accounts, and a run that sends nothing must say so."""
    check_empty_export_policy(policy)
    if export.rows_read:
        return None
    blank = f" ({export.blank_rows} blank lines)" if export.blank_rows else ""
    message = (
        f"the CRM export {export.source} has a header ({len(export.columns)} columns) but no "
        f"rows{blank}: nothing was validated or sent. If the CRM's export failed or its "
        "filter matched nothing, fix it and run again"
    )
    if policy == "fail":
        raise EmptyExportError(f"{message} (empty_export: fail).")
    return f"{message}; set empty_export: fail on the write-back to make this an error."


class _Queryable(Protocol):
    def query(self, sql: str, params: Any = None) -> Any: ...


def read_crm(
    path: str | Path | None = None,
    *,
    table: str | None = None,
    warehouse: _Queryable | None = None,
) -> CrmExport:
    """Read a CSV or Parquet file (by extension), or ``table`` through ``warehouse``."""
    with gc_paused():  # one small dict and row per CRM row, no cycles
        return _read(path, table, warehouse)


def _read(
    path: str | Path | None, table: str | None, warehouse: _Queryable | None
) -> CrmExport:
    if (path is None) == (table is None):
        raise CrmReadError("give either a CRM export path or a warehouse table, not both")
    if table is not None:
        if warehouse is None:
            raise CrmReadError(f"reading table {table!r} needs the warehouse resource")
        return _read_table(table, warehouse)
    file = Path(path)  # type: ignore[arg-type]
    if not file.is_file():
        raise CrmReadError(f"CRM export {str(file)!r} does not exist or is not a file")
    suffix = file.suffix.lower()
    if suffix in (".csv", ".txt"):
        try:
            return _read_csv(file)
        except UnicodeDecodeError as exc:
            raise CrmReadError(
                f"{file.name} is not UTF-8 text (byte {exc.start}); export it as "
                "'CSV UTF-8' from the spreadsheet or CRM"
            ) from None
    if suffix in (".parquet", ".pq"):
        return _read_parquet(file)
    raise CrmReadError(
        f"CRM export {file.name!r}: unknown format {suffix or '(none)'!r}; use .csv or .parquet"
    )


def _header(names: list[Any], source: str) -> list[str]:
    columns = [str(name).strip() for name in names]
    if not columns or all(not c for c in columns):
        raise CrmReadError(f"{source}: the first line must be a header naming the columns")
    seen: set[str] = set()
    for column in columns:
        if not column:
            raise CrmReadError(f"{source}: the header has an unnamed column")
        if column in seen:
            raise CrmReadError(f"{source}: column {column!r} appears twice in the header")
        seen.add(column)
    return columns


def _unclosed_quote(lines: list[str]) -> bool:
    """True when these lines end inside a quoted value (the quote is never closed)."""
    try:
        list(csv.reader(lines, strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _read_csv(file: Path) -> CrmExport:
    # utf-8-sig: spreadsheet exports often start with a byte-order mark that would
    # otherwise become part of the first column's name.
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise CrmReadError(f"{file.name}: the file is empty") from None
        except csv.Error as exc:
            raise CrmReadError(f"{file.name}: the header line cannot be read: {exc}") from None
        columns = _header(header, file.name)
        width = len(columns)
        export = CrmExport(source=str(file), columns=columns, rows=[])
        rows = export.rows
        number = 0
        line = reader.line_num + 1
        record = (0, 0)  # the lines [first, end) of the last record read
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a value over the csv module's 128 KiB limit
                number += 1
                start, line = line, reader.line_num + 1
                export.malformed.append(
                    RowProblem(number, None, None, None, f"the row is not valid CSV: {exc}", start)
                )
                continue
            start, line = line, reader.line_num + 1
            record = (start, line)
            # No field, or only blank ones (the first field decides for nearly every row).
            if not (fields and fields[0].strip()) and not "".join(fields).strip():
                export.blank_rows += 1
                continue
            number += 1
            if len(fields) != width:
                export.malformed.append(
                    RowProblem(
                        row=number,
                        account_id=fields[0].strip() or None,
                        column=None,
                        value=",".join(fields)[:200],
                        reason=(
                            f"the row has {len(fields)} fields but the header has "
                            f"{width}; quote values that contain commas"
                        ),
                        line=start,
                    )
                )
                continue
            # (The width was checked just above.)
            rows.append(CrmRow(number, dict(zip(columns, fields, strict=False)), start))
    if not (number and record[1]):
        return export
    # The csv module reads an unclosed quote to the end of the file: the rows after it
    # became one value. Only the last record can be such a row; its lines are read again
    # here (cheaper than keeping every record's lines while reading).
    with file.open(newline="", encoding="utf-8-sig") as handle:
        raw = list(itertools.islice(handle, record[0] - 1, record[1] - 1))
    if '"' in "".join(raw) and _unclosed_quote(raw):
        # Report that row instead of pushing what it swallowed.
        last = rows.pop() if rows and rows[-1].number == number else None
        if last is None:
            export.malformed.pop()
        export.malformed.append(
            RowProblem(
                row=number,
                account_id=None,
                column=None,
                value="".join(raw)[:200],
                reason=(
                    f"a quote opened on line {start} is never closed, so lines {start}-"
                    f"{line - 1} were read as one row; close the quote or remove it"
                ),
                line=start,
            )
        )
    return export


def _clean(value: Any) -> Any:
    # Parquet and DuckDB give None, NaN or NaT for "no value"; treat them all as empty.
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ == "NaTType":
        return None
    return value


def _records(columns: list[str], rows: Iterator[dict[str, Any]]) -> list[CrmRow]:
    return [
        CrmRow(number, {c: _clean(row.get(c)) for c in columns})
        for number, row in enumerate(rows, start=1)
    ]


def _read_parquet(file: Path) -> CrmExport:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
        names = list(parquet.schema_arrow.names)
        columns = _header(names, file.name)

        def rows() -> Iterator[dict[str, Any]]:
            for batch in parquet.iter_batches(batch_size=65_536):
                for row in batch.to_pylist():
                    yield {str(k).strip(): v for k, v in row.items()}

        export = CrmExport(source=str(file), columns=columns, rows=_records(columns, rows()))
    except (pa.ArrowException, OSError) as exc:  # not Parquet, truncated, corrupt pages
        raise CrmReadError(f"{file.name} is not a readable Parquet file: {exc}") from None
    return _drop_blank(export)


def _read_table(table: str, warehouse: _Queryable) -> CrmExport:
    if not _TABLE.match(table):
        raise CrmReadError(f"invalid table name {table!r}: use schema.table")
    try:
        frame = warehouse.query(f"SELECT * FROM {table}")
    except Exception as exc:  # the warehouse's own error says what is wrong
        raise CrmReadError(f"cannot read CRM table {table!r}: {exc}") from exc
    columns = _header(list(frame.columns), table)
    frame.columns = columns
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    export = CrmExport(source=table, columns=columns, rows=_records(columns, iter(records)))
    return _drop_blank(export)


def _drop_blank(export: CrmExport) -> CrmExport:
    """Rows with no value at all are counted as blank, as blank CSV lines are."""
    kept = []
    for row in export.rows:
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in row.values.values()):
            export.blank_rows += 1
        else:
            kept.append(row)
    export.rows = kept
    return export
