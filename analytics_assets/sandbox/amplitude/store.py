"""The mutable state of one Amplitude project: ingested events, users, user and group properties.

Synthetic events are never stored (they are recomputed from the world on demand);
only what clients send through the ingestion endpoints lives here. Every store is
thread-safe and bumps ``version`` on change so that caches built on it can be keyed.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Amplitude IDs: synthetic visitor ``v`` of a project is ``project_id * 10**7 + v``;
# users first seen through ingestion get ids from ``NEW_USER_OFFSET`` on.
AMP_ID_STRIDE = 10**7
NEW_USER_OFFSET = 9_000_000

USER_OPS = ("$set", "$setOnce", "$add", "$append", "$prepend", "$unset")
IDENTIFY_ONLY_OPS = ("$preInsert", "$postInsert", "$remove")
ALL_USER_OPS = USER_OPS + IDENTIFY_ONLY_OPS


def apply_property_ops(props: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Apply one ``user_properties`` update (ops or plain keys) to ``props``; returns a copy.

    Plain keys are a ``$set`` (the ingestion docs: "ops and plain keys can't be mixed",
    but a plain dict is the common case and means set).
    """
    out = copy.deepcopy(props)
    ops = {k: v for k, v in update.items() if k in ALL_USER_OPS}
    if not ops:
        ops = {"$set": update}
    for op, values in ops.items():
        if op == "$unset":
            keys = values if isinstance(values, list) else list(dict(values or {}))
            for key in keys:
                out.pop(str(key), None)
            continue
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            current = out.get(key)
            if op == "$set":
                out[key] = value
            elif op == "$setOnce":
                out.setdefault(key, value)
            elif op == "$add":
                base = current if isinstance(current, int | float) else 0
                out[key] = base + (value if isinstance(value, int | float) else 0)
            elif op in ("$append", "$postInsert", "$prepend", "$preInsert"):
                items = (
                    list(current)
                    if isinstance(current, list)
                    else ([] if current is None else [current])
                )
                new = value if isinstance(value, list) else [value]
                if op in ("$postInsert", "$preInsert"):  # insert only what is absent
                    new = [v for v in new if v not in items]
                out[key] = items + new if op in ("$append", "$postInsert") else new + items
            elif op == "$remove":
                drop = value if isinstance(value, list) else [value]
                if isinstance(current, list):
                    out[key] = [v for v in current if v not in drop]
    return out


@dataclass
class UserRecord:
    """A user first seen through ingestion (synthetic visitors are not stored here)."""

    amplitude_id: int
    user_id: str | None
    device_ids: list[str]
    first_seen_ms: int


