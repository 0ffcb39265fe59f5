"""What the CRM write-back last wrote, per account and field: the reference for
``field_changed`` rules ("changed in Pendo by someone else").

Read from ``analytics.writeback_log`` (one row per account per run; ``values_json`` holds the
values sent, as Pendo takes them: dates as epoch ms). Only rows the server confirmed
(``outcome = 'updated'``) of real runs (not dry runs) count; for each field the newest such
value wins. The query runs inside the warehouse (DuckDB's JSON functions), so the sensor
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
    picks = ",\n  ".join(
        f"arg_max(CAST(json_extract(values_json, '$.\"{name}\"') AS VARCHAR), written_at) "
        f'FILTER (WHERE json_extract(values_json, \'$."{name}"\') IS NOT NULL) AS "{name}"'
        for name in names
    )
    sql = (
        f"SELECT account_id,\n  {picks}\nFROM {table}\n"
        f"WHERE outcome = 'updated' {dry}\nGROUP BY account_id"
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
