"""Daily tables read as Arrow columns rather than a dict per row: the fast path of the big
ones (``events_hourly``: half a million rows a day at scale 850), where per-row Python (the
dict, ``to_row``, the conversion back to columns) was most of the step's time
(bench/README.md, Pendo vs dlt).

The answer is parsed by pyarrow's JSON reader (``PendoClient.aggregate_arrow``), the table's
columns are computed a batch at a time with Arrow's kernels, and the batches are staged as
they are (``loading.ArrowStage.add_batch``). pyarrow is imported when a batch is read, not when the
code location loads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from analytics_assets.warehouse.types import INT, STR, TS, Column, arrow_schema, arrow_type

if TYPE_CHECKING:
    import pyarrow as pa

    from analytics_assets.partitions import DayWindow

__all__ = ["EVENTS_HOURLY", "ArrowRows"]


@dataclass(frozen=True)
class ArrowRows:
    """How an aggregation's answer becomes a daily table's rows, column by column.

    ``fields``: the answer's keys read, each with its type name (a missing key is null,
    other keys are dropped). ``columns``: the table's columns (all but the day) from the
    answer's, as Arrow arrays. ``events``: the key whose sum is the day's event count.
    """

    fields: Mapping[str, str]
    columns: Callable[[pa.Table], Mapping[str, Any]]
    events: str

    def arrow_fields(self) -> dict[str, pa.DataType]:
        return {key: arrow_type(kind) for key, kind in self.fields.items()}

    def by_day(
        self,
        answer: Iterable[pa.RecordBatch],
        windows: Sequence[DayWindow],
        period: str,
        columns: Sequence[Column],
        day_of: Callable[[Mapping[str, Any]], Any],
    ) -> Iterator[tuple[DayWindow, pa.Table, int, int]]:
        """(day, the table rows of it, answer rows, their events) for each batch of
        ``answer`` (read with ``arrow_fields``) and each of ``windows`` it holds rows of.
        A row's day is its ``day`` bucket (``dayRange``) or the day its ``hour`` falls in;
        for a row of no day asked, ``day_of({field: value})`` is called (and raises), as
        the row-by-row path does."""
        import pyarrow as pa

        schema = arrow_schema([(c.name, c.type) for c in columns])
        key = "day" if period == "dayRange" else "hour"
        bounds = [(_int64(w.start_ms), _int64(w.end_ms)) for w in windows]
        for batch in answer:
            raw = pa.Table.from_batches([batch])
            placed = 0
            for window, rows, events in self._split(raw, key, windows, bounds, schema):
                placed += rows.num_rows
                yield window, rows, rows.num_rows, events
            if placed < raw.num_rows:  # a row of no day asked (or no moment at all)
                for value in raw[key].to_pylist():
                    if value is None or not any(
                        value == w.start_ms if key == "day" else w.start_ms <= value < w.end_ms
                        for w in windows
                    ):
                        day_of({key: value})  # raises
                raise AssertionError(f"no day of the {key}s asked holds every row")

    def _split(
        self,
        raw: pa.Table,
        key: str,
        windows: Sequence[DayWindow],
        bounds: Sequence[tuple[pa.Scalar, pa.Scalar]],
        schema: pa.Schema,
    ) -> list[tuple[DayWindow, pa.Table, int]]:
        """(day, its table rows, their events) of one batch, for each day it holds."""
        import pyarrow as pa
        import pyarrow.compute as pc

        moment, out = raw[key], []
        for window, (start, end) in zip(windows, bounds, strict=True):
            if key == "day":
                mask = pc.equal(moment, start)
            else:
                mask = pc.and_(pc.greater_equal(moment, start), pc.less(moment, end))
            whole = len(windows) == 1 and pc.all(mask, skip_nulls=False).as_py()
            part = raw if whole else raw.filter(mask)
            if not part.num_rows:
                continue
            values = dict(self.columns(part))
            values["day"] = _days(window.day, part.num_rows)
            rows = pa.Table.from_arrays([values[name] for name in schema.names], schema=schema)
            out.append((window, rows, pc.sum(part[self.events]).as_py() or 0))
        return out


# Arrow values built from their bytes: pyarrow's conversion of a Python value (pa.scalar,
# pa.array, a number handed to a compute function) imports pandas to check its type, which
# put 40 MB on the step's peak for nothing.
def _int64(value: int) -> pa.Scalar:
    import pyarrow as pa

    return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("<q", value))])[0]


def _text(value: str) -> pa.Scalar:
    import pyarrow as pa

    data = value.encode()
    offsets = pa.py_buffer(struct.pack("<ii", 0, len(data)))
    return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])[0]


def _days(day: date, count: int) -> pa.Array:
    """``day`` ``count`` times, as Arrow dates."""
    import pyarrow as pa

    days = struct.pack("<i", (day - date(1970, 1, 1)).days) * count
    return pa.Array.from_buffers(pa.date32(), count, [None, pa.py_buffer(days)])


def _event_columns(raw: pa.Table) -> dict[str, pa.ChunkedArray]:
    """``events_hourly``'s columns: what its ``to_row`` does to each row."""
    import pyarrow.compute as pc

    return {
        "hour": raw["hour"].cast(arrow_type(TS)),  # epoch milliseconds, as the Arrow type holds
        "visitor_id": raw["visitorId"],
        "account_id": pc.fill_null(raw["accountId"], _text("")),
        "app_id": raw["appId"],
        "server": raw["server"],
        "remote_ip": raw["remoteIp"],
        "user_agent": raw["userAgent"],
        "events": raw["numEvents"],
        "minutes": raw["numMinutes"],
    }


EVENTS_HOURLY = ArrowRows(
    fields={
        "hour": INT,
        "visitorId": STR,
        "accountId": STR,
        "appId": INT,
        "server": STR,
        "remoteIp": STR,
        "userAgent": STR,
        "numEvents": INT,
        "numMinutes": INT,
    },
    columns=_event_columns,
    events="numEvents",
)
