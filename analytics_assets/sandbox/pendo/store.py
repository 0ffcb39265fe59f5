"""Mutable state of one Pendo region: metadata written through the API, entities created.

The generated company is immutable; everything a client (or the control API) changes
lives here, keyed by id, so memory grows with what was written and never with the size
of the company. Every public method takes the one lock: handlers run in a thread pool.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

KINDS = ("visitor", "account")
WRITE_GROUPS = ("custom", "agent")
ID_KEYS = {"visitor": "visitorId", "account": "accountId"}
FIELD_TYPES = ("string", "boolean", "integer", "float", "time")

# Custom fields as defined in the subscription's Data Mappings. The account ones are what
# the CRM write-back maps to; writing any other custom field is an error (§4: custom
# fields must exist before values can be sent).
CUSTOM_FIELDS: dict[str, dict[str, str]] = {
    "account": {
        "plan": "string",
        "arr": "float",
        "seats": "integer",
        "is_paying": "boolean",
        "renewal_date": "time",
        "csm_owner": "string",
        "health_score": "float",
    },
    "visitor": {"role_override": "string", "beta_opt_in": "boolean", "nps_score": "integer"},
}
# Agent fields are those the snippet sends; the generated company fills them.
AGENT_FIELDS: dict[str, dict[str, str]] = {
    "visitor": {
        "email": "string",
        "name": "string",
        "role": "string",
        "language": "string",
        "ipaddress": "string",
    },
    "account": {"name": "string", "plan": "string", "industry": "string", "domain": "string"},
}


class ValueTypeError(ValueError):
    """A value that does not fit its field's type (or a field that is not defined)."""


def coerce(value: Any, field_type: str) -> Any:
    """The value as stored for a field of ``field_type``; raises ValueTypeError.

    ``null`` clears a field of any type. [INF] integers accept integral floats and times
    accept epoch ms or an ISO-8601 string (stored as ms); nothing converts a string to a
    number or a boolean, so a CRM export with the wrong types is caught here.
    """
    if value is None:
        return None
    is_bool = isinstance(value, bool)
    is_num = isinstance(value, int | float) and not is_bool
    if field_type == "string" and isinstance(value, str):
        return value
    if field_type == "boolean" and is_bool:
        return value
    if field_type == "integer" and is_num:
        if isinstance(value, int):
            return value
        if math.isfinite(value) and value.is_integer():
            return int(value)
    if field_type == "float" and is_num and math.isfinite(value):
        return value
    if field_type == "time":
        if is_num and math.isfinite(value):
            return int(value)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                return int(moment.timestamp() * 1000)
    raise ValueTypeError(f"value {value!r} is not a valid {field_type}")


def infer_type(value: Any) -> str:
    """The schema type of a value written to a field not yet in the schema (agent only)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


@dataclass(frozen=True)
class CreatedEntity:
    """A visitor or account that exists only because it was created through the API.

    ``active_from_ms`` (visitors staged by the control API) makes the visitor produce
    event rows from that moment on; ``None`` means created by a write, never active.
    """

    id: str
    kind: str
    created_ms: int
    number: int  # 0, 1, 2... per kind, for the visitor's numeric ``nid``
    account_id: str | None = None
    active_from_ms: int | None = None
    app: int = 0  # index into the company's apps


@dataclass
class WriteOutcome:
    """One record's fate in a bulk write."""

    status: str  # "updated" | "missing" | "error"
    field: str | None = None
    error: str | None = None


