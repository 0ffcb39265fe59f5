"""What to send Amplitude: the CRM's values against the last push Amplitude confirmed.

Amplitude has no read-back of group properties, so the reference is the write-back's own
log (``analytics.writeback_amplitude_log``): per record (a group or a user) and property,
the value of the newest ``updated`` row. A property that a later attempt left
``unconfirmed`` (the request failed after retries: Amplitude may or may not hold it) is
sent again whatever its value, with the same ``insert_id`` when nothing else changed, so
that a request that did land is deduplicated and one that did not lands now. Fields the
targets do not name are never sent; an empty CRM cell sends nothing (as for Pendo).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from analytics_assets.amplitude.identify import Identification, identify_insert_id
from analytics_assets.crm_writeback.amplitude_targets import AmplitudeTargets
from analytics_assets.crm_writeback.gc_pause import gc_paused
from analytics_assets.crm_writeback.mapping import Mapping as FieldMap
from analytics_assets.crm_writeback.tables import AMPLITUDE_LOG_TABLE, Warehouse
from analytics_assets.crm_writeback.validate import Record

__all__ = [
    "AmplitudeChange",
    "AmplitudeDiff",
    "RecordState",
    "account_users",
    "diff_for_amplitude",
    "read_amplitude_state",
    "to_amplitude",
]

_ABSENT = object()


def to_amplitude(value: Any, pendo_type: str = "") -> Any:
    """A validated value as Amplitude should hold it: dates as ISO ``YYYY-MM-DD`` text
    (Amplitude compares dates as strings, so its Identify page asks for ISO 8601); whole
    numbers of integer fields as integers; everything else as it is."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if pendo_type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _same(held: Any, value: Any) -> bool:
    if held is _ABSENT:
        return False
    numbers = (int, float)
    if isinstance(held, numbers) and isinstance(value, numbers):
        if isinstance(held, bool) or isinstance(value, bool):
            return type(held) is type(value) and held == value
        return math.isclose(float(held), float(value), rel_tol=1e-12, abs_tol=0.0)
    return type(held) is type(value) and held == value


def _display(value: Any) -> str:
    return "(none)" if value is _ABSENT or value is None else repr(value)


@dataclass
class RecordState:
    """What Amplitude was last confirmed to hold for one record, and what is in doubt."""

    confirmed: dict[str, Any] = field(default_factory=dict)
    unconfirmed: set[str] = field(default_factory=set)
    last_insert_id: str = ""


def read_amplitude_state(warehouse: Warehouse) -> dict[tuple[str, str], RecordState]:
    """(kind, record id) -> its state, from every real run's log rows, oldest first."""
    if not warehouse.table_exists(AMPLITUDE_LOG_TABLE):
        return {}
    with gc_paused():  # a state per record: many small dicts and sets, no cycles
        return _read_state(warehouse)


def _read_state(warehouse: Warehouse) -> dict[tuple[str, str], RecordState]:
    rows = warehouse.query(
        f"SELECT record_kind, record_id, values_json, outcome, insert_id "
        f"FROM {AMPLITUDE_LOG_TABLE} WHERE NOT dry_run "
        "AND outcome IN ('updated', 'unconfirmed') ORDER BY written_at, batch"
    )
    state: dict[tuple[str, str], RecordState] = {}
    for kind, record_id, values_json, outcome, insert_id in rows.itertuples(index=False):
        record = state.setdefault((str(kind), str(record_id)), RecordState())
        values = json.loads(values_json)
        if outcome == "updated":
            record.confirmed.update(values)
            record.unconfirmed.difference_update(values)
            record.last_insert_id = str(insert_id or "")
        else:
            record.unconfirmed.update(values)
    return state


def account_users(
    warehouse: Warehouse, targets: AmplitudeTargets, accounts: Iterable[str]
) -> dict[str, list[str]]:
    """account id -> its users' ids (sorted), for the given accounts, from the users table."""
    table = targets.users_table
    if not warehouse.table_exists(table):
        raise LookupError(
            f"user properties are mapped (amplitude.user_properties) but the warehouse has no "
            f"table {table} listing each user's account: materialize it first (the Pendo "
            "sync's visitors asset) or set amplitude.users_table; nothing was written"
        )
    frame = warehouse.query(
        f"SELECT {targets.user_id_column} AS user_id, {targets.account_id_column} AS account_id "
        f"FROM {table} WHERE {targets.user_id_column} IS NOT NULL "
        f"AND {targets.account_id_column} IS NOT NULL"
    )
    wanted = set(accounts)
    users: dict[str, list[str]] = {}
    for user_id, account_id in frame.itertuples(index=False):
        if str(account_id) in wanted:
            users.setdefault(str(account_id), []).append(str(user_id))
    return {account: sorted(set(ids)) for account, ids in users.items()}


