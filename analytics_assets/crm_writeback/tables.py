"""The write-back's two warehouse tables: the outcome log and the quarantine.

``analytics.writeback_log`` has one row per account per run: the batch it went in, the
values sent (JSON), what Pendo held before (JSON, so a change can be undone by hand), the
outcome and its reason (for ``updated`` and ``dry_run``: the change, field by field,
``old → new``; otherwise why). Rows are appended after each batch, so a run that dies midway
still leaves the record of every batch the server confirmed.

``analytics.writeback_amplitude_log`` is the same log for Amplitude, one row per record
(a group or a user) per run, with three more columns: ``record_kind`` (``group`` or
``user``), ``record_id`` (the group value or user id; ``account_id`` stays the account)
and the ``insert_id`` sent. Amplitude cannot be read back, so this log is also the
reference its next run diffs against. It is its own table so that what reads Pendo's log
(the resume report, the "changed in Pendo" alert) never mistakes an Amplitude row for a
Pendo write.

``analytics.writeback_quarantine`` has one row per problem of a set-aside CRM row (one
CRM read per run, whatever the destinations).
Every table keeps every run (filter on ``run_id``); nothing here holds a secret.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from analytics_assets.crm_writeback.crm import RowProblem
from analytics_assets.warehouse.types import BOOL, INT, INT32, STR, TS_US, arrow_schema

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "AMPLITUDE_LOG_TABLE",
    "LOG_TABLE",
    "OUTCOMES",
    "QUARANTINE_TABLE",
    "LogRow",
    "PreviousRun",
    "Warehouse",
    "append_log",
    "append_quarantine",
    "previous_incomplete_run",
    "to_json",
]

LOG_TABLE = "analytics.writeback_log"
AMPLITUDE_LOG_TABLE = "analytics.writeback_amplitude_log"
QUARANTINE_TABLE = "analytics.writeback_quarantine"
# updated / failed / missing: the server's word per record; unconfirmed: the batch's
# request failed after retries, so the server may or may not have applied it;
# not_sent: planned for a later batch of a run that stopped at that failure;
# dry_run: what a real run would have sent.
OUTCOMES = ("updated", "failed", "missing", "unconfirmed", "not_sent", "dry_run")

LOG_COLUMNS = (
    ("run_id", STR),
    ("batch", INT32),
    ("account_id", STR),
    ("values_json", STR),
    ("previous_json", STR),
    ("outcome", STR),
    ("reason", STR),
    ("dry_run", BOOL),
    ("written_at", TS_US),
)
RECORD_COLUMNS = (("record_kind", STR), ("record_id", STR), ("insert_id", STR))
QUARANTINE_COLUMNS = (
    ("run_id", STR),
    ("source", STR),
    ("row_number", INT),
    ("line", INT),
    ("account_id", STR),
    ("column_name", STR),
    ("value", STR),
    ("reason", STR),
    ("quarantined_at", TS_US),
)
# What each column above means (the Dagster UI shows it), by column name: the logs'
# (LOG_COLUMNS and RECORD_COLUMNS), then the quarantine's.
LOG_DESCRIPTIONS = {
    "run_id": "The Dagster run of the write-back that wrote the row",
    "batch": "The run's batch the record went in, from 1 (NULL: it was in no batch)",
    "account_id": "The account, by its CRM account id",
    "values_json": "The values sent (or a dry run would send), as JSON",
    "previous_json": "What the destination held before (Amplitude: its last push), as JSON",
    "outcome": "updated, failed, missing, unconfirmed, not_sent or dry_run",
    "reason": "For updated and dry_run the change (old → new) per field; otherwise why",
    "dry_run": "True when the run was a dry run (nothing was sent)",
    "written_at": "When the row was appended, UTC",
    "record_kind": "The Amplitude record: group or user",
    "record_id": "The Amplitude group value or user id",
    "insert_id": "The insert_id sent with the record",
}
QUARANTINE_DESCRIPTIONS = {
    "run_id": "The Dagster run of the write-back that set the row aside",
    "source": "The CRM export read: its file path or warehouse table",
    "row_number": "The row's number in the export, from 1 (the header is not a row)",
    "line": "The CSV line the row starts on (NULL for Parquet and tables)",
    "account_id": "The row's account id, when it could be read",
    "column_name": "The CRM column at fault (NULL: the whole row)",
    "value": "The value at fault, as text (NULL when none)",
    "reason": "Why the row was set aside",
    "quarantined_at": "When the row was appended, UTC",
}


class Warehouse(Protocol):
    """What the write-back needs of the warehouse resource (every ``WarehouseResource``
    has it). Its SQL is the portable subset every backend runs (``warehouse/base.py``)."""

    def append(self, table: str, data: Any) -> int: ...

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]: ...

    def table_exists(self, table: str) -> bool: ...


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def to_json(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=_json_default, ensure_ascii=False)


def arrow_rows(columns: Sequence[tuple[str, str]], rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """``rows`` (tuples in the order of ``columns``) as an Arrow table of those columns.

    Read from JSON lines by pyarrow's JSON reader rather than built by ``pa.table``:
    pyarrow's conversion of Python values checks each one for a pandas type, so its first
    call imports pandas, 0.3-0.5 s that a push would spend between its first batch and
    its second (and ~40 MB). orjson writes dates and aware datetimes as ISO 8601, which
    the reader parses into the schema's types."""
    import pyarrow.json as pj

    names = [name for name, _ in columns]
    data = b"\n".join(orjson.dumps(dict(zip(names, row, strict=True))) for row in rows)
    return pj.read_json(
        io.BytesIO(data),
        # One block: a row never straddles two, whatever its size.
        read_options=pj.ReadOptions(block_size=max(len(data), 1 << 16)),
        parse_options=pj.ParseOptions(
            explicit_schema=arrow_schema(columns), unexpected_field_behavior="error"
        ),
    )


