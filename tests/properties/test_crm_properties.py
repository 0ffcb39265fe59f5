"""Property tests: the CRM reader, the mapping file, cell conversion and row validation.

The promise under test: a CRM export or mapping file of any content ends in one of three
ways. It is read whole (every row back with its values unchanged), or a row is set aside
with its reason (``RowProblem``), or the file is refused with a clear ``ValueError``
subclass (``CrmReadError``, ``MappingError``, ``ValueProblem``, ``SchemaMismatchError``)
that names the problem. No row is ever dropped silently: rows read = rows pushed +
rows quarantined, for any input.
"""

from __future__ import annotations

import csv
import io
import math
import string
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from analytics_assets.crm_writeback.convert import ValueProblem, make_converter
from analytics_assets.crm_writeback.crm import CrmExport, CrmReadError, CrmRow, RowProblem, read_crm
from analytics_assets.crm_writeback.mapping import (
    FIELD_TYPES,
    FieldMapping,
    MappingError,
    Transform,
    load_mapping,
    parse_mapping,
)
from analytics_assets.crm_writeback.validate import (
    ColumnsMissingError,
    SchemaMismatchError,
    check_schema,
    validate_rows,
)

PROPS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(PROPS, max_examples=20)

ClearError = Callable[..., None]

# --- strategies ------------------------------------------------------------------------------

#: Cell text as a CRM writes it: any character but the surrogates UTF-8 cannot hold.
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=15)
#: Text of the kind that trips CSV writers: separators, quotes, newlines, spaces, BOMs.
tricky = st.lists(
    st.sampled_from([",", '"', "\n", "\r\n", " ", "\t", "\ufeff", "a", "é", "1"]), max_size=8
).map("".join)
cell = text | tricky
column_names = (
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=10)
    .map(str.strip)
    .filter(lambda c: c and "\ufeff" not in c)
)

BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"caf\xe9", b"\x80"]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def blank(row: list[str]) -> bool:
    return not row or all(not c.strip() for c in row)


def check_conservation(export: CrmExport, *, contiguous: bool = True) -> None:
    """Each row is a row or a problem, never both, never neither. CSV numbers its data rows
    1..n without gaps; Parquet and tables number by position, blank rows included."""
    numbers = [r.number for r in export.rows] + [p.row for p in export.malformed]
    assert len(numbers) == len(set(numbers)) == export.rows_read
    if contiguous:
        assert sorted(numbers) == list(range(1, export.rows_read + 1))
    else:
        assert all(1 <= n <= export.rows_read + export.blank_rows for n in numbers)
    for problem in export.malformed:
        assert problem.reason and isinstance(problem.reason, str)


# ============================================================================== the reader


@PROPS
@given(
    header=st.lists(column_names, min_size=1, max_size=5, unique=True),
    data=st.data(),
)
def test_every_csv_row_comes_back_with_its_values(
    tmp_path_factory: pytest.TempPathFactory, header: list[str], data: Any
) -> None:
    rows = data.draw(
        st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=15)
    )
    path = tmp_path_factory.mktemp("crm") / "export.csv"
    write_csv(path, header, rows)
    export = read_crm(path)
    assert export.columns == header
    kept = [r for r in rows if not blank(r)]
    assert [row.values for row in export.rows] == [dict(zip(header, r, strict=True)) for r in kept]
    assert export.blank_rows == len(rows) - len(kept) and not export.malformed
    check_conservation(export)


@PROPS
@given(
    width=st.integers(1, 4),
    rows=st.lists(
        st.lists(st.text(string.ascii_letters + string.digits + " ", max_size=5), max_size=6),
        max_size=15,
    ),
)
def test_a_row_with_the_wrong_field_count_is_set_aside_with_its_line(
    tmp_path_factory: pytest.TempPathFactory, width: int, rows: list[list[str]]
) -> None:
    header = [f"c{i}" for i in range(width)]
    path = tmp_path_factory.mktemp("crm") / "export.csv"
    write_csv(path, header, rows)
    export = read_crm(path)
    check_conservation(export)
    data_rows = [r for r in rows if not blank(r)]
    assert [r.values for r in export.rows] == [
        dict(zip(header, r, strict=True)) for r in data_rows if len(r) == width
    ]
    assert len(export.malformed) == sum(len(r) != width for r in data_rows)
    for problem in export.malformed:
        assert problem.line is not None and problem.line >= 2
        assert f"header has {width}" in problem.reason


