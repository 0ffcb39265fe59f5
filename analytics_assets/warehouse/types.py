"""Column types by name: what every table declares, mapped per backend and to Arrow.

Tables declare their columns as ``Column(name, type name)``; the names double as what
the Dagster UI shows. Each warehouse backend maps the names to its own SQL types
(``sql_type``), so no asset names a backend's type. pyarrow (and numpy with it) is
imported by the code that writes Arrow data, not when the code location loads: it costs
every step process ~36 MB, and most steps (the raw export's load among them) never
need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa

STR, INT, INT32, FLOAT, BOOL, DATE = "string", "int", "int32", "float", "bool", "date"
TS = "timestamp"  # milliseconds, UTC: what the APIs give
TS_US = "timestamp_us"  # microseconds, UTC: times the sync itself records
# Microseconds without a zone: the raw Amplitude export's times, UTC written naively.
TS_NAIVE = "timestamp_naive"
JSON = "json"  # a JSON document (nested objects kept whole, queryable where the backend can)
NAMES = (STR, INT, INT32, FLOAT, BOOL, DATE, TS, TS_US, TS_NAIVE, JSON)


@dataclass(frozen=True)
class Column:
    """One column of a table the sync writes: name, type (``STR``, ``INT``, ...), meaning."""

    name: str
    type: str
    description: str = ""


class JsonField(NamedTuple):
    """One field of a JSON-lines record and the column it lands in: the record's key
    ``source`` (top level), loaded as ``type`` into the column ``name``, whose meaning
    ``description`` says (the Dagster UI shows it)."""

    source: str
    name: str
    type: str
    description: str = ""


def check_type(name: str) -> str:
    if name not in NAMES:
        raise ValueError(f"unknown column type {name!r}: use one of {NAMES}")
    return name


# The SQL type of each name, per backend. DuckDB's are what its tables held before the
# backends existed (the Parquet stage's types), so existing files keep their schema.
SQL_TYPES: dict[str, dict[str, str]] = {
    "duckdb": {
        STR: "VARCHAR",
        INT: "BIGINT",
        INT32: "INTEGER",
        FLOAT: "DOUBLE",
        BOOL: "BOOLEAN",
        DATE: "DATE",
        TS: "TIMESTAMP WITH TIME ZONE",
        TS_US: "TIMESTAMP WITH TIME ZONE",
        TS_NAIVE: "TIMESTAMP",
        JSON: "JSON",
    },
    "postgres": {
        STR: "text",
        INT: "bigint",
        INT32: "integer",
        FLOAT: "double precision",
        BOOL: "boolean",
        DATE: "date",
        TS: "timestamp with time zone",
        TS_US: "timestamp with time zone",
        TS_NAIVE: "timestamp without time zone",
        # jsonb: parsed and checked once on load, then queryable (->, ->>) and compact.
        JSON: "jsonb",
    },
    "snowflake": {
        STR: "VARCHAR",
        INT: "NUMBER(19, 0)",
        INT32: "NUMBER(10, 0)",
        FLOAT: "DOUBLE",
        BOOL: "BOOLEAN",
        DATE: "DATE",
        TS: "TIMESTAMP_TZ",
        TS_US: "TIMESTAMP_TZ",
        TS_NAIVE: "TIMESTAMP_NTZ",
        JSON: "VARIANT",
    },
}


def sql_type(name: str, backend: str) -> str:
    """The SQL type a backend (``duckdb``, ``postgres``, ``snowflake``) stores a type name as."""
    return SQL_TYPES[backend][check_type(name)]


@cache
def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a column type name (one of ``NAMES``)."""
    import pyarrow as pa

    types = {
        STR: pa.string(),
        INT: pa.int64(),
        INT32: pa.int32(),
        FLOAT: pa.float64(),
        BOOL: pa.bool_(),
        DATE: pa.date32(),
        TS: pa.timestamp("ms", tz="UTC"),
        TS_US: pa.timestamp("us", tz="UTC"),
        TS_NAIVE: pa.timestamp("us"),
        JSON: pa.string(),  # JSON text
    }
    try:
        return types[name]
    except KeyError:
        raise ValueError(f"unknown column type {name!r}: use one of {NAMES}") from None


def arrow_schema(columns: Iterable[tuple[str, str]]) -> pa.Schema:
    """An Arrow schema from ``(column name, type name)`` pairs."""
    import pyarrow as pa

    return pa.schema([pa.field(name, arrow_type(kind)) for name, kind in columns])


def type_of_arrow(arrow: pa.DataType) -> str:
    """The type name that holds an Arrow type: for rows that come without declared columns
    (a frame, an Arrow table), so a server backend can create their table."""
    import pyarrow as pa
    import pyarrow.types as t

    if t.is_dictionary(arrow):
        return type_of_arrow(arrow.value_type)
    if t.is_boolean(arrow):
        return BOOL
    if t.is_integer(arrow) and arrow.bit_width <= 32 and not t.is_uint32(arrow):
        return INT32  # every value fits a 32-bit signed integer
    if t.is_integer(arrow):
        return INT
    if t.is_floating(arrow) or t.is_decimal(arrow):
        return FLOAT
    if t.is_date(arrow):
        return DATE
    if t.is_timestamp(arrow):
        return TS_US if arrow.tz else TS_NAIVE
    if t.is_string(arrow) or t.is_large_string(arrow) or arrow == pa.null():
        return STR
    raise ValueError(f"no warehouse column type holds Arrow's {arrow}; declare the columns")


def type_of_sql(backend: str, sql: str) -> str | None:
    """The type name a backend's SQL type holds (``BIGINT`` on DuckDB is ``int``), so a
    table read back without declared columns shows the same vocabulary; None if unknown."""
    wanted = sql.strip().lower()
    for name in NAMES:  # the first name wins a type two names share (INT before INT32 ...)
        if SQL_TYPES[backend][name].lower() in (wanted, wanted.split("(")[0]):
            return name
    # What catalogs answer for the types above: Snowflake's NUMBER(38,0) is "NUMBER".
    aliases = {"character varying": STR, "text": STR, "number": INT, "double precision": FLOAT}
    return aliases.get(wanted.split("(")[0])


def dagster_type(name: str) -> str:
    """The type name the Dagster UI shows for a column type name."""
    return {INT32: INT, TS_US: TS, TS_NAIVE: TS}.get(name, name)
