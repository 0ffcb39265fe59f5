"""`timeSeries` of an event source -> the list of day or hour buckets it covers."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .expr import HOUR_MS, EvalEnv, ExprSyntaxError, add_local_days, local_day_start, parse

Period = Literal["dayRange", "hourRange"]
MAX_BUCKETS = 3660
_MS_TEXT = re.compile(r"\s*-?\d+\s*")


class AggregationError(Exception):
    """A request the service refuses; `body` is the plain-text response body.

    Defined here, the lowest module that raises it; `aggregation` re-exports it."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Bucket:
    """One period: [start_ms, end_ms). Event rows of it carry `day` (or `hour`) = start_ms."""

    start_ms: int
    end_ms: int
    period: Period

    @property
    def row_key(self) -> str:
        return "day" if self.period == "dayRange" else "hour"


def _floor(ms: int, period: Period, env: EvalEnv) -> int:
    if period == "dayRange":
        return local_day_start(ms, env.tz)
    return ms - ms % HOUR_MS  # hours are UTC-aligned (every zone served has whole-hour offsets)


def _shift(start: int, n: int, period: Period, env: EvalEnv) -> int:
    if period == "dayRange":
        return add_local_days(start, n, env.tz)  # local midnights: 23/24/25 h apart
    return start + n * HOUR_MS


def _time_value(value: Any, name: str, env: EvalEnv) -> int:
    """`first`/`last`: ms as a number, ms as a numeric string, or an expression."""
    if isinstance(value, bool) or value is None:
        raise AggregationError(400, f"timeSeries.{name} must be a time in ms or an expression")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        if _MS_TEXT.fullmatch(value):
            return int(value)
        try:
            result = parse(value).evaluate({}, env)
        except ExprSyntaxError as exc:
            raise AggregationError(400, f"Cannot parse timeSeries.{name} expression") from exc
        is_number = isinstance(result, (int, float)) and not isinstance(result, bool)
        if is_number and math.isfinite(result):
            return int(result)
    raise AggregationError(400, f"timeSeries.{name} is not a time: {value!r}")


def parse_time_series(ts: Mapping[str, Any] | None, env: EvalEnv) -> list[Bucket]:
    """Buckets of a `timeSeries` object; [] for None. Raises AggregationError(400)."""
    if ts is None:
        return []
    if not isinstance(ts, Mapping):
        raise AggregationError(400, "timeSeries must be an object")
    period = ts.get("period")
    if period is None:
        raise AggregationError(400, "timeSeries.period is required")
    if period not in ("dayRange", "hourRange"):
        # daily/hourly are iterative periods (one result set per period), not served here.
        raise AggregationError(400, f"unsupported timeSeries period {period!r}")
    if ts.get("first") is None:
        raise AggregationError(400, "timeSeries.first is required")
    start = _floor(_time_value(ts["first"], "first", env), period, env)
    last, count = ts.get("last"), ts.get("count")
    if (last is None) == (count is None):
        raise AggregationError(400, "timeSeries needs exactly one of last or count")

    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count == 0:
            raise AggregationError(400, "timeSeries.count must be a non-zero integer")
        if abs(count) > MAX_BUCKETS:
            raise AggregationError(400, f"timeSeries covers more than {MAX_BUCKETS} periods")
        if count < 0:  # |count| periods ending where the period containing `first` begins
            start, count = _shift(start, count, period, env), -count
        return _buckets(start, count, None, period, env)

    end = _time_value(last, "last", env)  # exclusive: buckets that start before `last`
    return _buckets(start, MAX_BUCKETS + 1, end, period, env)


def _buckets(start: int, count: int, end: int | None, period: Period, env: EvalEnv) -> list[Bucket]:
    out: list[Bucket] = []
    while len(out) < count and (end is None or start < end):
        if len(out) == MAX_BUCKETS:
            raise AggregationError(400, f"timeSeries covers more than {MAX_BUCKETS} periods")
        nxt = _shift(start, 1, period, env)
        out.append(Bucket(start, nxt, period))
        start = nxt
    return out