@PROPS
@given(
    body=st.binary(max_size=300)
    | st.lists(
        st.sampled_from(
            [
                b"id,plan\n",
                b"a1,pro\n",
                b'a2,"open\n',
                b"a3,x,y\n",
                b'a4,"b"c\n',
                b"\n",
                b",\n",
                b"a5,\xff\n",
                b"\x00,\x00\n",
                b"\xef\xbb\xbf",
                b"\r",
                b'"',
                b"a6," + b"z" * 140_000 + b"\n",
            ]
        ),
        max_size=8,
    ).map(b"".join),
)
@example(body=b'id,plan\na1,"never closed\na2,pro\na3,free\n')
@example(body=b"id,plan\na1," + b"x" * 200_000 + b"\na2,pro\n")
@example(body=b"id,plan\na1,caf\xe9\n")
@example(body=b"")
@example(body=b"\n\n")
@example(body=b'"id\n,plan\n')
def test_any_bytes_are_read_or_refused_clearly_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, clear_error: ClearError
) -> None:
    path = tmp_path_factory.mktemp("crm") / "export.csv"
    path.write_bytes(body)
    try:
        export = read_crm(path)
    except Exception as exc:
        clear_error(exc, CrmReadError)
        return
    check_conservation(export)
    # Every row of the file is accounted for: what the csv module sees as records
    # (quotes closed or not) is what the reader numbered, rows and problems together.
    records = [r for r in _records(body) if not blank(r)]
    assert export.rows_read == len(records)
    for row in export.rows:
        assert list(row.values) == export.columns


def _records(body: bytes) -> list[list[str]]:
    reader = csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    out: list[list[str]] = []
    while True:
        try:
            out.append(next(reader))
        except StopIteration:
            return out[1:]
        except csv.Error:
            out.append(["<bad>"])


def test_an_unclosed_quote_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text('id,plan\na0,free\na1,"pro\na2,free\na3,pro\n', encoding="utf-8")
    export = read_crm(path)
    assert [r.values["id"] for r in export.rows] == ["a0"]
    (problem,) = export.malformed
    assert problem.line == 3 and "never closed" in problem.reason and "lines 3-5" in problem.reason