class UserRegistry:
    """Maps ingested user ids and device ids to Amplitude IDs.

    ``resolve_visitor(user_id)`` answers the synthetic visitor index of a known
    ``user_id`` (``visitor-0000123``) so that events sent for an existing user join
    that user's history instead of creating a new one.
    """

    def __init__(self, project_id: int, resolve_visitor: Callable[[str], int | None]) -> None:
        self.project_id = project_id
        self._resolve_visitor = resolve_visitor
        self._by_user: dict[str, int] = {}
        self._by_device: dict[str, int] = {}
        self._records: dict[int, UserRecord] = {}
        self._next = NEW_USER_OFFSET
        self._lock = threading.Lock()
        self.version = 0

    def visitor_amplitude_id(self, visitor: int) -> int:
        return self.project_id * AMP_ID_STRIDE + visitor

    def visitor_of(self, amplitude_id: int) -> int | None:
        """The synthetic visitor index behind an Amplitude ID, if it is one."""
        offset = amplitude_id - self.project_id * AMP_ID_STRIDE
        return offset if 0 <= offset < NEW_USER_OFFSET else None

    def resolve(self, user_id: str | None, device_id: str | None, at_ms: int) -> int:
        """The Amplitude ID for an incoming event, creating a user when new."""
        with self._lock:
            if user_id:
                if user_id in self._by_user:
                    amp = self._by_user[user_id]
                else:
                    visitor = self._resolve_visitor(user_id)
                    if visitor is not None:
                        amp = self.visitor_amplitude_id(visitor)
                    elif device_id and device_id in self._by_device:
                        # An anonymous device becomes identified: merge into its id.
                        amp = self._by_device[device_id]
                        record = self._records.get(amp)
                        if record is not None and record.user_id is None:
                            record.user_id = user_id
                    else:
                        amp = self._new(user_id, at_ms)
                    self._by_user[user_id] = amp
            elif device_id in self._by_device:
                amp = self._by_device[device_id]
            else:
                amp = self._new(None, at_ms)
            if device_id:
                self._by_device.setdefault(device_id, amp)
                record = self._records.get(amp)
                if record is not None and device_id not in record.device_ids:
                    record.device_ids.append(device_id)
            self.version += 1
            return amp

    def _new(self, user_id: str | None, at_ms: int) -> int:
        amp = self.project_id * AMP_ID_STRIDE + self._next
        self._next += 1
        self._records[amp] = UserRecord(amp, user_id, [], at_ms)
        return amp

    def lookup_user(self, user_id: str) -> int | None:
        with self._lock:
            amp = self._by_user.get(user_id)
        if amp is not None:
            return amp
        visitor = self._resolve_visitor(user_id)
        return None if visitor is None else self.visitor_amplitude_id(visitor)

    def lookup_device(self, device_id: str) -> int | None:
        with self._lock:
            return self._by_device.get(device_id)

    def record(self, amplitude_id: int) -> UserRecord | None:
        with self._lock:
            return self._records.get(amplitude_id)

    def records(self) -> list[UserRecord]:
        with self._lock:
            return list(self._records.values())

    def user_ids(self) -> dict[str, int]:
        """Every user id seen through ingestion (synthetic ones included) -> Amplitude ID."""
        with self._lock:
            return dict(self._by_user)