@dataclass(frozen=True, slots=True)
class LogRow:
    batch: int | None
    account_id: str
    values_json: str
    previous_json: str
    outcome: str
    reason: str | None = None
    # Amplitude's log only (see the module's docstring).
    record_kind: str | None = None
    record_id: str | None = None
    insert_id: str | None = None


def append_log(
    warehouse: Warehouse,
    run_id: str,
    rows: Sequence[LogRow],
    dry_run: bool,
    *,
    table: str = LOG_TABLE,
) -> int:
    """Append ``rows`` to the write-back log ``table`` (Pendo's or Amplitude's)."""
    if not rows:
        return 0
    now = datetime.now(UTC)
    columns = LOG_COLUMNS if table == LOG_TABLE else LOG_COLUMNS + RECORD_COLUMNS
    extra = table != LOG_TABLE
    data = [
        (
            run_id,
            r.batch,
            r.account_id,
            r.values_json,
            r.previous_json,
            r.outcome,
            r.reason,
            dry_run,
            now,
            *((r.record_kind, r.record_id, r.insert_id) if extra else ()),
        )
        for r in rows
    ]
    return warehouse.append(table, arrow_rows(columns, data))


def append_quarantine(
    warehouse: Warehouse, run_id: str, source: str, problems: Sequence[RowProblem]
) -> int:
    if not problems:
        return 0
    now = datetime.now(UTC)
    data = [
        (run_id, source, p.row, p.line, p.account_id, p.column, p.value, p.reason, now)
        for p in problems
    ]
    return warehouse.append(QUARANTINE_TABLE, arrow_rows(QUARANTINE_COLUMNS, data))


@dataclass(frozen=True)
class PreviousRun:
    """The latest real (not dry) run before this one, if it stopped before the end."""

    run_id: str
    updated: frozenset[str]
    unconfirmed: frozenset[str]
    not_sent: frozenset[str]


def previous_incomplete_run(warehouse: Warehouse, run_id: str) -> PreviousRun | None:
    """The most recent earlier real run, when it stopped with records left unconfirmed."""
    if not warehouse.table_exists(LOG_TABLE):
        return None
    # records(), not query(): the push step asks this before its first write, and a
    # DataFrame would make it import pandas (about 0.6 s) for a few rows.
    latest = warehouse.records(
        # The newest row's run: a top-1 scan, where grouping by run grew with the log.
        f"SELECT run_id FROM {LOG_TABLE} WHERE NOT dry_run AND run_id <> ? "
        "ORDER BY written_at DESC LIMIT 1",
        [run_id],
    )
    if not latest:
        return None
    previous = str(latest[0]["run_id"])

    def ids(*outcomes: str) -> dict[str, frozenset[str]]:
        marks = ", ".join("?" for _ in outcomes)
        rows = warehouse.records(
            f"SELECT account_id, outcome FROM {LOG_TABLE} WHERE run_id = ? "
            f"AND outcome IN ({marks})",
            [previous, *outcomes],
        )
        return {
            o: frozenset(str(r["account_id"]) for r in rows if r["outcome"] == o) for o in outcomes
        }

    # The usual case is a run that finished: only its few unfinished records are read.
    left = ids("unconfirmed", "not_sent")
    if not left["unconfirmed"] and not left["not_sent"]:
        return None
    return PreviousRun(previous, ids("updated")["updated"], left["unconfirmed"], left["not_sent"])
