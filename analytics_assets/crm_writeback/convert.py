"""Turn CRM cells into typed values, as the mapping declares: transforms, then the type.

``make_converter`` builds one function per field, once per run, so the per-cell work is a
few direct calls, and each distinct cell is converted once. A value that
cannot become its type raises ``ValueProblem``, whose message is the quarantine reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from analytics_assets.crm_writeback.mapping import (
    DEFAULT_DATE_FORMATS,
    FieldMapping,
    Transform,
    date_order,
)

__all__ = [
    "AmbiguousDatesError",
    "DEFAULT_FALSE",
    "DEFAULT_TRUE",
    "ValueProblem",
    "apply_transform",
    "check_date_order",
    "convert",
    "currency_to_number",
    "date_readings",
    "is_empty",
    "make_converter",
    "make_transforms",
    "parse_date",
    "to_boolean",
]

DEFAULT_TRUE = ("true", "yes", "y", "1", "t")
DEFAULT_FALSE = ("false", "no", "n", "0", "f")

Converter = Callable[[Any], Any]
# Distinct cells a converter remembers (per field, per run): about 10 MB at most.
_MEMO_CELLS = 65_536


class ValueProblem(ValueError):
    """A CRM value that cannot become the field's type; the message is the reason."""


def is_empty(value: Any) -> bool:
    """No value: None, NaN, or text that is only whitespace."""
    if value is None:
        return True
    kind = type(value)
    if kind is str:
        return not value.strip()
    return kind is float and math.isnan(value)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# ----- transforms -------------------------------------------------------------------------

_CURRENCY_NOISE = re.compile(r"[\s$€£¥]|\b(?:USD|EUR|GBP|JPY|AUD|CAD)\b", re.IGNORECASE)


def currency_to_number(value: Any, decimal_separator: str = ".") -> Any:
    """'$12,300.00' -> 12300.0, '(1,200)' -> -1200.0; anything without digits is refused."""
    if not isinstance(value, str):
        return value
    # The common shape, '$12,300.00' or '12300.5', straight to float(): an ARR column is
    # nearly all distinct values, so the per-cell memo does not help, and the general way
    # (regex substitution, Decimal) was about half of the validation's time. The result is the
    # same to the bit (both round the decimal text once; tests compare them).
    thousands = "," if decimal_separator == "." else "."
    plain = value.replace(thousands, "").removeprefix("$")
    if plain.isascii() and plain.replace(decimal_separator, "", 1).isdigit():
        number = float(plain if decimal_separator == "." else plain.replace(",", "."))
        if number != math.inf:  # 400 digits: the general way refuses it
            return number
    return _currency_general(value, decimal_separator)


def _currency_general(value: str, decimal_separator: str) -> float:
    """Any amount ``currency_to_number`` takes: noise removed, then read with Decimal."""
    thousands = "," if decimal_separator == "." else "."
    text = _CURRENCY_NOISE.sub("", value.strip())
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1]
    text = text.replace(thousands, "").replace("'", "")
    if decimal_separator == ",":
        text = text.replace(",", ".")
    try:
        number = float(Decimal(text))
    except (InvalidOperation, ValueError):
        raise ValueProblem(
            f"not a number: {_show(value)} (expected an amount like $12,300.00)"
        ) from None
    if not math.isfinite(number):
        raise ValueProblem(f"not a number: {_show(value)}")
    return -number if negative else number


_NUMERIC_DIRECTIVES = {"%Y": r"(?P<Y>\d{4})", "%m": r"(?P<m>\d{1,2})", "%d": r"(?P<d>\d{1,2})"}


@lru_cache(maxsize=64)
def _numeric_pattern(fmt: str) -> re.Pattern[str] | None:
    """A regex for formats made only of %Y, %m, %d and separators (the common case).

    ``strptime`` consults the locale on every call; 100,000 dates cost seconds that way.
    Other formats (month names, times) still go through ``strptime``.
    """
    out, seen = [], set()
    for part in re.split(r"(%.)", fmt):
        if part.startswith("%") and len(part) == 2:
            if part not in _NUMERIC_DIRECTIVES or part in seen:
                return None
            seen.add(part)
            out.append(_NUMERIC_DIRECTIVES[part])
        else:
            out.append(re.escape(part))
    return re.compile("".join(out) + r"\Z") if len(seen) == 3 else None


