"""The alert record that flows from the engine to the sinks (and through the outbox)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("info", "warning", "critical")

# Kinds of alert: a condition started holding, it cleared (only for rules that ask for it),
# a summary standing in for a storm of individual alerts, and a failed run.
KINDS = ("fired", "cleared", "summary", "run_failure")


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with seconds, the one time format alerts carry."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def alert_id(*parts: object) -> str:
    """A deterministic id, so a retried delivery is recognisable as the same alert."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Alert:
    """One thing worth telling a person, with enough context to act on it.

    ``values`` holds the few numbers behind the verdict (current, baseline, change...),
    never whole result sets, so an alert stays small enough to wait in a cursor.
    """

    rule: str
    kind: str
    severity: str
    entity_type: str
    entity_id: str
    message: str
    observed_at: str
    values: dict[str, Any] = field(default_factory=dict)
    entity_name: str | None = None
    condition: str = ""
    source: str = ""
    sensor: str = ""
    sinks: tuple[str, ...] = ()
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            # Unique per alert raised (two firings may share an observation time); stable
            # across retries, since a retried alert is the same object, read from the outbox.
            object.__setattr__(self, "id", alert_id(self.rule, self.entity_id, uuid.uuid4()))

    @property
    def title(self) -> str:
        name = f" ({self.entity_name})" if self.entity_name else ""
        return f"[{self.severity}] {self.rule}: {self.entity_type} {self.entity_id}{name}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sinks"] = list(self.sinks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["sinks"] = tuple(kwargs.get("sinks") or ())
        kwargs["values"] = dict(kwargs.get("values") or {})
        return cls(**kwargs)

    def values_json(self) -> str:
        return json.dumps(self.values, sort_keys=True, default=str)
