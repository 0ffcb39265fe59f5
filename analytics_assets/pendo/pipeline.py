"""A small typed builder for Pendo aggregation pipelines, so callers never hand-write JSON.

>>> p = (
...     Pipeline(Source.feature_events(app_ids="*", time_series=TimeSeries.day_range(t0, count=7)))
...     .identified("visitorId")
...     .filter(Expr.in_("featureId", ["f1", "f2"]))
...     .group(by=["featureId"], fields={"events": Agg.sum("numEvents")})
...     .sort("-events")
...     .limit(10)
... )
>>> p.to_request()  # the body of POST /api/v1/aggregation

Every builder method returns a new ``Pipeline`` (pipelines are immutable values), so one base
pipeline can be extended per window or per sensor tick without copying. Operands are checked
when the step is added, with a ``ValueError`` that says what to pass instead, so a mistake
fails at the call site rather than as a 400 from the server minutes later.

Filter values must go through :func:`quote` (``Expr.eq`` and friends do): ids can contain ``"``
and ``\\``, and an unescaped one broke a public connector's queries (contract §8).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Agg",
    "AggSpec",
    "AppIds",
    "Expr",
    "Pipeline",
    "Source",
    "TimeSeries",
    "app_ids_param",
    "quote",
]

#: ``appId`` of a source: one app, several, ``"*"`` for all apps, or None (the default app).
AppIds = int | Sequence[int] | Literal["*"] | None
#: Pendo's spelling of "all apps" (TAP, EST, ETL).
ALL_APPS = 'expandAppIds("*")'

# A field path as Pendo's expression language reads it: `visitorId`, `metadata.auto.lastvisit`,
# `auto__323232`. Names are checked so that a field can never smuggle an expression in.
_FIELD = re.compile(r"[A-Za-z_$][\w$]*(?:\.[\w$]+)*")
_IDENTIFIED = ("visitorId", "!visitorId", "accountId", "!accountId")


def _check_field(name: Any, what: str = "field") -> str:
    if not isinstance(name, str) or not _FIELD.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a field path; use names like 'visitorId' or "
            "'metadata.custom.plan' (letters, digits, '_' and '$', joined by '.')"
        )
    return name


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return value


# --- expressions -------------------------------------------------------------------------


def quote(value: str) -> str:
    """``value`` as a double-quoted string literal of Pendo's filter language.

    Backslashes and double quotes are escaped (``\\\\``, ``\\"``); nothing else needs it inside
    a JSON-encoded request. ``quote('a"b')`` → ``"a\\"b"``.
    """
    if not isinstance(value, str):
        raise TypeError(f"quote() takes a str, got {type(value).__name__}; use Expr.literal()")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written in a filter; use a finite number")
        return repr(value)
    raise TypeError(
        f"cannot write a {type(value).__name__} in a filter; use str, int, float, bool or None"
    )


def _paren(expr: str) -> str:
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError("an expression must be a non-empty string")
    return f"({expr})"


class Expr:
    """Builders of filter/eval expressions (plain strings), with values safely quoted."""

    @staticmethod
    def literal(value: str | int | float | bool | None) -> str:
        """A constant: strings quoted and escaped, numbers as is, ``true``/``false``/``null``."""
        return _literal(value)

    @staticmethod
    def field(name: str) -> str:
        """A checked field path (``metadata.custom.plan``)."""
        return _check_field(name)

    @staticmethod
    def cmp(field: str, op: str, value: Any) -> str:
        """``field <op> value`` for op in ``== != < <= > >=``."""
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            raise ValueError(f"unknown comparison {op!r}; use one of == != < <= > >=")
        return f"{_check_field(field)} {op} {_literal(value)}"

    @staticmethod
    def eq(field: str, value: Any) -> str:
        return Expr.cmp(field, "==", value)

    @staticmethod
    def ne(field: str, value: Any) -> str:
        return Expr.cmp(field, "!=", value)

    @staticmethod
    def gt(field: str, value: Any) -> str:
        return Expr.cmp(field, ">", value)

    @staticmethod
    def ge(field: str, value: Any) -> str:
        return Expr.cmp(field, ">=", value)

    @staticmethod
    def lt(field: str, value: Any) -> str:
        return Expr.cmp(field, "<", value)

    @staticmethod
    def le(field: str, value: Any) -> str:
        return Expr.cmp(field, "<=", value)

    @staticmethod
    def in_(field: str, values: Iterable[Any]) -> str:
        """``(f == "x" || f == "y")``: Pendo's filter language has no ``in``."""
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ValueError(f"Expr.in_() takes a list of values, got {values!r}")
        items = list(values)
        if not items:
            raise ValueError(
                f"Expr.in_({field!r}, []) can match nothing; skip the query when there are no ids"
            )
        # Dedupe on the written clause, keep order: shorter filter, same meaning. (Deduping
        # the values would merge 1 and True, or 0 and False, and drop one of them.)
        clauses = dict.fromkeys(Expr.eq(field, v) for v in items)
        return "(" + " || ".join(clauses) + ")"

    @staticmethod
    def between(field: str, low: Any, high: Any) -> str:
        """``low <= field < high`` (half-open, like time windows)."""
        return f"({Expr.ge(field, low)} && {Expr.lt(field, high)})"

    @staticmethod
    def and_(*exprs: str) -> str:
        if not exprs:
            raise ValueError("Expr.and_() needs at least one expression")
        return exprs[0] if len(exprs) == 1 else " && ".join(_paren(e) for e in exprs)

    @staticmethod
    def or_(*exprs: str) -> str:
        if not exprs:
            raise ValueError("Expr.or_() needs at least one expression")
        return exprs[0] if len(exprs) == 1 else "(" + " || ".join(_paren(e) for e in exprs) + ")"

    @staticmethod
    def not_(expr: str) -> str:
        return "!" + _paren(expr)

    @staticmethod
    def is_null(field: str) -> str:
        return f"isNull({_check_field(field)})"

    @staticmethod
    def contains(field: str, value: str) -> str:
        return f"contains({_check_field(field)}, {quote(value)})"


# --- aggregations --------------------------------------------------------------------------


@dataclass(frozen=True)
class AggSpec:
    """One aggregated field of ``group``/``reduce``: ``{kind: field}``."""

    kind: str
    field: str | None

    def to_json(self) -> dict[str, str | None]:
        return {self.kind: self.field}


class Agg:
    """Aggregations for ``group(fields=...)`` and ``reduce(...)``."""

    @staticmethod
    def _of(kind: str, field: str) -> AggSpec:
        return AggSpec(kind, _check_field(field, f"Agg.{kind} field"))

    @staticmethod
    def sum(field: str) -> AggSpec:
        return Agg._of("sum", field)

    @staticmethod
    def count(field: str) -> AggSpec:
        """Distinct non-null values of ``field`` (``count_rows()`` counts rows)."""
        return Agg._of("count", field)

    @staticmethod
    def count_rows() -> AggSpec:
        """Rows in the group (``{"count": null}``)."""
        return AggSpec("count", None)

    @staticmethod
    def min(field: str) -> AggSpec:
        return Agg._of("min", field)

    @staticmethod
    def max(field: str) -> AggSpec:
        return Agg._of("max", field)

    @staticmethod
    def first(field: str) -> AggSpec:
        return Agg._of("first", field)

    @staticmethod
    def last(field: str) -> AggSpec:
        return Agg._of("last", field)

    @staticmethod
    def avg(field: str) -> AggSpec:
        return Agg._of("avg", field)

    @staticmethod
    def list_(field: str) -> AggSpec:
        """Distinct values of ``field`` as a list."""
        return Agg._of("list", field)


def _fields_json(fields: Mapping[str, AggSpec], op: str) -> dict[str, Any]:
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError(
            f"{op} needs at least one field, e.g. fields={{'events': Agg.sum('numEvents')}}"
        )
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        _check_field(name, f"{op} output name")
        if not isinstance(spec, AggSpec):
            raise TypeError(
                f"{op} field {name!r} must be an Agg (Agg.sum('numEvents'), Agg.count_rows()…), "
                f"got {type(spec).__name__}"
            )
        out[name] = spec.to_json()
    return out


# --- time series and sources ---------------------------------------------------------------

TimeValue = int | str


def _time_value(value: Any, what: str) -> TimeValue:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise ValueError(
            f"{what} must be epoch milliseconds (int) or an expression such as 'now()', "
            f"got {value!r}"
        )
    if isinstance(value, int) and 0 < abs(value) < 100_000_000_000:
        # 1e11 ms is 1973; a value this small is almost surely seconds, not milliseconds.
        raise ValueError(f"{what}={value} looks like seconds; Pendo times are epoch milliseconds")
    return value


@dataclass(frozen=True)
class TimeSeries:
    """``timeSeries`` of an event source: day or hour buckets from ``first``.

    Give ``last`` (exclusive) or ``count`` (negative: periods before the one holding ``first``).
    ``first``/``last`` are epoch ms or expressions like ``"now()"``; Pendo snaps ``first`` down
    to its day (subscription-local midnight) or hour.
    """

    period: Literal["dayRange", "hourRange"]
    first: TimeValue
    last: TimeValue | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.period not in ("dayRange", "hourRange"):
            raise ValueError(f"period must be 'dayRange' or 'hourRange', got {self.period!r}")
        _time_value(self.first, "first")
        if (self.last is None) == (self.count is None):
            raise ValueError("give exactly one of last= (exclusive end) or count= (periods)")
        if self.last is not None:
            _time_value(self.last, "last")
            both_ms = isinstance(self.first, int) and isinstance(self.last, int)
            if both_ms and self.last <= self.first:  # type: ignore[operator]
                raise ValueError(f"last ({self.last}) must be after first ({self.first})")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count == 0
        ):
            raise ValueError(f"count must be a non-zero int, got {self.count!r}")

    @classmethod
    def day_range(
        cls, first: TimeValue, count: int | None = None, *, last: TimeValue | None = None
    ) -> TimeSeries:
        """Days from ``first``: ``count`` of them (default 1) or up to ``last`` (exclusive)."""
        if count is None and last is None:
            count = 1
        return cls("dayRange", first, last, count)

    @classmethod
    def hour_range(
        cls, first: TimeValue, last: TimeValue | None = None, *, count: int | None = None
    ) -> TimeSeries:
        """Hours from ``first`` up to ``last`` (exclusive), or ``count`` of them."""
        if count is None and last is None:
            count = 1
        return cls("hourRange", first, last, count)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"period": self.period, "first": self.first}
        if self.last is not None:
            out["last"] = self.last
        else:
            out["count"] = self.count
        return out


