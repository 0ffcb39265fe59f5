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
    "DiffStream",
    "current_values",
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


def current_values(
    rows: Iterable[Mapping[str, Any]], fields: Iterable[str], group: str = "custom"
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of ``current_values_pipeline`` (or whole account rows), as they are read, as
    (account id, field -> value); rows without an id are skipped."""
    names = list(fields)
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
        yield str(account_id), values


def read_current_values(
    rows: Iterable[Mapping[str, Any]], fields: Iterable[str], group: str = "custom"
) -> dict[str, dict[str, Any]]:
    """``current_values`` as one dict: id -> field -> value."""
    return dict(current_values(rows, fields, group))


class DiffStream:
    """Diff while reading: :meth:`changes` compares each account as Pendo's values arrive
    and yields what to send at once, so the push can start before the read ends.

    ``result`` fills as it goes; it is whole once :meth:`changes` is exhausted, which also
    settles the CRM records Pendo never returned (``create``, or ``missing``).
    """

    def __init__(
        self,
        records: Iterable[Record],
        types: Mapping[str, str],
        *,
        force: bool = False,
        create: bool = False,
    ) -> None:
        self.types, self.force, self.create = types, force, create
        self.result = DiffResult(changes=[], missing=[], field_changes=dict.fromkeys(types, 0))
        self._pending: dict[str, Record] = {}
        for record in records:
            if record.values:
                self._pending[record.account_id] = record
            else:
                self.result.unchanged += 1  # every mapped cell empty: nothing to write

    @property
    def not_compared(self) -> int:
        """CRM records Pendo's values have not been compared with (yet)."""
        return len(self._pending)

    def changes(self, current: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[Change]:
        """The updates as ``current`` (account id, its values) is read, then the creates."""
        result, pending = self.result, self._pending
        for account_id, held in current:
            result.accounts_in_pendo += 1
            record = pending.pop(account_id, None)
            if record is None:
                continue  # not in the CRM export, or returned twice: nothing to compare
            change = _compare(record, held, self.types, self.force)
            if change is None:
                result.unchanged += 1
                continue
            self._keep(change)
            yield change
        action = "create" if self.create else "missing"
        for record in pending.values():
            change = Change(record.account_id, record.values, {}, action, tuple(record.values))
            if action == "missing":
                result.missing.append(change)
                continue
            self._keep(change)
            yield change
        pending.clear()

    def _keep(self, change: Change) -> None:
        self.result.changes.append(change)
        counts = self.result.field_changes
        for name in change.changed:
            counts[name] = counts.get(name, 0) + 1


def diff_records(
    records: Iterable[Record],
    current: Mapping[str, Mapping[str, Any]],
    types: Mapping[str, str],
    *,
    force: bool = False,
    create: bool = False,
) -> DiffResult:
    """The changes to send: only differing fields (all mapped fields with ``force``)."""
    stream = DiffStream(records, types, force=force, create=create)
    for _ in stream.changes(current.items()):
        pass
    return stream.result


def _compare(
    record: Record, held: Mapping[str, Any], types: Mapping[str, str], force: bool
) -> Change | None:
    """The update of one account Pendo has, or None when nothing differs (and no force)."""
    changed = tuple(
        name
        for name, value in record.values.items()
        if not _unchanged(held.get(name), value, types[name])
    )
    if not changed and not force:
        return None
    values = record.values if force else {name: record.values[name] for name in changed}
    previous = {name: held.get(name) for name in values}
    return Change(record.account_id, values, _readable(previous, types), "update", changed)


def _readable(previous: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    # Pendo keeps times as epoch ms; show them as dates in logs and dry runs.
    return {
        name: normalize(value, types[name]) if types[name] == "time" else value
        for name, value in previous.items()
    }
