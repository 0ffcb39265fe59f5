"""Two warehouses compared row for row, whatever their backends: the cross-backend test
(tests/warehouse/test_cross_backend.py) and the multi-host rehearsal (tests/test_multi_host.py,
bench/multi_host_bench.py) share it."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

# Columns that differ by nature between two runs, not by host or backend: ids and times a
# run stamps (the history's validity times come from each run's clock).
RUN_SPECIFIC = frozenset(
    {"run_id", "written_at", "quarantined_at", "loaded_at", "valid_from", "valid_to"}
)


def normal(value: Any) -> Any:
    """A value with only its representation undone: timestamps as UTC, JSON text parsed
    (Postgres keeps ``jsonb``), floats to 9 digits, whole numbers as ints."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else round(value, 9)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def table_rows(warehouse: Any, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    names = [n for n, _ in warehouse.columns(table) if n not in RUN_SPECIFIC]
    rows = [tuple(normal(r[n]) for n in names) for r in warehouse.records(f"SELECT * FROM {table}")]
    return names, sorted(rows, key=repr)


def table_differences(reference: Any, other: Any) -> tuple[dict[str, int], list[str]]:
    """Compares every table of two warehouses row for row; returns the rows of each equal
    table and a line per difference (none when the warehouses are equal)."""
    compared: dict[str, int] = {}
    problems: list[str] = []
    ours, theirs = set(reference.tables()), set(other.tables())
    if ours != theirs:
        problems.append(
            f"tables only in the reference {ours - theirs}, only in the other {theirs - ours}"
        )
    for table in sorted(ours & theirs):
        ref_names, ref_rows = table_rows(reference, table)
        names, rows = table_rows(other, table)
        if names != ref_names:
            problems.append(f"{table}: columns {names} != {ref_names}")
            continue
        if len(rows) != len(ref_rows):
            problems.append(f"{table}: {len(rows)} rows != {len(ref_rows)}")
            continue
        differing = next(((a, b) for a, b in zip(ref_rows, rows, strict=True) if a != b), None)
        if differing is not None:
            diff = {n: (a, b) for n, a, b in zip(names, *differing, strict=True) if a != b}
            problems.append(f"{table}: first differing row (reference, other): {diff}")
            continue
        compared[table] = len(ref_rows)
    return compared, problems