class PendoStore:
    """Metadata values and created entities of one region (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (kind, group) -> id -> field -> value
        self._values: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
            (k, g): {} for k in KINDS for g in WRITE_GROUPS
        }
        self._updated: dict[str, dict[str, int]] = {k: {} for k in KINDS}
        self._created: dict[str, dict[str, CreatedEntity]] = {k: {} for k in KINDS}
        # Agent fields first seen in a write, with the type of their first value.
        self._extra_agent: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        self._samples: dict[tuple[str, str, str], Any] = {}
        self._records: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self.version = 0

    # ----- schema -----------------------------------------------------------------------

    def field_type(self, kind: str, group: str, field: str) -> str | None:
        if group == "custom":
            return CUSTOM_FIELDS[kind].get(field)
        with self._lock:
            return AGENT_FIELDS[kind].get(field) or self._extra_agent[kind].get(field)

    def fields(self, kind: str, group: str) -> dict[str, str]:
        if group == "custom":
            return dict(CUSTOM_FIELDS[kind])
        with self._lock:
            return {**AGENT_FIELDS[kind], **self._extra_agent[kind]}

    def sample(self, kind: str, group: str, field: str) -> Any:
        with self._lock:
            return self._samples.get((kind, group, field))

    def check(self, kind: str, group: str, values: dict[str, Any]) -> tuple[dict, WriteOutcome]:
        """Values coerced to their fields' types, or the first field that is wrong."""
        clean: dict[str, Any] = {}
        for field, value in values.items():
            field_type = self.field_type(kind, group, field)
            if field_type is None:
                if group == "custom":
                    return {}, WriteOutcome(
                        "error", field, f"custom field {field!r} is not defined for {kind}s"
                    )
                # [INF] agent metadata is whatever the snippet sends: a new field is
                # accepted and enters the schema with the type of its first value.
                if value is not None and not isinstance(value, str | int | float | bool):
                    return {}, WriteOutcome("error", field, "agent values must be scalars")
                clean[field] = value
                continue
            try:
                clean[field] = coerce(value, field_type)
            except ValueTypeError as exc:
                return {}, WriteOutcome("error", field, f"{exc} for field {field!r}")
        return clean, WriteOutcome("updated")

    # ----- writes -----------------------------------------------------------------------

    def apply(
        self, kind: str, group: str, entity_id: str, values: dict[str, Any], now_ms: int
    ) -> None:
        """Store already-checked values (``None`` clears a field)."""
        with self._lock:
            self._apply_locked(kind, group, entity_id, values, now_ms)

    def _apply_locked(
        self, kind: str, group: str, entity_id: str, values: dict[str, Any], now_ms: int
    ) -> None:
        stored = self._values[(kind, group)].setdefault(entity_id, {})
        for field, value in values.items():
            if group == "agent" and field not in AGENT_FIELDS[kind]:
                self._extra_agent[kind].setdefault(field, infer_type(value))
            if value is None:
                stored.pop(field, None)
            else:
                stored[field] = value
                self._samples[(kind, group, field)] = value
        if not stored:
            del self._values[(kind, group)][entity_id]
        self._updated[kind][entity_id] = now_ms
        self._records[kind] += 1
        self._records[f"{kind}/{group}"] += 1
        self.version += 1

    def count_call(self, kind: str) -> None:
        with self._lock:
            self._calls[kind] += 1

    def create(
        self,
        kind: str,
        entity_id: str,
        now_ms: int,
        *,
        account_id: str | None = None,
        active_from_ms: int | None = None,
        app: int = 0,
    ) -> CreatedEntity:
        """Create an entity (idempotent: an existing one is returned unchanged)."""
        with self._lock:
            existing = self._created[kind].get(entity_id)
            if existing is not None:
                return existing
            entity = CreatedEntity(
                entity_id, kind, now_ms, len(self._created[kind]), account_id, active_from_ms, app
            )
            self._created[kind][entity_id] = entity
            self._updated[kind][entity_id] = now_ms
            self.version += 1
            return entity

    # ----- reads ------------------------------------------------------------------------

    def values(self, kind: str, group: str, entity_id: str) -> dict[str, Any]:
        """A copy of the stored values (safe to hand to a serializer in another thread)."""
        with self._lock:
            return dict(self._values[(kind, group)].get(entity_id, ()))

    def snapshot(self, kind: str, group: str) -> dict[str, dict[str, Any]]:
        """A copy of every stored value of one group: for a pass over all entities."""
        with self._lock:
            return {k: dict(v) for k, v in self._values[(kind, group)].items()}

    def updated(self, kind: str) -> dict[str, int]:
        with self._lock:
            return dict(self._updated[kind])

    def updated_at(self, kind: str, entity_id: str) -> int | None:
        with self._lock:
            return self._updated[kind].get(entity_id)

    def created(self, kind: str) -> list[CreatedEntity]:
        with self._lock:
            return list(self._created[kind].values())

    def created_entity(self, kind: str, entity_id: str) -> CreatedEntity | None:
        with self._lock:
            return self._created[kind].get(entity_id)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "records_written": {k: self._records[k] for k in KINDS},
                "records_by_group": {
                    f"{k}/{g}": self._records[f"{k}/{g}"] for k in KINDS for g in WRITE_GROUPS
                },
                "write_calls": {k: self._calls[k] for k in KINDS},
                "entities_with_values": {
                    f"{k}/{g}": len(self._values[(k, g)]) for k in KINDS for g in WRITE_GROUPS
                },
                "created": {k: list(self._created[k]) for k in KINDS},
            }

    def clear(self) -> None:
        """Forget every write and created entity (control API, between tests)."""
        with self._lock:
            for bucket in self._values.values():
                bucket.clear()
            for kind in KINDS:
                self._updated[kind].clear()
                self._created[kind].clear()
                self._extra_agent[kind].clear()
            self._samples.clear()
            self._records.clear()
            self._calls.clear()
            self.version += 1
