"""HTTP side of the Taxonomy API: form-encoded bodies, the cost budget, the routes.

Limits per project (API key): 7,200 cost per hour (× ``window_scale``; GET 1,
POST/PUT/DELETE 2) and 4 cost in flight (four reads, or two writes). The contract
(§6) documents no 429 body for taxonomy; we answer in the API's own failure shape,
``{"success":false,"errors":[{"message":"Too many requests: ..."}]}``, so a client
that reads ``errors[0].message`` sees why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.extra_common import (
    hold,
    json_response,
    retry_headers,
    truthy,
    window,
)
from analytics_assets.sandbox.amplitude.taxonomy import TaxonomyError, TaxonomySeed, TaxonomyStore
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.limits import ConcurrencyGate, Decision, SlidingWindowBudget

TOO_MANY = "Too many requests: exceeded the taxonomy API's concurrent or hourly cost limit"
COST = {"GET": 1, "POST": 2, "PUT": 2, "DELETE": 2}


async def read_form(request: Request) -> dict[str, str]:
    """The query string overlaid with a form-encoded body (GETs carry ``event_type`` in
    either place in the docs' own examples). Multipart bodies are refused: the sandbox has
    no multipart parser and the real clients send urlencoded forms."""
    form = dict(request.query_params)
    body = await request.body()
    if not body:
        return form
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/"):
        raise TaxonomyError(400, "Send the body as application/x-www-form-urlencoded")
    if ctype.startswith("application/json"):
        # The API reads form fields only; a JSON body leaves every field missing.
        return form
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise TaxonomyError(400, "The body is not valid UTF-8") from exc
    form.update(pairs)
    return form


class TaxonomyLimits:
    """Per project (API key): 7,200 cost an hour and 4 cost in flight at once."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.budget = SlidingWindowBudget(
            tenant.limits.taxonomy_cost_per_hour, window(tenant, 3600.0)
        )
        # The docs cap the *cost* in flight ("queries that collectively add up to 4 cost at
        # the same time"): a write takes two slots, so two writes fill the gate.
        self.gate = ConcurrencyGate(tenant.limits.taxonomy_concurrency)

    def enter(self, cost: int) -> Decision:
        """Take ``cost`` slots of the gate, all or none."""
        for taken in range(cost):
            decision = self.gate.enter()
            if not decision.allowed:
                self.leave(taken)
                return decision
        return Decision(True)

    def leave(self, cost: int) -> None:
        for _ in range(cost):
            self.gate.leave()

    def describe(self) -> dict[str, Any]:
        return {
            "taxonomy_cost_spent": self.budget.spent(),
            "taxonomy_cost_in_flight": self.gate.in_flight,
            "taxonomy_refused_rate": self.budget.refused,
            "taxonomy_refused_concurrency": self.gate.refused,
        }