class UserPropertyStore:
    """User property updates (identify calls, ``$identify`` events, event user_properties).

    Kept as a time-ordered log per Amplitude ID, so a record's properties can be
    computed as of its event time: an event sent before an identify does not show it.
    """

    def __init__(self) -> None:
        self._log: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self.version = 0

    def apply(self, amplitude_id: int, update: dict[str, Any], at_ms: int) -> None:
        if not update:
            return
        with self._lock:
            entries = self._log.setdefault(amplitude_id, [])
            entries.append((at_ms, copy.deepcopy(update)))
            entries.sort(key=lambda e: e[0])
            self.version += 1

    def has_updates(self, amplitude_id: int) -> bool:
        with self._lock:
            return amplitude_id in self._log

    def updated_users(self) -> list[int]:
        with self._lock:
            return list(self._log)

    def updates(self, amplitude_id: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return list(self._log.get(amplitude_id, ()))

    def properties(
        self, amplitude_id: int, base: dict[str, Any], at_ms: int | None = None
    ) -> dict[str, Any]:
        """``base`` with every update made at or before ``at_ms`` (all when None)."""
        out = dict(base)
        for stamp, update in self.updates(amplitude_id):
            if at_ms is not None and stamp > at_ms:
                break
            out = apply_property_ops(out, update)
        return out


@dataclass
class GroupRecord:
    group_type: str
    group_value: str
    properties: dict[str, Any] = field(default_factory=dict)
    updated_ms: int = 0


class GroupPropertyStore:
    """Group properties set through ``/groupidentify`` (keyed by type and value)."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], GroupRecord] = {}
        self._lock = threading.Lock()
        self.version = 0

    def apply(self, group_type: str, group_value: str, update: dict[str, Any], at_ms: int) -> None:
        with self._lock:
            record = self._groups.setdefault(
                (group_type, group_value), GroupRecord(group_type, group_value)
            )
            record.properties = apply_property_ops(record.properties, update)
            record.updated_ms = at_ms
            self.version += 1

    def get(self, group_type: str, group_value: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._groups.get((group_type, group_value))
            return None if record is None else dict(record.properties)

    def all(self) -> list[GroupRecord]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._groups.values()]


class UserGroupStore:
    """User-level groups: set by an identify (``groups`` of ``/identify`` or of a
    ``$identify`` event, what the SDKs' ``set_group`` sends), carried by the user's later
    events. "After the Identify API assigns users to the group, they remain in it for all
    future events"; a group type can be overwritten, never unset (account-level reporting
    docs). Kept as a time-ordered log so an event shows the groups as of its own time.
    """

    def __init__(self) -> None:
        self._log: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self.version = 0

    def assign(self, amplitude_id: int, groups: dict[str, Any], at_ms: int) -> None:
        if not groups:
            return
        with self._lock:
            entries = self._log.setdefault(amplitude_id, [])
            entries.append((at_ms, copy.deepcopy(groups)))
            entries.sort(key=lambda e: e[0])
            self.version += 1

    def users(self) -> list[int]:
        with self._lock:
            return list(self._log)

    def groups(self, amplitude_id: int, at_ms: int | None = None) -> dict[str, Any]:
        """The user's groups assigned at or before ``at_ms`` (all when None)."""
        with self._lock:
            entries = list(self._log.get(amplitude_id, ()))
        out: dict[str, Any] = {}
        for stamp, groups in entries:
            if at_ms is not None and stamp > at_ms:
                break
            out.update(groups)
        return out


@dataclass
class IngestedEvent:
    """One accepted event, already in the export format (``record``) plus numeric columns.

    ``counted`` is False for ``$identify`` and ``$groupidentify`` rows: the export has
    them, but they are not events of the Dashboard (they make nobody active).
    """

    record: dict[str, Any]
    amplitude_id: int
    event_type: str
    event_time_ms: int
    upload_ms: int
    device_id: str | None
    user_id: str | None
    revenue: float = 0.0
    counted: bool = True


class IngestedEvents:
    """Every event accepted by ``/2/httpapi`` and ``/batch`` of one project.

    Append-only. ``columns()`` gives numpy views (cached per version) so the dashboard
    and export merge ingested events with the synthetic ones without per-record work.
    """

    def __init__(self) -> None:
        self._events: list[IngestedEvent] = []
        self._lock = threading.Lock()
        self.version = 0
        self._columns: tuple[int, dict[str, np.ndarray]] | None = None

    def extend(self, events: list[IngestedEvent]) -> None:
        if not events:
            return
        with self._lock:
            self._events.extend(events)
            self.version += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def get(self, index: int) -> IngestedEvent:
        with self._lock:
            return self._events[index]

    def snapshot(self) -> list[IngestedEvent]:
        with self._lock:
            return list(self._events)

    def columns(self) -> dict[str, np.ndarray]:
        """``amp``, ``time``, ``upload`` (int64), ``revenue``, ``counted`` and ``index``
        arrays, one entry per event."""
        with self._lock:
            if self._columns is not None and self._columns[0] == self.version:
                return self._columns[1]
            events = list(self._events)
            version = self.version
        cols = {
            "amp": np.fromiter((e.amplitude_id for e in events), np.int64, len(events)),
            "time": np.fromiter((e.event_time_ms for e in events), np.int64, len(events)),
            "upload": np.fromiter((e.upload_ms for e in events), np.int64, len(events)),
            "revenue": np.fromiter((e.revenue for e in events), np.float64, len(events)),
            "counted": np.fromiter((e.counted for e in events), bool, len(events)),
            "index": np.arange(len(events), dtype=np.int64),
        }
        with self._lock:
            self._columns = (version, cols)
        return cols


class InsertIdDedup:
    """Amplitude ignores an event whose ``(device_id, insert_id)`` was seen in the last 7 days."""

    WINDOW_MS = 7 * 86_400_000

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def first_time(self, device_or_user: str, insert_id: str, now_ms: int) -> bool:
        key = (device_or_user, insert_id)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now_ms - seen < self.WINDOW_MS:
                return False
            self._seen[key] = now_ms
            if len(self._seen) > 2_000_000:  # bound memory on long benchmark runs
                cutoff = now_ms - self.WINDOW_MS
                self._seen = {k: v for k, v in self._seen.items() if v >= cutoff}
            return True
