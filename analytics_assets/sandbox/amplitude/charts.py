"""Saved charts: ``/api/3/chart/{chart_id}/query`` and ``/api/3/chart/{chart_id}/csv``.

Every project has the same four saved charts, each a stored Dashboard query over a
range relative to today (project time zone). ``/query`` answers what the chart's
endpoint answers (same cost, same envelope); ``/csv`` answers the live CSV-in-JSON:
``{"data": "<csv>"}`` with a title line, a description line, a blank line, the
metric, the event, a blank line, then a header row and one row per segment; every
cell quoted, label and date cells prefixed with a TAB, CRLF line ends.

Chart ids: ``dau30dq`` (daily active users, 30 days), ``wkrpt8x`` (weekly
"Report Exported" totals, 12 weeks), ``fnl3stp`` (Session Start → Page Viewed →
Report Exported funnel, 30 days), ``upl9pln`` (Purchase uniques by ``gp:plan``,
30 days).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.budget import error_body
from analytics_assets.sandbox.amplitude.dashboard import Dashboard, Plan, invalid, today_range
from analytics_assets.sandbox.amplitude.query import QueryError

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant


@dataclass(frozen=True)
class SavedChart:
    id: str
    title: str
    description: str
    kind: str  # users | segmentation | funnels
    params: tuple[tuple[str, Any], ...]
    days: int
    metric_label: str
    event_label: str


CHARTS: dict[str, SavedChart] = {
    c.id: c
    for c in (
        SavedChart(
            "dau30dq",
            "Daily Active Users",
            "Users with any active event, per day.",
            "users",
            (("m", "active"), ("i", "1")),
            30,
            "Active Users",
            "Any Active Event",
        ),
        SavedChart(
            "wkrpt8x",
            "Weekly Report Exports",
            "Report Exported events per week.",
            "segmentation",
            (("e", {"event_type": "Report Exported"}), ("m", "totals"), ("i", "7")),
            84,
            "Event Totals",
            "Report Exported",
        ),
        SavedChart(
            "fnl3stp",
            "Session to Export Funnel",
            "Sessions that view a page and then export a report.",
            "funnels",
            (
                ("e", {"event_type": "Session Start"}),
                ("e", {"event_type": "Page Viewed"}),
                ("e", {"event_type": "Report Exported"}),
            ),
            30,
            "Conversion",
            "Session Start",
        ),
        SavedChart(
            "upl9pln",
            "Purchasers by Plan",
            "Users who made a purchase, by plan.",
            "segmentation",
            (
                (
                    "e",
                    {"event_type": "Purchase", "group_by": [{"type": "user", "value": "gp:plan"}]},
                ),
                ("m", "uniques"),
                ("i", "1"),
            ),
            30,
            "Uniques",
            "Purchase",
        ),
    )
}


def _params(tenant: AmplitudeTenant, chart: SavedChart) -> QueryParams:
    start, end = today_range(tenant, chart.days)
    pairs = [("start", start), ("end", end)]
    for key, value in chart.params:
        pairs.append((key, value if isinstance(value, str) else orjson.dumps(value).decode()))
    return QueryParams(pairs)


def _plan(board: Dashboard, chart: SavedChart, params: QueryParams) -> Plan:
    planner = {
        "users": board.plan_users,
        "segmentation": board.plan_segmentation,
        "funnels": board.plan_funnels,
    }[chart.kind]
    return planner(params)


def _cell(value: Any, label: bool = False) -> str:
    text = str(value)
    return '"' + ("\t" + text if label else text).replace('"', '""') + '"'


def chart_csv(chart: SavedChart, data: Any) -> str:
    """The live CSV layout for a chart's computed ``data``."""
    lines = [
        _cell(chart.title, True),
        _cell(chart.description, True),
        "",
        _cell(chart.metric_label, True),
        _cell(chart.event_label, True),
        "",
    ]
    if chart.kind == "funnels":
        steps = data[0]["events"] if data else []
        lines.append(",".join([_cell("Segment", True), *(_cell(s, True) for s in steps)]))
        for entry in data:
            label = entry["meta"].get("groupValue", "All Users")
            lines.append(
                ",".join([_cell(label, True), *(_cell(v) for v in entry["cumulativeRaw"])])
            )
    else:
        lines.append(",".join([_cell("Segment", True), *(_cell(x, True) for x in data["xValues"])]))
        for label, values in zip(data["seriesLabels"], data["series"], strict=True):
            name = label[-1] if isinstance(label, list) else "All Users"
            lines.append(",".join([_cell(name, True), *(_cell(v) for v in values)]))
    return "\r\n".join(lines) + "\r\n"


def chart_routes(tenant: AmplitudeTenant, board: Dashboard) -> list[Route]:
    def lookup(request: Request) -> SavedChart | Response:
        refused = check_basic(tenant, request)
        if refused is not None:
            return refused
        chart = CHARTS.get(request.path_params["chart_id"])
        if chart is None:
            return JSONResponse(error_body(404, "Chart not found"), status_code=404)
        return chart

    async def query(request: Request) -> Response:
        chart = lookup(request)
        if isinstance(chart, Response):
            return chart
        try:
            plan = _plan(board, chart, _params(tenant, chart))
        except QueryError as exc:
            return invalid(str(exc))
        return await board.run(plan)

    async def csv(request: Request) -> Response:
        chart = lookup(request)
        if isinstance(chart, Response):
            return chart
        try:
            plan = _plan(board, chart, _params(tenant, chart))
        except QueryError as exc:
            return invalid(str(exc))
        response = await board.run(plan)
        if response.status_code != 200:
            return response
        data = orjson.loads(response.body)["data"]
        return JSONResponse({"data": chart_csv(chart, data)})

    return [
        Route("/api/3/chart/{chart_id}/query", query),
        Route("/api/3/chart/{chart_id}/csv", csv),
    ]
