"""The CRM reader: CSV, Parquet and warehouse tables; nothing dropped silently."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics_assets.crm_writeback.crm import (
    CrmReadError,
    EmptyExportError,
    check_not_empty,
    read_crm,
)
from analytics_assets.crm_writeback.data.make_sample import OUT as SAMPLE
from analytics_assets.warehouse.duckdb import DuckDBWarehouse


def _csv(tmp_path: Path, text: str, name: str = "crm.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def test_csv_rows_keep_numbers_and_lines(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        'Account ID,Note\r\na1,"two\nlines"\r\n\r\na2,x\r\n,\r\na3,"a,b"\r\n',
        bom=True,
    )
    export = read_crm(path)
    assert export.columns == ["Account ID", "Note"]  # BOM stripped
    assert [(r.number, r.line, r.values["Account ID"]) for r in export.rows] == [
        (1, 2, "a1"),
        (2, 5, "a2"),
        (3, 7, "a3"),
    ]
    assert export.rows[0].values["Note"] == "two\nlines"
    assert export.blank_rows == 2  # the empty line and the line of empty fields
    assert export.rows_read == 3


def test_csv_rows_with_wrong_field_count_are_kept_as_problems(tmp_path: Path) -> None:
    path = _csv(tmp_path, "Account ID,Plan\na1,pro\na2,pro,extra\na3\n")
    export = read_crm(path)
    assert [r.values["Account ID"] for r in export.rows] == ["a1"]
    assert [(p.row, p.line, p.account_id) for p in export.malformed] == [
        (2, 3, "a2"),
        (3, 4, "a3"),
    ]
    assert "3 fields but the header has 2" in export.malformed[0].reason
    assert export.rows_read == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("A,A\n1,2\n", "appears twice"),
        ("A,,C\n1,2,3\n", "unnamed column"),
    ],
)
def test_csv_header_problems_stop_reading(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CrmReadError, match=message):
        read_crm(_csv(tmp_path, text))


def test_non_utf8_csv_says_how_to_export(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes("Account ID,Owner\na1,Ren\u00e9e\n".encode("cp1252"))
    with pytest.raises(CrmReadError, match="not UTF-8 text.*CSV UTF-8"):
        read_crm(path)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(CrmReadError, match="does not exist"):
        read_crm(tmp_path / "nope.csv")
    other = tmp_path / "crm.xlsx"
    other.write_text("x")
    with pytest.raises(CrmReadError, match="use .csv or .parquet"):
        read_crm(other)
    with pytest.raises(CrmReadError, match="not both"):
        read_crm(other, table="crm.accounts")


def test_parquet_keeps_types_and_counts_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "crm.parquet"
    table = pa.table(
        {
            "Account ID": ["a1", None, "a3"],
            "ARR": [1200.0, None, float("nan")],
            "Renewal": [date(2026, 1, 2), None, None],
        }
    )
    pq.write_table(table, path)
    export = read_crm(path)
    assert [r.number for r in export.rows] == [1, 3]
    assert export.rows[0].values == {"Account ID": "a1", "ARR": 1200.0, "Renewal": date(2026, 1, 2)}
    assert export.rows[1].values["ARR"] is None  # NaN is "no value"
    assert export.blank_rows == 1


def test_warehouse_table(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    warehouse.execute("CREATE SCHEMA crm")
    warehouse.execute(
        "CREATE TABLE crm.accounts AS SELECT * FROM (VALUES ('a1', 5, NULL), ('a2', NULL, 'x')) "
        't("Account ID", seats, note)'
    )
    export = read_crm(table="crm.accounts", warehouse=warehouse)
    assert export.source == "crm.accounts"
    assert [r.values for r in export.rows] == [
        {"Account ID": "a1", "seats": 5, "note": None},
        {"Account ID": "a2", "seats": None, "note": "x"},
    ]
    with pytest.raises(CrmReadError, match="invalid table name"):
        read_crm(table="crm.accounts; drop", warehouse=warehouse)
    with pytest.raises(CrmReadError, match="cannot read CRM table"):
        read_crm(table="crm.missing", warehouse=warehouse)


def test_sample_export_is_shipped_and_current() -> None:
    from crm_world import company_sample_rows

    from analytics_assets.sandbox.company import Company

    export = read_crm(SAMPLE)
    expected = company_sample_rows(Company(seed=42, scale=1))
    assert export.rows_read == len(expected) == 104
    assert [r.values for r in export.rows] == expected


def test_an_export_with_a_header_and_no_rows_warns_or_fails(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("Account ID,Plan\n\n  \n", encoding="utf-8")
    export = read_crm(path)
    assert export.rows_read == 0 and export.blank_rows == 2
    warning = check_not_empty(export)
    assert warning is not None
    assert "has a header (2 columns) but no rows (2 blank lines)" in warning
    assert "empty_export: fail" in warning
    with pytest.raises(EmptyExportError, match=r"nothing was validated or sent"):
        check_not_empty(export, "fail")
    with pytest.raises(ValueError, match=r"empty_export must be one of warn, fail"):
        check_not_empty(export, "ignore")


def test_an_export_with_rows_is_not_empty(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("Account ID,Plan\na1,pro\n", encoding="utf-8")
    assert check_not_empty(read_crm(path), "fail") is None
