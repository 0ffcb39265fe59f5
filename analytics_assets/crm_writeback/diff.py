"""Compare the CRM's values with Pendo's current custom values; keep only what differs.

Values are compared as values, not as text: ARR 1200 equals 1200.0, a renewal date equals
Pendo's epoch milliseconds for that day, "true" equals true. Only mapped fields are ever
compared or sent, so fields owned by someone else are never touched. A field whose CRM
cell is empty is not sent either (see validate.py): the write-back never clears a value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from analytics_assets.crm_writeback.validate import Record
from analytics_assets.pendo.pipeline import Expr, Pipeline, Source

__all__ = [
    "Change",
    "DiffResult",
    "current_values_pipeline",
    "diff_records",
    "normalize",
    "read_current_values",
    "to_wire",
]

_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Change:
    """One account to write: the values to send (validated Python values; ``to_wire``
    makes them JSON) and what Pendo held before.

    ``action`` is ``update`` (the account exists), ``create`` (absent, create=True) or
    ``missing`` (absent, create=False: reported, never sent).
    """

    account_id: str
    values: dict[str, Any]
    previous: dict[str, Any]
    action: str
    changed: tuple[str, ...] = ()

    def wire(self, types: Mapping[str, str]) -> dict[str, Any]:
        return {name: to_wire(value, types[name]) for name, value in self.values.items()}

    def describe(self) -> str:
        """'plan: 'pro' → 'enterprise'; arr: 1200.0 → 1500.0' for the log and dry runs."""
        parts = [
            f"{name}: {_display(self.previous.get(name))} → {_display(self.values.get(name))}"
            for name in self.changed
        ]
        forced = len(self.values) - len(self.changed)
        if forced > 0:
            parts.append(f"{forced} unchanged field(s) sent because force is set")
        return "; ".join(parts) or "nothing to send"


@dataclass
class DiffResult:
    changes: list[Change]
    missing: list[Change]
    unchanged: int = 0
    accounts_in_pendo: int = 0
    field_changes: dict[str, int] = field(default_factory=dict)

    @property
    def to_send(self) -> int:
        return len(self.changes)


def _display(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, date):
        return value.isoformat()
    return repr(value)


def _ms_to_date(ms: float) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def normalize(value: Any, pendo_type: str) -> Any:
    """A value (Pendo's or ours) in the form both sides compare in; None for no value."""
    if value is None or (isinstance(value, str) and pendo_type != "string" and not value.strip()):
        return None
    try:
        if pendo_type == "time":
            if isinstance(value, datetime):
                return (value.astimezone(UTC) if value.tzinfo else value).date()
            if isinstance(value, date):
                return value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return _ms_to_date(value)
            if isinstance(value, str):
                text = value.strip()
                if text.lstrip("-").isdigit():
                    return _ms_to_date(int(text))
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                return (moment.astimezone(UTC) if moment.tzinfo else moment).date()
        if pendo_type in ("float", "integer"):
            if isinstance(value, bool):
                return value
            number = float(value)
            return number if math.isfinite(number) else value
        if pendo_type == "boolean":
            if isinstance(value, str):
                word = value.strip().lower()
                return {"true": True, "false": False}.get(word, value)
            return value
    except (TypeError, ValueError, OverflowError):
        return value  # not comparable as that type: compares unequal, so it is rewritten
    return value


def same(a: Any, b: Any, pendo_type: str) -> bool:
    left, right = normalize(a, pendo_type), normalize(b, pendo_type)
    if isinstance(left, float) and isinstance(right, float):
        return left == right or math.isclose(left, right, rel_tol=1e-12, abs_tol=0.0)
    return type(left) is type(right) and left == right


def _unchanged(held: Any, value: Any, pendo_type: str) -> bool:
    # Most values are unchanged and already in Pendo's form: settle those with one
    # comparison (types must match too: True == 1 in Python), normalise the rest.
    wire = to_wire(value, pendo_type)
    if held is not None and type(held) is type(wire) and held == wire:
        return True
    return same(held, value, pendo_type)


def to_wire(value: Any, pendo_type: str) -> Any:
    """A validated value as Pendo's API takes it: dates as epoch ms (UTC midnight)."""
    if pendo_type == "time" and isinstance(value, date):
        day = value.date() if isinstance(value, datetime) else value
        return (day - _EPOCH).days * 86_400_000
    if pendo_type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def current_values_pipeline(fields: Iterable[str], group: str = "custom") -> Pipeline:
    """An aggregation returning each account's id and the mapped fields' current values.

    Outputs are flat (``f_<name>``), so a field Pendo lacks on an account reads as absent.
    """
    select = {"accountId": "accountId"}
    for name in fields:
        select[f"f_{name}"] = Expr.field(f"metadata.{group}.{name}")
    return Pipeline(Source.accounts()).select(select)


def read_current_values(
    rows: Iterable[Mapping[str, Any]], fields: Iterable[str], group: str = "custom"
) -> dict[str, dict[str, Any]]:
    """Rows of ``current_values_pipeline`` (or whole account rows) -> id -> field -> value."""
    names = list(fields)
    current: dict[str, dict[str, Any]] = {}
    for row in rows:
        account_id = row.get("accountId")
        if account_id is None:
            continue
        nested = ((row.get("metadata") or {}).get(group) or {}) if "metadata" in row else None
        values = {}
        for name in names:
            value = nested.get(name) if nested is not None else row.get(f"f_{name}")
            if value is not None:
                values[name] = value
        current[str(account_id)] = values
    return current


def diff_records(
    records: Iterable[Record],
    current: Mapping[str, Mapping[str, Any]],
    types: Mapping[str, str],
    *,
    force: bool = False,
    create: bool = False,
) -> DiffResult:
    """The changes to send: only differing fields (all mapped fields with ``force``)."""
    result = DiffResult(changes=[], missing=[], accounts_in_pendo=len(current))
    counts: dict[str, int] = dict.fromkeys(types, 0)
    for change in _changes(records, current, types, force=force, create=create):
        if change is None:
            result.unchanged += 1
            continue
        if change.action == "missing":
            result.missing.append(change)
            continue
        result.changes.append(change)
        for name in change.changed:
            counts[name] = counts.get(name, 0) + 1
    result.field_changes = counts
    return result


def _changes(
    records: Iterable[Record],
    current: Mapping[str, Mapping[str, Any]],
    types: Mapping[str, str],
    *,
    force: bool,
    create: bool,
) -> Iterator[Change | None]:
    for record in records:
        if not record.values:
            yield None  # every mapped cell empty: nothing to write for this account
            continue
        held = current.get(record.account_id)
        if held is None:
            action = "create" if create else "missing"
            yield Change(record.account_id, record.values, {}, action, tuple(record.values))
            continue
        changed = tuple(
            name
            for name, value in record.values.items()
            if not _unchanged(held.get(name), value, types[name])
        )
        if not changed and not force:
            yield None
            continue
        values = record.values if force else {name: record.values[name] for name in changed}
        previous = {name: held.get(name) for name in values}
        yield Change(record.account_id, values, _readable(previous, types), "update", changed)


def _readable(previous: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    # Pendo keeps times as epoch ms; show them as dates in logs and dry runs.
    return {
        name: normalize(value, types[name]) if types[name] == "time" else value
        for name, value in previous.items()
    }
