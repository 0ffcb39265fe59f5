"""Schema check and row validation: what stops the job, what is set aside, and why."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics_assets.crm_writeback.crm import CrmExport, CrmRow, RowProblem, read_crm
from analytics_assets.crm_writeback.data.make_sample import OUT as SAMPLE
from analytics_assets.crm_writeback.mapping import load_mapping, parse_mapping
from analytics_assets.crm_writeback.validate import (
    ColumnsMissingError,
    SchemaMismatchError,
    check_columns,
    check_schema,
    validate_rows,
)
from analytics_assets.pendo.client import FieldSchema

SCHEMA: dict[str, Any] = {
    "agent": {"plan": {"Type": "string"}},
    "custom": {
        "plan": {"Type": "string"},
        "arr": {"Type": "float"},
        "seats": {"Type": "integer"},
        "is_paying": {"Type": "boolean"},
        "renewal_date": {"Type": "time"},
        "csm_owner": {"Type": "string"},
        "health_score": {"Type": "float"},
    },
}
TYPES = {name: d["Type"] for name, d in SCHEMA["custom"].items()}


def test_schema_matches_and_accepts_client_field_schemas() -> None:
    mapping = load_mapping()
    types, warnings = check_schema(mapping, SCHEMA)
    assert types == TYPES and warnings == []
    wrapped = {g: {k: FieldSchema.from_json(v) for k, v in f.items()} for g, f in SCHEMA.items()}
    assert check_schema(mapping, wrapped)[0] == TYPES


def test_schema_mismatch_names_every_field() -> None:
    schema = {"custom": dict(SCHEMA["custom"])}
    del schema["custom"]["csm_owner"]
    schema["custom"]["seats"] = {"Type": "boolean"}
    schema["custom"]["plan"] = {"Type": "string", "isDeleted": True}
    with pytest.raises(SchemaMismatchError) as info:
        check_schema(load_mapping(), schema)
    text = str(info.value)
    assert "Pendo has no custom account field 'csm_owner'" in text
    assert "Pendo has no custom account field 'plan'" in text  # deleted counts as absent
    assert (
        "seats (from 'Seats', line 29): the mapping says number but Pendo's field is boolean"
        in (text)
    )
    assert "nothing was written" in text
    assert len(info.value.problems) == 3


def test_untyped_pendo_field_is_a_warning() -> None:
    schema = {"custom": {**SCHEMA["custom"], "plan": {"Type": ""}}}
    types, warnings = check_schema(load_mapping(), schema)
    assert types["plan"] == "string"
    assert "has no type yet" in warnings[0]


def test_missing_columns_stop_before_rows() -> None:
    export = CrmExport("crm.csv", ["Account ID", "Plan"], [])
    with pytest.raises(ColumnsMissingError, match=r"no column 'ARR \(USD\)' \(mapping line 25\)"):
        check_columns(load_mapping(), export)


def test_sample_export_quarantine() -> None:
    result = validate_rows(read_crm(SAMPLE), load_mapping(), TYPES)
    by_row = {(p.row, p.account_id, p.column): p.reason for p in result.quarantine}
    assert by_row.keys() == {
        (8, "account-000007", "Renewal Date"),
        (14, "account-000013", "ARR (USD)"),
        (22, "account-000021", "Paying"),
        (43, "account-000042", "Plan"),
        (101, None, "Account ID"),
        (102, "account-000042", "Plan"),
    }
    assert "unparsable date 'someday'" in by_row[(8, "account-000007", "Renewal Date")]
    assert "not a number: 'n/a'" in by_row[(14, "account-000013", "ARR (USD)")]
    assert "not a boolean: 'maybe'" in by_row[(22, "account-000021", "Paying")]
    assert "missing account id" in by_row[(101, None, "Account ID")]
    assert "conflicting values (rows 43, 102)" in by_row[(43, "account-000042", "Plan")]
    assert result.quarantined_rows == 6
    assert result.duplicates_collapsed == 1  # account-000050 twice, identical
    assert len(result.records) == 97  # 100 - 4 bad accounts + the one Pendo lacks
    collapsed = next(r for r in result.records if r.account_id == "account-000050")
    assert collapsed.rows == (51, 103)
    first = result.records[0]
    assert first.values["arr"] == 5700.0 and first.values["seats"] == 10
    assert first.values["csm_owner"] == "Dana Whitfield"  # trimmed


def _export(rows: list[dict[str, Any]]) -> CrmExport:
    columns = ["Account ID", "Plan", "ARR"]
    return CrmExport("t", columns, [CrmRow(i + 1, r) for i, r in enumerate(rows)])


MINI = parse_mapping(
    "account_id: {column: Account ID, transforms: [trim]}\n"
    "fields:\n"
    "  plan: {column: Plan, type: text, transforms: [lower]}\n"
    "  arr: {column: ARR, type: number, transforms: [currency_to_number]}\n"
)


def test_duplicate_with_a_bad_row_sets_all_aside() -> None:
    result = validate_rows(
        _export(
            [
                {"Account ID": "a1", "Plan": "pro", "ARR": "$1"},
                {"Account ID": " a1 ", "Plan": "pro", "ARR": "n/a"},
                {"Account ID": "a2", "Plan": "Pro", "ARR": "2"},
                {"Account ID": "a2", "Plan": "pro", "ARR": "2.0"},  # same after transforms
            ]
        ),
        MINI,
        {"plan": "string", "arr": "float"},
    )
    assert [(p.row, p.reason.split(":")[0]) for p in result.quarantine] == [
        (1, "duplicate account id"),
        (2, "arr"),
    ]
    assert [(r.account_id, r.rows) for r in result.records] == [("a2", (3, 4))]


def test_malformed_rows_block_their_account() -> None:
    export = _export([{"Account ID": "a1", "Plan": "pro", "ARR": "1"}])
    export.malformed.append(RowProblem(2, "a1", None, "a1,pro,1,x", "4 fields", line=3))
    result = validate_rows(export, MINI, {"plan": "string", "arr": "float"})
    assert result.records == []
    assert result.quarantined_rows == 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "Account ID": st.sampled_from(["a1", "a2", "a3", "", " a1"]),
                "Plan": st.sampled_from(["pro", "Pro", "", "free"]),
                "ARR": st.sampled_from(["$1", "1.0", "n/a", "", "2"]),
            }
        ),
        max_size=12,
    )
)
def test_every_row_is_either_pushed_or_set_aside(rows: list[dict[str, Any]]) -> None:
    result = validate_rows(_export(rows), MINI, {"plan": "string", "arr": "float"})
    pushed = [n for r in result.records for n in r.rows]
    aside = {p.row for p in result.quarantine}
    assert sorted(pushed + sorted(aside)) == list(range(1, len(rows) + 1))
    assert len({r.account_id for r in result.records}) == len(result.records)