def app_ids_param(app_ids: AppIds) -> int | list[int] | str | None:
    """The ``appId`` value for ``app_ids``: an int, a list, ``expandAppIds("*")`` or None."""
    if app_ids is None:
        return None
    if app_ids == "*":
        return ALL_APPS
    if isinstance(app_ids, bool):
        raise ValueError("app_ids must be an int, a list of ints, '*' or None")
    if isinstance(app_ids, int):
        return app_ids
    if isinstance(app_ids, str):
        raise ValueError(f"app_ids={app_ids!r}: use '*' for all apps, or int app ids")
    if not isinstance(app_ids, Iterable):
        raise ValueError(f"app_ids={app_ids!r}: use an int, a list of ints, '*' or None")
    ids = list(app_ids)
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError("app_ids must be a non-empty list of ints (or an int, '*' or None)")
    return ids


_EVENT_SOURCES = {"events", "featureEvents", "pageEvents", "guideEvents", "trackEvents"}
_EVENT_SOURCES |= {"pollEvents"}


@dataclass(frozen=True)
class Source:
    """The first step of a pipeline: a Pendo source, its parameters and time series."""

    name: str
    params: Mapping[str, Any] | None = None
    time_series: TimeSeries | None = None

    def __post_init__(self) -> None:
        if self.name in _EVENT_SOURCES and self.time_series is None:
            raise ValueError(
                f"source {self.name!r} needs time_series=, e.g. "
                "TimeSeries.day_range(first_ms, count=1) or TimeSeries.hour_range(first, last)"
            )
        if self.name not in _EVENT_SOURCES and self.time_series is not None:
            raise ValueError(f"source {self.name!r} takes no time_series (only event sources do)")

    @staticmethod
    def _params(app_ids: AppIds, **extra: Any) -> dict[str, Any] | None:
        params = {k: v for k, v in extra.items() if v is not None}
        for name, value in params.items():  # checked here: JSON must be able to hold them
            if name == "identified" and not isinstance(value, bool):
                raise ValueError(f"identified must be True, False or None, got {value!r}")
            if name.endswith("Id") and not isinstance(value, str):
                raise ValueError(f"{name} must be an id string, got {value!r}")
        app = app_ids_param(app_ids)
        if app is not None:
            params["appId"] = app
        return params or None

    @classmethod
    def _event(cls, name: str, time_series: TimeSeries, app_ids: AppIds, **extra: Any) -> Source:
        if not isinstance(time_series, TimeSeries):
            raise TypeError("time_series must be a TimeSeries (TimeSeries.day_range(...))")
        return cls(name, cls._params(app_ids, **extra), time_series)

    @classmethod
    def events(
        cls,
        *,
        time_series: TimeSeries,
        app_ids: AppIds = None,
        event_class: Sequence[str] | None = None,
    ) -> Source:
        """All events per visitor/account/bucket (``eventClass`` e.g. ``["web"]``)."""
        ec = None
        if event_class is not None:
            if isinstance(event_class, str) or not isinstance(event_class, Iterable):
                raise ValueError(f"event_class takes a list like ['web'], got {event_class!r}")
            ec = list(event_class)
            if not all(isinstance(e, str) for e in ec):
                raise ValueError(f"event_class takes names (str), got {ec!r}")
        return cls._event("events", time_series, app_ids, eventClass=ec)

    @classmethod
    def feature_events(
        cls, feature_id: str | None = None, *, time_series: TimeSeries, app_ids: AppIds = None
    ) -> Source:
        return cls._event("featureEvents", time_series, app_ids, featureId=feature_id)

    @classmethod
    def page_events(
        cls, page_id: str | None = None, *, time_series: TimeSeries, app_ids: AppIds = None
    ) -> Source:
        return cls._event("pageEvents", time_series, app_ids, pageId=page_id)

    @classmethod
    def guide_events(
        cls, guide_id: str | None = None, *, time_series: TimeSeries, app_ids: AppIds = None
    ) -> Source:
        return cls._event("guideEvents", time_series, app_ids, guideId=guide_id)

    @classmethod
    def track_events(
        cls, track_type_id: str | None = None, *, time_series: TimeSeries, app_ids: AppIds = None
    ) -> Source:
        return cls._event("trackEvents", time_series, app_ids, trackTypeId=track_type_id)

    @classmethod
    def poll_events(cls, *, time_series: TimeSeries, app_ids: AppIds = None) -> Source:
        return cls._event("pollEvents", time_series, app_ids)

    @classmethod
    def visitors(cls, *, identified: bool | None = None, app_ids: AppIds = None) -> Source:
        """Visitors with metadata; ``identified=True`` leaves out anonymous visitors."""
        return cls("visitors", cls._params(app_ids, identified=identified))

    @classmethod
    def accounts(cls, *, app_ids: AppIds = None) -> Source:
        return cls("accounts", cls._params(app_ids))

    @classmethod
    def features(cls, *, app_ids: AppIds = None) -> Source:
        return cls("features", cls._params(app_ids))

    @classmethod
    def pages(cls, *, app_ids: AppIds = None) -> Source:
        return cls("pages", cls._params(app_ids))

    @classmethod
    def guides(cls, *, app_ids: AppIds = None) -> Source:
        return cls("guides", cls._params(app_ids))

    @classmethod
    def track_types(cls, *, app_ids: AppIds = None) -> Source:
        return cls("trackTypes", cls._params(app_ids))

    def to_step(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            self.name: copy.deepcopy(dict(self.params)) if self.params else None
        }
        if self.time_series is not None:
            body["timeSeries"] = self.time_series.to_json()
        return {"source": body}


