"""The control API under ``/_sandbox/``: stage data changes, set faults, read counters.

Not part of either emulated product; tests and the demo use it to stage what the
real services would do on their own (an account goes quiet, late events arrive)
and to see what actually reached the server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from analytics_assets.sandbox.state import SandboxState
from analytics_assets.sandbox.world import LateEvents


class ControlError(ValueError):
    """A bad control request; answered 400 with the message."""


def _moment_ms(value: Any, default: int) -> int:
    """Accept epoch milliseconds or an ISO-8601 string; default when absent."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ControlError("a time must be epoch milliseconds or an ISO-8601 string")
    if isinstance(value, int | float):
        return int(value)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ControlError(f"cannot parse time {value!r}: use ISO-8601 or epoch ms") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ControlError("the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def control_routes(state: SandboxState) -> list[BaseRoute]:
    def guarded(handler):
        async def endpoint(request: Request) -> JSONResponse:
            try:
                return await handler(request)
            except (ControlError, ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return endpoint

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def info(request: Request) -> JSONResponse:
        cfg = state.config
        return JSONResponse(
            {
                "seed": cfg.seed,
                "scale": cfg.scale,
                "now_ms": state.now_ms(),
                "pendo_timezone": cfg.pendo_timezone,
                "amplitude_timezone": cfg.amplitude_timezone,
                "regions": {
                    region: {
                        "accounts": world.company.n_accounts,
                        "visitors": world.company.n_visitors,
                    }
                    for region, world in state.worlds.items()
                },
                "halves": sorted(state.halves),
            }
        )

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = await request.json()
            specs = body if isinstance(body, list) else [body]
            added = [state.faults.add(dict(spec)).public() for spec in specs]
            return JSONResponse({"added": added, "rules": state.faults.rules()})
        if request.method == "DELETE":
            state.faults.clear()
        return JSONResponse({"rules": state.faults.rules()})

    async def counters(request: Request) -> JSONResponse:
        return JSONResponse(state.counters.snapshot())

    async def reset_counters(request: Request) -> JSONResponse:
        state.counters.reset()
        return JSONResponse({"reset": True})

    async def limits(request: Request) -> JSONResponse:
        return JSONResponse({name: half.describe() for name, half in state.halves.items()})

    async def clock(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = await _json(request)
            now = body.get("now")
            state.config.now = (
                None if now is None else datetime.fromtimestamp(_moment_ms(now, 0) / 1000, tz=UTC)
            )
        return JSONResponse({"now_ms": state.now_ms(), "frozen": state.config.now is not None})

    async def stage(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({r: w.staged() for r, w in state.worlds.items()})
        body = await _json(request)
        region = body.get("region", "us")
        if region not in state.worlds:
            raise ControlError(f"unknown region {region!r}; use one of {sorted(state.worlds)}")
        world = state.world(region)
        company = world.company
        action = body.get("action")
        now = state.now_ms()
        if action in ("account_quiet", "account_active"):
            index = company.account_index(str(body.get("account_id", "")))
            if index is None:
                raise ControlError(f"unknown account_id {body.get('account_id')!r}")
            if action == "account_quiet":
                world.stage_account_quiet(index, _moment_ms(body.get("from"), now))
            else:
                world.stage_account_active(index)
        elif action in ("guide_dismissals", "guide_dismissals_clear"):
            guide_id = body.get("guide_id")
            matches = [i for i, g in enumerate(company.guides) if g.id == guide_id]
            if not matches:
                raise ControlError(f"unknown guide_id {guide_id!r}")
            if action == "guide_dismissals":
                world.stage_guide_dismissals(
                    matches[0], _moment_ms(body.get("from"), now), float(body.get("rate", 0.9))
                )
            else:
                world.clear_guide_dismissals(matches[0])
        elif action == "late_events":
            visitor = company.visitor_index(str(body.get("visitor_id", "")))
            if visitor is None:
                raise ControlError(f"unknown visitor_id {body.get('visitor_id')!r}")
            num = int(body.get("num_events", 10))
            if num <= 0:
                raise ControlError("num_events must be positive")
            world.stage_late_events(
                LateEvents(
                    visitor=visitor,
                    hour_ms=_moment_ms(body.get("time"), now),
                    num_events=num,
                    arrived_ms=_moment_ms(body.get("arrived"), now),
                    app=int(body.get("app", 0)),
                )
            )
        else:
            raise ControlError(
                f"unknown action {action!r}; use account_quiet, account_active, "
                "guide_dismissals, guide_dismissals_clear or late_events"
            )
        return JSONResponse({"staged": world.staged()})

    routes: list[BaseRoute] = [
        Route("/health", health),
        Route("/info", info),
        Route("/faults", guarded(faults), methods=["GET", "POST", "DELETE"]),
        Route("/counters", counters),
        Route("/counters/reset", reset_counters, methods=["POST"]),
        Route("/limits", limits),
        Route("/clock", guarded(clock), methods=["GET", "POST"]),
        Route("/stage", guarded(stage), methods=["GET", "POST"]),
    ]
    for name, half in state.halves.items():
        if half.control_routes:
            routes.append(Mount(f"/{name}", routes=half.control_routes))
    return routes