@PROPS
@given(
    columns=st.lists(column_names, min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_parquet_rows_come_back_typed_and_blank_rows_are_counted(
    tmp_path_factory: pytest.TempPathFactory, columns: list[str], data: Any
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = data.draw(
        st.lists(
            st.sampled_from(["str", "int", "float", "bool", "date"]),
            min_size=len(columns),
            max_size=len(columns),
        )
    )
    makers = {
        "str": (text, pa.string()),
        "int": (st.integers(-(2**63), 2**63 - 1), pa.int64()),
        "float": (st.floats(allow_nan=True), pa.float64()),
        "bool": (st.booleans(), pa.bool_()),
        "date": (st.dates(), pa.date32()),
    }
    n = data.draw(st.integers(0, 12))
    table: dict[str, list[Any]] = {}
    for name, kind in zip(columns, kinds, strict=True):
        values, _ = makers[kind]
        table[name] = data.draw(st.lists(st.none() | values, min_size=n, max_size=n))
    schema = pa.schema([(c, makers[k][1]) for c, k in zip(columns, kinds, strict=True)])
    path = tmp_path_factory.mktemp("crm") / "export.parquet"
    pq.write_table(pa.table(table, schema=schema), path)
    export = read_crm(path)
    assert export.columns == columns

    def empty(v: Any) -> bool:
        return (
            v is None
            or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and not v.strip())
        )

    expected = []
    for i in range(n):
        values = {c: table[c][i] for c in columns}
        if not all(empty(v) for v in values.values()):
            expected.append(
                {c: None if empty(v) and not isinstance(v, str) else v for c, v in values.items()}
            )
    assert [r.values for r in export.rows] == expected
    assert export.blank_rows == n - len(expected)
    check_conservation(export, contiguous=False)


@FEW
@given(body=st.binary(max_size=200), data=st.data())
def test_a_damaged_parquet_file_is_refused_clearly(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, data: Any, clear_error: ClearError
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = tmp_path_factory.mktemp("crm")
    good = io.BytesIO()
    pq.write_table(pa.table({"id": ["a1", "a2"], "arr": [1.0, 2.0]}), good)
    whole = good.getvalue()
    cut = data.draw(st.integers(0, len(whole) - 1))
    for content in (body, whole[:cut], b"PAR1" + body + b"PAR1"):
        path = tmp / "export.parquet"
        path.write_bytes(content)
        try:
            export = read_crm(path)
        except Exception as exc:
            clear_error(exc, CrmReadError, mentions="export.parquet")
        else:
            check_conservation(export, contiguous=False)


def test_warehouse_table_rows_come_back_and_bad_names_are_refused(
    clear_error: ClearError,
) -> None:
    import duckdb

    con = duckdb.connect()

    class Warehouse:
        def query(self, sql: str, params: Any = None) -> Any:
            return con.execute(sql, params).df()

    con.execute("CREATE TABLE crm (id VARCHAR, arr DOUBLE, seats BIGINT)")
    con.execute("INSERT INTO crm VALUES ('a1', 1.5, 3), (NULL, NULL, NULL), ('a2', 'nan', NULL)")
    export = read_crm(table="crm", warehouse=Warehouse())
    assert [r.values["id"] for r in export.rows] == ["a1", "a2"] and export.blank_rows == 1
    assert export.rows[1].values == {"id": "a2", "arr": None, "seats": None}
    check_conservation(export, contiguous=False)
    for name in ("crm; DROP TABLE crm", "no_such_table", "a.b.c", "", "crm--"):
        with pytest.raises(CrmReadError) as info:
            read_crm(table=name, warehouse=Warehouse())
        clear_error(info.value, CrmReadError)


# ============================================================================== the mapping

TYPES_FOR = {
    "text": ("trim", "lower", "upper"),
    "number": ("trim", "currency_to_number"),
    "boolean": ("trim", "lower", "boolean_words"),
    "date": ("trim", "parse_date"),
}
field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
yaml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12
).filter(lambda t: t.strip() == t and t.strip())


@st.composite
def transforms(draw: st.DrawFn, kind: str) -> list[Any]:
    out: list[Any] = []
    for name in draw(st.lists(st.sampled_from(TYPES_FOR[kind]), max_size=3)):
        if name == "parse_date":
            formats = draw(
                st.lists(
                    st.sampled_from(["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%b %d %Y"]),
                    min_size=1,
                    max_size=2,
                )
            )
            out.append({"parse_date": {"formats": formats}})
        elif name == "boolean_words":
            words = draw(
                st.lists(
                    st.text(string.ascii_lowercase, min_size=1, max_size=6),
                    min_size=2,
                    max_size=6,
                    unique=True,
                )
            )
            half = len(words) // 2
            out.append({"boolean_words": {"true": words[:half], "false": words[half:]}})
        elif name == "currency_to_number":
            out.append(
                {"currency_to_number": {"decimal_separator": draw(st.sampled_from([".", ","]))}}
            )
        else:
            out.append(name)
    return out


@st.composite
def mapping_specs(draw: st.DrawFn) -> dict[str, Any]:
    fields = {}
    for name in draw(st.lists(field_names, min_size=1, max_size=5, unique=True)):
        kind = draw(st.sampled_from(FIELD_TYPES))
        spec: dict[str, Any] = {"column": draw(yaml_text), "type": kind}
        if draw(st.booleans()):
            spec["transforms"] = draw(transforms(kind))
        if draw(st.booleans()):
            spec["required"] = draw(st.booleans())
        fields[name] = spec
    return {
        "version": 1,
        "account_id": {"column": draw(yaml_text), "transforms": ["trim"]},
        "fields": fields,
    }


@PROPS
@given(spec=mapping_specs())
def test_a_valid_mapping_round_trips_through_yaml(spec: dict[str, Any]) -> None:
    mapping = parse_mapping(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    assert mapping.id_column == spec["account_id"]["column"]
    assert [f.field for f in mapping.fields] == list(spec["fields"])
    for fm in mapping.fields:
        declared = spec["fields"][fm.field]
        assert (fm.column, fm.type) == (declared["column"], declared["type"])
        assert fm.required == declared.get("required", False)
        assert [t.name for t in fm.transforms] == [
            t if isinstance(t, str) else next(iter(t)) for t in declared.get("transforms", [])
        ]
        assert fm.line >= 1


MUTATIONS = [
    "drop_column",
    "drop_type",
    "bad_type",
    "unknown_key",
    "bad_transform",
    "wrong_kind_transform",
    "bad_required",
    "bad_name",
    "duplicate",
    "no_percent",
]


@PROPS
@given(spec=mapping_specs(), how=st.sampled_from(MUTATIONS), data=st.data())
def test_a_broken_field_is_reported_with_its_name_and_line(
    spec: dict[str, Any], how: str, data: Any, clear_error: ClearError
) -> None:
    name = data.draw(st.sampled_from(sorted(spec["fields"])))
    field = spec["fields"][name]
    text = None
    if how == "drop_column":
        del field["column"]
    elif how == "drop_type":
        del field["type"]
    elif how == "bad_type":
        field["type"] = data.draw(st.sampled_from(["string", "int", "", "datetime", "Text"]))
    elif how == "unknown_key":
        field["colum"] = "x"
    elif how == "bad_transform":
        field["transforms"] = ["strip"]
    elif how == "wrong_kind_transform":
        wrong = {
            "text": "parse_date",
            "number": "boolean_words",
            "boolean": "parse_date",
            "date": "currency_to_number",
        }[field["type"]]
        field["transforms"] = [wrong]
    elif how == "bad_required":
        field["required"] = "sometimes"
    elif how == "bad_name":
        spec["fields"][name + ".x y"] = spec["fields"].pop(name)
        name = name + ".x y"
    elif how == "duplicate":  # the same field twice: YAML would keep the last silently
        extra = yaml.safe_dump({name: {"column": "c", "type": "text"}}, allow_unicode=True)
        text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
        text += "".join(f"  {line}\n" for line in extra.splitlines())
    elif how == "no_percent":
        field["type"] = "date"
        field["transforms"] = [{"parse_date": {"formats": ["YYYY-MM-DD"]}}]
    text = text or yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
    with pytest.raises(MappingError) as info:
        parse_mapping(text, source="m.yaml")
    error = info.value
    clear_error(error, MappingError, mentions="m.yaml")
    assert error.problems and all(p.startswith("line ") for p in error.problems)
    lines = text.splitlines()
    for problem in error.problems:
        number = int(problem.split(":", 1)[0].removeprefix("line "))
        assert 1 <= number <= len(lines) + 1
    assert any(name in p for p in error.problems), f"no problem names {name!r}"


@PROPS
@given(
    text=st.text(max_size=200)
    | st.lists(
        st.sampled_from(
            [
                "version: 1",
                "account_id:",
                "  column: Id",
                "fields:",
                "  plan:",
                "    column: Plan",
                "    type: text",
                "    type: [x]",
                "  - item",
                "&a [*a]",
                "? [1]\n: 2",
                "!!binary x",
                "{",
                "]",
                "\t",
                "%YAML 1.1\n---",
                "--- |",
                "*undefined",
                "\x00",
                "    transforms: {trim: 1}",
                "    transforms: [[trim]]",
            ]
        ),
        max_size=10,
    ).map("\n".join)
)
@example(text="[" * 700)  # past PyYAML's recursive composer's stack
@example(text="a: " + "[" * 700 + "]" * 700)
@example(text="fields: &f {plan: *f}\naccount_id: {column: x}")
def test_any_mapping_text_is_a_mapping_or_a_mapping_error(
    text: str, clear_error: ClearError
) -> None:
    try:
        mapping = parse_mapping(text, source="m.yaml")
    except Exception as exc:
        clear_error(exc, MappingError, mentions="m.yaml")
        assert exc.problems  # type: ignore[attr-defined]
        return
    assert mapping.fields and mapping.id_column


def test_the_shipped_mapping_survives_every_single_line_deletion(clear_error: ClearError) -> None:
    from analytics_assets.crm_writeback.mapping import DEFAULT_MAPPING_PATH

    lines = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").splitlines()
    for i in range(len(lines)):
        text = "\n".join(lines[:i] + lines[i + 1 :])
        try:
            parse_mapping(text, source="m.yaml")
        except Exception as exc:
            clear_error(exc, MappingError)


# ============================================================================== conversion

#: Every kind of value a CSV, a Parquet file or a warehouse table can put in a cell.
cells_any = (
    st.none()
    | text
    | tricky
    | st.sampled_from(
        [
            "$12,300.00",
            "(1,200)",
            "€1.234,5",
            "1e999",
            "-1e999",
            "NaN",
            "inf",
            "sNaN",
            "0x10",
            "1_000",
            "١٢٣",
            "2026-02-30",
            "2026-13-01",
            "02/29/2025",
            "yes",
            "NO",
            " true ",
            "0",
            "1",
            "t",
            "",
            "   ",
            "1e-400",
            "9" * 400,
        ]
    )
    | st.booleans()
    # DuckDB's widest integers are 128-bit; Parquet's are 64-bit.
    | st.integers(-(2**127), 2**128 - 1)
    | st.sampled_from([2**63, -(2**64), 2**127, -(2**127)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from([Decimal("1e999999"), Decimal("-1e-999999"), Decimal("0E+10")])
    | st.dates()
    | st.datetimes(timezones=st.sampled_from([UTC, None]))
    | st.binary(max_size=6)
)


@st.composite
def field_mappings(draw: st.DrawFn) -> tuple[FieldMapping, str | None]:
    kind = draw(st.sampled_from(FIELD_TYPES))
    steps = []
    for name in draw(st.lists(st.sampled_from(TYPES_FOR[kind]), max_size=3)):
        if name == "parse_date":
            steps.append(
                Transform(
                    name,
                    formats=tuple(
                        draw(
                            st.lists(
                                st.sampled_from(
                                    ["%Y-%m-%d", "%m/%d/%Y", "%d %B %Y", "%Y%m%d", "%Y-%m-%d %H:%M"]
                                ),
                                min_size=1,
                                max_size=3,
                            )
                        )
                    ),
                )
            )
        elif name == "boolean_words":
            steps.append(Transform(name, true_words=("yes", "y"), false_words=("no", "n")))
        elif name == "currency_to_number":
            steps.append(Transform(name, decimal_separator=draw(st.sampled_from([".", ","]))))
        else:
            steps.append(Transform(name))
    pendo_type = draw(st.sampled_from(["float", "integer", None])) if kind == "number" else None
    required = draw(st.booleans())
    return FieldMapping("f", "Col", kind, tuple(steps), required, 1), pendo_type


RESULT_TYPES = {"text": str, "number": (int, float), "boolean": bool, "date": date}


@settings(PROPS, max_examples=150)
@given(mapped=field_mappings(), value=cells_any)
@example(mapped=(FieldMapping("f", "Col", "number", (), False, 1), None), value=2**128 - 1)
@example(mapped=(FieldMapping("f", "Col", "number", (), False, 1), "integer"), value=1e300)
@example(mapped=(FieldMapping("f", "Col", "boolean", (), False, 1), None), value=Decimal("1"))
@example(
    mapped=(
        FieldMapping("f", "Col", "number", (Transform("currency_to_number"),), False, 1),
        "integer",
    ),
    value="1e999999999999999999",
)
def test_a_cell_becomes_its_type_or_a_value_problem(
    mapped: tuple[FieldMapping, str | None], value: Any, clear_error: ClearError
) -> None:
    fm, pendo_type = mapped
    convert = make_converter(fm, pendo_type)
    try:
        result = convert(value)
    except Exception as exc:
        clear_error(exc, ValueProblem)
        return
    if result is None:
        assert not fm.required
        return
    assert isinstance(result, RESULT_TYPES[fm.type])
    if fm.type == "number":
        assert not isinstance(result, bool) and math.isfinite(result)
        if pendo_type == "integer":
            assert isinstance(result, int)
    if fm.type == "date":
        assert not isinstance(result, datetime)


@PROPS
@given(
    day=st.dates(min_value=date(1, 1, 1)),
    fmt=st.sampled_from(["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d"]),
)
def test_a_date_written_in_a_declared_format_reads_back(day: date, fmt: str) -> None:
    assume(day.year >= 1000)
    fm = FieldMapping("d", "D", "date", (Transform("parse_date", formats=(fmt,)),), False, 1)
    assert make_converter(fm)(day.strftime(fmt)) == day


# ============================================================================== validation

SCHEMA_TYPES = {"text": "string", "number": "float", "boolean": "boolean", "date": "time"}
ids = st.sampled_from(["a1", "a2", "a3", " a1 ", "", "  ", "a4", "A1"])


@st.composite
def exports_and_mappings(draw: st.DrawFn) -> tuple[CrmExport, Any, dict[str, str]]:
    mapping = load_mapping()
    columns = mapping.columns
    rows: list[CrmRow] = []
    malformed: list[RowProblem] = []
    for number in range(1, draw(st.integers(0, 25)) + 1):
        if draw(st.integers(0, 9)) == 0:
            malformed.append(
                RowProblem(number, draw(st.none() | ids), None, "x,y", "2 fields", number + 1)
            )
            continue
        values = {
            c: draw(
                cells_any
                if draw(st.booleans())
                else st.sampled_from(
                    [
                        "pro",
                        "$1,200.00",
                        "12",
                        "yes",
                        "no",
                        "2026-01-31",
                        "01/31/2026",
                        "ann",
                        "80.5",
                    ]
                )
            )
            for c in columns
        }
        values[mapping.id_column] = draw(ids)
        rows.append(CrmRow(number, values, number + 1))
    export = CrmExport("crm.csv", list(columns), rows, malformed)
    types = {
        f.field: draw(st.sampled_from(["float", "integer"]))
        if f.type == "number"
        else SCHEMA_TYPES[f.type]
        for f in mapping.fields
    }
    return export, mapping, types


@settings(PROPS, max_examples=40)
@given(case=exports_and_mappings())
def test_every_row_read_is_pushed_or_quarantined_exactly_once(
    case: tuple[CrmExport, Any, dict[str, str]],
) -> None:
    export, mapping, types = case
    result = validate_rows(export, mapping, types)
    pushed = Counter(n for record in result.records for n in record.rows)
    quarantined = {p.row for p in result.quarantine}
    every = set(range(1, export.rows_read + 1))
    # Conservation: each row is pushed (alone or collapsed into its duplicate) or set aside.
    assert set(pushed) | quarantined == every
    assert not set(pushed) & quarantined
    assert all(n == 1 for n in pushed.values())
    assert result.rows_read == export.rows_read
    assert result.quarantined_rows == len(quarantined)
    assert sum(len(r.rows) for r in result.records) == len(pushed)
    assert result.duplicates_collapsed == sum(len(r.rows) - 1 for r in result.records)
    # One record per account, with a non-empty id, and typed values only.
    assert len({r.account_id for r in result.records}) == len(result.records)
    for record in result.records:
        assert record.account_id.strip() == record.account_id and record.account_id
        for name, value in record.values.items():
            assert isinstance(value, RESULT_TYPES[mapping.field(name).type])
    for problem in result.quarantine:
        assert problem.reason


@PROPS
@given(
    schema=st.dictionaries(
        st.sampled_from(["custom", "agent", "auto"]),
        st.none()
        | st.dictionaries(
            st.sampled_from(
                [
                    "plan",
                    "arr",
                    "seats",
                    "is_paying",
                    "renewal_date",
                    "csm_owner",
                    "health_score",
                    "other",
                ]
            ),
            st.fixed_dictionaries(
                {},
                optional={
                    "Type": st.sampled_from(
                        ["string", "float", "integer", "boolean", "time", "", "text", None, 5]
                    ),
                    "isDeleted": st.booleans(),
                },
            )
            | st.none()
            | st.text(max_size=5)
            | st.integers()
            | st.lists(st.integers(), max_size=2),
        )
        | st.lists(st.text(max_size=4), max_size=3)
        | st.text(max_size=4)
        | st.integers(),
        max_size=3,
    )
)
@example(schema={"custom": ["plan"]})
@example(schema={"custom": "plan"})
def test_a_schema_answer_of_any_shape_matches_or_names_each_field(
    schema: dict[str, Any], clear_error: ClearError
) -> None:
    mapping = load_mapping()
    try:
        types, warnings = check_schema(mapping, schema)
    except Exception as exc:
        clear_error(exc, SchemaMismatchError)
        named = [f.field for f in mapping.fields if f.field in str(exc)]
        assert named, "the error names no mapped field"
        return
    assert set(types) == {f.field for f in mapping.fields}
    for fm in mapping.fields:
        assert (
            types[fm.field]
            in {
                "text": ("string",),
                "number": ("float", "integer"),
                "boolean": ("boolean",),
                "date": ("time",),
            }[fm.type]
        )
    assert all(isinstance(w, str) for w in warnings)


def test_columns_missing_from_the_export_stop_before_any_row(clear_error: ClearError) -> None:
    mapping = load_mapping()
    export = CrmExport("crm.csv", ["Account ID"], [CrmRow(1, {"Account ID": "a1"})])
    with pytest.raises(ColumnsMissingError) as info:
        validate_rows(export, mapping, {})
    clear_error(info.value, ColumnsMissingError, mentions="Plan")
