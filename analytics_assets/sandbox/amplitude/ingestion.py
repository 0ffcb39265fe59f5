"""Event ingestion: ``/2/httpapi``, ``/batch``, ``/identify``, ``/groupidentify`` (contract §1).

Validation answers the documented 400 bodies (indexes into ``events``), limits answer
413 (size, count) and 429 (per device and per user throughput, with the documented
body), and accepted events are stored on the tenant in the export format. They become
visible to the export and the Dashboard once ``processing_lag_hours`` have passed.
Nothing of a refused request is ingested (the official SDK resends the rest).
"""

from __future__ import annotations

import gzip
import uuid
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from analytics_assets.sandbox.amplitude.auth import ingestion_key_ok
from analytics_assets.sandbox.amplitude.records import ts_string
from analytics_assets.sandbox.amplitude.store import ALL_USER_OPS, USER_OPS, IngestedEvent
from analytics_assets.sandbox.limits import KeyedLimiters, SlidingWindowBudget

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

MB = 1024 * 1024
HTTPAPI_MAX_BYTES = 1 * MB
BATCH_MAX_BYTES = 20 * MB
MAX_EVENTS = 2000
MAX_STRING = 1024
MAX_GROUP_IDENTIFIES = 1024
BATCH_DAILY_QUOTA = 500_000
DEFAULT_MIN_ID_LENGTH = 5
REJECTED_IDS = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)
HTML = "text/html;charset=utf-8"
STRINGS = (
    "insert_id",
    "app_version",
    "platform",
    "os_name",
    "os_version",
    "device_brand",
    "device_manufacturer",
    "device_model",
    "carrier",
    "country",
    "region",
    "city",
    "dma",
    "language",
    "idfa",
    "idfv",
    "adid",
    "android_id",
    "partner_id",
)
NUMERIC = ("price", "quantity", "revenue", "location_lat", "location_lng")
OBJECTS = ("event_properties", "user_properties", "groups", "group_properties", "plan")
# What an identification may carry into its $identify row (the Identify API's keys, and
# insert_id: see ``Ingestor.identify``).
IDENTIFY_FIELDS = (
    "insert_id",
    "user_id",
    "device_id",
    "user_properties",
    "groups",
    "app_version",
    "platform",
    "os_name",
    "os_version",
    "device_brand",
    "device_manufacturer",
    "device_model",
    "carrier",
    "country",
    "region",
    "city",
    "dma",
    "language",
)


def _multipart_fields(raw: bytes, content_type: str) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    fields = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                fields[str(name)] = payload.decode("utf-8", "replace")
    return fields


class BodyError(Exception):
    """A request that is refused as a whole (answered with ``response``)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _json(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _too_large() -> BodyError:
    return BodyError(_json(413, {"code": 413, "error": "Payload too large"}))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, gunzipped when sent with ``Content-Encoding: gzip``.

    The size limit applies after decompression (as the newest docs count it); a
    declared Content-Length above 4× the limit is refused before reading.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > 4 * max_bytes:
        raise _too_large()
    raw = await request.body()
    if "gzip" in request.headers.get("content-encoding", "").lower():
        try:
            d = zlib.decompressobj(wbits=47)  # gzip or zlib header
            raw = d.decompress(raw, max_bytes + 1)
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            raise BodyError(
                _json(400, {"code": 400, "error": "Invalid JSON request body"})
            ) from exc
    if len(raw) > max_bytes:
        raise _too_large()
    return raw


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() not in REJECTED_IDS


def validate_events(events: list[Any], min_id_length: int) -> dict[str, dict[str, list[int]]]:
    """The three per-event problem maps of the 400 body (empty maps when all is well)."""
    missing: dict[str, list[int]] = {}
    invalid: dict[str, list[int]] = {}
    lengths: dict[str, list[int]] = {}

    def add(target: dict[str, list[int]], key: str, index: int) -> None:
        target.setdefault(key, []).append(index)

    for i, event in enumerate(events):
        if not isinstance(event, dict):
            add(invalid, "event", i)
            continue
        event_type = event.get("event_type")
        if event_type is None or event_type == "":
            add(missing, "event_type", i)
        elif not isinstance(event_type, str) or len(event_type) > MAX_STRING:
            add(invalid, "event_type", i)
        ids = {k: event.get(k) for k in ("user_id", "device_id")}
        present = {k: v for k, v in ids.items() if v is not None and v != ""}
        if not present:
            add(missing, "user_id", i)  # one of user_id / device_id is required
        for key, value in present.items():
            if not _valid_id(value) or len(value) > MAX_STRING:
                add(invalid, key, i)
            elif len(value) < min_id_length:
                add(lengths, key, i)
        if "time" in event and (
            not isinstance(event["time"], int) or isinstance(event["time"], bool)
        ):
            add(invalid, "time", i)
        for key in ("session_id", "event_id"):
            value = event.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                add(invalid, key, i)
        for key in NUMERIC:
            value = event.get(key)
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                add(invalid, key, i)
        for key in OBJECTS:
            value = event.get(key)
            if value is not None and not isinstance(value, dict):
                add(invalid, key, i)
        for key in STRINGS:
            value = event.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_STRING):
                add(invalid, key, i)
        groups = event.get("groups")
        if isinstance(groups, dict):
            values = sum(len(v) if isinstance(v, list) else 1 for v in groups.values())
            if len(groups) > 5 or values > 10:
                add(invalid, "groups", i)
    return {
        "events_with_missing_fields": missing,
        "events_with_invalid_fields": invalid,
        "events_with_invalid_id_lengths": lengths,
    }


def _values_of(value: Any) -> list[str]:
    """A group's value(s) as strings: one value or a list of them."""
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v is not None and v != ""]


