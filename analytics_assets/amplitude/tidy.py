"""Shaping Amplitude's Dashboard REST answers into tidy rows (lists of flat dicts).

Amplitude answers with "series of series": parallel arrays of x values, one value array per
group, and group names in whichever of ``seriesLabels`` / ``seriesMeta`` the endpoint fills
(contract §2, §9.5). Callers want one row per (group, x): that is what a warehouse table,
a DataFrame or a check wants. Pure functions, no I/O, so they are tested without a server.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

__all__ = [
    "ALL_USERS",
    "AnswerShapeError",
    "chart_rows",
    "funnel_rows",
    "ltv_rows",
    "parse_chart_csv",
    "parse_label_date",
    "parse_x_value",
    "retention_rows",
    "series_labels",
    "series_rows",
]

#: The label Amplitude's UI and CSV export give the one series of a query without group-by.
ALL_USERS = "All Users"


class AnswerShapeError(ValueError):
    """An Amplitude answer whose parts do not have the types the endpoint documents."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_list(value: Any, what: str) -> list[Any]:
    """``value`` as a list (None is empty); any other type is refused, naming ``what``."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise AnswerShapeError(
        f"Amplitude's answer has {what} as a {type(value).__name__} ({_short(value)}), "
        "expected a list"
    )


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise AnswerShapeError(
        f"Amplitude's answer has {what} as a {type(value).__name__} ({_short(value)}), "
        "expected an object"
    )


def _label_text(label: Any, depth: int = 0) -> str | None:
    """A readable group name from one ``seriesLabels``/``seriesMeta`` entry, or None."""
    if label is None or isinstance(label, bool) or depth > 20:  # labels nest 2 deep at most
        return None
    if isinstance(label, str):
        return label or None
    if isinstance(label, int | float):
        # A bare segment index (live segmentation answers ``[0]``): no group name.
        return None
    if isinstance(label, list | tuple):
        # Group-by labels come as [segment index, "value"] or ["v1", "v2"] (two group-bys);
        # keep the text parts ([3P] clients take the last element).
        parts = [t for t in (_label_text(x, depth + 1) for x in label) if t]
        return "; ".join(parts) or None
    if isinstance(label, dict):
        for key in ("label", "groupValue", "group_value", "value", "name", "segmentLabel"):
            text = _label_text(label.get(key), depth + 1)
            if text:
                return text
        group_by = label.get("groupBy") or label.get("group_by")
        if group_by is not None:
            return _label_text(group_by, depth + 1)
        return None
    return str(label)


def series_labels(data: dict[str, Any], count: int) -> list[str]:
    """One group name per series: ``seriesLabels`` first, ``seriesMeta`` second (the contract
    cannot tell which one the live API fills, §9.5), ``All Users`` when neither names it."""
    labels: list[str] = []
    sources = [data.get("seriesLabels") or [], data.get("seriesMeta") or []]
    for i in range(count):
        text = None
        for source in sources:
            if isinstance(source, list) and i < len(source):
                text = _label_text(source[i])
                if text:
                    break
        labels.append(text or (ALL_USERS if count == 1 else f"{ALL_USERS} #{i}"))
    return labels


def _point(value: Any) -> Any:
    """A series point: a number, or ``{"setId": …, "value": N}`` (collapsed / chart form)."""
    if isinstance(value, dict):
        return value.get("value")
    return value


def parse_x_value(text: Any, hourly: bool = False) -> date | datetime | Any:
    """An x value as a ``date`` (daily and coarser) or ``datetime`` (hourly, realtime).

    Live answers mix ``2026-09-20`` and ``2026-09-17T00:00:00`` (contract §2); anything that
    is not a date (a session-length bucket, a composition value) is returned unchanged.
    """
    if not isinstance(text, str):
        return text
    try:
        moment = (
            datetime.fromisoformat(text.replace(" ", "T")) if "T" in text or " " in text else None
        )
    except ValueError:
        moment = None
    if moment is not None:
        return moment if hourly else moment.date()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return text
    return datetime(day.year, day.month, day.day) if hourly else day


def _event_index(label: Any) -> int | None:
    """The event index of a segmentation label: ``1`` or ``[1, "US"]``."""
    if isinstance(label, int) and not isinstance(label, bool):
        return label
    if isinstance(label, list | tuple) and label and isinstance(label[0], int):
        return label[0]
    return None


def series_rows(
    data: dict[str, Any],
    *,
    hourly: bool = False,
    x_key: str = "date",
    event_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``{"xValues", "series", "seriesLabels"/"seriesMeta"}`` → rows ``{x_key, group, value}``.

    With ``event_names`` (a segmentation of two events), each row also says which
    ``event`` it counts, read from the event index that leads each label, and the group
    is ``All Users`` when the label holds nothing else. Groups whose ``series`` is shorter
    than ``xValues`` (never seen, but cheap to survive) produce rows only for the values
    present.
    """
    data = _as_dict(data, "data")
    xs = _as_list(data.get("xValues"), "xValues")
    series = _as_list(data.get("series"), "series")
    if event_names:
        raw = data.get("seriesLabels")
        raw = raw if isinstance(raw, list) else []  # as series_labels: not a list, no labels
        labels = [
            (_label_text(raw[i]) if i < len(raw) else None) or ALL_USERS for i in range(len(series))
        ]
    else:
        labels = series_labels(data, len(series))
    rows = []
    for i, (label, values) in enumerate(zip(labels, series, strict=True)):
        extra: dict[str, Any] = {}
        if event_names:
            raw_label = raw[i] if i < len(raw) else None
            index = _event_index(raw_label)
            ok = index is not None and 0 <= index < len(event_names)
            extra["event"] = event_names[index] if ok else None
        for x, value in zip(xs, _as_list(values, f"series[{i}]"), strict=False):
            rows.append(
                {x_key: parse_x_value(x, hourly), "group": label, "value": _point(value), **extra}
            )
    return rows


