"""The User Privacy API: ``POST``/``GET /api/2/deletions/users`` and ``DELETE
/api/2/deletions/users/{amplitude_id}/{YYYY-MM-DD}`` (Basic auth).

Evidence (the contract has no section on it):

* docs (amplitude-docs ``user-privacy.md``): JSON body ``amplitude_ids``, ``user_ids``,
  ``requester``, ``ignore_invalid_id`` (default false: one unknown user fails the whole
  request with a 400 and nothing is scheduled; true: the known ones are scheduled and the
  others listed in ``invalid_ids``), ``delete_from_org`` (forces ``ignore_invalid_id``),
  ``include_mapped_user_ids``; at most 100 users a request, 1 request a second and 8 in
  parallel per project; ``GET ?start_day&end_day`` lists the jobs scheduled in the range
  (at most six months); a job is ``staging`` (editable) until three days before its day,
  ``submitted`` then, ``done`` once the scrub and the 5-day backup wait are over;
* live answers (Nango's recordings, 2026-06-16): the POST answers a JSON *array* of jobs
  ``{"active_scrub_done_date": null, "amplitude_ids": [{"amplitude_id",
  "requested_on_day", "requester"}], "app": "<project id as a string>", "day",
  "status": "staging"}``, the day 12 days after the request (older docs: "10-13 days";
  a 2021 script shows 14); the GET answers ``[]`` with ``Content-Type: text/html``, and
  so does the DELETE its ``{"amplitude_id", "requested_on_day", "requester"}``.

[INF] Jobs are recorded and move through their statuses with the sandbox's clock; the
sandbox does not scrub the users' events when a job runs (the export and the Dashboard
keep serving them). The 429 body is the Basic-auth APIs' envelope.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.budget import error_body
from analytics_assets.sandbox.limits import ConcurrencyGate, TokenBucket

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

MAX_IDS = 100
SCHEDULE_DAYS = 12  # live: requested 2026-06-16, scheduled 2026-06-28
FROZEN_DAYS = 3  # "until three (3) days before the day the job scheduled run date"
SCRUB_DAYS = 1  # [INF] the scrub finishes the day after the job runs
BACKUP_DAYS = 5  # "the system waits 5 days for any backups to be automatically cleared"
MAX_RANGE_DAYS = 184  # "The largest permitted time range is six months"
# Live: the GET and DELETE answers come as text/html although their bodies are JSON.
HTML_JSON = "text/html; charset=UTF-8"


def _invalid(details: str) -> JSONResponse:
    return JSONResponse(error_body(400, details, "invalid"), status_code=400)


def _flag(value: Any) -> bool:
    """Booleans arrive as JSON booleans or as "true"/"True"/"False" strings."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _parse_day(value: str | None) -> date | None:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):  # the docs show both spellings
        try:
            return datetime.strptime(value or "", fmt).date()
        except ValueError:
            continue
    return None


@dataclass
class Job:
    day: date
    entries: list[dict[str, Any]] = field(default_factory=list)

    def status(self, today: date) -> str:
        if today < self.day - timedelta(days=FROZEN_DAYS):
            return "staging"
        if today < self.day + timedelta(days=SCRUB_DAYS + BACKUP_DAYS):
            return "submitted"
        return "done"

    def answer(self, today: date, project_id: int) -> dict[str, Any]:
        scrubbed = self.day + timedelta(days=SCRUB_DAYS)
        return {
            "active_scrub_done_date": scrubbed.isoformat() if today >= scrubbed else None,
            "amplitude_ids": [dict(e) for e in self.entries],
            "app": str(project_id),
            "day": self.day.isoformat(),
            "status": self.status(today),
        }


