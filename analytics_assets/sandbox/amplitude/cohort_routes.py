"""HTTP side of the Behavioral Cohorts API: list, get, async download, upload, membership.

Limits (per project): 60 requests per 10 minutes (× ``window_scale``) and 4 in flight
over every cohort endpoint; a file download also takes a slot of the Dashboard pool
(``tenant.gates``, 5 per project) for as long as its body streams. Refusals are 429
with the Basic-auth error envelope. Download requests count against a monthly quota
(``/api/3/cohorts/usage``).

The download is a small state machine. ``GET /api/5/cohorts/request/{cohort_id}``
snapshots the cohort's members into a job (so the file matches the list's ``size`` at
that moment, whatever changes later) and answers 202. The status stays
``JOB INPROGRESS`` (202) until the job has been polled ``cohort_job_polls`` times or
``cohort_job_seconds × window_scale`` seconds have passed, then ``JOB COMPLETED`` (200).
The file is served directly (200, CSV) up to ``cohort_file_redirect_rows`` rows and
otherwise redirected (302) to a presigned "S3" URL valid ``cohort_presign_seconds ×
window_scale`` seconds, served without Basic auth like S3. Every knob is read from
``AmplitudeLimits`` by name when present (``getattr``), so a test sets them on its
config: ``limits.cohort_file_redirect_rows = 50``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.catalog import CUSTOM_USER_PROPS
from analytics_assets.sandbox.amplitude.cohorts import CSV_CHUNK_ROWS, CohortError, CohortStore
from analytics_assets.sandbox.amplitude.extra_common import (
    envelope_response,
    hold,
    json_response,
    retry_headers,
    truthy,
    window,
)
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.amplitude.users import UserDirectory
from analytics_assets.sandbox.limits import ConcurrencyGate, Decision, SlidingWindowBudget

# Knobs (read from AmplitudeLimits by these names when set there).
DEFAULTS: dict[str, Any] = {
    "cohort_job_polls": 2,
    "cohort_job_seconds": 0.5,
    "cohort_file_redirect_rows": 10_000,
    "cohort_presign_seconds": 60.0,
    "cohort_downloads_per_month": 500,
}
S3_PATH = "/_s3/amplitude-cohort-exports"
FILE_LINK_DAYS = 7  # the /file link of a finished job stays valid this long
S3_EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message><X-Amz-Expires>{expires}</X-Amz-Expires>"
    "</Error>"
)
S3_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Access Denied</Message></Error>"
)


def knob(tenant: AmplitudeTenant, name: str) -> Any:
    return getattr(tenant.limits, name, DEFAULTS[name])


@dataclass
class DownloadJob:
    request_id: str
    cohort_id: str
    members: np.ndarray
    prop_keys: list[str] | None  # None = props=0
    started: float  # monotonic
    created_ms: int  # sandbox clock
    polls: int = 0


@dataclass
class Presigned:
    job: DownloadJob
    expires: float  # monotonic
    seconds: int


class Slot:
    """Limiter slots a request holds; released once, by the handler or its stream."""

    def __init__(self) -> None:
        self._releases: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.handed_off = False

    def add(self, release: Callable[[], None]) -> None:
        self._releases.append(release)

    def release(self) -> None:
        with self._lock:
            releases, self._releases = self._releases, []
        for release in reversed(releases):
            release()


class CohortHttp:
    """The cohort endpoints of one project (jobs, presigned files, limiters)."""

    def __init__(
        self, tenant: AmplitudeTenant, store: CohortStore, directory: UserDirectory
    ) -> None:
        self.tenant = tenant
        self.store = store
        self.directory = directory
        self.budget = SlidingWindowBudget(
            tenant.limits.cohort_requests_per_10min, window(tenant, 600.0)
        )
        self.gate = ConcurrencyGate(tenant.limits.cohort_concurrency)
        self.jobs: dict[str, DownloadJob] = {}
        self.presigned: dict[str, Presigned] = {}
        self.downloads: dict[str, int] = {}  # "YYYY-MM" -> download requests
        self._lock = threading.Lock()
        self._counter = 0

    # ----- limits --------------------------------------------------------------------------

    def _too_many(self, decision: Decision, what: str) -> Response:
        return envelope_response(
            429, f"Too Many Requests: Exceeded {what}", retry_headers(self.tenant, decision)
        )

    def guarded(
        self, handler: Callable[[Request, Slot], Awaitable[Response]], download: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = check_basic(self.tenant, request)
            if refused is not None:
                return refused
            slot = Slot()
            entered = self.gate.enter()
            if not entered.allowed:
                return self._too_many(
                    entered, f"concurrent limit of {self.gate.limit} cohort requests"
                )
            slot.add(self.gate.leave)
            spent = self.budget.try_spend(1)
            if not spent.allowed:
                slot.release()
                return self._too_many(
                    spent,
                    f"rate limit of {int(self.budget.capacity)} cohort requests per 10 minutes",
                )
            if download:
                # Cohort downloads share the Dashboard REST pool of 5 (contract §3).
                admission = self.tenant.gates.admit_dashboard(1, charge=False)
                if not admission.allowed:
                    slot.release()
                    return admission.response()
                slot.add(admission.release)
            try:
                await hold(request)
                return await handler(request, slot)
            except CohortError as exc:
                return envelope_response(exc.status, exc.details)
            finally:
                if not slot.handed_off:
                    slot.release()

        return endpoint

    # ----- list, get, usage ----------------------------------------------------------------

    async def list_cohorts(self, request: Request, slot: Slot) -> Response:
        wanted = request.query_params.get("cohortIds")
        ids = {i.strip() for i in wanted.split(",") if i.strip()} if wanted else None
        sync = truthy(request.query_params.get("includeSyncInfo"))

        def views() -> list[dict[str, Any]]:
            return [
                self.store.view(c, sync) for c in self.store.all() if ids is None or c.id in ids
            ]

        # Computing cohorts is CPU work: keep it off the event loop.
        return json_response({"cohorts": await run_in_threadpool(views)})

    async def get_cohort(self, request: Request, slot: Slot) -> Response:
        cohort = self.store.get(request.path_params["cohort_id"])
        amp_ids = truthy(request.query_params.get("amp_ids"))

        def body() -> dict[str, Any]:
            members = self.store.members(cohort) if cohort.computed else np.zeros(0, np.int64)
            return {
                "cohort": self.store.view(cohort),
                "amplitude_ids": members.tolist() if amp_ids else [],
                "user_ids": [u for u in self.directory.user_ids_of(members) if u],
            }

        return json_response(await run_in_threadpool(body))

    def _month(self) -> str:
        return datetime.fromtimestamp(self.tenant.now_ms() / 1000, tz=UTC).strftime("%Y-%m")

    async def usage(self, request: Request, slot: Slot) -> Response:
        with self._lock:
            count = self.downloads.get(self._month(), 0)
        return json_response(
            {"limit": knob(self.tenant, "cohort_downloads_per_month"), "count": count}
        )

    # ----- download ------------------------------------------------------------------------

    def _new_id(self, *parts: object) -> str:
        with self._lock:
            self._counter += 1
            n = self._counter
        digest = hashlib.sha1("/".join(map(str, (self.tenant.project_id, n, *parts))).encode())
        h = digest.hexdigest()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:32]}"

    async def request_download(self, request: Request, slot: Slot) -> Response:
        cohort = self.store.get(request.path_params["cohort_id"])
        quota = knob(self.tenant, "cohort_downloads_per_month")
        month = self._month()
        with self._lock:
            used = self.downloads.get(month, 0)
            if quota is not None and used >= quota:
                raise CohortError(
                    429,
                    f"Too Many Requests: Exceeded the monthly limit of "
                    f"{quota} cohort download requests",
                )
            self.downloads[month] = used + 1
        props = truthy(request.query_params.get("props"))
        keys = [
            k.strip()
            for raw in request.query_params.getlist("propKeys")
            for k in raw.split(",")
            if k.strip()
        ]
        # A never-computed cohort is computed by the download job, as in the web app.
        self.store.mark_computed(cohort)
        members = await run_in_threadpool(self.store.members, cohort)
        job = DownloadJob(
            request_id=self._new_id("job", cohort.id),
            cohort_id=cohort.id,
            members=members,
            prop_keys=(keys or list(CUSTOM_USER_PROPS)) if props else None,
            started=time.monotonic(),
            created_ms=self.tenant.now_ms(),
        )
        with self._lock:
            self.jobs[job.request_id] = job
        return json_response({"request_id": job.request_id, "cohort_id": cohort.id}, 202)

    def _job(self, request_id: str) -> DownloadJob:
        with self._lock:
            job = self.jobs.get(request_id)
        expired = job is not None and (
            self.tenant.now_ms() - job.created_ms > FILE_LINK_DAYS * 86_400_000
        )
        if job is None or expired:
            raise CohortError(404, f"Request {request_id} not found")
        return job

    def _finished(self, job: DownloadJob) -> bool:
        elapsed = time.monotonic() - job.started
        return (
            job.polls >= knob(self.tenant, "cohort_job_polls")
            or elapsed >= knob(self.tenant, "cohort_job_seconds") * self.tenant.limits.window_scale
        )

    async def status(self, request: Request, slot: Slot) -> Response:
        job = self._job(request.path_params["request_id"])
        with self._lock:
            done = self._finished(job)
            job.polls += 1
        body = {
            "request_id": job.request_id,
            "cohort_id": job.cohort_id,
            "async_status": "JOB COMPLETED" if done else "JOB INPROGRESS",
        }
        return json_response(body, 200 if done else 202)

    async def file(self, request: Request, slot: Slot) -> Response:
        job = self._job(request.path_params["request_id"])
        with self._lock:
            done = self._finished(job)
        if not done:
            # Undocumented; we answer 400 rather than a 2xx so a client that skips the
            # status poll fails loudly instead of saving a JSON body as the CSV.
            raise CohortError(
                400,
                f"Request {job.request_id} is still in progress; poll "
                "/api/5/cohorts/request-status until JOB COMPLETED",
            )
        if job.members.size > knob(self.tenant, "cohort_file_redirect_rows"):
            return self._redirect(request, job)
        slot.handed_off = True
        return self._csv_response(job, slot.release)

    def _redirect(self, request: Request, job: DownloadJob) -> Response:
        seconds = knob(self.tenant, "cohort_presign_seconds") * self.tenant.limits.window_scale
        token = self._new_id("s3", job.request_id).replace("-", "")
        with self._lock:
            self.presigned[token] = Presigned(
                job, time.monotonic() + seconds, max(1, round(seconds))
            )
            # Forget long-expired links so a long run does not keep every snapshot.
            now = time.monotonic()
            for old in [t for t, p in self.presigned.items() if p.expires < now - 600]:
                del self.presigned[old]
        stamp = datetime.fromtimestamp(self.tenant.now_ms() / 1000, tz=UTC)
        signature = hashlib.sha256(token.encode()).hexdigest()
        query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={quote('SANDBOX/' + stamp.strftime('%Y%m%d'), safe='')}"
            f"%2Fus-west-2%2Fs3%2Faws4_request"
            f"&X-Amz-Date={stamp.strftime('%Y%m%dT%H%M%SZ')}"
            f"&X-Amz-Expires={max(1, round(seconds))}&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={signature}"
        )
        root = request.scope.get("root_path", "")
        base = f"{request.url.scheme}://{request.url.netloc}{root}"
        location = f"{base}{S3_PATH}/{self.tenant.project_id}/{token}.csv?{query}"
        return RedirectResponse(location, status_code=302)

    async def s3_object(self, request: Request) -> Response:
        """The presigned URL: no Basic auth, no Amplitude limits (it is S3's, not theirs)."""
        token = request.path_params["token"].removesuffix(".csv")
        with self._lock:
            entry = self.presigned.get(token)
        if entry is None:
            return Response(S3_DENIED, 403, media_type="application/xml")
        if time.monotonic() > entry.expires:
            return Response(
                S3_EXPIRED.format(expires=entry.seconds), 403, media_type="application/xml"
            )
        return self._csv_response(entry.job, None)

    def _csv_response(self, job: DownloadJob, release: Callable[[], None] | None) -> Response:
        chunks = csv_chunks(self.directory, job.members, job.prop_keys)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in iterate_in_threadpool(chunks):
                    yield chunk
            finally:
                if release is not None:
                    release()

        return StreamingResponse(
            body(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="cohort_{job.cohort_id}.csv"'},
        )

    # ----- upload and membership -----------------------------------------------------------

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise CohortError(400, "The body must be a JSON object") from None
        if not isinstance(body, dict):
            raise CohortError(400, "The body must be a JSON object")
        return body

    async def upload(self, request: Request, slot: Slot) -> Response:
        body = await self._body(request)
        return json_response(await run_in_threadpool(self.store.upload, body))

    async def membership(self, request: Request, slot: Slot) -> Response:
        body = await self._body(request)
        return json_response(await run_in_threadpool(self.store.change_membership, body))

    def describe(self) -> dict[str, Any]:
        return {
            "cohort_requests_in_window": self.budget.spent(),
            "cohort_in_flight": self.gate.in_flight,
            "cohort_peak": self.gate.peak,
            "cohort_refused_rate": self.budget.refused,
            "cohort_refused_concurrency": self.gate.refused,
            "cohort_jobs": len(self.jobs),
        }


def csv_chunks(
    directory: UserDirectory, members: np.ndarray, prop_keys: list[str] | None
) -> Iterator[bytes]:
    """RFC 4180 CSV (CRLF, header row): ``amplitude_id,user_id`` then property columns."""
    keys = prop_keys or []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["amplitude_id", "user_id", *keys])
    for first in range(0, max(members.size, 1), CSV_CHUNK_ROWS):
        amps = members[first : first + CSV_CHUNK_ROWS]
        columns = [property_column(directory, key, amps) for key in keys]
        user_ids = directory.user_ids_of(amps)
        writer.writerows(zip(amps.tolist(), user_ids, *columns, strict=True))
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def property_column(directory: UserDirectory, key: str, amps: np.ndarray) -> list[str]:
    """One user property for each user, as the user's current value ("" when unset).

    Synthetic users are read from the catalog's per-visitor tables at once; users with
    identify updates and ingested users from their property dict.
    """
    events = directory.events
    name = key.removeprefix("gp:")
    out = np.full(amps.size, "", dtype=object)
    offset = amps - events.amp_base
    synthetic = (offset >= 0) & (offset < directory.company.n_visitors)
    table = events.catalog.user_property_table(name)
    if table is not None:
        codes, labels = table
        out[synthetic] = np.array(labels, dtype=object)[codes[offset[synthetic]]]
    changed = set(directory.tenant.user_props.updated_users())
    slow = np.flatnonzero(~synthetic).tolist()
    if changed:
        slow += np.flatnonzero(synthetic & np.isin(amps, list(changed))).tolist()
    for i in slow:
        value = events.user_properties(int(amps[i])).get(name)
        out[i] = (
            ""
            if value is None
            else (value if isinstance(value, str) else orjson.dumps(value).decode())
        )
    return out.tolist()


def cohort_routes(
    tenant: AmplitudeTenant, store: CohortStore, directory: UserDirectory
) -> tuple[list[BaseRoute], CohortHttp]:
    http = CohortHttp(tenant, store, directory)
    g = http.guarded
    routes: list[BaseRoute] = [
        Route("/api/3/cohorts", g(http.list_cohorts), methods=["GET"]),
        Route("/api/3/cohorts/usage", g(http.usage), methods=["GET"]),
        Route("/api/3/cohorts/upload", g(http.upload), methods=["POST"]),
        Route("/api/3/cohorts/membership", g(http.membership), methods=["POST"]),
        Route("/api/3/cohorts/{cohort_id}", g(http.get_cohort), methods=["GET"]),
        Route("/api/5/cohorts/request-status/{request_id}", g(http.status), methods=["GET"]),
        Route(
            "/api/5/cohorts/request/{request_id}/file", g(http.file, download=True), methods=["GET"]
        ),
        Route("/api/5/cohorts/request/{cohort_id}", g(http.request_download), methods=["GET"]),
        Route(f"{S3_PATH}/{tenant.project_id}/{{token}}", http.s3_object, methods=["GET"]),
    ]
    return routes, http
