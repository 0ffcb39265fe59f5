"""Column types by name, turned into Arrow types only when rows are staged.

Tables declare their columns as ``(name, type name)``; the names double as what the
Dagster UI shows. pyarrow (and numpy with it) is imported by the code that writes Arrow
data, not when the code location loads: it costs every step process ~36 MB, and most
steps (the raw export's load among them) never need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

STR, INT, INT32, FLOAT, BOOL, DATE = "string", "int", "int32", "float", "bool", "date"
TS = "timestamp"  # milliseconds, UTC: what the APIs give
TS_US = "timestamp_us"  # microseconds, UTC: times the sync itself records
NAMES = (STR, INT, INT32, FLOAT, BOOL, DATE, TS, TS_US)


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
    }
    try:
        return types[name]
    except KeyError:
        raise ValueError(f"unknown column type {name!r}: use one of {NAMES}") from None


def arrow_schema(columns: Iterable[tuple[str, str]]) -> pa.Schema:
    """An Arrow schema from ``(column name, type name)`` pairs."""
    import pyarrow as pa

    return pa.schema([pa.field(name, arrow_type(kind)) for name, kind in columns])


def dagster_type(name: str) -> str:
    """The type name the Dagster UI shows for a column type name."""
    return {INT32: INT, TS_US: TS}.get(name, name)
