"""The Amplitude half of the sandbox: one tenant (project) per region and its routes.

US routes are served at the root (api2, amplitude.com and profile-api share it, their
paths don't collide), EU routes under ``/eu``. Amp-B's routes (cohorts, taxonomy,
profile, user search and activity) come from ``extra_routes``; sessions and composition
from ``sessions``, chart annotations from ``annotations``, the User Privacy API from
``deletions``.

Control routes (under ``/_sandbox/amplitude/``):

* ``POST /slow`` ``{"seconds": 1.5, "region": "us"}``: every Dashboard query holds its
  concurrency slot that long before answering (to fill the pool in tests);
* ``GET /state``: per-region counters (ingested events, budget spent, refusals).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from analytics_assets.sandbox.amplitude.annotations import annotation_routes
from analytics_assets.sandbox.amplitude.charts import chart_routes
from analytics_assets.sandbox.amplitude.dashboard import dashboard_routes
from analytics_assets.sandbox.amplitude.deletions import deletion_routes
from analytics_assets.sandbox.amplitude.export import export_routes
from analytics_assets.sandbox.amplitude.extra_routes import extra_routes
from analytics_assets.sandbox.amplitude.ingestion import ingestion_routes
from analytics_assets.sandbox.amplitude.sessions import session_routes
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.config import AMPLITUDE_REGIONS
from analytics_assets.sandbox.state import SandboxHalf, SandboxState


def build_amplitude(state: SandboxState) -> SandboxHalf:
    tenants = {region: AmplitudeTenant(state, region) for region in AMPLITUDE_REGIONS}
    state.amplitude_tenants = tenants  # type: ignore[attr-defined]  # for tests and tools

    def routes(region: str) -> list[BaseRoute]:
        tenant = tenants[region]
        board_routes, board = dashboard_routes(tenant)
        privacy_routes, deletions = deletion_routes(tenant)
        describe = tenant.describe
        tenant.describe = lambda: {**describe(), **deletions.describe()}  # type: ignore[method-assign]
        return [
            *ingestion_routes(tenant),
            *export_routes(tenant),
            *board_routes,
            *session_routes(board),
            *annotation_routes(tenant),
            *privacy_routes,
            *chart_routes(tenant, board),
            *extra_routes(tenant),
        ]

    async def slow(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            seconds = float(body.get("seconds", 0))
            region = body.get("region", "us")
        except (ValueError, TypeError, AttributeError):
            return JSONResponse(
                {"error": 'body must be {"seconds": N, "region": R}'}, status_code=400
            )
        if region not in tenants or seconds < 0:
            return JSONResponse(
                {"error": f"unknown region {region!r} or negative seconds"}, status_code=400
            )
        tenants[region].gates.query_delay_seconds = seconds
        return JSONResponse({"region": region, "seconds": seconds})

    async def describe_state(request: Request) -> JSONResponse:
        return JSONResponse({r: t.describe() for r, t in tenants.items()})

    return SandboxHalf(
        name="amplitude",
        regions=AMPLITUDE_REGIONS,
        routes=routes,
        control_routes=[
            Route("/slow", slow, methods=["POST"]),
            Route("/state", describe_state),
        ],
        describe=lambda: {r: t.describe() for r, t in tenants.items()},
    )
