"""Chart annotations, v2: ``GET /api/2/annotations`` (all, or one with ``?id=``) and
``POST /api/2/annotations`` (create, parameters in the query string), Basic auth.

Shapes from the Chart Annotations API docs as they stood for ``/api/2`` (amplitude-docs
``chart-annotations.md`` before the v3 rewrite of 2025-12): a list is
``{"data": [{"id", "date", "label", "details"}]}``, a create answers
``{"annotation": {...}, "success": true}``. The project starts with a few release notes
derived from the seed (dates inside the generated history), so a client reading them
has something to read; what clients create is kept per tenant. The annotations API is
not a chart query: it is neither charged nor held in the Dashboard's pool (the docs
give it no limits).
"""

from __future__ import annotations

import threading
import zlib
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.budget import error_body
from analytics_assets.sandbox.company import HISTORY_END, HISTORY_START

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

FIRST_ID = 160_000  # the docs' examples are in the 160 000s
RELEASE_EVERY_DAYS = 42
SEEDED_DETAILS = (
    "New reports builder and faster dashboards.",
    "Billing page redesign.",
    "Integrations marketplace.",
    "Mobile onboarding flow.",
)


def _invalid(details: str, status: int = 400) -> JSONResponse:
    return JSONResponse(error_body(status, details, "invalid"), status_code=status)


class Annotations:
    """One project's annotations: seeded release notes plus created ones."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.tenant = tenant
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = self._seed()
        self._next = FIRST_ID + len(self._items)

    def _seed(self) -> list[dict[str, Any]]:
        seed = self.tenant.company.seed
        # A release every six weeks or so, offset by the seed; stable for a seed and region.
        offset = zlib.crc32(f"{seed}/{self.tenant.region}/annotations".encode()) % 21
        items, day, n = [], HISTORY_START + timedelta(days=offset), 0
        while day <= HISTORY_END:
            items.append(
                {
                    "id": FIRST_ID + n,
                    "date": day.isoformat(),
                    "label": f"Version 2.{n} Release",
                    "details": SEEDED_DETAILS[n % len(SEEDED_DETAILS)],
                }
            )
            n += 1
            day += timedelta(days=RELEASE_EVERY_DAYS)
        return items

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((dict(a) for a in self._items), key=lambda a: (a["date"], a["id"]))

    def one(self, annotation_id: int) -> dict[str, Any] | None:
        with self._lock:
            return next((dict(a) for a in self._items if a["id"] == annotation_id), None)

    def create(self, day: date, label: str, details: str | None, chart_id: str | None) -> dict:
        with self._lock:
            item = {"id": self._next, "date": day.isoformat(), "label": label, "details": details}
            self._next += 1
            self._items.append({**item, "chart_id": chart_id})
        return item


def annotation_routes(tenant: AmplitudeTenant) -> list[Route]:
    store = Annotations(tenant)

    def public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in ("id", "date", "label", "details")}

    async def annotations(request: Request) -> Response:
        refused = check_basic(tenant, request)
        if refused is not None:
            return refused
        params = request.query_params
        if request.method == "GET":
            raw = params.get("id")
            if raw is None:
                return JSONResponse({"data": [public(a) for a in store.all()]})
            try:
                found = store.one(int(raw))
            except ValueError:
                return _invalid(f"Invalid annotation id {raw!r}")
            if found is None:
                # [INF] the docs show no answer for an unknown id: the envelope's 404.
                return JSONResponse(error_body(404, f"Annotation {raw} not found"), status_code=404)
            return JSONResponse({"data": [public(found)]})
        app_id, label, raw_day = params.get("app_id"), params.get("label"), params.get("date")
        if not app_id or not label or not raw_day:
            return _invalid("app_id, date and label are required")
        if app_id.strip() != str(tenant.project_id):
            return _invalid(f"Invalid app_id {app_id!r}: not this project")
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            return _invalid(f"Invalid date {raw_day!r}: use YYYY-MM-DD")
        item = store.create(day, label, params.get("details"), params.get("chart_id"))
        return JSONResponse({"annotation": item, "success": True})

    return [Route("/api/2/annotations", annotations, methods=["GET", "POST"])]