def chart_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A saved chart's JSON (``/api/3/chart/{id}/query``) → rows ``{x, group, value}``.

    Chart answers follow the chart type's endpoint; the point shape is uncertain (§9.3), so
    points may be numbers or ``{setId, value}`` objects. ``x`` is parsed as a date when it is
    one. Charts without ``xValues`` (a single number per group) give ``x: None`` rows from
    ``seriesCollapsed``.
    """
    data = _as_dict(data, "data")
    if data.get("xValues"):
        return series_rows(data, x_key="x")
    collapsed = _as_list(data.get("seriesCollapsed"), "seriesCollapsed")
    labels = series_labels(data, len(collapsed))
    rows = []
    for label, values in zip(labels, collapsed, strict=True):
        value = values[0] if isinstance(values, list) and values else values
        rows.append({"x": None, "group": label, "value": _point(value)})
    return rows


def _ratio(values: Sequence[Any] | None, i: int) -> float | None:
    values = _as_list(values, "a funnel ratio list")
    if i >= len(values):
        return None
    value = _point(values[i])
    return float(value) if isinstance(value, int | float) else None


def funnel_rows(data: Any) -> list[dict[str, Any]]:
    """Funnel answer (one object per segment/group) → one row per group and step.

    Row: ``group, step`` (1-based), ``event``, ``count`` (users reaching the step,
    ``cumulativeRaw``), ``cumulative_ratio`` (of step 1), ``step_ratio`` (of the previous
    step), ``median_trans_time_ms`` / ``avg_trans_time_ms`` (from the previous step; None for
    step 1). An empty funnel (``"data": []``) gives no rows.
    """
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    rows = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        meta = item.get("meta") or {}
        label = (
            _label_text(item.get("groupValue"))
            or _label_text(meta.get("groupValue") if isinstance(meta, dict) else None)
            or _label_text(item.get("label"))
            or (ALL_USERS if len(items) == 1 else f"{ALL_USERS} #{n}")
        )
        events = _as_list(item.get("events"), "events")
        raw = _as_list(item.get("cumulativeRaw"), "cumulativeRaw")
        median = _as_list(item.get("medianTransTimes"), "medianTransTimes")
        avg = _as_list(item.get("avgTransTimes"), "avgTransTimes")
        for i in range(max(len(events), len(raw))):
            count = _point(raw[i]) if i < len(raw) else None
            previous = _point(raw[i - 1]) if 0 < i <= len(raw) else None
            step_ratio = _ratio(item.get("stepByStep"), i)
            if step_ratio is None and isinstance(count, int | float):
                if i == 0:
                    step_ratio = 1.0
                elif isinstance(previous, int | float):
                    step_ratio = count / previous if previous else 0.0
            rows.append(
                {
                    "group": label,
                    "step": i + 1,
                    "event": events[i] if i < len(events) else None,
                    "count": count,
                    "cumulative_ratio": _ratio(item.get("cumulative"), i),
                    "step_ratio": step_ratio,
                    "median_trans_time_ms": _point(median[i]) if 0 < i < len(median) else None,
                    "avg_trans_time_ms": _point(avg[i]) if 0 < i < len(avg) else None,
                }
            )
    return rows


_LABEL_FORMATS = ("%b %d, %Y", "%Y-%m-%d", "%b %d %Y", "%B %d, %Y")


def parse_label_date(text: Any, start: date, end: date) -> date | Any:
    """A retention/revenue date label (``Sep 15, 2026``, ``Sep 24``, ``2026-09-15``) as a date.

    Year-less labels (``Sep 24``) take the year that puts the day inside [start - 7 days,
    end + 7 days], the query's range; labels that are not dates are returned unchanged.
    """
    if not isinstance(text, str):
        return text
    cleaned = text.strip()
    for fmt in _LABEL_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
    parsed = parse_x_value(cleaned)
    if isinstance(parsed, date):
        return parsed
    try:
        month_day = datetime.strptime(f"{cleaned} 2000", "%b %d %Y")  # 2000: has Feb 29
    except ValueError:
        return text
    lo, hi = start - timedelta(days=7), end + timedelta(days=7)
    for year in range(end.year, start.year - 2, -1):
        try:
            candidate = month_day.replace(year=year).date()
        except ValueError:
            continue
        if lo <= candidate <= hi:
            return candidate
    try:
        return month_day.replace(year=end.year).date()
    except ValueError:  # Feb 29 far from the range, in a year without one: not a date here
        return text


def _series_objects(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    data = _as_dict(data, "data")
    series = [s for s in _as_list(data.get("series"), "series") if isinstance(s, dict)]
    return series, series_labels(data, len(series))


def _dated(series: dict[str, Any], start: date, end: date) -> tuple[dict[str, Any], list[Any]]:
    """A retention/LTV series' ``values`` by label, and (date, label) pairs in date order."""
    values = _as_dict(series.get("values"), "a series' values")
    dates = series.get("dates")
    labels = _as_list(dates, "a series' dates") if dates else values
    for label in labels:
        if not isinstance(label, str):
            raise AnswerShapeError(
                f"Amplitude's answer has a date label {_short(label)}, expected text"
            )
    dated = [(parse_label_date(d, start, end), d) for d in labels]
    return values, sorted(dated, key=lambda p: str(p[0]))