# --- the pipeline --------------------------------------------------------------------------


class Pipeline:
    """An aggregation pipeline: a source and the operators after it (immutable)."""

    __slots__ = ("_source", "_steps")

    def __init__(self, source: Source, _steps: tuple[str, ...] = ()) -> None:
        if not isinstance(source, Source):
            raise TypeError("Pipeline(source) takes a Source, e.g. Source.visitors()")
        self._source = source
        # Steps are stored as canonical JSON text: immutable, cheap to share between pipelines.
        self._steps = _steps

    @property
    def source(self) -> Source:
        return self._source

    def _add(self, op: str, arg: Any) -> Pipeline:
        return Pipeline(self._source, (*self._steps, json.dumps({op: arg}, sort_keys=False)))

    # operators

    def filter(self, expr: str) -> Pipeline:
        """Keep rows where ``expr`` holds (build it with :class:`Expr` to quote values)."""
        if not isinstance(expr, str) or not expr.strip():
            raise ValueError("filter() needs a non-empty expression, e.g. Expr.eq('appId', 1)")
        return self._add("filter", expr)

    def identified(self, field: str = "visitorId") -> Pipeline:
        """Only identified visitors (``"visitorId"``), anonymous ones (``"!visitorId"``)…"""
        if field not in _IDENTIFIED:
            raise ValueError(f"identified() takes one of {', '.join(_IDENTIFIED)}; got {field!r}")
        return self._add("identified", field)

    def select(self, fields: Mapping[str, str] | Sequence[str]) -> Pipeline:
        """Keep only these fields: ``{"out": "path or expr"}``, or a list of paths kept as is."""
        if isinstance(fields, str):
            raise ValueError("select() takes a mapping {out: expr} or a list of field paths")
        if not isinstance(fields, Mapping):
            if not isinstance(fields, Iterable):
                raise ValueError("select() takes a mapping {out: expr} or a list of field paths")
            fields = {_check_field(f).rsplit(".", 1)[-1]: f for f in fields}
        if not fields:
            raise ValueError("select() needs at least one field")
        for name, expr in fields.items():
            _check_field(name, "select output name")
            if not isinstance(expr, str) or not expr.strip():
                raise ValueError(f"select field {name!r} needs an expression string")
        return self._add("select", dict(fields))

    def eval(self, fields: Mapping[str, str]) -> Pipeline:
        """Add or replace fields computed by expressions: ``{"h": "hash(visitorId)"}``."""
        if not isinstance(fields, Mapping) or not fields:
            raise ValueError("eval() needs a mapping {name: expression} with at least one entry")
        for name, expr in fields.items():
            _check_field(name, "eval output name")
            if not isinstance(expr, str) or not expr.strip():
                raise ValueError(f"eval field {name!r} needs an expression string")
        return self._add("eval", dict(fields))

    def group(self, by: Sequence[str], fields: Mapping[str, AggSpec]) -> Pipeline:
        """One row per distinct ``by`` key with the aggregated ``fields``."""
        if isinstance(by, str):
            by = [by]
        if not isinstance(by, Iterable):
            raise ValueError(f"group(by=...) takes a list of field paths, got {by!r}")
        keys = [_check_field(k, "group key") for k in by]
        if not keys:
            raise ValueError(
                "group() needs at least one key in by=[...]; to aggregate all rows into one, "
                "use reduce(fields)"
            )
        if len(set(keys)) != len(keys):
            raise ValueError(f"group keys repeat: {keys}")
        out = _fields_json(fields, "group")
        clash = set(keys) & set(out)
        if clash:
            raise ValueError(f"group output fields {sorted(clash)} clash with the group keys")
        return self._add("group", {"group": keys, "fields": out})

    def reduce(self, fields: Mapping[str, AggSpec]) -> Pipeline:
        """All rows into one row of aggregated ``fields``."""
        return self._add("reduce", _fields_json(fields, "reduce"))

    def sort(self, *keys: str) -> Pipeline:
        """Sort by keys; ``"-name"`` sorts descending."""
        if len(keys) == 1 and not isinstance(keys[0], str):
            if not isinstance(keys[0], Iterable):
                raise ValueError(f"sort() takes field names, got {keys[0]!r}")
            keys = tuple(keys[0])
        if not keys:
            raise ValueError("sort() needs at least one key, e.g. sort('-numEvents', 'visitorId')")
        for key in keys:
            _check_field(
                key[1:] if isinstance(key, str) and key.startswith("-") else key, "sort key"
            )
        return self._add("sort", list(keys))

    def limit(self, n: int) -> Pipeline:
        return self._add("limit", _check_count(n, "limit()"))

    def skip(self, n: int) -> Pipeline:
        return self._add("skip", _check_count(n, "skip()"))

    def unwind(self, field: str, *, index: str | None = None, keep_empty: bool = False) -> Pipeline:
        """One row per element of the list in ``field`` (``index`` names the position field)."""
        arg: dict[str, Any] = {"field": _check_field(field, "unwind field")}
        if index is not None:
            arg["index"] = _check_field(index, "unwind index")
        if keep_empty:
            arg["keepEmpty"] = True
        return self._add("unwind", arg)

    def count(self) -> Pipeline:
        """Replace the rows with one ``{"count": N}``."""
        return self._add("count", None)

    def step(self, op: str, arg: Any) -> Pipeline:
        """Any other operator as raw JSON (``merge``, ``bulkExpand``, ``segment``…)."""
        if not isinstance(op, str) or not op or op in ("source", "spawn"):
            raise ValueError("step() takes an operator name other than source/spawn")
        try:  # fail here, not in the client, on a value JSON cannot hold (NaN included)
            json.dumps(arg, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"step({op!r}) needs a JSON value: {exc}") from None
        return self._add(op, copy.deepcopy(arg))

    # output

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The pipeline as JSON-ready steps (a fresh copy each time)."""
        return [self._source.to_step(), *(json.loads(s) for s in self._steps)]

    def to_request(
        self, *, name: str | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        """The whole body of ``POST /api/v1/aggregation``."""
        request: dict[str, Any] = {"pipeline": self.steps}
        if name is not None:
            request["name"] = name
        if request_id is not None:
            request["requestId"] = request_id
        return {"response": {"mimeType": "application/json"}, "request": request}

    @property
    def period(self) -> str | None:
        """``dayRange``/``hourRange`` of the source's time series, if any."""
        ts = self._source.time_series
        return ts.period if ts else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and (self._source, self._steps) == (
            other._source,
            other._steps,
        )

    def __hash__(self) -> int:
        return hash(self._steps)

    def __repr__(self) -> str:
        ops = [next(iter(json.loads(s))) for s in self._steps]
        return f"Pipeline({self._source.name}{''.join(' | ' + o for o in ops)})"
