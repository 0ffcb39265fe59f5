"""What the CRM write-back last wrote, per account and field: the reference for
``field_changed`` rules ("changed in Pendo by someone else").

Read from ``analytics.writeback_log`` (one row per account per run; ``values_json`` holds the
values sent, as Pendo takes them: dates as epoch ms). Only rows the server confirmed
(``outcome = 'updated'``) of real runs (not dry runs) count; for each field the newest such
value wins. The query runs inside the warehouse (the backend's JSON expression,
``warehouse.json_text``, in SQL every backend runs), so the sensor
receives one row per account, not the whole log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REQUIRED_COLUMNS = {"account_id", "values_json", "outcome", "written_at"}


class Warehouse(Protocol):
    def table_exists(self, table: str) -> bool: ...

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    def json_text(self, column: str, key: str) -> str: ...


def writeback_reference(
    warehouse: Warehouse | None, table: str, fields: Sequence[str]
) -> dict[str, dict[str, Any]] | None:
    """account -> field -> value last written; None when there is no log to read."""
    if warehouse is None or not warehouse.table_exists(table):
        return None
    names = [f for f in fields if _FIELD.match(f)]
    if not names:
        return None
    columns = getattr(warehouse, "columns", None)
    if callable(columns):
        present = {name for name, _ in columns(table)}
        if REQUIRED_COLUMNS - present:
            missing = sorted(REQUIRED_COLUMNS - present)
            raise ValueError(f"{table} lacks the columns {missing}; is it the write-back's log?")
        dry = "AND NOT coalesce(dry_run, false)" if "dry_run" in present else ""
    else:
        dry = ""
    # Portable SQL (warehouse/base.py): the newest value of each field per account, by
    # row_number() rather than DuckDB's arg_max ... FILTER, and the JSON field read with
    # the backend's own expression (warehouse.json_text).
    fields = ", ".join(
        f'{warehouse.json_text("values_json", name)} AS "f_{i}"' for i, name in enumerate(names)
    )
    newest = "\n".join(
        f'LEFT JOIN (SELECT account_id, "f_{i}" AS v, row_number() OVER '
        f"(PARTITION BY account_id ORDER BY written_at DESC) AS rn FROM log "
        f'WHERE "f_{i}" IS NOT NULL) AS n{i} ON n{i}.account_id = a.account_id AND n{i}.rn = 1'
        for i in range(len(names))
    )
    picks = ", ".join(f'n{i}.v AS "{name}"' for i, name in enumerate(names))
    sql = (
        f"WITH log AS (SELECT account_id, written_at, {fields} FROM {table} "
        f"WHERE outcome = 'updated' {dry})\n"
        f"SELECT a.account_id, {picks}\n"
        f"FROM (SELECT DISTINCT account_id FROM log) AS a\n{newest}"
    )
    frame = warehouse.query(sql)
    reference: dict[str, dict[str, Any]] = {}
    for row in frame.itertuples(index=False):
        values = {}
        for i, name in enumerate(names, start=1):
            text = row[i]
            if text is None or (isinstance(text, float) and text != text):
                continue
            values[name] = json.loads(text)
        if values:
            reference[str(row[0])] = values
    return reference
