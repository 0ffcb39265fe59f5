"""The sensors' compact cursor: per rule, which entities are in alert; plus the outbox.

The cursor is JSON with a version number::

    {"v": 1,
     "r": {"<rule>": {"f": "<fingerprint>", "p": 1, "s": 0,
                      "a": "<base64: 6-byte key hashes [+ 4-byte digests], sorted>",
                      "m": "<base64: 6-byte key hashes + 8-byte values, sorted>"}},
     "o": [{"a": {alert}, "s": ["webhook"], "n": 2}],     # undelivered alerts (bounded)
     "d": 0,                                              # alerts dropped from a full outbox
     "x": {...}}                                          # sensor extras (rotation, watermarks)

An entity is stored as a 48-bit hash of its id, never its id or its data: 6 bytes per entity
in alert (10 with a value digest), so a rule with 10,000 accounts in alert costs 80 KB of
base64 and a quiet day costs nothing. 48 bits keep the chance of two of 100,000 accounts
sharing a hash near 2 in 100 million.

A cursor that cannot be read (corrupt, another format, an older version) is replaced by an
empty state and reported through ``CursorReset``; the caller logs it. The cost of a reset is
bounded and visible: conditions already holding alert once more.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from analytics_assets.alerts.model import Alert

CURSOR_VERSION = 1
KEY_BYTES = 6
DEFAULT_MAX_OUTBOX = 200


def entity_key(entity_id: str, sub: str | None = None) -> int:
    """The 48-bit hash standing for an entity (and an optional sub-key, e.g. a field)."""
    text = entity_id if sub is None else f"{entity_id}\x1f{sub}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=KEY_BYTES).digest(), "big")


def value_digest(value: Any) -> int:
    """A 32-bit digest of a value (for "did it change" without keeping the value)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


@dataclass
class RuleState:
    """What one rule remembers between ticks."""

    fingerprint: str = ""
    # key -> digest of the value that fired (0 when only the transition matters)
    active: dict[int, int] = field(default_factory=dict)
    # key -> last observed value (a count, or a 32-bit digest) for "changed" conditions
    memory: dict[int, int] = field(default_factory=dict)
    primed: bool = False
    # > 0 while more entities hold than the rule may track: the storm's size
    saturated: int = 0


@dataclass
class PendingAlert:
    """An alert that some sinks have not accepted yet."""

    alert: Alert
    sinks: list[str]
    attempts: int = 0


@dataclass
class SensorState:
    rules: dict[str, RuleState] = field(default_factory=dict)
    outbox: list[PendingAlert] = field(default_factory=list)
    dropped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class CursorReset(Exception):
    """Why a cursor was discarded (raised inside ``load_state``, returned to the caller)."""


# ------------------------------------------------------------------------ packing


def _pack(mapping: dict[int, int], value_bytes: int) -> str:
    if not mapping:
        return ""
    out = bytearray([value_bytes])
    for key in sorted(mapping):
        out += key.to_bytes(KEY_BYTES, "big")
        if value_bytes == 4:
            out += struct.pack(">I", mapping[key] & 0xFFFFFFFF)
        elif value_bytes == 8:
            out += struct.pack(">q", mapping[key])
    return base64.b64encode(bytes(out)).decode("ascii")


def _unpack(text: str) -> dict[int, int]:
    if not text:
        return {}
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    width = raw[0]
    if width not in (0, 4, 8):
        raise CursorReset(f"unknown value width {width}")
    step = KEY_BYTES + width
    body = raw[1:]
    if len(body) % step:
        raise CursorReset("truncated entity table")
    out: dict[int, int] = {}
    for offset in range(0, len(body), step):
        key = int.from_bytes(body[offset : offset + KEY_BYTES], "big")
        chunk = body[offset + KEY_BYTES : offset + step]
        if width == 4:
            out[key] = struct.unpack(">I", chunk)[0]
        elif width == 8:
            out[key] = struct.unpack(">q", chunk)[0]
        else:
            out[key] = 0
    return out


def _width(mapping: dict[int, int]) -> int:
    if not mapping or not any(mapping.values()):
        return 0
    if all(0 <= v <= 0xFFFFFFFF for v in mapping.values()):
        return 4
    return 8


# ------------------------------------------------------------------------ (de)serialise


def dump_state(state: SensorState) -> str:
    rules = {}
    for name, rule in sorted(state.rules.items()):
        entry: dict[str, Any] = {"f": rule.fingerprint, "p": int(rule.primed)}
        if rule.saturated:
            entry["s"] = rule.saturated
        if rule.active:
            entry["a"] = _pack(rule.active, _width(rule.active))
        if rule.memory:
            # Memory holds counts that may exceed 32 bits or be negative: always 8 bytes.
            entry["m"] = _pack(rule.memory, 8)
        rules[name] = entry
    data: dict[str, Any] = {"v": CURSOR_VERSION, "r": rules}
    if state.outbox:
        data["o"] = [
            {"a": _compact_alert(p.alert), "s": p.sinks, "n": p.attempts} for p in state.outbox
        ]
    if state.dropped:
        data["d"] = state.dropped
    if state.extra:
        data["x"] = state.extra
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)


def _compact_alert(alert: Alert) -> dict[str, Any]:
    # Empty fields are left out: the outbox is the part of the cursor that can grow.
    return {k: v for k, v in alert.to_dict().items() if v not in ("", None, [], {})}


def load_state(text: str | None) -> tuple[SensorState, str | None]:
    """The state in a cursor, and the reason it was reset (None when it loaded cleanly)."""
    if not text:
        return SensorState(), None
    try:
        return _parse(text), None
    except CursorReset as exc:
        return SensorState(), str(exc)
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        return SensorState(), f"unreadable cursor ({type(exc).__name__}: {exc})"


def _parse(text: str) -> SensorState:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise CursorReset("cursor is not a JSON object (an older format?)")
    version = data.get("v")
    if version != CURSOR_VERSION:
        raise CursorReset(f"cursor version {version!r}, expected {CURSOR_VERSION}")
    rules: dict[str, RuleState] = {}
    for name, entry in (data.get("r") or {}).items():
        if not isinstance(entry, dict):
            raise CursorReset(f"rule {name!r} state is not an object")
        rules[str(name)] = RuleState(
            fingerprint=str(entry.get("f", "")),
            active=_unpack(entry.get("a", "")),
            memory=_unpack(entry.get("m", "")),
            primed=bool(entry.get("p", 0)),
            saturated=int(entry.get("s", 0)),
        )
    outbox = [
        PendingAlert(Alert.from_dict(item["a"]), [str(s) for s in item["s"]], int(item.get("n", 0)))
        for item in data.get("o") or []
    ]
    extra = data.get("x") or {}
    if not isinstance(extra, dict):
        raise CursorReset("extras are not an object")
    return SensorState(rules, outbox, int(data.get("d", 0)), extra)


def bound_outbox(state: SensorState, max_outbox: int = DEFAULT_MAX_OUTBOX) -> int:
    """Drop the oldest undelivered alerts beyond ``max_outbox``; returns how many went."""
    excess = len(state.outbox) - max_outbox
    if excess <= 0:
        return 0
    del state.outbox[:excess]
    state.dropped += excess
    return excess
