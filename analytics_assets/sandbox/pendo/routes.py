"""The Pendo half of the sandbox: every REST method of the contract, per region.

Each request passes the same gate first: the integration key (its region, its write
access), then the key's token bucket. Data work runs in the thread pool; aggregations and
report results stream, serialised with orjson a chunk of rows at a time.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import itertools
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from analytics_assets.sandbox.config import PENDO_REGIONS
from analytics_assets.sandbox.faults import DroppedConnection
from analytics_assets.sandbox.limits import KeyedLimiters, TokenBucket
from analytics_assets.sandbox.pendo.aggregation import (
    AggregationError,
    run_pipeline,
    validate_request,
)
from analytics_assets.sandbox.pendo.expr import EvalEnv, path_getter
from analytics_assets.sandbox.pendo.history import visitor_history
from analytics_assets.sandbox.pendo.provider import PendoProvider, PendoRegion
from analytics_assets.sandbox.pendo.store import ID_KEYS, KINDS, WRITE_GROUPS, PendoStore
from analytics_assets.sandbox.state import SandboxHalf, SandboxState

log = logging.getLogger(__name__)

KEY_HEADER = "x-pendo-integration-key"
BASE64_HEADER = "x-pendo-base64-encoded-params"
# Suffixes a key may carry to name its region (ZEN: ``key.eu``); stripped before lookup.
REGION_SUFFIXES = frozenset({"us", "us1", "eu", "jpn", "jp", "au"})
# [INF] no record cap is documented for bulk writes (only a 5-minute run time, §4); the
# sandbox refuses more than this many records in one call with a 400 that says so, so a
# client that forgets to batch notices here rather than in production.
MAX_WRITE_RECORDS = 10_000
ROWS_PER_CHUNK = 2_000
# An aggregation's rows are computed up to this many bytes before the status is sent, so
# an error within them (row cap, bad data) is an honest 4xx; an error after that can only
# cut the stream, as a real server's would.
PREFETCH_BYTES = 1 << 20
PREFETCH_ALL_ROWS = 100_000
CATALOG_KINDS = ("feature", "page", "guide", "tracktype", "report")
_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_ORJSON_OPTS)


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _dumps(content)


class HTTPFailure(Exception):
    """An answer other than 200 with a plain-text body (Pendo's errors are text)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _text(status: int, text: str) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


@dataclass
class _Counters:
    auth_failures: int = 0
    write_refusals: int = 0
    aggregations: int = 0
    aggregation_errors: int = 0
    streams_cut: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class PendoHalf:
    """Per-server state of the Pendo half: regions (built lazily), limiters, counters."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.stores = {region: PendoStore() for region in PENDO_REGIONS}
        self._regions: dict[str, PendoRegion] = {}
        self._lock = threading.Lock()
        limits = state.config.pendo_limits
        self.limiters: KeyedLimiters | None = None
        if limits.rate is not None:
            rate, burst = float(limits.rate), max(1, int(limits.burst))
            self.limiters = KeyedLimiters(lambda: TokenBucket(rate, burst))
        self.counters = _Counters()

    def region(self, name: str) -> PendoRegion:
        # Built on first use: the people arrays cost a little at large scales, and most
        # servers only ever hear from one or two regions.
        with self._lock:
            found = self._regions.get(name)
            if found is None:
                found = PendoRegion(name, self.state.world(name), self.stores[name])
                self._regions[name] = found
            return found

    def has_region(self, name: str) -> bool:
        return name in self._regions

    def provider(self, region: str) -> PendoProvider:
        limits = self.state.config.pendo_limits
        return self.region(region).provider(self.state.now_ms(), limits.event_lag_hours)

    def env(self) -> EvalEnv:
        limits = self.state.config.pendo_limits
        return EvalEnv(
            now_ms=self.state.now_ms(),
            tz=ZoneInfo(self.state.config.pendo_timezone),
            max_rows_out=limits.aggregation_max_rows,
            max_seconds=limits.aggregation_max_seconds,
        )

    def access(self, region: str, request: Request) -> tuple[str | None, str | None]:
        """(normalised key, "read" | "write") or (key, None) when the key is not valid here."""
        raw = request.headers.get(KEY_HEADER)
        if not raw:
            return None, None
        key = raw.strip()
        head, dot, suffix = key.rpartition(".")
        if dot and suffix.lower() in REGION_SUFFIXES:
            key = head
        keys = self.state.config.pendo_keys.get(region)
        if keys is None:
            return key, None
        if key == keys.write:
            return key, "write"
        if key == keys.read:
            return key, "read"
        return key, None

    def describe(self) -> dict[str, Any]:
        limits = self.state.config.pendo_limits
        c = self.counters
        return {
            "rate_limit": {
                "rate": limits.rate,
                "burst": limits.burst,
                "retry_after_header": limits.retry_after_header,
                "refused": self.limiters.refused() if self.limiters else 0,
            },
            "auth_failures": c.auth_failures,
            "write_refusals": c.write_refusals,
            "aggregations": {
                "served": c.aggregations,
                "errors": c.aggregation_errors,
                "streams_cut": c.streams_cut,
            },
        }


Handler = Callable[[Request, str], Awaitable[Response]]


# Every route takes every method, so that the key is checked before the method: an
# unauthenticated call is the observed 403 with an empty body whatever its method (W6W:
# "a missing/garbage key gets 403 with empty body"), never a 405 that would tell a caller
# without a key which paths exist. A valid key with a wrong method gets the 405.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _gate(
    half: PendoHalf,
    region: str,
    handler: Handler,
    *,
    write: bool = False,
    methods: tuple[str, ...] = ("GET",),
) -> Callable[[Request], Awaitable[Response]]:
    """Key, rate limit, method and write access, then the handler; HTTPFailure -> text."""
    allowed = {*methods, "HEAD"} if "GET" in methods else set(methods)

    async def endpoint(request: Request) -> Response:
        # The key first (cheap, and a bucket per unknown string would let anyone grow the
        # limiter table), then the key's bucket, then any real work.
        key, access = half.access(region, request)
        if access is None:
            half.counters.bump("auth_failures")
            # The observed answer is 403 with an empty body (W6W); the brief's 401 on demand.
            return Response(b"", status_code=half.state.config.pendo_limits.auth_failure_status)
        if half.limiters is not None:
            decision = half.limiters.get(key).try_take()
            if not decision.allowed:
                headers = {}
                if half.state.config.pendo_limits.retry_after_header:
                    headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
                return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)
        if request.method not in allowed:
            # Starlette's own 405 answer (plain text, Allow header), after the key.
            return PlainTextResponse(
                "Method Not Allowed",
                status_code=405,
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        if write and access != "write":
            half.counters.bump("write_refusals")
            return _text(403, "Forbidden: this integration key does not have write access")
        if not half.has_region(region):  # first use builds the region's arrays: off the loop
            await run_in_threadpool(half.region, region)
        try:
            return await handler(request, access)
        except HTTPFailure as exc:
            return _text(exc.status, exc.text)

    return endpoint


# ------------------------------------------------------------------------------- helpers


def _path_id(request: Request, name: str = "id") -> str:
    """A path id, base64-decoded when the client says so (ids with slashes, odd bytes)."""
    value = request.path_params[name]
    if request.headers.get(BASE64_HEADER, "").strip().lower() == "true":
        try:
            padded = value + "=" * (-len(value) % 4)
            value = base64.urlsafe_b64decode(padded.encode()).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise HTTPFailure(400, f"Invalid base64-encoded id {value!r}") from exc
    return value


async def _json_body(request: Request) -> Any:
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPFailure(400, "Invalid JSON in request body") from exc


def _chunks(rows: Iterator[dict[str, Any]], head: bytes, tail: bytes) -> Iterator[bytes]:
    """``head row,row,... tail``, a few thousand rows per chunk, never the whole list."""
    sep = b""
    while True:
        batch = list(itertools.islice(rows, ROWS_PER_CHUNK))
        if not batch:
            break
        yield head + sep + b",".join(map(_dumps, batch))
        head, sep = b"", b","
    yield head + tail


def _prefetch(chunks: Iterator[bytes], limit: float) -> list[bytes]:
    """The first chunks, up to ``limit`` bytes (raises what the pipeline raises)."""
    out, size = [], 0
    for chunk in chunks:
        out.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return out


async def _stream(half: PendoHalf, chunks: Iterator[bytes], media_type: str) -> Response:
    """Compute the first chunks (errors become their status), then stream the rest."""
    # A small row cap (a test's) is checked in full before the status line: the cap bounds
    # what is held, and the client gets the cap's status instead of a cut stream.
    small_cap = half.state.config.pendo_limits.aggregation_max_rows <= PREFETCH_ALL_ROWS
    limit = math.inf if small_cap else PREFETCH_BYTES
    try:
        first = await run_in_threadpool(_prefetch, chunks, limit)
    except AggregationError as exc:
        half.counters.bump("aggregation_errors")
        return _text(exc.status, exc.body)

    def rest() -> Iterator[bytes]:
        yield from first
        try:
            yield from chunks
        except AggregationError as exc:
            # The 200 is on the wire: all a server can do now is cut the stream short.
            half.counters.bump("streams_cut")
            log.warning("pendo sandbox: aggregation failed mid-stream: %s", exc)
            raise DroppedConnection(str(exc)) from exc

    return StreamingResponse(rest(), media_type=media_type)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _csv_chunks(titles: list[str], rows: Iterator[list[Any]]) -> Iterator[bytes]:
    """RFC 4180: CRLF line ends, quotes only where needed, a header of column titles."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(titles)
    while True:
        batch = list(itertools.islice(rows, ROWS_PER_CHUNK))
        if not batch:
            break
        writer.writerows([[_csv_cell(v) for v in row] for row in batch])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()


def _app_scope(request: Request, region: PendoRegion) -> set[int]:
    """The apps a catalog list covers: ``appId``, ``expand=*`` (all), default app otherwise."""
    app_id = request.query_params.get("appId")
    expand = request.query_params.get("expand")
    if app_id is not None and expand is not None:
        raise HTTPFailure(400, "Use either appId or expand, not both")
    if expand is not None:
        if expand != "*":
            raise HTTPFailure(400, f"Unsupported expand value {expand!r}; use expand=*")
        return {a.id for a in region.company.apps}
    if app_id is not None:
        try:
            return {int(app_id)}
        except ValueError as exc:
            raise HTTPFailure(400, f"Invalid appId {app_id!r}") from exc
    return {region.company.apps[0].id}


# -------------------------------------------------------------------------------- routes


def _region_routes(half: PendoHalf, region: str) -> list[BaseRoute]:
    def route(
        path: str, handler: Handler, *, write: bool = False, methods: tuple[str, ...] = ("GET",)
    ) -> Route:
        endpoint = _gate(half, region, handler, write=write, methods=methods)
        return Route(path, endpoint, methods=ALL_METHODS)

    async def verify(request: Request, access: str) -> Response:
        return ORJSONResponse({"valid": True, "writeAccess": access == "write"})

    # ----- aggregation -----------------------------------------------------------------

    async def aggregation(request: Request, access: str) -> Response:
        body = await _json_body(request)
        half.counters.bump("aggregations")
        try:
            validated = validate_request(body)
            provider = half.provider(region)
            result = await run_in_threadpool(run_pipeline, validated, provider, half.env())
        except AggregationError as exc:
            half.counters.bump("aggregation_errors")
            return _text(exc.status, exc.body)
        # [INF] without a timeSeries there is no first bucket: startTime is the query's now.
        start = result.start_time if result.start_time is not None else provider.now_ms
        head = b'{"startTime":%d,"results":[' % start
        return await _stream(half, _chunks(result.rows, head, b"]}"), "application/json")

    # ----- visitors and accounts -------------------------------------------------------

    async def visitor(request: Request, access: str) -> Response:
        visitor_id = _path_id(request)
        found = await run_in_threadpool(lambda: half.provider(region).view.visitor_json(visitor_id))
        if found is None:
            raise HTTPFailure(404, f"Visitor {visitor_id!r} not found")
        return ORJSONResponse(found)

    async def history(request: Request, access: str) -> Response:
        visitor_id = _path_id(request)
        raw = request.query_params.get("starttime", "")
        try:
            start = int(raw)
        except ValueError:
            raise HTTPFailure(400, f"Invalid starttime {raw!r}: use epoch milliseconds") from None
        found = await run_in_threadpool(visitor_history, half.provider(region), visitor_id, start)
        if found is None:
            raise HTTPFailure(404, f"Visitor {visitor_id!r} not found")
        return ORJSONResponse(found)

    async def account(request: Request, access: str) -> Response:
        account_id = _path_id(request)
        found = await run_in_threadpool(lambda: half.provider(region).view.account_json(account_id))
        if found is None:
            raise HTTPFailure(404, f"Account {account_id!r} not found")
        return ORJSONResponse(found)

    # ----- catalog ----------------------------------------------------------------------

    def catalog_list(kind: str) -> Handler:
        async def handler(request: Request, access: str) -> Response:
            r = half.region(region)
            objs = r.catalog.lists[kind]
            ids = request.query_params.get("id")
            apps = _app_scope(request, r)  # validated even when ids are given
            if ids is not None:
                # Ids are unique across apps, so an id list ignores the app scope; one
                # unknown id fails the whole call (ZEN).
                by_id = r.catalog.by_id[kind]
                wanted = [i.strip() for i in ids.split(",") if i.strip()]
                unknown = [i for i in wanted if i not in by_id]
                if unknown:
                    raise HTTPFailure(404, f"{kind} {unknown[0]!r} not found")
                return ORJSONResponse([by_id[i] for i in wanted])
            if kind == "report":  # reports belong to the subscription, not to an app
                return ORJSONResponse(objs)
            return ORJSONResponse([o for o in objs if o["appId"] in apps])

        return handler

    def catalog_one(kind: str) -> Handler:
        async def handler(request: Request, access: str) -> Response:
            obj_id = request.path_params["id"]
            found = half.region(region).catalog.by_id[kind].get(obj_id)
            if found is None:
                raise HTTPFailure(404, f"{kind} {obj_id!r} not found")
            return ORJSONResponse(found)

        return handler

    # ----- reports ----------------------------------------------------------------------

    def _report_rows(report_id: str) -> tuple[list[str], list[str], Iterator[list[Any]]]:
        report = half.region(region).catalog.by_id["report"].get(report_id)
        if report is None:
            raise HTTPFailure(404, f"Report {report_id!r} not found")
        fields = report["aggregation"]["fields"]
        paths = [f["field"] for f in fields]
        titles = [f["title"] for f in fields]
        getters = [path_getter(p) for p in paths]
        pipeline = {"pipeline": report["aggregation"]["pipeline"]}
        result = run_pipeline(pipeline, half.provider(region), half.env())
        return paths, titles, ([g(row) for g in getters] for row in result.rows)

    async def report_json(request: Request, access: str) -> Response:
        try:
            paths, _, rows = await run_in_threadpool(_report_rows, request.path_params["id"])
        except AggregationError as exc:
            return _text(exc.status, exc.body)
        # [INF] each row is keyed by the column's full field path ("metadata.agent.email"),
        # flat: unambiguous where two columns share a last segment (agent.name, custom.name).
        objects = (dict(zip(paths, values, strict=True)) for values in rows)
        return await _stream(half, _chunks(objects, b"[", b"]"), "application/json")

    async def report_csv(request: Request, access: str) -> Response:
        try:
            _, titles, rows = await run_in_threadpool(_report_rows, request.path_params["id"])
        except AggregationError as exc:
            return _text(exc.status, exc.body)
        return await _stream(half, _csv_chunks(titles, rows), "text/csv; charset=utf-8")

    # ----- metadata -----------------------------------------------------------------------

    def _kind_group(request: Request, groups: tuple[str, ...] = WRITE_GROUPS) -> tuple[str, str]:
        kind, group = request.path_params["kind"], request.path_params["group"]
        if kind not in KINDS:
            raise HTTPFailure(404, f"Unknown metadata kind {kind!r}; use visitor or account")
        if group not in groups:
            raise HTTPFailure(400, f"Metadata group {group!r} cannot be used here")
        return kind, group

    async def schema(request: Request, access: str) -> Response:
        kind = request.path_params["kind"]
        if kind not in KINDS:
            raise HTTPFailure(404, f"Unknown metadata kind {kind!r}; use visitor or account")
        out = await run_in_threadpool(lambda: half.provider(region).view.schema(kind))
        return ORJSONResponse(out)

    async def bulk_write(request: Request, access: str) -> Response:
        kind, group = _kind_group(request)
        create = request.query_params.get("create", "").strip().lower() == "true"
        records = _records(kind, await _json_body(request))
        result = await run_in_threadpool(_apply_records, kind, group, records, create)
        return ORJSONResponse(result)

    def _apply_records(
        kind: str, group: str, records: list[tuple[str, dict]], create: bool
    ) -> dict[str, Any]:
        r = half.region(region)
        view = half.provider(region).view
        now = half.state.now_ms()
        store = r.store
        store.count_call(kind)
        missing: list[str] = []
        errors: list[dict[str, Any]] = []
        updated = 0
        for entity_id, values in records:
            exists = view.exists(kind, entity_id)
            if not exists and not create:
                missing.append(entity_id)
                continue
            clean, outcome = store.check(kind, group, values)
            if outcome.status == "error":
                errors.append({"id": entity_id, "field": outcome.field, "error": outcome.error})
                continue
            if not exists:
                store.create(kind, entity_id, now)
            store.apply(kind, group, entity_id, clean, now)
            updated += 1
        failed = len(missing) + len(errors)
        return {
            "total": updated + failed,
            "updated": updated,
            "failed": failed,
            "missing": missing,
            "errors": errors,
            "kind": kind,
        }

    async def field_value(request: Request, access: str) -> Response:
        # GET reads any group (the value as a read of the entity shows it); PUT writes.
        groups = WRITE_GROUPS if request.method == "PUT" else ("auto", *WRITE_GROUPS)
        kind, group = _kind_group(request, groups)
        entity_id = _path_id(request)
        name = request.path_params["field"]
        if request.method == "PUT":
            if access != "write":
                half.counters.bump("write_refusals")
                raise HTTPFailure(403, "Forbidden: this integration key does not have write access")
            value = await _json_body(request)
            return ORJSONResponse(
                await run_in_threadpool(_put_one, kind, group, entity_id, name, value)
            )
        row = await run_in_threadpool(
            lambda: (
                half.provider(region).view.visitor_row(entity_id)
                if kind == "visitor"
                else half.provider(region).view.account_row(entity_id)
            )
        )
        value = None if row is None else row["metadata"].get(group, {}).get(name)
        if value is None:
            raise HTTPFailure(404, f"No {group} value {name!r} for {kind} {entity_id!r}")
        return ORJSONResponse(value)

    def _put_one(kind: str, group: str, entity_id: str, name: str, value: Any) -> dict[str, Any]:
        r = half.region(region)
        if not half.provider(region).view.exists(kind, entity_id):
            raise HTTPFailure(404, f"{kind.capitalize()} {entity_id!r} not found")
        clean, outcome = r.store.check(kind, group, {name: value})
        if outcome.status == "error":
            raise HTTPFailure(400, outcome.error or "invalid value")
        r.store.count_call(kind)
        r.store.apply(kind, group, entity_id, clean, half.state.now_ms())
        return {"total": 1, "updated": 1, "failed": 0, "missing": [], "errors": [], "kind": kind}

    catalog_routes: list[BaseRoute] = []
    for kind in CATALOG_KINDS:
        catalog_routes.append(route(f"/api/v1/{kind}", catalog_list(kind)))
        if kind != "report":
            catalog_routes.append(route(f"/api/v1/{kind}/{{id}}", catalog_one(kind)))

    return [
        route("/api/v1/token/verify", verify),
        route("/api/v1/aggregation", aggregation, methods=("POST",)),
        # Before the lookup, whose path converter would take "/history" into the id.
        route("/api/v1/visitor/{id:path}/history", history),
        route("/api/v1/visitor/{id:path}", visitor),
        route("/api/v1/account/{id:path}", account),
        route("/api/v1/report/{id}/results.json", report_json),
        route("/api/v1/report/{id}/results.csv", report_csv),
        route("/api/v1/report/{id}", catalog_one("report")),
        *catalog_routes,
        route("/api/v1/metadata/schema/{kind}", schema),
        route("/api/v1/metadata/{kind}/{group}/value", bulk_write, write=True, methods=("POST",)),
        route(
            "/api/v1/metadata/{kind}/{group}/value/bulk",
            bulk_write,
            write=True,
            methods=("POST",),
        ),
        route(
            "/api/v1/metadata/{kind}/{group}/value/{id}/{field}",
            field_value,
            methods=("GET", "PUT"),
        ),
    ]


def _records(kind: str, body: Any) -> list[tuple[str, dict[str, Any]]]:
    """A bulk write body checked for shape (400 on the first malformed record)."""
    if not isinstance(body, list):
        raise HTTPFailure(400, "The request body must be a JSON array of records")
    if len(body) > MAX_WRITE_RECORDS:
        raise HTTPFailure(
            400,
            f"Too many records: {len(body)} in one call; send at most "
            f"{MAX_WRITE_RECORDS} per request (the sandbox's cap)",
        )
    id_key = ID_KEYS[kind]
    out = []
    for number, item in enumerate(body):
        if not isinstance(item, dict):
            raise HTTPFailure(400, f"Record {number} is not a JSON object")
        entity_id = item.get(id_key)
        if isinstance(entity_id, int) and not isinstance(entity_id, bool):
            entity_id = str(entity_id)
        if not isinstance(entity_id, str) or not entity_id:
            raise HTTPFailure(400, f"Record {number} has no {id_key}")
        values = item.get("values")
        if not isinstance(values, dict):
            raise HTTPFailure(400, f"Record {number} has no values object")
        out.append((entity_id, values))
    return out


# ------------------------------------------------------------------------ control routes


class _ControlError(ValueError):
    pass


def _moment_ms(value: Any, default: int) -> int:
    """Epoch ms or an ISO-8601 string (UTC when naive), as the core control API takes."""
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise _ControlError(f"cannot parse time {value!r}: use ISO-8601 or epoch ms") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _control_routes(half: PendoHalf) -> list[BaseRoute]:
    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except (_ControlError, ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return endpoint

    def region_of(name: Any) -> str:
        if name not in PENDO_REGIONS:
            raise _ControlError(f"unknown region {name!r}; use one of {list(PENDO_REGIONS)}")
        return name

    async def new_account(request: Request) -> Response:
        """Stage a new account, with visitors that start being active at ``from`` (now)."""
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as exc:
            raise _ControlError("the body must be a JSON object") from exc
        if not isinstance(body, dict):
            raise _ControlError("the body must be a JSON object")
        region = region_of(body.get("region", "us"))
        return ORJSONResponse(await run_in_threadpool(_stage_account, region, body))

    def _stage_account(region: str, body: dict[str, Any]) -> dict[str, Any]:
        r = half.region(region)
        store, company = r.store, r.company
        now = half.state.now_ms()
        active_from = _moment_ms(body.get("from"), now)
        number = len(store.created("account"))
        account_id = str(body.get("account_id") or company.account_id(company.n_accounts + number))
        view = half.provider(region).view
        if view.exists("account", account_id):
            raise _ControlError(f"account {account_id!r} already exists")
        metadata = body.get("metadata") or {}
        name = body.get("name") or f"New Customer {number + 1}"
        agent = {
            "name": name,
            "plan": body.get("plan", "starter"),
            "industry": body.get("industry", "software"),
            "domain": name.lower().replace(" ", "-") + ".example.com",
            **(metadata.get("agent") or {}),
        }
        checked = {}
        for group, values in (("agent", agent), ("custom", metadata.get("custom") or {})):
            clean, outcome = store.check("account", group, values)
            if outcome.status == "error":
                raise _ControlError(f"{group}.{outcome.field}: {outcome.error}")
            checked[group] = clean
        visitors = body.get("visitors", 2)
        if isinstance(visitors, int) and not isinstance(visitors, bool):
            first = len(store.created("visitor"))
            visitors = [company.visitor_id(company.n_visitors + first + k) for k in range(visitors)]
        if not isinstance(visitors, list) or not all(isinstance(v, str) for v in visitors):
            raise _ControlError("visitors must be a count or a list of visitor ids")
        for vid in visitors:
            if view.exists("visitor", vid):
                raise _ControlError(f"visitor {vid!r} already exists")
        store.create("account", account_id, now)
        for group, clean in checked.items():
            store.apply("account", group, account_id, clean, now)
        for n, vid in enumerate(visitors):
            store.create("visitor", vid, now, account_id=account_id, active_from_ms=active_from)
            store.apply(
                "visitor",
                "agent",
                vid,
                {
                    "email": f"user{n + 1}@{agent['domain']}",
                    "name": f"New User {n + 1}",
                    "role": "admin" if n == 0 else "analyst",
                    "language": "en_US",
                },
                now,
            )
        return {
            "region": region,
            "account_id": account_id,
            "visitor_ids": visitors,
            "active_from_ms": active_from,
            "account": view.account_json(account_id),
        }

    async def store_summary(request: Request) -> Response:
        region = region_of(request.path_params["region"])
        if request.method == "DELETE":
            half.stores[region].clear()
        return ORJSONResponse({"region": region, **half.stores[region].summary()})

    async def stored_metadata(request: Request) -> Response:
        region = region_of(request.path_params["region"])
        kind, entity_id = request.path_params["kind"], request.path_params["id"]
        if kind not in KINDS:
            raise _ControlError(f"unknown kind {kind!r}; use visitor or account")
        store = half.stores[region]
        created = store.created_entity(kind, entity_id)
        updated = store.updated_at(kind, entity_id)
        if updated is None:
            return JSONResponse(
                {"error": f"nothing stored for {kind} {entity_id!r}"}, status_code=404
            )
        return ORJSONResponse(
            {
                "region": region,
                "kind": kind,
                "id": entity_id,
                "custom": store.values(kind, "custom", entity_id),
                "agent": store.values(kind, "agent", entity_id),
                "created": created is not None,
                "lastupdated": updated,
            }
        )

    async def edit_catalog(request: Request) -> Response:
        """Change a page, feature, guide or track type (``{"name": ..., "state": ...}``), as
        someone editing it in Pendo would: the catalog serves the new version from now."""
        region = region_of(request.path_params["region"])
        kind, obj_id = request.path_params["kind"], request.path_params["id"]
        body = orjson.loads(await request.body() or b"{}")
        if not isinstance(body, dict) or not body:
            raise _ControlError('the body must be a JSON object such as {"name": "New name"}')
        catalog = half.region(region).catalog
        if obj_id not in catalog.by_id.get(kind, {}):
            return JSONResponse({"error": f"no {kind} {obj_id!r}"}, status_code=404)
        return ORJSONResponse(catalog.edit(kind, obj_id, body, half.state.now_ms()))

    return [
        Route("/catalog/{region}/{kind}/{id}", guarded(edit_catalog), methods=["POST"]),
        Route("/accounts", guarded(new_account), methods=["POST"]),
        Route("/store/{region}", guarded(store_summary), methods=["GET", "DELETE"]),
        Route("/metadata/{region}/{kind}/{id:path}", guarded(stored_metadata)),
    ]


def build_pendo(state: SandboxState) -> SandboxHalf:
    """The Pendo half: per-region routes, control routes and limit counters."""
    half = PendoHalf(state)
    return SandboxHalf(
        name="pendo",
        regions=PENDO_REGIONS,
        routes=lambda region: _region_routes(half, region),
        control_routes=_control_routes(half),
        describe=half.describe,
    )