def retention_rows(data: dict[str, Any], start: date, end: date) -> list[dict[str, Any]]:
    """Retention answer → rows ``group, cohort_date, interval, count, outof, incomplete``.

    ``values[<date>]`` lists one entry per interval: entry 0 is the cohort itself on its
    start day (``count`` = cohort size), entry N is N intervals (days, weeks…) later.
    Rows come in ascending cohort date; Amplitude lists dates newest first.
    """
    rows = []
    for series, label in zip(*_series_objects(data), strict=True):
        values, dated = _dated(series, start, end)
        for cohort_date, key in dated:
            for interval, cell in enumerate(_as_list(values.get(key), f"values[{key!r}]")):
                cell = cell if isinstance(cell, dict) else {"count": cell}
                rows.append(
                    {
                        "group": label,
                        "cohort_date": cohort_date,
                        "interval": interval,
                        "count": cell.get("count"),
                        "outof": cell.get("outof"),
                        "incomplete": cell.get("incomplete"),
                    }
                )
    return rows


def ltv_rows(data: dict[str, Any], start: date, end: date) -> list[dict[str, Any]]:
    """Revenue LTV answer → rows ``group, date`` plus every field of the day
    (``count, paid, total_amount, r1d … r180d, r1new …``), ascending by date."""
    rows = []
    for series, label in zip(*_series_objects(data), strict=True):
        values, dated = _dated(series, start, end)
        for day, key in dated:
            fields = values.get(key)
            if fields is None:
                continue  # no figures for that day
            fields = _as_dict(fields, f"values[{key!r}]")
            rows.append({"group": label, "date": day, **fields})
    return rows


def parse_chart_csv(text: str) -> list[dict[str, Any]]:
    """The CSV of ``/api/3/chart/{id}/csv`` → rows ``{group, x, value}``.

    The text has a few title lines, then a header row whose first cell is ``Segment`` and
    whose other cells are x values; label and date cells carry a leading TAB (contract §2).
    Values stay strings when they are not numbers.
    """
    try:
        records = list(csv.reader(io.StringIO(text.replace("\r\n", "\n"))))
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        raise AnswerShapeError(f"the chart CSV cannot be read: {exc}") from None
    header_at = next(
        (i for i, r in enumerate(records) if r and r[0].strip().lower() == "segment"), None
    )
    if header_at is None:
        # Title lines are single cells; a line of several values has no x values to go with.
        if any(sum(1 for c in r if c.strip()) > 1 for r in records):
            raise AnswerShapeError(
                "the chart CSV has lines of values but no header row starting with 'Segment'"
            )
        return []
    xs = [parse_x_value(c.strip()) for c in records[header_at][1:]]
    rows = []
    for n, record in enumerate(records[header_at + 1 :], start=1):
        if not record or not any(c.strip() for c in record):
            continue
        group = record[0].strip()
        if any(c.strip() for c in record[1 + len(xs) :]):
            raise AnswerShapeError(
                f"the chart CSV's data row {n} ({group!r}) has {len(record) - 1} values but "
                f"the Segment header names {len(xs)} x values"
            )
        for x, cell in zip(xs, record[1:], strict=False):
            rows.append({"x": x, "group": group, "value": _number(cell.strip())})
    return rows


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