def taxonomy_routes(
    tenant: AmplitudeTenant,
    seed: TaxonomySeed,
    observed: Callable[[], Iterable[str]] | None = None,
) -> tuple[list[BaseRoute], TaxonomyStore, TaxonomyLimits]:
    """All ``/api/2/taxonomy`` routes for one project, its store and its limiters.

    ``observed`` lists the event types the project has seen so far (ingestion adds
    some); they are folded into the plan before each request.
    """
    store = TaxonomyStore(seed)
    limits = TaxonomyLimits(tenant)

    def endpoint(action):
        async def handle(request: Request) -> Response:
            refused = check_basic(tenant, request)
            if refused is not None:
                return refused
            cost = COST.get(request.method, 1)
            decision = limits.enter(cost)
            if decision.allowed:
                decision = limits.budget.try_spend(cost)
                if not decision.allowed:
                    limits.leave(cost)
            if not decision.allowed:
                return json_response(
                    {"success": False, "errors": [{"message": TOO_MANY}]},
                    429,
                    retry_headers(tenant, decision),
                )
            try:
                await hold(request)
                if observed is not None:
                    store.observe(observed())
                form = await read_form(request)
                result = action(request.path_params, form)
            except TaxonomyError as exc:
                return json_response(
                    {"success": False, "errors": [{"message": exc.message}]}, exc.status
                )
            finally:
                limits.leave(cost)
            if isinstance(result, Response):
                return result
            if result is None:
                return json_response({"success": True})
            return json_response({"success": True, "data": result})

        return handle

    def restored(status: int):
        def wrap(fn):
            def action(params, form):
                fn(params, form)
                return json_response({"success": True}, status)

            return action

        return wrap

    def ev_type(form: dict[str, str]) -> str:
        return form.get("event_type", "").strip()

    table: Iterable[tuple[str, str, Any]] = (
        ("/category", "POST", lambda p, f: store.create_category(f)),
        ("/category", "GET", lambda p, f: store.list_categories()),
        ("/category/{name}", "GET", lambda p, f: store.get_category(p["name"])),
        ("/category/{name}", "PUT", lambda p, f: store.update_category(p["name"], f)),
        ("/category/{name}", "DELETE", lambda p, f: store.delete_category(p["name"])),
        ("/event", "POST", lambda p, f: store.create_event(f)),
        ("/event", "GET", lambda p, f: store.list_events(truthy(f.get("showDeleted")))),
        ("/event/{name}", "GET", lambda p, f: store.get_event(p["name"])),
        ("/event/{name}", "PUT", lambda p, f: store.update_event(p["name"], f)),
        ("/event/{name}", "DELETE", lambda p, f: store.delete_event(p["name"])),
        ("/event/{name}/restore", "POST", lambda p, f: store.restore_event(p["name"])),
        ("/event-property", "POST", lambda p, f: store.create_event_property(f)),
        ("/event-property", "GET", lambda p, f: store.list_event_properties(ev_type(f))),
        (
            "/event-property/{name}",
            "GET",
            lambda p, f: store.get_event_property(p["name"], ev_type(f)),
        ),
        ("/event-property/{name}", "PUT", lambda p, f: store.update_event_property(p["name"], f)),
        (
            "/event-property/{name}",
            "DELETE",
            lambda p, f: store.delete_event_property(p["name"], ev_type(f)),
        ),
        # The docs answer a restored event property with 201 (the others with 200).
        (
            "/event-property/{name}/restore",
            "POST",
            restored(201)(lambda p, f: store.restore_event_property(p["name"], ev_type(f))),
        ),
        ("/user-property", "POST", lambda p, f: store.create_user_property(f)),
        (
            "/user-property",
            "GET",
            lambda p, f: store.list_user_properties(truthy(f.get("showDeleted"))),
        ),
        ("/user-property/{name}", "GET", lambda p, f: store.get_user_property(p["name"])),
        ("/user-property/{name}", "PUT", lambda p, f: store.update_user_property(p["name"], f)),
        ("/user-property/{name}", "DELETE", lambda p, f: store.delete_user_property(p["name"])),
        (
            "/user-property/{name}/restore",
            "POST",
            lambda p, f: store.restore_user_property(p["name"]),
        ),
        ("/group-property", "POST", lambda p, f: store.create_group_property(f)),
        ("/group-property", "GET", lambda p, f: store.list_group_properties(f)),
        ("/group-property/{name}", "GET", lambda p, f: store.get_group_property(p["name"], f)),
        ("/group-property/{name}", "PUT", lambda p, f: store.update_group_property(p["name"], f)),
        (
            "/group-property/{name}",
            "DELETE",
            lambda p, f: store.delete_group_property(p["name"], f),
        ),
        (
            "/group-property/{name}/restore",
            "POST",
            lambda p, f: store.restore_group_property(p["name"], f),
        ),
    )
    # One Route per path with a per-method dispatch, so a wrong method is a 405, not a 404.
    by_path: dict[str, dict[str, Any]] = {}
    for path, method, action in table:
        by_path.setdefault(path, {})[method] = endpoint(action)

    def dispatch(handlers: dict[str, Any]):
        async def route(request: Request) -> Response:
            return await handlers[request.method](request)

        return route

    routes: list[BaseRoute] = [
        Route(f"/api/2/taxonomy{path}", dispatch(handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ]
    return routes, store, limits