def _groups(value: Any) -> dict[str, list[str]]:
    """An event's or identification's ``groups``: type -> its values (as strings)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): vs for k, v in value.items() if (vs := _values_of(v))}


def _revenue(event: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Revenue of an event and the ``$``-prefixed properties the export shows for it."""
    props: dict[str, Any] = {}
    price, quantity, revenue = event.get("price"), event.get("quantity"), event.get("revenue")
    if price is not None:
        quantity = 1 if quantity is None else quantity
        revenue = price * quantity
        props.update({"$price": price, "$quantity": quantity})
    if revenue is None:
        return 0.0, props
    props["$revenue"] = revenue
    for key, name in (
        ("productId", "$productId"),
        ("revenueType", "$revenueType"),
        ("currency", "$currency"),
    ):
        if event.get(key) is not None:
            props[name] = event[key]
    return float(revenue), props


class Ingestor:
    """The ingestion endpoints of one tenant."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.tenant = tenant
        window = 86_400 * tenant.limits.window_scale
        self.daily_devices = KeyedLimiters(lambda: SlidingWindowBudget(BATCH_DAILY_QUOTA, window))
        self.daily_users = KeyedLimiters(lambda: SlidingWindowBudget(BATCH_DAILY_QUOTA, window))

    # ----- events ----------------------------------------------------------------------------

    async def httpapi(self, request: Request) -> Response:
        return await self._events(request, batch=False)

    async def batch(self, request: Request) -> Response:
        return await self._events(request, batch=True)

    async def _events(self, request: Request, batch: bool) -> Response:
        try:
            raw = await read_body(request, BATCH_MAX_BYTES if batch else HTTPAPI_MAX_BYTES)
        except BodyError as exc:
            return exc.response
        if not raw.strip():
            return _json(400, {"code": 400, "error": "Missing request body"})
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _json(400, {"code": 400, "error": "Invalid JSON request body"})
        if not isinstance(body, dict):
            return _json(400, {"code": 400, "error": "Invalid JSON request body"})
        for field in ("api_key", "events"):
            if field not in body or body[field] in (None, ""):
                return _json(
                    400,
                    {
                        "code": 400,
                        "error": "Request missing required field",
                        "missing_field": field,
                    },
                )
        if not ingestion_key_ok(self.tenant, body["api_key"]):
            return _json(400, {"code": 400, "error": f"Invalid API key: {body['api_key']}"})
        events = body["events"]
        if not isinstance(events, list):
            return _json(400, {"code": 400, "error": "Invalid event JSON"})
        if len(events) > MAX_EVENTS:
            return _too_large().response
        options = body.get("options") or {}
        min_len = options.get("min_id_length") if isinstance(options, dict) else None
        if not isinstance(min_len, int) or isinstance(min_len, bool) or min_len < 1:
            min_len = DEFAULT_MIN_ID_LENGTH
        problems = validate_events(events, min_len)
        if any(problems.values()):
            error = (
                "Request missing required field"
                if problems["events_with_missing_fields"]
                else "Invalid field values on some events"
            )
            return _json(400, {"code": 400, "error": error, **problems})
        throttled = self._throttle(events, batch)
        if throttled is not None:
            return throttled
        now = self.tenant.now_ms()
        path = "/batch" if batch else "/2/httpapi"
        accepted = []
        for event in events:
            stored = self._ingest_event(event, now, path, request)
            if stored is not None:
                accepted.append(stored)
        self.tenant.ingested.extend(accepted)
        return _json(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(raw),
                "server_upload_time": now,
            },
        )

    def _throttle(self, events: list[dict[str, Any]], batch: bool) -> Response | None:
        """429 when a device or user goes above its events-per-second allowance."""
        t = self.tenant
        eps = t.limits.batch_eps_per_device if batch else t.limits.ingestion_eps_per_device
        device_limits = t.batch_devices if batch else t.httpapi_devices
        user_limits = t.batch_users if batch else t.httpapi_users
        per_device: dict[str, list[int]] = {}
        per_user: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            if event.get("device_id"):
                per_device.setdefault(event["device_id"], []).append(i)
            if event.get("user_id"):
                per_user.setdefault(event["user_id"], []).append(i)
        throttled_devices = {
            d: len(ix)
            for d, ix in per_device.items()
            if not device_limits.get(d).try_take(len(ix)).allowed
        }
        throttled_users = {
            u: len(ix)
            for u, ix in per_user.items()
            if not user_limits.get(u).try_take(len(ix)).allowed
        }
        quota_devices: dict[str, int] = {}
        quota_users: dict[str, int] = {}
        if batch:
            for d, ix in per_device.items():
                budget = self.daily_devices.get(d)
                if not budget.try_spend(len(ix)).allowed:
                    quota_devices[d] = int(budget.spent()) + len(ix)
            for u, ix in per_user.items():
                budget = self.daily_users.get(u)
                if not budget.try_spend(len(ix)).allowed:
                    quota_users[u] = int(budget.spent()) + len(ix)
        if not (throttled_devices or throttled_users or quota_devices or quota_users):
            return None
        hit = set()
        for d in throttled_devices:
            hit.update(per_device[d])
        for u in throttled_users:
            hit.update(per_user[u])
        body: dict[str, Any] = {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": int(eps),
            "throttled_devices": throttled_devices,
            "throttled_users": throttled_users,
            "throttled_events": sorted(hit),
        }
        if batch:
            body["exceeded_daily_quota_users"] = quota_users
            body["exceeded_daily_quota_devices"] = quota_devices
        return _json(429, body)

    def _ingest_event(
        self,
        event: dict[str, Any],
        now: int,
        path: str,
        request: Request,
        *,
        user: bool = True,
        dedup_key: str | None = None,
    ) -> IngestedEvent | None:
        """One event (or identify row) in the export format; None when deduplicated.

        ``$identify`` rows update the user's properties and, with ``groups``, assign
        user-level groups (what the SDKs' ``set_group`` sends); ``$groupidentify`` rows
        update the listed groups' properties. Both are written to the export, as the
        service's raw data has them, but are not counted as events. ``user=False`` is
        the ``/groupidentify`` API's row: it belongs to no user. ``dedup_key`` replaces the
        device (or user) as the owner of the ``insert_id`` (a group has neither).
        """
        t = self.tenant
        user_id = event.get("user_id") or None
        device_id = event.get("device_id") or None
        insert_id = event.get("insert_id")
        if insert_id is not None and not t.dedup.first_time(
            dedup_key or device_id or f"u:{user_id}", insert_id, now
        ):
            return None  # same device_id + insert_id within 7 days: ignored
        amp = t.users.resolve(user_id, device_id, now) if user else None
        event_time = event.get("time", now)
        event_type = event["event_type"]
        identify = event_type == "$identify"
        group_identify = event_type == "$groupidentify"
        user_update = event.get("user_properties") or {}
        if user_update and amp is not None and not group_identify:
            # Amplitude applies property updates in processing order: stamp them now.
            t.user_props.apply(amp, user_update, now)
        own_raw = event.get("groups") if isinstance(event.get("groups"), dict) else {}
        own_groups = _groups(own_raw)
        if group_identify:
            # "When event_type is $groupidentify, [group_properties] ... tied to the groups
            # listed in the groups field"; for other event types it is ignored.
            for gtype, values in own_groups.items():
                for value in values:
                    t.group_props.apply(gtype, value, event.get("group_properties") or {}, now)
        elif identify and amp is not None:
            t.user_groups.assign(amp, {k: v for k, v in own_raw.items() if k in own_groups}, now)
        counted = not (identify or group_identify)
        if counted:
            t.events.catalog.type_index(event_type, create=True)
        revenue, revenue_props = _revenue(event) if counted else (0.0, {})
        # The user's groups (assigned by identify) ride on every later event; the event's
        # own groups win for the same type (event-level groups do not persist).
        raw_groups = dict(own_raw)
        if amp is not None and not group_identify:
            raw_groups = {**t.user_groups.groups(amp, now), **raw_groups}
        groups = _groups(raw_groups)
        group_props = {
            gtype: {v: t.group_props.get(gtype, v) or {} for v in values}
            for gtype, values in groups.items()
        }
        if counted and event.get("group_properties"):
            group_props = {**group_props, **event["group_properties"]}
        ip = event.get("ip")
        if ip == "$remote" or ip is None:
            ip = request.client.host if request.client else None
        visitor = t.events.visitor_of(amp) if amp is not None else None
        record_user = t.users.record(amp) if amp is not None else None
        created = (
            int(t.events.catalog.signup_ms[visitor])
            if visitor is not None
            else record_user.first_seen_ms
            if record_user
            else now
        )
        record = {
            "$insert_id": insert_id,
            "$insert_key": None,
            "$schema": None,
            "adid": event.get("adid"),
            "amplitude_attribution_ids": None,
            "amplitude_event_type": None,
            "amplitude_id": amp,
            "app": t.project_id,
            "city": event.get("city"),
            "client_event_time": ts_string(event_time),
            "client_upload_time": ts_string(now),
            "country": event.get("country"),
            "data": {
                "path": path,
                "user_properties_updated": bool(user_update),
                "group_first_event": {},
                "group_ids": {},
            },
            "data_type": "event",
            "device_brand": event.get("device_brand"),
            "device_carrier": event.get("carrier"),
            "device_family": None,
            "device_id": device_id,
            "device_manufacturer": event.get("device_manufacturer"),
            "device_model": event.get("device_model"),
            "device_type": None,
            "dma": event.get("dma"),
            "event_id": event.get("event_id"),
            "event_properties": {**(event.get("event_properties") or {}), **revenue_props},
            "event_time": ts_string(event_time),
            "event_type": event_type,
            "global_user_properties": {},
            "group_properties": group_props,
            "groups": {k: v for k, v in raw_groups.items() if k in groups},
            "idfa": event.get("idfa"),
            "ip_address": ip,
            "is_attribution_event": False,
            "language": event.get("language"),
            "library": event.get("library") or "http/2.0",
            "location_lat": event.get("location_lat"),
            "location_lng": event.get("location_lng"),
            "os_name": event.get("os_name"),
            "os_version": event.get("os_version"),
            "partner_id": event.get("partner_id"),
            "paying": None,
            "plan": event.get("plan") or {},
            "platform": event.get("platform"),
            "processed_time": ts_string(now),
            "region": event.get("region"),
            "sample_rate": None,
            "server_received_time": ts_string(now),
            "server_upload_time": ts_string(now),
            "session_id": event.get("session_id", -1),
            "source_id": None,
            "start_version": None,
            "user_creation_time": ts_string(created) if amp is not None else None,
            "user_id": user_id,
            "user_properties": t.events.user_properties(amp, now) if amp is not None else {},
            "uuid": str(uuid.uuid4()),
            "version_name": event.get("app_version"),
        }
        return IngestedEvent(
            record,
            -1 if amp is None else amp,
            event_type,
            int(event_time),
            now,
            device_id,
            user_id,
            revenue,
            counted,
        )

    # ----- identify ---------------------------------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str]:
        """Form fields from a query (GET), urlencoded or multipart body.

        Parsed here rather than with ``request.form()``, which needs python-multipart.
        """
        if request.method == "GET":
            return dict(request.query_params)
        raw = await read_body(request, HTTPAPI_MAX_BYTES)
        content_type = request.headers.get("content-type", "")
        if "multipart/form-data" in content_type:
            return _multipart_fields(raw, content_type)
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    async def _identifications(self, request: Request) -> list[dict[str, Any]] | Response:
        try:
            form = await self._form(request)
        except BodyError as exc:
            return exc.response
        if not ingestion_key_ok(self.tenant, form.get("api_key")):
            return PlainTextResponse("invalid_api_key", status_code=400, media_type=HTML)
        try:
            parsed = orjson.loads(form.get("identification") or "")
        except orjson.JSONDecodeError:
            return PlainTextResponse("missing_event", status_code=400, media_type=HTML)
        items = parsed if isinstance(parsed, list) else [parsed]
        if not items or not all(isinstance(i, dict) for i in items):
            return PlainTextResponse("missing_event", status_code=400, media_type=HTML)
        return items

    async def identify(self, request: Request) -> Response:
        # Identifications become $identify rows and, like the HTTP V2 API's events (which
        # the SDKs' identify calls are), a repeat of the same user or device + insert_id
        # within 7 days is ignored: a retried batch that already landed changes nothing.
        # (The Identify API's page lists no insert_id; the service turns identifications
        # into $identify events, whose insert_id the HTTP V2 page documents.)
        items = await self._identifications(request)
        if isinstance(items, Response):
            return items
        t = self.tenant
        for item in items:
            ids = [item.get(k) for k in ("user_id", "device_id") if item.get(k)]
            props = item.get("user_properties", {})
            if not ids or not all(_valid_id(i) for i in ids) or not isinstance(props, dict):
                return PlainTextResponse("missing_event", status_code=400, media_type=HTML)
            ops = [k for k in props if k in ALL_USER_OPS]
            if ops and len(ops) != len(props):  # ops and plain keys can't be mixed
                return PlainTextResponse("missing_event", status_code=400, media_type=HTML)
        throttled = self._throttle(items, batch=False)
        if throttled is not None:
            return throttled
        now = t.now_ms()
        rows = []
        for item in items:
            # Each identification is an $identify row of the export (as the SDKs' identify
            # events are): it applies the properties, and its groups become the user's.
            fields = {k: item[k] for k in IDENTIFY_FIELDS if item.get(k) is not None}
            row = self._ingest_event(
                {**fields, "event_type": "$identify", "time": now, "library": "http/1.0"},
                now,
                "/identify",
                request,
            )
            extra = {k: item[k] for k in ("paying", "start_version") if k in item}
            if row is not None:
                if extra:
                    t.user_props.apply(row.amplitude_id, {"$set": extra}, now)
                    row.record["user_properties"] = t.events.user_properties(row.amplitude_id, now)
                rows.append(row)
        t.ingested.extend(rows)
        return PlainTextResponse("success", media_type=HTML)

    async def groupidentify(self, request: Request) -> Response:
        items = await self._identifications(request)
        if isinstance(items, Response):
            return items
        if len(items) > MAX_GROUP_IDENTIFIES:
            return PlainTextResponse("too many group identifies", status_code=400, media_type=HTML)
        for item in items:
            props = item.get("group_properties", {})
            if (
                not isinstance(item.get("group_type"), str)
                or item.get("group_value") in (None, "")
                or not isinstance(props, dict)
                or len(props) > MAX_GROUP_IDENTIFIES
            ):
                return PlainTextResponse("missing_event", status_code=400, media_type=HTML)
            unknown = [k for k in props if k.startswith("$") and k not in USER_OPS]
            if unknown:
                return PlainTextResponse("missing_event", status_code=400, media_type=HTML)
        now = self.tenant.now_ms()
        rows = []
        for item in items:
            # A $groupidentify row of the export per identification; it belongs to no user,
            # so an insert_id is deduplicated per group, as identify's per user.
            group = f"g:{item['group_type']}:{item['group_value']}"
            row = self._ingest_event(
                {
                    "event_type": "$groupidentify",
                    "groups": {item["group_type"]: str(item["group_value"])},
                    "group_properties": item.get("group_properties") or {},
                    "time": now,
                    "library": "http/1.0",
                    **({"insert_id": item["insert_id"]} if item.get("insert_id") else {}),
                },
                now,
                "/groupidentify",
                request,
                user=False,
                dedup_key=group,
            )
            if row is not None:
                rows.append(row)
        self.tenant.ingested.extend(rows)
        return PlainTextResponse("success", media_type=HTML)


def ingestion_routes(tenant: AmplitudeTenant) -> list[Route]:
    ingestor = Ingestor(tenant)
    return [
        Route("/2/httpapi", ingestor.httpapi, methods=["POST"]),
        Route("/batch", ingestor.batch, methods=["POST"]),
        Route("/identify", ingestor.identify, methods=["GET", "POST"]),
        Route("/groupidentify", ingestor.groupidentify, methods=["GET", "POST"]),
    ]
