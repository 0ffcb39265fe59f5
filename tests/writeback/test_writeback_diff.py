"""The diff: compare as values, send only what differs, never touch unmapped fields."""

from __future__ import annotations

from datetime import date

import pytest

from analytics_assets.crm_writeback.diff import (
    current_values_pipeline,
    diff_records,
    normalize,
    read_current_values,
    same,
    to_wire,
)
from analytics_assets.crm_writeback.validate import Record

TYPES = {
    "plan": "string",
    "arr": "float",
    "seats": "integer",
    "paying": "boolean",
    "renewal": "time",
}
RENEWAL_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


@pytest.mark.parametrize(
    ("pendo", "crm", "pendo_type"),
    [
        (1200, 1200.0, "float"),
        ("1200", 1200.0, "float"),
        (12, 12, "integer"),
        (12.0, 12, "integer"),
        (RENEWAL_MS, date(2026, 3, 1), "time"),
        (RENEWAL_MS + 3_600_000, date(2026, 3, 1), "time"),  # same day
        ("2026-03-01T00:00:00Z", date(2026, 3, 1), "time"),
        ("true", True, "boolean"),
        ("pro", "pro", "string"),
    ],
)
def test_equal_values(pendo: object, crm: object, pendo_type: str) -> None:
    assert same(pendo, crm, pendo_type)


@pytest.mark.parametrize(
    ("pendo", "crm", "pendo_type"),
    [
        (None, "pro", "string"),
        ("Pro", "pro", "string"),  # case is data: the CRM's casing wins
        (1200.5, 1200.0, "float"),
        (True, 1.0, "float"),
        (RENEWAL_MS, date(2026, 3, 2), "time"),
        ("garbage", date(2026, 3, 1), "time"),
        ("1", True, "boolean"),
    ],
)
def test_different_values(pendo: object, crm: object, pendo_type: str) -> None:
    assert not same(pendo, crm, pendo_type)


def test_wire_format() -> None:
    assert to_wire(date(2026, 3, 1), "time") == RENEWAL_MS
    assert to_wire(12.0, "integer") == 12
    assert normalize(RENEWAL_MS, "time") == date(2026, 3, 1)


def _record(account: str, **values: object) -> Record:
    return Record(account, dict(values), (1,))


def test_only_changed_fields_of_changed_accounts() -> None:
    records = [
        _record("a1", plan="pro", arr=1200.0, renewal=date(2026, 3, 1)),
        _record("a2", plan="pro", arr=10.0),
        _record("a3", plan="free"),
        _record("a4"),  # every cell empty: nothing to send
    ]
    current = {
        "a1": {"plan": "pro", "arr": 1200, "renewal": RENEWAL_MS, "owner": "keep"},
        "a2": {"plan": "starter", "arr": 10},
        "a4": {"plan": "x"},
    }
    result = diff_records(records, current, TYPES)
    assert result.unchanged == 2
    assert [(c.account_id, c.values, c.previous, c.action) for c in result.changes] == [
        ("a2", {"plan": "pro"}, {"plan": "starter"}, "update"),
    ]
    assert [(c.account_id, c.action) for c in result.missing] == [("a3", "missing")]
    assert result.field_changes["plan"] == 1 and result.field_changes["arr"] == 0
    assert result.changes[0].describe() == "plan: 'starter' → 'pro'"


def test_force_sends_every_mapped_value_and_create_creates() -> None:
    records = [_record("a1", plan="pro", arr=1.0), _record("new", plan="free")]
    current = {"a1": {"plan": "pro", "arr": 1.0, "unmapped": 5}}
    result = diff_records(records, current, TYPES, force=True, create=True)
    assert [(c.account_id, c.values, c.action) for c in result.changes] == [
        ("a1", {"plan": "pro", "arr": 1.0}, "update"),
        ("new", {"plan": "free"}, "create"),
    ]
    assert result.missing == []
    assert "unmapped" not in result.changes[0].values
    assert result.changes[0].describe() == "2 unchanged field(s) sent because force is set"
    assert result.changes[1].describe() == "plan: (none) → 'free'"


def test_dates_show_as_dates_and_wire_as_ms() -> None:
    records = [_record("a1", renewal=date(2026, 3, 2))]
    change = diff_records(records, {"a1": {"renewal": RENEWAL_MS}}, TYPES).changes[0]
    assert change.describe() == "renewal: 2026-03-01 → 2026-03-02"
    assert change.wire(TYPES) == {"renewal": RENEWAL_MS + 86_400_000}


def test_current_values_pipeline_and_rows() -> None:
    pipeline = current_values_pipeline(["plan", "arr"])
    assert pipeline.steps[1] == {
        "select": {
            "accountId": "accountId",
            "f_plan": "metadata.custom.plan",
            "f_arr": "metadata.custom.arr",
        }
    }
    rows = [
        {"accountId": "a1", "f_plan": "pro", "f_arr": None},
        {"accountId": "a2", "metadata": {"custom": {"plan": "free", "other": 1}}},
        {"f_plan": "orphan"},
    ]
    assert read_current_values(rows, ["plan", "arr"]) == {
        "a1": {"plan": "pro"},
        "a2": {"plan": "free"},
    }


def test_current_values_pipeline_is_built_by_the_builder_and_sends_the_same_json() -> None:
    pipeline = current_values_pipeline(["plan"], group="custom")
    assert pipeline.steps == [
        {"source": {"accounts": None}},
        {"select": {"accountId": "accountId", "f_plan": "metadata.custom.plan"}},
    ]
    with pytest.raises(ValueError, match="not a field path"):
        current_values_pipeline(['plan" || true'])  # a name can never smuggle an expression