def _parse_one(text: str, fmt: str) -> date | None:
    pattern = _numeric_pattern(fmt)
    try:
        if pattern is None:
            return datetime.strptime(text, fmt).date()
        found = pattern.match(text)
        if found is None:
            return None
        return date(int(found["Y"]), int(found["m"]), int(found["d"]))
    except ValueError:  # 2026-02-30, or strptime's mismatch
        return None


def parse_date(value: Any, formats: tuple[str, ...] = DEFAULT_DATE_FORMATS) -> Any:
    """Text -> date by the first format that fits; dates and datetimes (UTC) pass."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    if isinstance(value, date) or not isinstance(value, str):
        return value
    text = value.strip()
    for fmt in formats:
        parsed = _parse_one(text, fmt)
        if parsed is not None:
            return parsed
    raise ValueProblem(f"unparsable date {_show(value)}; expected {' or '.join(formats)}")


class AmbiguousDatesError(ValueError):
    """A date column whose values read both month-first and day-first while the mapping
    does not say which; nothing was written."""


# How many values an error shows as examples.
_EXAMPLES = 3


def date_readings(
    formats: tuple[str, ...], values: Iterable[Any]
) -> tuple[list[str], list[str], list[str]]:
    """The text values that only a day-first reading fits (the first number above 12), only
    a month-first one (the second above 12), and both (each at most 12 and different), among
    those an order-sensitive format of ``formats`` matches (e.g. %m/%d/%Y)."""
    patterns = [p for f in formats if date_order(f) is not None and (p := _numeric_pattern(f))]
    day_first: list[str] = []
    month_first: list[str] = []
    either: list[str] = []
    for value in values:
        if not isinstance(value, str):
            continue
        text = value.strip()
        found = next((m for p in patterns if (m := p.match(text))), None)
        if found is None:
            continue
        day, month = int(found["d"]), int(found["m"])
        first, second = (day, month) if found.start("d") < found.start("m") else (month, day)
        if first > 12 >= second:
            day_first.append(text)
        elif second > 12 >= first:
            month_first.append(text)
        elif first != second and max(first, second) <= 12:
            either.append(text)
    return day_first, month_first, either


def check_date_order(field: FieldMapping, cells: Iterable[Any]) -> None:
    """Refuse a column of ``field`` whose dates read both month-first and day-first when its
    mapping does not say which (``parse_date: {day_first: ...}``), unless the column's own
    unambiguous dates (a number above 12) confirm the order its formats read: 03/04/2026 is
    March 4 in a US export and 3 April in a European one, and a wrong guess would write
    plausible, wrong dates. Raises :class:`AmbiguousDatesError` naming the column."""
    parse = next((t for t in field.transforms if t.name == "parse_date"), None)
    if parse is None or parse.day_first is not None:
        return
    orders = [o for f in parse.formats if (o := date_order(f)) is not None]
    if not orders:
        return
    # The transforms before parse_date (trim, ...) shape what it reads.
    before = [_transform(t) for t in field.transforms[: field.transforms.index(parse)]]

    def shaped(cell: Any) -> Any:
        for step in before:
            if is_empty(cell):
                return None
            cell = step(cell)
        return cell

    day_first, month_first, either = date_readings(parse.formats, map(shaped, cells))
    if not either:
        return
    reads_day_first = orders[0]  # the first order-sensitive format wins an ambiguous value
    confirming, contradicting = (
        (day_first, month_first) if reads_day_first else (month_first, day_first)
    )
    if confirming and not contradicting:
        return
    shown = ", ".join(either[:_EXAMPLES])
    read = "day-first" if reads_day_first else "month-first"
    if contradicting:
        evidence = (
            f"yet {', '.join(contradicting[:_EXAMPLES])} can only be "
            f"{'month-first' if reads_day_first else 'day-first'}, while the mapping's "
            f"formats read them {read}"
        )
    else:
        evidence = "and no value has a number above 12 to tell which"
    raise AmbiguousDatesError(
        f"column {field.column!r} (field {field.field}, mapping line {field.line}) holds dates "
        f"that read both month-first and day-first, e.g. {shown} ({len(either)} such values), "
        f"{evidence}. Say which in the mapping: parse_date: {{day_first: false}} for "
        "month-first (03/04/2026 = March 4) or {day_first: true} for day-first "
        "(3 April); nothing was written."
    )


def to_boolean(value: Any, true_words: tuple[str, ...], false_words: tuple[str, ...]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in true_words:
        return True
    if word in false_words:
        return False
    raise ValueProblem(
        f"not a boolean: {_show(value)}; expected one of {', '.join(true_words)} "
        f"or {', '.join(false_words)}"
    )


def _transform(transform: Transform) -> Converter:
    name = transform.name
    if name == "trim":
        return lambda v: v.strip() if isinstance(v, str) else v
    if name == "lower":
        return lambda v: v.lower() if isinstance(v, str) else v
    if name == "upper":
        return lambda v: v.upper() if isinstance(v, str) else v
    if name == "currency_to_number":
        sep = transform.decimal_separator
        return lambda v: currency_to_number(v, sep)
    if name == "parse_date":
        formats = transform.formats
        return lambda v: parse_date(v, formats)
    if name == "boolean_words":
        true, false = transform.true_words, transform.false_words
        return lambda v: to_boolean(v, true, false)
    raise ValueError(f"unknown transform {name!r}")  # the loader never lets this through


def apply_transform(transform: Transform, value: Any) -> Any:
    """One transform; text transforms pass non-text values through unchanged."""
    return _transform(transform)(value)


def make_transforms(transforms: Iterable[Transform]) -> Converter:
    """The transforms in order, built once; an empty value stops them and is returned."""
    steps = tuple(_transform(t) for t in transforms)

    def apply(value: Any) -> Any:
        for step in steps:
            if is_empty(value):
                break
            value = step(value)
        return value

    return apply


# ----- types ------------------------------------------------------------------------------


def _number(value: Any, raw: Any, whole: bool) -> float | int:
    if isinstance(value, bool):
        raise ValueProblem(f"not a number: {_show(raw)}")
    if isinstance(value, int | float | Decimal):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueProblem(
                f"not a number: {_show(raw)} (use currency_to_number for amounts like $1,200.00)"
            ) from None
    if not math.isfinite(number):
        raise ValueProblem(f"not a finite number: {_show(raw)}")
    if whole:
        if not number.is_integer():
            raise ValueProblem(f"not a whole number: {_show(raw)} (Pendo's field is an integer)")
        return int(number)
    return number


def _date(value: Any, raw: Any) -> date:
    parsed = parse_date(value, DEFAULT_DATE_FORMATS)
    if not isinstance(parsed, date):
        raise ValueProblem(f"not a date: {_show(raw)}")
    return parsed


def _final(kind: str, pendo_type: str | None) -> Callable[[Any, Any], Any]:
    if kind == "text":
        return lambda v, raw: v if isinstance(v, str) else str(v)
    if kind == "boolean":
        return lambda v, raw: to_boolean(v, DEFAULT_TRUE, DEFAULT_FALSE)
    if kind == "date":
        return _date
    whole = pendo_type == "integer"
    return lambda v, raw: _number(v, raw, whole)


def make_converter(mapping: FieldMapping, pendo_type: str | None = None) -> Converter:
    """The field's CRM cell -> typed value (None when empty); raises ValueProblem.

    ``pendo_type`` refines ``number``: Pendo's ``integer`` fields take whole numbers only.
    """
    steps = tuple(_transform(t) for t in mapping.transforms)
    final = _final(mapping.type, pendo_type)
    required, column = mapping.required, mapping.column

    def convert_once(raw: Any) -> Any:
        value = raw
        for step in steps:
            if is_empty(value):
                break
            value = step(value)
        if is_empty(value):
            if required:
                raise ValueProblem(f"{column} is empty but required")
            return None
        return final(value, raw)

    # A column repeats its values (plans, owners, flags, dates, scores): converting each
    # distinct cell once made validation of 100,000 rows about three times faster. Keys
    # other than text hold the type, as True == 1 == 1.0 would share an entry; results are
    # immutable.
    done: dict[Any, tuple[bool, Any]] = {}

    def convert_cell(raw: Any) -> Any:
        # A CSV's cells are all text: the text is its own key (no other key equals it).
        key = raw if type(raw) is str else (type(raw), raw)
        try:
            hit = done.get(key)  # not done[key]: a raised KeyError per miss costs more
        except TypeError:  # unhashable (a list cell from Parquet): convert it every time
            return convert_once(raw)
        if hit is None:
            try:
                hit = (True, convert_once(raw))
            except ValueProblem as exc:
                hit = (False, str(exc))
            if len(done) < _MEMO_CELLS:
                done[key] = hit
        if hit[0]:
            return hit[1]
        raise ValueProblem(hit[1])

    return convert_cell


def convert(mapping: FieldMapping, raw: Any, pendo_type: str | None = None) -> Any:
    """One cell; for many, build the converter once with ``make_converter``."""
    return make_converter(mapping, pendo_type)(raw)
