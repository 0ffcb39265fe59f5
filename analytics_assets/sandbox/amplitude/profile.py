"""The User Profile API: ``GET /v1/userprofile`` with ``Authorization: Api-Key <secret>``.

US only: Amplitude offers no Profile API in the EU, so the EU tenant answers the path
with the empty 404 the real host gives for a wrong path.

What a profile holds, all derived from the same data as the other APIs:

* ``amp_props`` (``get_amp_props``): ``library``, ``first_used``, ``last_used`` and the
  user's properties (identify updates included);
* computations (``get_computations`` / ``comp_id``) land in ``amp_props`` as strings,
  as in the docs: see :data:`COMPUTATIONS`;
* ``cohort_ids`` (``get_cohort_ids``): the cohorts synced to the Profile API that hold
  the user (``Power users``, ``Enterprise users``);
* recommendations (``get_recs`` + ``rec_id``) and propensities (``prediction_id`` +
  ``propensity_type``) are deterministic per user and id: the sandbox has no models.

Errors: 401 text for a missing or wrong key; 400
``{"error":"User id and device id not seen before"}`` for an unknown user (the docs
give no status; 400 keeps 404 for the documented "wrong path, empty body" case);
600 requests per minute (× ``window_scale``) per org, then 429 with the documented
throttling body (status undocumented, 429 assumed as in the contract).
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from analytics_assets.sandbox.amplitude.auth import check_profile_key
from analytics_assets.sandbox.amplitude.cohorts import CohortStore
from analytics_assets.sandbox.amplitude.extra_common import (
    hold,
    json_response,
    retry_headers,
    truthy,
    window,
)
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.amplitude.users import UserDirectory
from analytics_assets.sandbox.limits import SlidingWindowBudget

PATH = "/v1/userprofile"
NOT_SEEN = "User id and device id not seen before"
THROTTLED = (
    "Number of requests per minute exceeds system limit. Contact Support if you "
    "need this limit raised"
)
# (computation id, computed property name, what it counts); ids look like the docs' t14bqib.
COMPUTATIONS = (
    ("t14bqib", "events_last_7_days", "events in the last 7 days"),
    ("k7r2m9d", "active_days_last_14_days", "days with an event in the last 14 days"),
)
RECOMMENDATION_ITEMS = 5


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) for the parts."""
    digest = hashlib.sha1("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class ProfileApi:
    """The profile endpoint of one (US) project."""

    def __init__(
        self, tenant: AmplitudeTenant, directory: UserDirectory, cohorts: CohortStore
    ) -> None:
        self.tenant = tenant
        self.directory = directory
        self.cohorts = cohorts
        self.budget = SlidingWindowBudget(tenant.limits.profile_per_minute, window(tenant, 60.0))

    def describe(self) -> dict[str, Any]:
        return {
            "profile_requests_in_window": self.budget.spent(),
            "profile_refused_rate": self.budget.refused,
        }

    async def endpoint(self, request: Request) -> Response:
        refused = check_profile_key(self.tenant, request)
        if refused is not None:
            return refused
        decision = self.budget.try_spend(1)
        if not decision.allowed:
            return json_response({"error": THROTTLED}, 429, retry_headers(self.tenant, decision))
        await hold(request)
        params = request.query_params
        user_id, device_id = params.get("user_id"), params.get("device_id")
        amp = None
        if user_id:
            amp = self.directory.lookup_user(user_id)
        elif device_id:
            amp = await run_in_threadpool(self.directory.lookup_device, device_id)
        if amp is None:
            return json_response({"error": NOT_SEEN}, 400)
        data = await run_in_threadpool(self.user_data, amp, params)
        return json_response({"userData": data})

    def user_data(self, amp: int, params: Any) -> dict[str, Any]:
        summary = self.directory.summary(amp)
        data: dict[str, Any] = {
            "recommendations": None,
            "user_id": summary.user_id,
            # The device asked about, else the device of the user's latest event.
            "device_id": params.get("device_id") or summary.last_device_id,
            "amp_props": None,
            "cohort_ids": None,
        }
        if truthy(params.get("get_recs")):
            data["recommendations"] = [
                self._recommendation(amp, rec_id, params.get("rec_type"))
                for rec_id in _split(params.get("rec_id"))
            ]
        props: dict[str, Any] | None = None
        if truthy(params.get("get_amp_props")):
            props = {
                "library": "http/2.0",
                "first_used": summary.first_used,
                "last_used": summary.last_used,
                **self.tenant.events.user_properties(amp),
            }
        wanted = _split(params.get("comp_id"))
        if truthy(params.get("get_computations")) or wanted:
            props = {
                **(props or {}),
                **self._computations(amp, wanted, truthy(params.get("get_computations"))),
            }
        data["amp_props"] = props
        if truthy(params.get("get_cohort_ids")):
            data["cohort_ids"] = self.cohorts.profile_cohorts_of(amp)
        predictions = _split(params.get("prediction_id"))
        if predictions:
            kind = params.get("propensity_type", "score")
            values = [self._propensity(amp, pred, kind) for pred in predictions]
            data["propensity"] = values[0] if len(values) == 1 else None
            data["propensities"] = [
                {"prop": value, "pred_id": pred, "prop_type": kind}
                for pred, value in zip(predictions, values, strict=True)
            ]
        return data

    def _computations(self, amp: int, wanted: list[str], every: bool) -> dict[str, Any]:
        summary = self.cohorts.summary()
        values = {
            "t14bqib": str(summary.count7(amp)),
            "k7r2m9d": str(summary.active_days14(amp)),
        }
        out: dict[str, Any] = {}
        for comp_id, name, _ in COMPUTATIONS:
            if every or comp_id in wanted:
                out[name] = values[comp_id]
        known = {c[0] for c in COMPUTATIONS}
        for comp_id in wanted:
            if comp_id not in known:
                out[comp_id] = None  # "returns a null value if it doesn't exist"
        return out

    def _recommendation(self, amp: int, rec_id: str, rec_type: str | None) -> dict[str, Any]:
        names = [
            n for n in self.tenant.events.catalog.type_names() if n.startswith("Feature Used: ")
        ]
        ranked = sorted(names, key=lambda n: _unit(amp, rec_id, rec_type or "", n))
        is_control = rec_type != "model" and _unit(amp, rec_id, "control") < 0.1
        source = "random" if rec_type == "random" else "model"
        return {
            "rec_id": rec_id,
            "child_rec_id": rec_id,
            "items": [n.removeprefix("Feature Used: ") for n in ranked[:RECOMMENDATION_ITEMS]],
            "is_control": is_control,
            "recommendation_source": source,
            "last_updated": self.cohorts.summary().computed_ms // 1000,
        }

    @staticmethod
    def _propensity(amp: int, prediction_id: str, kind: str) -> float | int:
        score = _unit(amp, prediction_id)
        return int(score * 100) if kind == "pct" else round(score, 6)


def profile_routes(
    tenant: AmplitudeTenant, directory: UserDirectory, cohorts: CohortStore
) -> tuple[list[BaseRoute], ProfileApi | None]:
    """The US project's profile route; elsewhere an explicit empty 404 (no profile host)."""
    if tenant.region != "us":

        async def absent(request: Request) -> Response:
            return Response(status_code=404)

        return [Route(PATH, absent)], None
    api = ProfileApi(tenant, directory, cohorts)
    return [Route(PATH, api.endpoint, methods=["GET"])], api