@dataclass(frozen=True, slots=True)
class AmplitudeChange:
    """One record to send: a group's or a user's properties (Amplitude's names, wire values)."""

    kind: str  # group | user
    record_id: str
    account_id: str
    values: dict[str, Any]
    previous: dict[str, Any]
    changed: tuple[str, ...]
    insert_id: str
    group_type: str = ""

    def identification(self) -> Identification:
        kind = "group" if self.kind == "group" else "user"
        return Identification(kind, self.record_id, self.values, self.insert_id, self.group_type)

    def describe(self) -> str:
        """'plan: 'pro' → 'enterprise'; arr: (none) → 1200.0' for the log and dry runs."""
        parts = [
            f"{name}: {_display(self.previous.get(name, _ABSENT))} → {_display(self.values[name])}"
            for name in self.changed
        ]
        resent = [n for n in self.values if n not in self.changed]
        if resent:
            parts.append(f"{', '.join(resent)} sent again (unconfirmed before, or force)")
        return "; ".join(parts) or "nothing to send"


@dataclass
class AmplitudeDiff:
    """The records to send, groups first, and what was left alone."""

    changes: list[AmplitudeChange]
    unchanged: dict[str, int] = field(default_factory=lambda: {"group": 0, "user": 0})
    resent: int = 0
    accounts_without_users: int = 0
    field_changes: dict[str, int] = field(default_factory=dict)

    @property
    def to_send(self) -> int:
        return len(self.changes)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)


def diff_for_amplitude(
    records: Iterable[Record],
    *,
    mapping: FieldMap,
    types: Mapping[str, str],
    targets: AmplitudeTargets,
    state: Mapping[tuple[str, str], RecordState],
    users: Mapping[str, list[str]] | None = None,
    force: bool = False,
) -> AmplitudeDiff:
    """The changes to send: per record, the properties that differ from what Amplitude was
    last confirmed to hold, or whose last attempt is unconfirmed (all with ``force``)."""
    with gc_paused():  # a change per record: many small dicts, no cycles
        return _diff(records, mapping, types, targets, state, users or {}, force)


def _diff(
    records: Iterable[Record],
    mapping: FieldMap,
    types: Mapping[str, str],
    targets: AmplitudeTargets,
    state: Mapping[tuple[str, str], RecordState],
    users: Mapping[str, list[str]],
    force: bool,
) -> AmplitudeDiff:
    group_map = targets.group_map(mapping)
    user_map = targets.user_properties
    diff = AmplitudeDiff(changes=[])
    user_changes: list[AmplitudeChange] = []
    counts: dict[str, int] = {}

    def consider(kind: str, record_id: str, account_id: str, wanted: dict[str, Any]) -> None:
        if not wanted:
            return
        held = state.get((kind, record_id)) or RecordState()
        changed = tuple(
            name for name, value in wanted.items()
            if not _same(held.confirmed.get(name, _ABSENT), value)
        )  # fmt: skip
        doubtful = [n for n in wanted if n in held.unconfirmed and n not in changed]
        if not changed and not doubtful and not force:
            diff.unchanged[kind] += 1
            return
        names = wanted if force else [n for n in wanted if n in changed or n in doubtful]
        values = {name: wanted[name] for name in names}
        if doubtful:
            diff.resent += 1
        for name in changed:
            counts[f"{kind}:{name}"] = counts.get(f"{kind}:{name}", 0) + 1
        change = AmplitudeChange(
            kind=kind,
            record_id=record_id,
            account_id=account_id,
            values=values,
            previous={n: held.confirmed[n] for n in values if n in held.confirmed},
            changed=changed,
            insert_id=identify_insert_id(kind, record_id, values, held.last_insert_id),
            group_type=targets.group_type if kind == "group" else "",
        )
        (diff.changes if kind == "group" else user_changes).append(change)

    for record in records:
        wire = {name: to_amplitude(v, types.get(name, "")) for name, v in record.values.items()}
        group = {prop: wire[name] for name, prop in group_map.items() if name in wire}
        consider("group", record.account_id, record.account_id, group)
        if not user_map:
            continue
        per_user = {prop: wire[name] for name, prop in user_map.items() if name in wire}
        members = users.get(record.account_id, [])
        if per_user and not members:
            diff.accounts_without_users += 1
        for user_id in members:
            consider("user", user_id, record.account_id, per_user)
    diff.changes.extend(user_changes)
    diff.field_changes = counts
    return diff
