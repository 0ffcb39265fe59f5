"""The mapping file: parsing, errors with line numbers, transforms and conversion."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics_assets.crm_writeback import SAMPLE_CRM_PATH
from analytics_assets.crm_writeback.convert import (
    AmbiguousDatesError,
    ValueProblem,
    check_date_order,
    convert,
    currency_to_number,
    date_readings,
    parse_date,
)
from analytics_assets.crm_writeback.crm import read_crm
from analytics_assets.crm_writeback.mapping import (
    DEFAULT_MAPPING_PATH,
    FieldMapping,
    MappingError,
    Transform,
    date_order,
    load_mapping,
    parse_mapping,
)

GOOD = """\
version: 1
account_id:
  column: Account ID
  transforms: [trim]
fields:
  plan:
    column: Plan
    type: text
    transforms: [trim, lower]
  is_paying:
    column: Paying
    type: boolean
    transforms:
      - boolean_words: {true: [yes, Y], false: [no, off]}
  renewal_date:
    column: Renewal
    type: date
    transforms:
      - parse_date: ["%d.%m.%Y"]
"""


def test_default_mapping_loads() -> None:
    mapping = load_mapping()
    assert mapping.source == str(DEFAULT_MAPPING_PATH)
    assert mapping.id_column == "Account ID"
    assert [f.field for f in mapping.fields] == [
        "plan",
        "arr",
        "seats",
        "is_paying",
        "renewal_date",
        "csm_owner",
        "health_score",
    ]


def test_yes_and_no_stay_words() -> None:
    mapping = parse_mapping(GOOD)
    words = mapping.field("is_paying").transforms[0]
    # YAML 1.1 would read yes/no/off as booleans; the mapping keeps the words.
    assert words.true_words == ("yes", "y")
    assert words.false_words == ("no", "off")
    assert mapping.field("renewal_date").transforms[0].formats == ("%d.%m.%Y",)
    assert mapping.field("plan").line == 6


def test_every_problem_is_reported_with_its_line() -> None:
    text = """\
version: 2
account_id:
  colum: Account ID
fields:
  plan:
    column: Plan
    type: txt
  arr:
    column: ARR
    type: number
    transforms: [parse_date, shout]
  arr:
    column: ARR2
    type: number
  bad.name:
    column: X
    type: text
  paying:
    column: Paying
    type: boolean
    transforms:
      - boolean_words: {true: [yes]}