class DeletionJobs:
    """One project's deletion jobs and the endpoint's own limits."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.tenant = tenant
        limits = tenant.limits
        # The per-second rate scales with the other windows (tests shorten them).
        rate = limits.deletion_requests_per_second / max(limits.window_scale, 1e-9)
        self.rate = TokenBucket(rate, 1.0)
        self.gate = ConcurrencyGate(limits.deletion_concurrency)
        self.jobs: list[Job] = []
        self._lock = threading.Lock()
        self.refused = 0

    def today(self) -> date:
        return self.tenant.today()

    # ----- resolving users ---------------------------------------------------------------

    def _known_amplitude_id(self, amp: int) -> bool:
        t = self.tenant
        if t.users.record(amp) is not None:
            return True
        visitor = t.events.visitor_of(amp)
        return visitor is not None and self._visitor_exists(visitor)

    def _visitor_exists(self, visitor: int) -> bool:
        c = self.tenant.company
        return c.visitor_first_visit_ms(visitor) <= self.tenant.now_ms()

    def _user_amplitude_ids(self, user_id: str) -> list[int]:
        amp = self.tenant.users.lookup_user(user_id)
        return [amp] if amp is not None and self._known_amplitude_id(amp) else []

    def resolve(
        self, amplitude_ids: list[Any], user_ids: list[Any]
    ) -> tuple[list[tuple[int, str | None]], list[Any]]:
        """(Amplitude ID, the user id it came from) of every known user, and the unknown."""
        found: list[tuple[int, str | None]] = []
        invalid: list[Any] = []
        for raw in amplitude_ids:
            try:
                amp = int(raw)
            except (TypeError, ValueError):
                invalid.append(raw)
                continue
            if isinstance(raw, bool) or not self._known_amplitude_id(amp):
                invalid.append(raw)
                continue
            visitor = self.tenant.events.visitor_of(amp)
            record = self.tenant.users.record(amp)
            user = (
                self.tenant.company.visitor_id(visitor)
                if visitor is not None
                else (record.user_id if record else None)
            )
            found.append((amp, user))
        for raw in user_ids:
            amps = self._user_amplitude_ids(str(raw)) if raw not in (None, "") else []
            if not amps:
                invalid.append(raw)
            found.extend((amp, str(raw)) for amp in amps)
        return found, invalid

    # ----- jobs --------------------------------------------------------------------------

    def schedule(self, found: list[tuple[int, str | None]], requester: str, mapped: bool) -> Job:
        today = self.today()
        with self._lock:
            job = next((j for j in self.jobs if j.status(today) == "staging"), None)
            if job is None:
                job = Job(today + timedelta(days=SCHEDULE_DAYS))
                self.jobs.append(job)
            present = {e["amplitude_id"] for e in job.entries}
            for amp, user in found:
                if amp in present:
                    continue
                present.add(amp)
                entry: dict[str, Any] = {
                    "amplitude_id": amp,
                    "requested_on_day": today.isoformat(),
                    "requester": requester,
                }
                if mapped and user is not None:
                    entry["user_id"] = user
                job.entries.append(entry)
            return job

    def between(self, first: date, last: date) -> list[Job]:
        with self._lock:
            return sorted((j for j in self.jobs if first <= j.day <= last), key=lambda j: j.day)

    def remove(self, amp: int, day: date) -> dict[str, Any] | str:
        """The removed entry, or why not (a message)."""
        today = self.today()
        with self._lock:
            job = next((j for j in self.jobs if j.day == day), None)
            entry = None
            if job is not None:
                entry = next((e for e in job.entries if e["amplitude_id"] == amp), None)
            if job is None or entry is None:
                return f"Amplitude ID {amp} is not in a deletion job on {day.isoformat()}"
            if job.status(today) != "staging":
                return f"The deletion job on {day.isoformat()} can no longer be modified"
            job.entries.remove(entry)
            return {k: entry[k] for k in ("amplitude_id", "requested_on_day", "requester")}

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "deletion_jobs": len(self.jobs),
                "deletion_users": sum(len(j.entries) for j in self.jobs),
                "deletion_refused": self.refused,
            }


def deletion_routes(tenant: AmplitudeTenant) -> tuple[list[Route], DeletionJobs]:
    jobs = DeletionJobs(tenant)

    def too_many(details: str, retry_after: float) -> JSONResponse:
        jobs.refused += 1
        headers = {}
        if tenant.limits.retry_after_header:
            headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        return JSONResponse(error_body(429, details), status_code=429, headers=headers)

    async def gated(request: Request, handler) -> Response:
        refused = check_basic(tenant, request)
        if refused is not None:
            return refused
        entered = jobs.gate.enter()
        if not entered.allowed:
            return too_many("Too Many Requests: Exceeded concurrent limit of deletion requests", 1)
        try:
            taken = jobs.rate.try_take()
            if not taken.allowed:
                return too_many(
                    "Too Many Requests: Exceeded rate limit of 1 deletion request per second",
                    taken.retry_after,
                )
            return await handler(request)
        finally:
            jobs.gate.leave()

    async def post(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _invalid("The request body must be a JSON object")
        if not isinstance(body, dict):
            return _invalid("The request body must be a JSON object")
        amplitude_ids = body.get("amplitude_ids") or []
        user_ids = body.get("user_ids") or []
        if not isinstance(amplitude_ids, list) or not isinstance(user_ids, list):
            return _invalid("amplitude_ids and user_ids must be arrays")
        if not amplitude_ids and not user_ids:
            return _invalid("Provide amplitude_ids or user_ids")
        if len(amplitude_ids) + len(user_ids) > MAX_IDS:
            return _invalid(f"At most {MAX_IDS} amplitude_ids or user_ids per request")
        ignore = _flag(body.get("ignore_invalid_id")) or _flag(body.get("delete_from_org"))
        found, invalid = jobs.resolve(amplitude_ids, user_ids)
        if invalid and not ignore:
            return _invalid(f"Users not found in this project: {invalid}")
        if not found:
            return JSONResponse([])
        job = jobs.schedule(
            found, str(body.get("requester") or ""), _flag(body.get("include_mapped_user_ids"))
        )
        answer = job.answer(jobs.today(), tenant.project_id)
        if invalid:
            answer["invalid_ids"] = invalid
        return JSONResponse([answer])

    async def listing(request: Request) -> Response:
        first = _parse_day(request.query_params.get("start_day"))
        last = _parse_day(request.query_params.get("end_day"))
        if first is None or last is None:
            return _invalid("start_day and end_day are required, formatted YYYY-MM-DD")
        if last < first:
            return _invalid("end_day is before start_day")
        if (last - first).days > MAX_RANGE_DAYS:
            return _invalid("The largest permitted time range is six months")
        today = jobs.today()
        body = [j.answer(today, tenant.project_id) for j in jobs.between(first, last)]
        return Response(orjson.dumps(body), media_type=HTML_JSON)

    async def users(request: Request) -> Response:
        return await gated(request, post if request.method == "POST" else listing)

    async def remove(request: Request) -> Response:
        async def handler(request: Request) -> Response:
            day = _parse_day(request.path_params["day"])
            try:
                amp = int(request.path_params["amplitude_id"])
            except ValueError:
                amp = -1
            if day is None or amp < 0:
                return _invalid("Use /api/2/deletions/users/AMPLITUDE_ID/YYYY-MM-DD")
            removed = jobs.remove(amp, day)
            if isinstance(removed, str):
                status = 404 if "is not in" in removed else 400
                kind = "unspecified" if status == 404 else "invalid"
                return JSONResponse(error_body(status, removed, kind), status_code=status)
            return Response(orjson.dumps(removed), media_type=HTML_JSON)

        return await gated(request, handler)

    return [
        Route("/api/2/deletions/users", users, methods=["GET", "POST"]),
        Route("/api/2/deletions/users/{amplitude_id}/{day}", remove, methods=["DELETE"]),
    ], jobs
