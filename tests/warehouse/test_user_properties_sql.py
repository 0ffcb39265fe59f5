"""``user_properties_daily``'s SQL on every backend (DuckDB, Postgres, Snowflake on
fakesnow), over export rows loaded the way the ``events`` asset loads them: the cases the
sandbox's day does not stage (ties on event time, rows without properties, a late
upload, a ``$groupidentify`` row with a user) each give the row they should."""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from analytics_assets.amplitude.assets import EXPORT_FIELDS
from analytics_assets.amplitude.session_assets import USER_COLUMNS, user_properties_query
from analytics_assets.warehouse.base import WarehouseResource

DAY, NEXT = date(2026, 11, 17), date(2026, 11, 18)
EVENTS, TABLE = "amplitude.events", "amplitude.user_properties_daily"
NESTED = {"tags": ["a", "b"], "n": 1.5, "nested": {"k": True}, "none": None}


def _row(
    user: str | None,
    event_type: str,
    at: str,
    props: dict[str, Any] | None,
    *,
    uploaded: str | None = None,
    uuid: str = "0",
) -> dict[str, Any]:
    return {
        "uuid": f"{user}-{uuid}-{event_type}-{at}-{uploaded}",
        "event_type": event_type,
        "user_id": user,
        "amplitude_id": None if user is None else 1000 + ord(user[-1]),
        "event_time": f"2026-11-17 {at}:00.000000",
        "server_upload_time": f"2026-11-17 {uploaded or at}:00.000000",
        "user_creation_time": "2026-01-02 03:04:05.000000",
        "user_properties": props,
    }


# user -> (rows of the day, the properties expected, their time, active)
CASES: dict[str, tuple[list[dict[str, Any]], Any, str, bool]] = {
    # An $identify after the user's last event sets the day's state.
    "user-a": (
        [
            _row("user-a", "Click", "10:00", {"plan": "free"}),
            _row("user-a", "$identify", "12:00", {"plan": "pro"}),
        ],
        {"plan": "pro"},
        "12:00",
        True,
    ),
    # The same event time: the later upload wins, then the greater uuid.
    "user-b": (
        [
            _row("user-b", "Click", "11:00", {"v": 2}, uploaded="11:05", uuid="a"),
            _row("user-b", "Click", "11:00", {"v": 1}, uploaded="11:01", uuid="b"),
        ],
        {"v": 2},
        "11:00",
        True,
    ),
    "user-c": (
        [
            _row("user-c", "Click", "11:00", {"v": "b"}, uuid="b"),
            _row("user-c", "Click", "11:00", {"v": "a"}, uuid="a"),
        ],
        {"v": "b"},
        "11:00",
        True,
    ),
    # Only a property update that day: a row, not an active one.
    "user-d": ([_row("user-d", "$identify", "09:00", NESTED)], NESTED, "09:00", False),
    # A $groupidentify row updates a group, not the user.
    "user-e": (
        [
            _row("user-e", "Click", "09:00", {"x": 1}),
            _row("user-e", "$groupidentify", "13:00", {"x": "group"}),
        ],
        {"x": 1},
        "09:00",
        True,
    ),
    # A row without user_properties carries none.
    "user-f": (
        [_row("user-f", "Click", "08:00", {"y": 1}), _row("user-f", "Click", "14:00", None)],
        {"y": 1},
        "08:00",
        True,
    ),
    # By event time: an event uploaded late does not replace a later one.
    "user-g": (
        [
            _row("user-g", "Click", "07:00", {"z": "old"}, uploaded="15:00"),
            _row("user-g", "Click", "09:00", {"z": "new"}, uploaded="09:01"),
        ],
        {"z": "new"},
        "09:00",
        True,
    ),
    # Nothing but rows without properties: a row with NULL properties (the check says so).
    "user-h": ([_row("user-h", "Click", "10:00", None)], None, "10:00", True),
}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_each_user_gets_the_properties_of_their_latest_row(
    warehouse: WarehouseResource, tmp_path: Path
) -> None:
    rows = [r for case in CASES.values() for r in case[0]]
    rows.append(_row(None, "Click", "16:00", {"anonymous": True}))
    later = [_row("user-a", "Click", "10:00", {"plan": "enterprise"})]  # another day
    warehouse.load_json_lines(
        EVENTS, [_write(tmp_path / "d.json.gz", rows)], EXPORT_FIELDS, "day", DAY
    )
    warehouse.load_json_lines(
        EVENTS, [_write(tmp_path / "n.json.gz", later)], EXPORT_FIELDS, "day", NEXT
    )

    for day in (DAY, NEXT):
        query = user_properties_query(warehouse, EVENTS, day)
        warehouse.replace_partition(TABLE, query, "day", day, columns=USER_COLUMNS)
    got = {
        r["user_id"]: r for r in warehouse.records(f"SELECT * FROM {TABLE} WHERE day = ?", [DAY])
    }
    assert set(got) == set(CASES)
    for user, (_, properties, at, active) in CASES.items():
        row = got[user]
        text = row["properties"]
        assert text is None or isinstance(text, str), f"{user}: JSON text, not {type(text)}"
        assert (None if text is None else json.loads(text)) == properties, user
        assert row["properties_as_of"] == datetime.fromisoformat(f"2026-11-17 {at}:00"), user
        assert bool(row["active"]) is active, user
        assert row["amplitude_id"] == 1000 + ord(user[-1])
        assert row["user_creation_time"] == datetime(2026, 1, 2, 3, 4, 5)
        assert row["day"] == DAY
    (other,) = warehouse.records(f"SELECT * FROM {TABLE} WHERE day = ?", [NEXT])
    assert json.loads(other["properties"]) == {"plan": "enterprise"}