"""
    with pytest.raises(MappingError) as info:
        parse_mapping(text, source="m.yaml")
    problems = "\n".join(info.value.problems)
    for expected in (
        "line 1: version must be 1",
        "line 3: account_id: unknown key 'colum'",
        "line 2: account_id needs a column",
        "line 7: field 'plan': unknown type 'txt'",
        "line 11: field 'arr': parse_date applies to date fields, not number",
        "line 11: field 'arr': unknown transform 'shout'",
        "line 12: fields: 'arr' appears twice (first on line 8)",
        "line 15: field 'bad.name': Pendo field names are letters, digits and underscores",
        "line 22: field 'paying': boolean_words needs both true",
    ):
        assert expected in problems, problems
    assert str(info.value).startswith("mapping m.yaml is not valid")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("account_id: {column: A}\n", "fields is missing"),
        ("fields: {plan: {column: P, type: text}}\n", "account_id is missing"),
        ("account_id: {column: A}\nfields: {}\n", "fields is empty"),
        ("account_id: [A\n", "not valid YAML"),
        ("account_id: {column: A}\nfields: {p: {column: P}}\n", "needs a type"),
        ("account_id: {column: A}\nfields: {p: {type: text}}\n", "needs a column"),
        (
            "account_id: {column: A}\nfields: {p: {column: P, type: text, required: maybe}}\n",
            "required must be true or false",
        ),
        (
            "account_id: {column: A}\nfields: {d: {column: D, type: date, "
            "transforms: [{parse_date: {formats: [Y-m-d]}}]}}\n",
            "has no % directives",
        ),
    ],
)
def test_mapping_problems(text: str, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(text)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping(tmp_path / "none.yaml")


def _field(kind: str, *transforms: Transform, required: bool = False) -> FieldMapping:
    return FieldMapping("f", "Col", kind, tuple(transforms), required)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("$12,300.00", 12300.0),
        ("12300", 12300.0),
        (" USD 1,200.5 ", 1200.5),
        ("(1,200)", -1200.0),
        ("€ 99", 99.0),
    ],
)
def test_currency_to_number(text: str, number: float) -> None:
    assert currency_to_number(text) == number


def test_currency_with_decimal_comma() -> None:
    assert currency_to_number("1.234,50 €", ",") == 1234.5


@given(
    st.integers(min_value=0, max_value=10**20),
    st.integers(min_value=0, max_value=6),
    st.sampled_from(["{:,}", "{}", "${:,}"]),
)
def test_plain_amounts_read_as_the_general_path_reads_them(
    units: int, decimals: int, shape: str
) -> None:
    # Plain amounts take a shortcut (float() straight away); a leading space sends the
    # same text through the general path (noise removal, Decimal). They must agree to the
    # last bit, with either decimal separator.
    whole, frac = divmod(units, 10**decimals)
    text = shape.format(whole) + (f".{frac:0{decimals}d}" if decimals else "")
    shortcut = currency_to_number(text)
    assert shortcut == currency_to_number(" " + text) >= 0
    comma = text.lstrip("$").replace(",", "_").replace(".", ",").replace("_", ".")
    assert currency_to_number(comma, ",") == currency_to_number(" " + comma, ",") == shortcut


def test_amounts_off_the_shortcut_read_as_before() -> None:
    assert currency_to_number("1,2,3") == 123.0
    assert currency_to_number("$1,000.") == 1000.0
    assert currency_to_number("١٢٣٤") == 1234.0  # other scripts' digits: Decimal reads them
    with pytest.raises(ValueProblem, match="not a number"):
        currency_to_number("9" * 400)  # float() says inf


@pytest.mark.parametrize("text", ["n/a", "$", "twelve", "1.2.3"])
def test_currency_refuses_text(text: str) -> None:
    with pytest.raises(ValueProblem, match="not a number"):
        currency_to_number(text)


def test_convert_types() -> None:
    assert convert(_field("text", Transform("trim"), Transform("upper")), " pro ") == "PRO"
    assert convert(_field("number"), "1e3") == 1000.0
    assert convert(_field("number"), 7) == 7.0
    assert convert(_field("number"), "12", "integer") == 12
    assert convert(_field("boolean"), "Yes") is True
    assert convert(_field("boolean"), 0) is False
    assert convert(_field("date"), "2026-03-01") == date(2026, 3, 1)
    aware = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert convert(_field("date"), aware) == date(2026, 3, 1)
    assert convert(_field("text"), "   ") is None  # empty: left alone in Pendo
    assert convert(_field("number"), float("nan")) is None


@pytest.mark.parametrize(
    ("mapping", "raw", "pendo_type", "reason"),
    [
        (_field("number"), "n/a", None, "not a number"),
        (_field("number"), "inf", None, "not a finite number"),
        (_field("number"), True, None, "not a number"),
        (_field("number"), "12.5", "integer", "not a whole number"),
        (_field("boolean"), "maybe", None, "not a boolean"),
        (_field("date"), "03/01/2026", None, "unparsable date"),
        (
            _field("date", Transform("parse_date", formats=("%m/%d/%Y",))),
            "2026-13-01",
            None,
            "unparsable date '2026-13-01'; expected %m/%d/%Y",
        ),
        (_field("text", required=True), "", None, "Col is empty but required"),
    ],
)
def test_convert_refuses(
    mapping: FieldMapping, raw: object, pendo_type: str | None, reason: str
) -> None:
    with pytest.raises(ValueProblem, match=reason.replace("(", r"\(")):
        convert(mapping, raw, pendo_type)


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False))
def test_currency_round_trips_formatted_amounts(amount) -> None:  # type: ignore[no-untyped-def]
    text = f"${abs(amount):,.2f}" if amount >= 0 else f"(${abs(amount):,.2f})"
    assert currency_to_number(text) == pytest.approx(float(amount), abs=1e-9)


@pytest.mark.parametrize(
    ("text", "formats", "day"),
    [
        ("3/5/2026", ("%m/%d/%Y",), date(2026, 3, 5)),
        ("05.03.2026", ("%d.%m.%Y",), date(2026, 3, 5)),
        ("2026-03-05", ("%m/%d/%Y", "%Y-%m-%d"), date(2026, 3, 5)),
        ("5 Mar 2026", ("%d %b %Y",), date(2026, 3, 5)),  # not numeric: strptime
    ],
)
def test_parse_date_formats(text: str, formats: tuple[str, ...], day: date) -> None:
    assert parse_date(text, formats) == day


@pytest.mark.parametrize("text", ["2026-02-30", "2026-3-5x", "26-03-05", ""])
def test_parse_date_refuses(text: str) -> None:
    with pytest.raises(ValueProblem, match="unparsable date"):
        parse_date(text, ("%Y-%m-%d",))


# ----- month-first or day-first ---------------------------------------------------------


def _date_field(transform: str) -> FieldMapping:
    text = GOOD.replace('      - parse_date: ["%d.%m.%Y"]', f"      - {transform}")
    return parse_mapping(text, source="test.yaml").field("renewal_date")


def test_day_first_picks_the_numeric_order_and_is_read_from_the_file() -> None:
    day_first = _date_field("parse_date: {day_first: true}").transforms[0]
    month_first = _date_field("parse_date: {day_first: no}").transforms[0]
    assert day_first.day_first is True and month_first.day_first is False
    assert parse_date("03/04/2026", day_first.formats) == date(2026, 4, 3)
    assert parse_date("03/04/2026", month_first.formats) == date(2026, 3, 4)
    # ISO dates read the same under either order.
    assert parse_date("2026-04-03", day_first.formats) == date(2026, 4, 3)


def test_day_first_that_contradicts_a_listed_format_is_a_mapping_error() -> None:
    text = GOOD.replace(
        '      - parse_date: ["%d.%m.%Y"]',
        '      - parse_date: {formats: ["%Y-%m-%d", "%m/%d/%Y"], day_first: true}',
    )
    with pytest.raises(MappingError) as info:
        parse_mapping(text, source="test.yaml")
    (problem,) = info.value.problems
    assert problem.startswith("line 19:") and "'%m/%d/%Y' read the other way" in problem


@pytest.mark.parametrize(
    ("fmt", "order"),
    [("%m/%d/%Y", False), ("%d.%m.%Y", True), ("%Y-%m-%d", None), ("%d %b %Y", None)],
)
def test_date_order_of_a_format(fmt: str, order: bool | None) -> None:
    assert date_order(fmt) is order


def test_dates_that_read_both_ways_need_the_mapping_to_say_which() -> None:
    field = _date_field('parse_date: {formats: ["%Y-%m-%d", "%m/%d/%Y"]}')
    cells = [" 03/04/2026 ", "05/06/2026", "2026-07-01", "", None, "07/07/2026"]
    with pytest.raises(AmbiguousDatesError) as info:
        check_date_order(field, cells)
    text = str(info.value)
    assert "column 'Renewal'" in text and "mapping line 15" in text
    assert "03/04/2026, 05/06/2026 (2 such values)" in text  # trimmed; 07/07 is not ambiguous
    assert "no value has a number above 12" in text and "day_first" in text


def test_an_unambiguous_value_of_the_same_order_settles_the_column() -> None:
    field = _date_field('parse_date: {formats: ["%m/%d/%Y"]}')
    check_date_order(field, ["03/04/2026", "01/15/2027"])  # 15 can only be a day


def test_values_that_contradict_the_formats_order_are_refused() -> None:
    field = _date_field('parse_date: {formats: ["%m/%d/%Y"]}')
    with pytest.raises(AmbiguousDatesError, match=r"yet 25/03/2026 can only be day-first"):
        check_date_order(field, ["03/04/2026", "25/03/2026"])


def test_a_declared_order_reads_ambiguous_dates_without_complaint() -> None:
    field = _date_field("parse_date: {day_first: true}")
    check_date_order(field, ["03/04/2026", "05/06/2026"])
    assert convert(field, "03/04/2026") == date(2026, 4, 3)


def test_the_shipped_sample_is_settled_by_its_own_dates() -> None:
    mapping = load_mapping()
    export = read_crm(SAMPLE_CRM_PATH)
    field = mapping.field("renewal_date")
    readings = date_readings(
        field.transforms[-1].formats, (r.values[field.column] for r in export.rows)
    )
    day_first, month_first, either = readings
    assert either and month_first and not day_first
    check_date_order(field, (r.values[field.column] for r in export.rows))
