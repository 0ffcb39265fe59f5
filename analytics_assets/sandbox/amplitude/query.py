"""Shared machinery of the Dashboard REST endpoints: parameters, dates, properties, filters.

Everything is evaluated on a day's :class:`~.events.Frame`: a property becomes an
integer code per event plus a list of labels (computed on the small catalog tables
for synthetic events, and per record only for the few ingested ones), so filters
and group-bys are a lookup-table index per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from analytics_assets.sandbox.amplitude.catalog import BUILTIN_USER_PROPS
from analytics_assets.sandbox.company import BROWSERS

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.events import Frame
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

NONE = "(none)"
MAX_DAYS = 365
OPS = (
    "is",
    "is not",
    "contains",
    "does not contain",
    "less",
    "less or equal",
    "greater",
    "greater or equal",
    "set is",
    "set is not",
)
# Record fields behind built-in user properties (for ingested events).
RECORD_FIELD = {
    "country": "country",
    "city": "city",
    "region": "region",
    "language": "language",
    "platform": "platform",
    "os": "os_name",
    "device": "device_family",
    "device_type": "device_type",
    "version": "version_name",
    "carrier": "device_carrier",
    "DMA": "dma",
    "library": "library",
    "start_version": "start_version",
    "paying": "paying",
}


class QueryError(ValueError):
    """A bad query: answered 400 ``Invalid chart definition`` with this as details."""


def json_param(params: Any, name: str, default: Any = None, required: bool = False) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise QueryError(f"Missing required parameter {name}")
        return default
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise QueryError(f"Invalid JSON in parameter {name}") from exc


def parse_day(value: str | None, name: str) -> date:
    try:
        return datetime.strptime(value or "", "%Y%m%d").date()
    except ValueError as exc:
        raise QueryError(f"Invalid {name} date {value!r}: use YYYYMMDD") from exc


def date_range(params: Any, max_days: int = MAX_DAYS) -> list[date]:
    start = parse_day(params.get("start"), "start")
    end = parse_day(params.get("end"), "end")
    if end < start:
        raise QueryError("end date is before start date")
    n = (end - start).days + 1
    if n > max_days:
        raise QueryError(f"Date range exceeds {max_days} days")
    return [start + timedelta(days=i) for i in range(n)]


def interval(params: Any, allowed: Sequence[int] = (1, 7, 30)) -> int:
    raw = params.get("i", "1")
    try:
        value = int(raw)
    except ValueError as exc:
        raise QueryError(f"Invalid interval {raw!r}") from exc
    if value not in allowed:
        raise QueryError(f"Invalid interval {value}; use one of {list(allowed)}")
    return value


def buckets(days: list[date], i: int) -> tuple[list[int], list[str], list[date]]:
    """Bucket index of each day, the buckets' labels and first days.

    Weeks start on Sunday and months on the 1st (Amplitude's defaults); a bucket's
    label is its first day even when the range starts later.
    """
    index, labels, firsts = [], [], []
    for day in days:
        if i == 7:
            first = day - timedelta(days=(day.weekday() + 1) % 7)
        elif i == 30:
            first = day.replace(day=1)
        else:
            first = day
        if not firsts or firsts[-1] != first:
            firsts.append(first)
            labels.append(first.isoformat())
        index.append(len(firsts) - 1)
    return index, labels, firsts


@dataclass
class Codes:
    """A property per event: ``codes`` index ``labels``."""

    codes: np.ndarray
    labels: list[str]


def _label(value: Any) -> str:
    if value is None or value == "" or value == []:
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class _Labels:
    def __init__(self, labels: list[str]) -> None:
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    def code(self, value: Any) -> int:
        label = _label(value)
        if label not in self.index:
            self.index[label] = len(self.labels)
            self.labels.append(label)
        return self.index[label]


class Evaluator:
    """Properties, filters, segments and group-bys over a tenant's frames."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.tenant = tenant
        self.catalog = tenant.events.catalog
        self.company = tenant.company
        self._member_cache: dict[str, np.ndarray] = {}

    # ----- properties ---------------------------------------------------------------------

    def user_prop(self, frame: Frame, prop: str) -> Codes:
        """A user property per event (``gp:name`` custom, or a built-in)."""
        name = prop[3:] if prop.startswith("gp:") else prop
        n_syn = len(frame.batch)
        known = self.catalog.user_property_table(prop)
        device = None if known is not None else self.catalog.device_property(name)
        if (
            known is None
            and device is None
            and not prop.startswith("gp:")
            and (name not in BUILTIN_USER_PROPS)
        ):
            raise QueryError(f"Invalid user property {prop}")
        labels = _Labels(known[1] if known else device[1] if device else [NONE])
        codes = np.full(len(frame), labels.code(None), dtype=np.int32)
        vis = frame.visitor[:n_syn]
        if known is not None:
            codes[:n_syn] = known[0][vis]
            on_visitor = np.flatnonzero(frame.visitor[n_syn:] >= 0) + n_syn
            codes[on_visitor] = known[0][frame.visitor[on_visitor]]
        elif device is not None:
            nb = len(BROWSERS)
            pair = frame.app[:n_syn].astype(np.int64) * nb + self.company.visitor_browser[vis]
            codes[:n_syn] = device[0][pair]
        # Ingested events carry their own values (the record is what the export shows),
        # except that a known visitor's custom properties come from the user tables.
        custom = prop.startswith("gp:") or name not in RECORD_FIELD
        for i in range(n_syn, len(frame)):
            if known is not None and frame.visitor[i] >= 0:
                continue
            record = self.tenant.ingested.get(int(frame.ing[i])).record
            if custom:
                codes[i] = labels.code((record.get("user_properties") or {}).get(name))
            else:
                codes[i] = labels.code(record.get(RECORD_FIELD[name]))
        # Identify updates: the value as of each event's time (custom properties only).
        if custom:
            self._apply_updates(frame, name, codes, labels)
        return Codes(codes, labels.labels)

    def _apply_updates(self, frame: Frame, name: str, codes: np.ndarray, labels: _Labels) -> None:
        updated = self.tenant.user_props.updated_users()
        if not updated:
            return
        hit = np.flatnonzero(np.isin(frame.amp, np.array(updated, dtype=np.int64)))
        events = self.tenant.events
        for i in hit.tolist():
            props = events.user_properties(int(frame.amp[i]), int(frame.t[i]))
            codes[i] = labels.code(props.get(name))

    def event_prop(self, frame: Frame, name: str) -> Codes:
        """An event property per event (from the variant tables and ingested records)."""
        labels = _Labels([NONE])
        lut = np.array(
            [labels.code(v.properties.get(name)) for v in self.catalog.variants], dtype=np.int32
        )
        n_syn = len(frame.batch)
        codes = np.zeros(len(frame), dtype=np.int32)
        codes[:n_syn] = lut[frame.ep[:n_syn]]
        for i in range(n_syn, len(frame)):
            record = self.tenant.ingested.get(int(frame.ing[i])).record
            codes[i] = labels.code((record.get("event_properties") or {}).get(name))
        return Codes(codes, labels.labels)

    def prop(self, frame: Frame, kind: str, name: str) -> Codes:
        if kind == "event":
            return self.event_prop(frame, name)
        if kind in ("user", None):
            return self.user_prop(frame, name)
        raise QueryError(f"Invalid property type {kind!r}")

    # ----- filters, segments, group-bys ------------------------------------------------------

    @staticmethod
    def match(codes: Codes, op: str, values: Sequence[Any]) -> np.ndarray:
        if op not in OPS:
            raise QueryError(f"Invalid operator {op!r}")
        wanted = [_label(v) for v in (values if isinstance(values, list) else [values])]
        lut = np.array([_matches(label, op, wanted) for label in codes.labels], dtype=bool)
        return lut[codes.codes] if codes.codes.size else np.zeros(0, dtype=bool)

    def event_mask(self, frame: Frame, event: dict[str, Any]) -> np.ndarray:
        """Events of the ``e`` definition: its type (``_active``/``_all`` any) and filters."""
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise QueryError("Missing event_type in event definition")
        if event_type in ("_active", "_all", "_new"):
            mask = np.ones(len(frame), dtype=bool)
            if event_type == "_new":
                mask = np.isin(frame.amp, self.tenant.events.new_users(frame.day))
        else:
            index = self.catalog.type_index(event_type)
            if index is None:
                if event_type.startswith("ce:"):
                    raise QueryError(f"Unknown custom event {event_type}")
                return np.zeros(len(frame), dtype=bool)
            mask = frame.etype == index
        for f in event.get("filters") or []:
            if not isinstance(f, dict):
                raise QueryError("Invalid filter")
            kind = f.get("subprop_type", "event")
            codes = self.prop(frame, kind, str(f.get("subprop_key", "")))
            mask &= self.match(codes, f.get("subprop_op", "is"), f.get("subprop_value", []))
        return mask

    def segment_mask(
        self, frame: Frame, segment: list[dict[str, Any]], performed: dict[int, np.ndarray]
    ) -> np.ndarray:
        """Events of users in the segment (all conditions hold)."""
        mask = np.ones(len(frame), dtype=bool)
        for i, cond in enumerate(segment):
            if not isinstance(cond, dict):
                raise QueryError("Invalid segment condition")
            if cond.get("type") == "event":
                mask &= np.isin(frame.amp, performed[i])
                continue
            prop = cond.get("prop")
            op = cond.get("op", "is")
            if prop == "userdata_cohort":
                members = [self.cohort(str(c)) for c in cond.get("values") or []]
                inside = np.isin(frame.amp, np.concatenate(members) if members else [])
                mask &= ~inside if op == "is not" else inside
                continue
            codes = self.user_prop(frame, str(prop))
            mask &= self.match(codes, op, cond.get("values") or [])
        return mask

    def cohort(self, cohort_id: str) -> np.ndarray:
        members = self.tenant.cohort_members(cohort_id)
        if members is None:
            raise QueryError(f"Invalid cohort {cohort_id}")
        return np.asarray(members, dtype=np.int64)

    def performed(
        self, segment: list[dict[str, Any]], frames: list[Frame]
    ) -> dict[int, np.ndarray]:
        """Users meeting each "who performed" condition over the query's days.

        Simplification: counted over the query range whatever ``time_type`` says.
        """
        out: dict[int, np.ndarray] = {}
        for i, cond in enumerate(segment):
            if not isinstance(cond, dict) or cond.get("type") != "event":
                continue
            event = {"event_type": cond.get("event_type"), "filters": cond.get("filters") or []}
            amps = np.concatenate([f.amp[self.event_mask(f, event)] for f in frames] or [[]])
            users, counts = np.unique(amps.astype(np.int64), return_counts=True)
            op, value = cond.get("op", ">="), float(cond.get("value", 1))
            ok = {
                ">=": counts >= value,
                ">": counts > value,
                "=": counts == value,
                "<": counts < value,
                "<=": counts <= value,
            }.get(op)
            if ok is None:
                raise QueryError(f"Invalid operator {op!r}")
            if op in ("<", "<=") or (op == "=" and value == 0):
                raise QueryError("Only >=, > and = with a positive count are supported")
            out[i] = users[ok]
        return out

    def group_codes(self, frame: Frame, group_bys: list[dict[str, Any]]) -> Codes | None:
        """One code per event for up to two group-bys (labels joined with "; ")."""
        if not group_bys:
            return None
        parts = [
            self.prop(frame, g.get("type", "user"), str(g.get("value", ""))) for g in group_bys
        ]
        if len(parts) == 1:
            return parts[0]
        a, b = parts[0], parts[1]
        combined = a.codes.astype(np.int64) * len(b.labels) + b.codes
        uniq, inverse = np.unique(combined, return_inverse=True)
        labels = [
            f"{a.labels[c // len(b.labels)]}; {b.labels[c % len(b.labels)]}" for c in uniq.tolist()
        ]
        return Codes(inverse.astype(np.int32), labels)


def _matches(label: str, op: str, wanted: list[str]) -> bool:
    if op in ("is", "set is"):
        return label in wanted
    if op in ("is not", "set is not"):
        return label not in wanted
    if op == "contains":
        return any(w.lower() in label.lower() for w in wanted)
    if op == "does not contain":
        return not any(w.lower() in label.lower() for w in wanted)
    try:
        number = float(label)
        bounds = [float(w) for w in wanted]
    except ValueError:
        return False
    if not bounds:
        return False
    return {
        "less": number < bounds[0],
        "less or equal": number <= bounds[0],
        "greater": number > bounds[0],
        "greater or equal": number >= bounds[0],
    }[op]
