"""Pendo REST API v1 client (plain Python; the contract is ``shared/api/pendo.md``).

Every call goes through the shared :class:`~analytics_assets.http.transport.Transport`: one
:class:`~analytics_assets.http.limits.RateFinder` (Pendo publishes no rate, so it finds the
server's from the 429s and holds just under it), retries with backoff and jitter, typed
errors, and the integration key redacted everywhere.

Aggregation results are parsed block by block as the bytes arrive (``_row_blocks``: orjson
for rows as dicts, pyarrow's JSON reader for Arrow batches), so a result of hundreds of
thousands of rows never sits in memory at once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from urllib.parse import quote as url_quote
from zoneinfo import ZoneInfo

import httpx
import ijson
import orjson

from analytics_assets.http.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    StreamInterruptedError,
    TransportError,
)
from analytics_assets.http.limits import Limiter, RateFinder
from analytics_assets.http.transport import (
    Secret,
    Transport,
    TransportConfig,
    TransportStats,
    is_transport_fault,
    reveal,
)
from analytics_assets.pendo.pipeline import Pipeline

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "PENDO_HOSTS",
    "AggregationLimitError",
    "AggregationStreamError",
    "BatchOutcome",
    "FieldSchema",
    "MetadataRecord",
    "PendoClient",
    "TokenInfo",
    "field_type_of",
    "is_aggregation_limit_error",
    "may_fit_narrower",
    "resolve_region",
    "split_windows",
]

logger = logging.getLogger("analytics_assets.pendo.client")
T = TypeVar("T")

#: API base of each Pendo region (contract §1). ``jp`` is an alias of ``jpn``.
PENDO_HOSTS: dict[str, str] = {
    "us": "https://app.pendo.io",
    "us1": "https://us1.app.pendo.io",
    "eu": "https://app.eu.pendo.io",
    "jpn": "https://app.jpn.pendo.io",
    "jp": "https://app.jpn.pendo.io",
    "au": "https://app.au.pendo.io",
}
_REGION_ALIASES = {"jp": "jpn"}

MetadataKind = Literal["visitor", "account"]
_KINDS = ("visitor", "account")
_ID_KEYS = {"visitor": "visitorId", "account": "accountId"}
_WRITE_GROUPS = ("custom", "agent")

AGGREGATION_PATH = "/api/v1/aggregation"
MAX_BATCH = 1000
WRITE_KEY_HINT = (
    "This integration key is read-only; use a read-write integration key "
    "(PENDO_WRITE_INTEGRATION_KEY: Settings > Integrations > Integration Keys, "
    "'Allow Write Access')."
)
# Statuses with which an aggregation says "too big or too slow": resending the same query
# hits the same cap, so they are not retried; split the time window instead.
_AGG_LIMIT_STATUSES = (408, 413)
_AGG_LIMIT_TEXT = re.compile(
    r"timed? ?out|too large|exceeded|size limit|time limit|out of memory", re.IGNORECASE
)


# --- regions -------------------------------------------------------------------------------


def resolve_region(key: str, region: str | None = None) -> tuple[str, str]:
    """(region, key to send) for an integration key and an optional region.

    Pendo keys may end in a region suffix (``…key.eu``): TAP picks EU from it and sends the
    whole string; Pendo's own Zendesk app (ZEN) strips it. We send the key **unchanged**: it
    is the string Pendo issued, TAP's production use shows the full form is accepted, and a
    key whose suffix is not a region is never mangled. The suffix only picks the region when
    none is given; an explicit region that contradicts it is a configuration error.
    """
    head, dot, suffix = key.rpartition(".")
    suffix_region = suffix.lower() if dot and head and suffix.lower() in PENDO_HOSTS else None
    if suffix_region is not None:
        suffix_region = _REGION_ALIASES.get(suffix_region, suffix_region)
    if region is None:
        return suffix_region or "us", key
    wanted = region.lower()
    if wanted not in PENDO_HOSTS:
        raise ConfigurationError(
            f"unknown Pendo region {region!r}; use one of us, us1, eu, jpn (jp), au, "
            "or pass base_url=",
            service="pendo",
        )
    wanted = _REGION_ALIASES.get(wanted, wanted)
    if suffix_region is not None and suffix_region != wanted and suffix_region != "us":
        raise ConfigurationError(
            f"the integration key is for region {suffix_region!r} but region={region!r} was "
            "given; a key works only on its own region's host",
            service="pendo",
        )
    return wanted, key


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenInfo:
    """What ``GET /api/v1/token/verify`` says about the key."""

    valid: bool
    write_access: bool


@dataclass(frozen=True)
class MetadataRecord:
    """One visitor's or account's field values to write (``values``: field -> value)."""

    id: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class BatchOutcome:
    """What the server did with one batch of a bulk metadata write.

    ``updated_ids`` = sent ids minus ``missing`` minus ids named in ``errors``; ``failed``
    maps every id not updated to the reason (missing ids included, so ``failed`` matches the
    server's ``failed`` count); ``unattributed_errors`` are server errors naming no id.
    """

    index: int
    records: tuple[MetadataRecord, ...]
    updated_ids: tuple[str, ...]
    failed: Mapping[str, str]
    missing: tuple[str, ...]
    total: int
    raw: Mapping[str, Any]
    unattributed_errors: tuple[Any, ...] = ()

    @property
    def sent_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.records)

    @property
    def ok(self) -> bool:
        """True when every record of the batch was updated."""
        return not self.failed and not self.unattributed_errors


FieldType = Literal["text", "number", "boolean", "date"]

_PENDO_TYPES: dict[str, FieldType] = {
    "string": "text",
    "text": "text",
    "boolean": "boolean",
    "bool": "boolean",
    "integer": "number",
    "int": "number",
    "float": "number",
    "number": "number",
    "double": "number",
    "time": "date",
    "date": "date",
    "datetime": "date",
    "timestamp": "date",
}


def field_type_of(pendo_type: str | None) -> FieldType:
    """Pendo's schema ``Type`` as text, number, boolean or date (``""``/unknown -> text)."""
    return _PENDO_TYPES.get((pendo_type or "").strip().lower(), "text")


@dataclass(frozen=True)
class FieldSchema:
    """One metadata field from ``GET /api/v1/metadata/schema/{kind}``."""

    type: FieldType
    pendo_type: str
    display_name: str | None = None
    element_type: str | None = None
    is_hidden: bool = False
    is_deleted: bool = False
    is_calculated: bool = False
    is_per_app: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, descriptor: Mapping[str, Any]) -> FieldSchema:
        pendo_type = str(descriptor.get("Type") or descriptor.get("type") or "")
        return cls(
            type=field_type_of(pendo_type),
            pendo_type=pendo_type,
            display_name=descriptor.get("DisplayName") or descriptor.get("displayName"),
            element_type=descriptor.get("ElementType") or descriptor.get("elementType") or None,
            is_hidden=bool(descriptor.get("isHidden")),
            is_deleted=bool(descriptor.get("isDeleted")),
            is_calculated=bool(descriptor.get("isCalculated")),
            is_per_app=bool(descriptor.get("isPerApp")),
            raw=dict(descriptor),
        )


# --- aggregation errors and windows --------------------------------------------------------


class AggregationLimitError(BadRequestError):
    """The aggregation hit Pendo's runtime or size cap (5 minutes / 4 GB): narrow the range."""

    service_hints: ClassVar[Mapping[str, str]] = {}
    default_hint = (
        "The aggregation ran into Pendo's time or size cap; split the time range into smaller "
        "windows (PendoClient.aggregate_windows does this) or aggregate more before returning."
    )


class AggregationStreamError(StreamInterruptedError):
    """An aggregation's response broke after rows had been handed out.

    It cannot be resumed without duplicating rows, so run the same window again from the
    start (discard the ``rows_yielded`` rows already received, or replace the window's
    partition). ``window`` is ``(start_ms, end_ms)`` when raised by ``aggregate_windows``.
    ``rows_yielded`` equals ``items_yielded`` of the transport's error.
    """

    service_hints: ClassVar[Mapping[str, str]] = {}
    default_hint = (
        "The connection broke mid-result; discard this window's rows and run the window again "
        "(a smaller window makes this less likely)."
    )

    def __init__(self, summary: str, *, rows_yielded: int = 0, **kwargs: Any) -> None:
        self.rows_yielded = rows_yielded
        self.window: tuple[int, int] | None = None
        super().__init__(summary, items_yielded=rows_yielded, **kwargs)


def is_aggregation_limit_error(exc: BaseException) -> bool:
    """True for errors that a narrower time window may avoid: Pendo's time/size cap (408,
    413, or a body saying so) and gateway timeouts (504) after their retries."""
    if isinstance(exc, AggregationLimitError):
        return True
    if isinstance(exc, AggregationStreamError):
        return False
    if isinstance(exc, ApiError):
        if exc.status in (408, 413, 504):
            return True
        return exc.status is not None and bool(_AGG_LIMIT_TEXT.search(exc.body_excerpt or ""))
    return False


def may_fit_narrower(exc: BaseException) -> bool:
    """True for an aggregation error that a narrower time window may avoid: Pendo's time or
    size cap (:func:`is_aggregation_limit_error`), a read that timed out, or an answer whose
    stream broke, after rows or before any (a cap cutting a response under way looks so).
    False for a host that could not be reached, a refused key or a bad request: those fail
    the same way however narrow the window."""
    if is_aggregation_limit_error(exc) or isinstance(exc, AggregationStreamError):
        return True
    broke = (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout)
    return isinstance(exc, TransportError) and isinstance(exc.__cause__, broke)


Window = Literal["day", "hour"] | timedelta
_HOUR_MS = 3_600_000


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return ZoneInfo("UTC")
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _local_midnight_after(ms: int, days: int, zone: tzinfo) -> int:
    day = datetime.fromtimestamp(ms / 1000, zone).date() + timedelta(days=days)
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    return int(midnight.timestamp() * 1000)


def _next_boundary(ms: int, window: Window, zone: tzinfo) -> int:
    if window == "hour":
        return ms - ms % _HOUR_MS + _HOUR_MS
    if window == "day":
        return _local_midnight_after(ms, 1, zone)
    if not isinstance(window, timedelta) or window <= timedelta(0):
        raise ValueError(f"window must be 'day', 'hour' or a positive timedelta, got {window!r}")
    if window % timedelta(days=1) == timedelta(0):
        # Whole days step local midnight to local midnight (23/25 h across DST), so windows
        # stay aligned with Pendo's subscription-local day buckets.
        return _local_midnight_after(ms, window // timedelta(days=1), zone)
    return ms + window // timedelta(milliseconds=1)


def split_windows(
    start_ms: int, end_ms: int, window: Window = "day", tz: str | tzinfo | None = "UTC"
) -> list[tuple[int, int]]:
    """``[start_ms, end_ms)`` cut at window boundaries: hours, local midnights in ``tz``
    (the subscription's time zone), or fixed steps of a ``timedelta`` (whole days step by
    local midnights). The first and last window may be partial."""
    if end_ms <= start_ms:
        raise ValueError(f"end_ms ({end_ms}) must be after start_ms ({start_ms})")
    zone = _zone(tz)
    out = []
    lo = start_ms
    while lo < end_ms:
        hi = min(_next_boundary(lo, window, zone), end_ms)
        out.append((lo, hi))
        lo = hi
    return out


def _halve(
    start_ms: int, end_ms: int, unit: Literal["day", "hour"], zone: tzinfo
) -> list[tuple[int, int]] | None:
    """Two halves of a window cut on a ``unit`` boundary, or None if it is a single unit."""
    bounds = [b for _, b in split_windows(start_ms, end_ms, unit, zone)][:-1]
    if not bounds:
        return None
    mid = bounds[(len(bounds) - 1) // 2]
    return [(start_ms, mid), (mid, end_ms)]


#: What ``aggregate`` takes: a builder Pipeline, a list of steps, or a whole request body.
PipelineLike = Pipeline | Sequence[Mapping[str, Any]] | Mapping[str, Any]


def _period_of(pipeline: PipelineLike) -> str | None:
    if isinstance(pipeline, Pipeline):
        return pipeline.period
    steps = _steps_of(pipeline)
    source = steps[0].get("source") if steps and isinstance(steps[0], Mapping) else None
    ts = source.get("timeSeries") if isinstance(source, Mapping) else None
    return ts.get("period") if isinstance(ts, Mapping) else None


def _steps_of(pipeline: PipelineLike) -> list[Any]:
    if isinstance(pipeline, Pipeline):
        return pipeline.steps
    if isinstance(pipeline, Mapping):
        inner = pipeline.get("request", pipeline)
        steps = inner.get("pipeline") if isinstance(inner, Mapping) else None
        if not isinstance(steps, list):
            raise ValueError("an aggregation body needs request.pipeline (a list of steps)")
        return steps
    return list(pipeline)


def _envelope(pipeline: PipelineLike) -> dict[str, Any]:
    if isinstance(pipeline, Pipeline):
        return pipeline.to_request()
    if isinstance(pipeline, Mapping) and "request" in pipeline:
        return dict(pipeline)  # already a full body
    steps = _steps_of(pipeline)
    if not steps:
        raise ValueError("an aggregation pipeline needs at least a source step")
    return {"response": {"mimeType": "application/json"}, "request": {"pipeline": steps}}


# --- the client ----------------------------------------------------------------------------


def _seg(value: str | int) -> str:
    """One URL path segment: everything escaped, so an id cannot change the path."""
    text = str(value)
    if not text:
        raise ValueError("an id must not be empty")
    if text in (".", ".."):
        return text.replace(".", "%2E")  # would otherwise be normalised away as a dot segment
    return url_quote(text, safe="")


# An aggregation answer with no rows is small ({"startTime":…,"results":[]}); past this many
# bytes without a row it is not an aggregation result at all.
_SHAPE_CHECK_BYTES = 64 * 1024


def _shape_error(summary: str, response: httpx.Response) -> ServerError:
    return ServerError(
        summary,
        status=response.status_code,
        method=response.request.method,
        url=str(response.request.url.copy_with(query=None)),
        service="pendo",
        hint="Check that base_url points at Pendo's API; the answer is not what this "
        "endpoint returns, so nothing was read from it.",
    )


def _check_rows(rows: Sequence[Any], before: int, response: httpx.Response) -> None:
    """Refuse aggregation rows that are not objects (``{"results": [1, "x"]}``)."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _shape_error(
                f"aggregation row {before + i + 1} is a {type(row).__name__}, not an object",
                response,
            )


def _check_empty_answer(head: bytes, response: httpx.Response) -> None:
    """An answer that produced no rows must be ``{"results": []}`` or ``{"results": null}``."""
    if len(head) > _SHAPE_CHECK_BYTES:
        found = f"over {_SHAPE_CHECK_BYTES // 1024} KiB without a row"
    else:
        try:
            value = json.loads(head)
        except (ValueError, RecursionError):  # the parser accepted it; be lenient on depth
            return
        if not isinstance(value, dict):
            found = f"a {type(value).__name__}, not an object"
        elif "results" not in value:
            found = f"no 'results' (its keys: {', '.join(map(repr, list(value)[:5]))})"
        elif value["results"] is None or isinstance(value["results"], list):
            return
        else:
            found = f"'results' as a {type(value['results']).__name__}, not a list"
    raise _shape_error(f"the aggregation answer has {found}", response)


# Bytes of rows parsed at a time: big enough that parsing runs in C at full speed, small
# enough that memory stays flat. As dicts, about 250 event rows (a row as a dict takes
# four times its JSON); as Arrow, about 3,700: 4 MiB took the same CPU and 50 MB more
# at the peak of a 523,028-row answer (bench/README.md, Pendo vs dlt).
_BLOCK_BYTES = 64 << 10
_ARROW_BLOCK_BYTES = 1 << 20
# Rows parsed before the first is handed out. A stream that breaks before then is simply
# requested again, so small results (most of them) survive a dropped connection unseen;
# bigger ones cannot be restarted once rows are out (see AggregationStreamError). Arrow
# batches are held to their first block.
_HOLD_ROWS = 2000
_RESULTS_KEY = re.compile(rb'"results"\s*:\s*')
# Between two rows of the results array, as Pendo and the sandbox write them (compact).
_ROW_GAP = b"},{"


def _row_blocks(
    response: httpx.Response,
    parse: Callable[[bytes], T | None],
    finish: Callable[[list[Any]], T],
    block_bytes: int,
) -> Iterator[T]:
    """The rows of an aggregation answer's results array, a block at a time as the body
    streams in: ``parse(block)`` of each block of whole rows (``{...},{...}``, no
    brackets), then ``finish(rows)`` of the last rows.

    A block ends where ``},{`` does. That text can also occur inside a string, or between
    objects nested in an array; a block cut there is not valid JSON, and ``parse`` answers
    None: the block is joined to what follows and cut again later. So rows come out whole
    whatever their values. The last rows are parsed with the end of the envelope, which
    proves the answer complete: a body cut short fails there."""
    buf = bytearray()
    start = -1  # -1 while the envelope's head is read
    searched = 0  # the head is not before this
    for chunk in response.iter_bytes():
        buf += chunk
        if start < 0:
            start, searched = _rows_start(buf, searched)
            if start < 0:
                if len(buf) > _SHAPE_CHECK_BYTES:  # no rows this far: not an answer
                    _check_empty_answer(bytes(buf), response)
                continue
            del buf[:start]
        tried = 0  # bytes of buf known not to end in a clean cut
        while len(buf) - tried >= block_bytes:
            cut = buf.rfind(_ROW_GAP)
            if cut <= tried:
                break  # a row bigger than a block: read on
            parsed = parse(bytes(buf[: cut + 1]))
            if parsed is None:
                tried = len(buf)  # a cut inside a value: try again with more bytes
                break
            yield parsed
            del buf[: cut + 2]
    if start < 0:
        _whole_json(bytes(buf))
        _check_empty_answer(bytes(buf), response)
        return
    # The last rows, then the end of the array and of the envelope, which must be valid:
    # that proves the answer complete (a body cut short fails here).
    end = buf.rfind(b"]")
    rows = bytes(buf[:end]).strip() if end >= 0 else b""
    last = parse(rows) if rows and _json_rows(b'{"results":[]' + bytes(buf[end + 1 :])) else None
    if last is not None:
        yield last
    elif rows or end < 0:  # an odd end (a "]" after the array, say): parsed whole, slowly
        yield finish(_whole_json(b'{"results":[' + bytes(buf))["results"])
    else:
        _whole_json(b'{"results":[' + bytes(buf))  # no rows left: the end must still be valid


def _rows_start(buf: bytearray, searched: int) -> tuple[int, int]:
    """(where the rows of ``"results": [`` begin in ``buf``, or -1; where to search from
    next). A ``"results"`` inside another value is passed over: the head up to the real one,
    closed with ``[]}``, is a valid object, and up to any other it is not."""
    while found := _RESULTS_KEY.search(buf, searched):
        if found.end() >= len(buf):
            return -1, searched  # more bytes needed to see what follows
        if buf[found.end()] == ord("[") and _json_rows(bytes(buf[: found.end()]) + b"[]}"):
            return found.end() + 1, searched
        searched = found.end()
    return -1, searched


def _whole_json(body: bytes) -> Any:
    """``body`` parsed, by ijson where orjson cannot hold it (nesting over 1,024 levels, a
    lone surrogate), so that no well-formed answer is refused; bad JSON raises."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        (value,) = ijson.items(body, "", use_float=True)  # the whole body: trailing bytes raise
        return value


def _json_rows(block: bytes) -> list[Any] | None:
    """A block's rows as Python objects, or None if it is not whole rows."""
    try:
        return orjson.loads(b"[" + block + b"]")
    except orjson.JSONDecodeError:
        return None


def _arrow_block(block: bytes, schema: pa.Schema) -> pa.Table | None:
    """A block of rows read by pyarrow's JSON reader (one row a line), or None if it cannot:
    a value of another type than the schema's, a ``},{`` inside a value, a row that is not
    an object."""
    import pyarrow as pa
    import pyarrow.json as pajson

    lines = block.replace(_ROW_GAP, b"}\n{")
    try:
        return pajson.read_json(
            pa.BufferReader(lines),
            read_options=pajson.ReadOptions(block_size=len(lines) + 1, use_threads=False),
            parse_options=pajson.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _arrow_rows(
    rows: list[dict], schema: pa.Schema, before: int, response: httpx.Response
) -> pa.Table:
    """Rows as an Arrow table of ``schema``: text fields take any value (objects as JSON
    text), other fields must hold their type."""
    import pyarrow as pa

    arrays = []
    for spec in schema:
        values = [r.get(spec.name) for r in rows]
        if pa.types.is_string(spec.type) or pa.types.is_large_string(spec.type):
            values = [
                v
                if v is None or v.__class__ is str
                else orjson.dumps(v).decode()
                if isinstance(v, dict | list)
                else str(v)
                for v in values
            ]
        try:
            arrays.append(pa.array(values, type=spec.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise _shape_error(
                f"aggregation rows {before + 1}-{before + len(rows)}: {spec.name!r} is not "
                f"{spec.type} ({exc})",
                response,
            ) from None
    return pa.Table.from_arrays(arrays, schema=schema)


def _is_stream_fault(exc: BaseException) -> bool:
    """A broken or damaged aggregation body: worth asking again while no row is out.

    Besides a dropped connection, the parser's errors count: a body cut short or garbled
    on the way reads as bad JSON, or as a lone-surrogate UnicodeDecodeError ("\\ud800").
    """
    return is_transport_fault(exc) or isinstance(
        exc, orjson.JSONDecodeError | ijson.JSONError | UnicodeDecodeError
    )


def _classify_403(request: httpx.Request, response: httpx.Response) -> type[ApiError]:
    # §10: 403 on a read (GET, or an aggregation, which is a read sent as POST) is a bad or
    # wrong-region key; on a write it is a valid key that lacks write access.
    if request.method in ("GET", "HEAD") or request.url.path.endswith(AGGREGATION_PATH):
        return AuthenticationError
    return PermissionDeniedError


class PendoClient:
    """Client of one Pendo subscription (one integration key, one region).

    ``region`` (``us``, ``us1``, ``eu``, ``jpn``/``jp``, ``au``; default from the key's suffix,
    else ``us``) picks the host, or ``base_url`` sets it (the sandbox). ``rate`` (requests/s, the
    most to send, or ``"auto"``) and ``burst`` configure a
    :class:`~analytics_assets.http.limits.RateFinder` shared by all threads using this
    client; it finds the server's rate below ``rate`` and holds just under it.
    ``read_timeout`` (300 s) suits aggregations, which may run up to Pendo's 5-minute cap.
    ``bulk_path`` chooses ``/value`` (the array form public clients use; default) or
    ``/value/bulk`` (the brief's name) for bulk metadata writes.
    ``transport`` replaces the HTTP transport entirely (it must carry the key header);
    ``limiter`` shares one limiter between several clients of the same key (the resource's
    shares what it learned with every process through the budget ledger). ``sleep``,
    ``clock`` (monotonic) and ``jitter`` (``cap -> seconds``) replace the real ones in the
    retries of the transport the client builds and in its default limiter (for tests; a
    ``transport`` or ``limiter`` passed in keeps its own).

    Use as a context manager, or call :meth:`close`. ``stats`` counts requests, retries,
    429s and waits for a run's one-line summary.
    """

    def __init__(
        self,
        integration_key: str | Secret,
        *,
        region: str | None = None,
        base_url: str | None = None,
        rate: float | Literal["auto"] = 5.0,
        burst: int = 1,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        max_attempts: int = 6,
        max_retry_time: float = 300.0,
        backoff_base: float = 0.5,
        bulk_path: Literal["value", "value/bulk"] = "value",
        transport: Transport | None = None,
        limiter: Limiter | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        jitter: Callable[[float], float] | None = None,
    ) -> None:
        key = reveal(integration_key)
        if not key and transport is None:
            raise ConfigurationError(
                "no Pendo integration key: set PENDO_INTEGRATION_KEY (or pass the key)",
                service="pendo",
            )
        if bulk_path not in ("value", "value/bulk"):
            raise ValueError(f"bulk_path must be 'value' or 'value/bulk', got {bulk_path!r}")
        self.region, send_key = resolve_region(key, region) if key else (region or "us", "")
        self.base_url = (base_url or PENDO_HOSTS[self.region]).rstrip("/")
        self.bulk_path = bulk_path
        self.read_timeout = read_timeout
        # Only what was injected is passed on: the transport and the limiter own their defaults.
        timing: dict[str, Any] = {
            name: value
            for name, value in (("sleep", sleep), ("clock", clock), ("jitter", jitter))
            if value is not None
        }
        limiter_timing = {k: v for k, v in timing.items() if k != "jitter"}
        self.limiter: Limiter = limiter or RateFinder(rate, burst, name="pendo", **limiter_timing)
        if transport is None:
            transport = Transport(
                TransportConfig(
                    base_url=self.base_url,
                    service="pendo",
                    default_headers={"x-pendo-integration-key": Secret(send_key)},
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    max_attempts=max_attempts,
                    max_retry_time=max_retry_time,
                    backoff_base=backoff_base,
                    secrets=(Secret(key),),
                    classify_403=_classify_403,
                ),
                **timing,
            )
        self._transport = transport
        self._token: TokenInfo | None = None
        self._token_lock = threading.Lock()
        # Which by-id form each object kind answers (§10: `/guide/{id}` or `?id=`).
        self._by_query: dict[str, bool] = {}

    # -- lifecycle

    @property
    def stats(self) -> TransportStats:
        return self._transport.stats

    @property
    def transport(self) -> Transport:
        return self._transport

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> PendoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PendoClient(region={self.region!r}, base_url={self.base_url!r})"

    # -- plumbing

    def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._transport.request("GET", path, limiter=self.limiter, **kwargs)

    def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        # The transport's JSON read: a damaged answer (HTML from a proxy, an empty body,
        # JSON cut short) is sent again like a dropped connection, in the one retry loop.
        return self._transport.get_json(path, params=params, limiter=self.limiter)

    def _json(self, response: httpx.Response) -> Any:
        """A write's answer as JSON (writes keep their own wording of an unreadable answer:
        the write-back logs the batch unconfirmed)."""
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ServerError(
                "the answer is not JSON",
                status=response.status_code,
                method=response.request.method,
                url=self._transport.redact_url(response.request.url),
                service="pendo",
                body_excerpt=self._transport.redact(response.text[:200]),
            ) from None

    # -- token

    def verify_token(self, *, refresh: bool = False) -> TokenInfo:
        """``GET /api/v1/token/verify``, asked once per client (``refresh`` asks again).

        A missing, wrong or wrong-region key answers 403/401: that is ``valid=False``.
        """
        with self._token_lock:
            if self._token is not None and not refresh:
                return self._token
            try:
                body = self._get_json("/api/v1/token/verify")
            except AuthenticationError:
                info = TokenInfo(valid=False, write_access=False)
            else:
                if not isinstance(body, Mapping):
                    body = {}
                # Only a JSON true grants anything: "false", 1 or [0] must not read as yes.
                info = TokenInfo(
                    valid=body.get("valid") is True,
                    write_access=body.get("writeAccess") is True,
                )
            self._token = info
            return info

    def require_write_access(self) -> None:
        """Raise unless the key may write: checked once, before any write is sent."""
        info = self.verify_token()
        if not info.valid:
            raise AuthenticationError(
                "the integration key is not valid for this host (token/verify)",
                service="pendo",
                url=f"{self.base_url}/api/v1/token/verify",
            )
        if not info.write_access:
            raise PermissionDeniedError(
                "the integration key has no write access (token/verify says writeAccess=false); "
                "no write was sent",
                service="pendo",
                hint=WRITE_KEY_HINT,
            )

    # -- aggregation

    def aggregate(self, pipeline: PipelineLike, *, timeout: float | None = None) -> Iterator[dict]:
        """Rows of ``POST /api/v1/aggregation``, streamed as they are parsed.

        ``pipeline`` is a :class:`Pipeline`, a list of steps, or a full request body.
        ``timeout`` overrides the read timeout for this call. An aggregation is a read, so it
        is retried like one. A response that breaks before any row was handed out is
        requested again; after that, :class:`AggregationStreamError` is raised (run the
        window again). Pendo's time/size cap raises :class:`AggregationLimitError`.
        """
        body = _envelope(pipeline)
        return self._stream_rows(body, timeout)

    def aggregate_batches(
        self, pipeline: PipelineLike, batch_rows: int = 50_000, *, timeout: float | None = None
    ) -> Iterator[list[dict]]:
        """The rows of :meth:`aggregate` in lists of at most ``batch_rows`` (for loaders)."""
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        batch: list[dict] = []
        for row in self.aggregate(pipeline, timeout=timeout):
            batch.append(row)
            if len(batch) >= batch_rows:
                yield batch
                batch = []
        if batch:
            yield batch

    def aggregate_windows(
        self,
        make_pipeline: Callable[[int, int], PipelineLike],
        start_ms: int,
        end_ms: int,
        *,
        window: Window = "day",
        tz: str | tzinfo | None = "UTC",
        max_splits: int = 2,
        timeout: float | None = None,
    ) -> Iterator[dict]:
        """Rows of ``make_pipeline(lo, hi)`` for each window ``[lo, hi)`` of the range.

        Windows end at hour boundaries, local midnights of ``tz`` (pass the subscription's
        time zone so windows match Pendo's day buckets) or ``timedelta`` steps. A window that
        hits Pendo's time/size cap before yielding a row is halved (on an hour boundary, or
        a day boundary for ``dayRange`` pipelines) up to ``max_splits`` times before the
        error is raised. A stream that breaks mid-window raises
        :class:`AggregationStreamError` with ``window`` set: rerun from that window.
        """
        if max_splits < 0:
            raise ValueError("max_splits must be >= 0")
        zone = _zone(tz)
        for lo, hi in split_windows(start_ms, end_ms, window, zone):
            yield from self._window_rows(make_pipeline, lo, hi, max_splits, zone, timeout)

    def _window_rows(
        self,
        make_pipeline: Callable[[int, int], PipelineLike],
        lo: int,
        hi: int,
        splits_left: int,
        zone: tzinfo,
        timeout: float | None,
    ) -> Iterator[dict]:
        pipeline = make_pipeline(lo, hi)
        yielded = 0
        try:
            for row in self.aggregate(pipeline, timeout=timeout):
                yielded += 1
                yield row
            return
        except AggregationStreamError as exc:
            exc.window = (lo, hi)
            raise
        except ApiError as exc:
            if yielded or splits_left <= 0 or not is_aggregation_limit_error(exc):
                raise
            # dayRange pipelines snap `first` to the day: halving inside a day would repeat it.
            unit: Literal["day", "hour"] = "day" if _period_of(pipeline) == "dayRange" else "hour"
            halves = _halve(lo, hi, unit, zone)
            if halves is None:
                raise
            logger.warning(
                "[pendo] aggregation window %d-%d hit a limit (HTTP %s); splitting it in two",
                lo,
                hi,
                exc.status,
            )
        for sub_lo, sub_hi in halves:
            yield from self._window_rows(
                make_pipeline, sub_lo, sub_hi, splits_left - 1, zone, timeout
            )

    def aggregate_arrow(
        self,
        pipeline: PipelineLike,
        fields: Mapping[str, pa.DataType],
        *,
        timeout: float | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """The rows of :meth:`aggregate` as Arrow batches with exactly ``fields`` (a row's
        key -> its type; a missing key is null, other keys are dropped), parsed by pyarrow's
        JSON reader without a Python object per row: the fast path for big pulls.

        A text field takes any value (objects as JSON text, numbers as text, as the row
        loaders do); any other field must hold its type. Retries and errors as
        :meth:`aggregate` (``rows_yielded`` counts rows).
        """
        import pyarrow as pa

        schema = pa.schema(list(fields.items()))
        yielded = 0
        try:
            for batch in self._stream(
                _envelope(pipeline), timeout, lambda r: self._read_arrow(r, schema)
            ):
                yielded += batch.num_rows
                yield batch
        except AggregationStreamError as exc:
            exc.rows_yielded = yielded
            raise

    def _stream_rows(self, body: dict[str, Any], timeout: float | None) -> Iterator[dict]:
        yield from self._stream(body, timeout, self._read_rows)

    def _stream(
        self,
        body: dict[str, Any],
        timeout: float | None,
        read: Callable[[httpx.Response], Iterable[T]],
    ) -> Iterator[T]:
        # The transport's one retry loop resends the aggregation when its body breaks or
        # arrives damaged before `read` handed out anything (the first block of rows is
        # parsed whole first), sharing attempts, backoff, budget and stats with 429/5xx
        # retries.
        items = self._transport.consume(
            "POST",
            AGGREGATION_PATH,
            read,
            retryable=_is_stream_fault,
            json=body,
            idempotent=True,  # a read sent as POST: resending is always safe
            limiter=self.limiter,
            timeout=timeout if timeout is not None else self.read_timeout,
            expected=_AGG_LIMIT_STATUSES,
        )
        try:
            yield from items
        except StreamInterruptedError as exc:
            # Same classes and wording as ever: the transport's error said in Pendo's terms.
            url = self._transport.redact_url(self.base_url + AGGREGATION_PATH)
            if exc.items_yielded:
                raise AggregationStreamError(
                    f"the aggregation stream broke after {exc.items_yielded} rows ({exc.detail})",
                    rows_yielded=exc.items_yielded,
                    detail=exc.detail,
                    method="POST",
                    url=url,
                    service="pendo",
                    attempts=exc.attempts,
                ) from exc.__cause__
            raise TransportError(
                f"the aggregation stream broke before any row ({exc.detail}); {exc.reason}",
                method="POST",
                url=url,
                service="pendo",
                attempts=exc.attempts,
            ) from exc.__cause__

    def _read_rows(self, response: httpx.Response) -> Iterator[dict]:
        """Rows of one aggregation answer, parsed a block at a time (for ``consume``)."""
        if response.status_code in _AGG_LIMIT_STATUSES:
            raise self._limit_error(response)
        seen = 0
        held: list[dict] | None = []
        for rows in _row_blocks(response, _json_rows, lambda rows: rows, _BLOCK_BYTES):
            _check_rows(rows, seen, response)
            seen += len(rows)
            if held is not None:
                held.extend(rows)
                if len(held) < _HOLD_ROWS:
                    continue
                rows, held = held, None
            yield from rows
        yield from held or ()

    def _read_arrow(self, response: httpx.Response, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Arrow batches of one aggregation answer, a block at a time (for ``consume``)."""
        if response.status_code in _AGG_LIMIT_STATUSES:
            raise self._limit_error(response)
        seen = 0

        def rows_to_arrow(rows: list[Any]) -> pa.Table:
            _check_rows(rows, seen, response)
            return _arrow_rows(rows, schema, seen, response)

        def parse(block: bytes) -> pa.Table | None:
            table = _arrow_block(block, schema)
            if table is None:  # not plain enough for pyarrow's reader: row by row
                rows = _json_rows(block)
                table = None if rows is None else rows_to_arrow(rows)
            return table

        for table in _row_blocks(response, parse, rows_to_arrow, _ARROW_BLOCK_BYTES):
            seen += table.num_rows
            yield from table.to_batches()

    def _limit_error(self, response: httpx.Response) -> AggregationLimitError:
        text = response.read()[:2000].decode("utf-8", "replace").strip()
        return AggregationLimitError(
            f"HTTP {response.status_code} {response.reason_phrase}".rstrip(),
            status=response.status_code,
            method="POST",
            url=self._transport.redact_url(response.request.url),
            service="pendo",
            body_excerpt=self._transport.redact(text) or None,
        )

    # -- visitors and accounts

    def get_visitor(self, visitor_id: str) -> dict[str, Any]:
        """``GET /api/v1/visitor/{id}``; an unknown or invisible id raises NotFoundError."""
        return self._get_json(f"/api/v1/visitor/{_seg(visitor_id)}")

    def get_account(self, account_id: str) -> dict[str, Any]:
        """``GET /api/v1/account/{id}``; an unknown or invisible id raises NotFoundError."""
        return self._get_json(f"/api/v1/account/{_seg(account_id)}")

    # -- pages, features, guides, track types, reports

    def _list(self, kind: str, app_id: int | None, expand_all: bool) -> list[dict[str, Any]]:
        if app_id is not None and expand_all:
            raise ValueError("pass app_id= or expand_all=True, not both (Pendo takes one)")
        params: dict[str, Any] = {}
        if expand_all:
            params["expand"] = "*"
        elif app_id is not None:
            params["appId"] = app_id
        body = self._get_json(f"/api/v1/{kind}", params=params or None)
        return self._rows(body, f"/api/v1/{kind}")

    def _rows(self, body: Any, path: str) -> list[dict[str, Any]]:
        """A bare JSON array of objects (``null`` is no rows); anything else is refused."""
        if body is None:
            return []
        if not isinstance(body, list):
            problem = f"the answer is a {type(body).__name__}, not a list of objects"
        else:
            bad = next((i for i, row in enumerate(body) if not isinstance(row, dict)), None)
            if bad is None:
                return body
            problem = f"item {bad} of the answer is a {type(body[bad]).__name__}, not an object"
        raise ServerError(
            problem,
            method="GET",
            url=self._transport.redact_url(self.base_url + path),
            service="pendo",
            hint="Check that base_url points at Pendo's API; nothing was read from this answer.",
        )

    def _get_by_id(self, kind: str, object_id: str) -> dict[str, Any]:
        """``/{kind}/{id}``, falling back to ``/{kind}?id=`` on 404 (§10: both forms exist)."""
        if not object_id:
            raise ValueError(f"a {kind} id must not be empty")
        if not self._by_query.get(kind):
            try:
                body = self._get_json(f"/api/v1/{kind}/{_seg(object_id)}")
            except NotFoundError:
                pass
            else:
                return body[0] if isinstance(body, list) and body else body
        try:
            body = self._get_json(f"/api/v1/{kind}", params={"id": object_id})
        except NotFoundError:
            body = []
        if isinstance(body, list) and body:
            self._by_query[kind] = True  # this server answers the query form: ask it first
            return body[0]
        self._by_query.pop(kind, None)
        raise NotFoundError(
            f"no {kind} with id {object_id!r}",
            status=404,
            method="GET",
            url=f"{self.base_url}/api/v1/{kind}",
            service="pendo",
        )

    def list_features(
        self, app_id: int | None = None, *, expand_all: bool = False
    ) -> list[dict[str, Any]]:
        """``GET /api/v1/feature`` (default app, ``appId=``, or every app with ``expand=*``)."""
        return self._list("feature", app_id, expand_all)

    def get_feature(self, feature_id: str) -> dict[str, Any]:
        return self._get_by_id("feature", feature_id)

    def list_pages(
        self, app_id: int | None = None, *, expand_all: bool = False
    ) -> list[dict[str, Any]]:
        return self._list("page", app_id, expand_all)

    def get_page(self, page_id: str) -> dict[str, Any]:
        return self._get_by_id("page", page_id)

    def list_guides(
        self, app_id: int | None = None, *, expand_all: bool = False
    ) -> list[dict[str, Any]]:
        return self._list("guide", app_id, expand_all)

    def get_guide(self, guide_id: str) -> dict[str, Any]:
        return self._get_by_id("guide", guide_id)

    def list_track_types(
        self, app_id: int | None = None, *, expand_all: bool = False
    ) -> list[dict[str, Any]]:
        return self._list("tracktype", app_id, expand_all)

    def list_reports(self) -> list[dict[str, Any]]:
        """``GET /api/v1/report``: saved reports (only visitor/account lists have results)."""
        return self._rows(self._get_json("/api/v1/report"), "/api/v1/report")

    def get_report(self, report_id: str) -> dict[str, Any]:
        """``GET /api/v1/report/{id}``: one saved report's definition."""
        return self._get_by_id("report", report_id)

    def report_results(self, report_id: str) -> list[dict[str, Any]]:
        """``GET /api/v1/report/{id}/results.json``: the saved report's rows."""
        path = f"/api/v1/report/{_seg(report_id)}/results.json"
        return self._rows(self._get_json(path), path)

    def report_csv(self, report_id: str) -> str:
        """``GET /api/v1/report/{id}/results.csv``: the same rows as CSV text."""
        return self._get(f"/api/v1/report/{_seg(report_id)}/results.csv").text

    # -- metadata

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in _KINDS:
            raise ValueError(f"kind must be 'visitor' or 'account', got {kind!r}")
        return kind

    def get_metadata_schema(self, kind: MetadataKind) -> dict[str, dict[str, FieldSchema]]:
        """``GET /api/v1/metadata/schema/{kind}`` as ``{group: {field: FieldSchema}}``."""
        path = f"/api/v1/metadata/schema/{self._check_kind(kind)}"
        body = self._get_json(path) or {}
        if not isinstance(body, Mapping):
            raise ServerError(
                f"the schema answer is a {type(body).__name__}, not an object of field groups",
                method="GET",
                url=self._transport.redact_url(self.base_url + path),
                service="pendo",
                hint="Check that base_url points at Pendo's API.",
            )
        return {
            group: {
                name: FieldSchema.from_json(desc if isinstance(desc, Mapping) else {})
                for name, desc in (fields or {}).items()
            }
            for group, fields in body.items()
            if isinstance(fields, Mapping) or fields is None
        }

    def update_metadata(
        self,
        kind: MetadataKind,
        records: Iterable[MetadataRecord],
        *,
        group: str = "custom",
        create: bool = False,
        batch_size: int = MAX_BATCH,
    ) -> Iterator[BatchOutcome]:
        """Bulk-write field values in batches of ``batch_size`` (at most 1,000).

        Write access is checked (one ``token/verify``) when this is called, before anything is
        sent: a read-only key raises :class:`PermissionDeniedError` here. Batches are sent as
        the returned iterator is consumed, one :class:`BatchOutcome` each; ``create=True``
        creates unknown ids instead of reporting them ``missing``.
        """
        self._check_kind(kind)
        if group not in _WRITE_GROUPS:
            raise ValueError(f"group must be one of {_WRITE_GROUPS}, got {group!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ValueError(f"batch_size must be an int, got {batch_size!r}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(
                f"batch_size must be between 1 and {MAX_BATCH} (Pendo batches stay under "
                f"1,000 records), got {batch_size}"
            )
        self.require_write_access()
        return self._write_batches(kind, iter(records), group, create, batch_size)

    def _write_batches(
        self,
        kind: str,
        records: Iterator[MetadataRecord],
        group: str,
        create: bool,
        batch_size: int,
    ) -> Iterator[BatchOutcome]:
        id_key = _ID_KEYS[kind]
        path = f"/api/v1/metadata/{kind}/{group}/{self.bulk_path}"
        params = {"create": "true"} if create else None
        index = 0
        position = 0
        while True:
            batch: list[MetadataRecord] = []
            for record in records:
                batch.append(_check_record(record, position))
                position += 1
                if len(batch) >= batch_size:
                    break
            if not batch:
                return
            payload = [{id_key: r.id, "values": dict(r.values)} for r in batch]
            # Safe to resend: a bulk write sets absolute values (no increments), so applying
            # the same batch twice leaves the same state. That lets the transport retry it
            # after a timeout or a dropped connection, not only after a 429/503.
            response = self._write("POST", path, json=payload, params=params)
            yield _outcome(index, tuple(batch), self._json(response), response)
            index += 1

    def _write(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._transport.request(
                method, path, idempotent=True, limiter=self.limiter, **kwargs
            )
        except PermissionDeniedError as exc:
            # Rebuilt only to put the write-key hint on it; every field is already redacted.
            raise PermissionDeniedError(
                exc.summary,
                status=exc.status,
                method=exc.method,
                url=exc.url,
                service="pendo",
                body_excerpt=exc.body_excerpt,
                attempts=exc.attempts,
                hint=WRITE_KEY_HINT,
            ) from None

    def _value_path(self, kind: str, group: str, object_id: str, field_name: str) -> str:
        self._check_kind(kind)
        if not group:
            raise ValueError("group must not be empty")
        return f"/api/v1/metadata/{kind}/{_seg(group)}/value/{_seg(object_id)}/{_seg(field_name)}"

    def set_metadata_value(
        self,
        kind: MetadataKind,
        object_id: str,
        field_name: str,
        value: Any,
        *,
        group: str = "custom",
    ) -> None:
        """``PUT /api/v1/metadata/{kind}/{group}/value/{id}/{field}`` with the raw JSON value."""
        path = self._value_path(kind, group, object_id, field_name)
        self.require_write_access()
        self._write(
            "PUT", path, content=orjson.dumps(value), headers={"content-type": "application/json"}
        )

    def get_metadata_value(
        self, kind: MetadataKind, object_id: str, field_name: str, *, group: str = "custom"
    ) -> Any:
        """The bare JSON value of one field (``GET`` of the path above)."""
        return self._get_json(self._value_path(kind, group, object_id, field_name))


def _check_record(record: Any, position: int) -> MetadataRecord:
    if isinstance(record, tuple) and len(record) == 2:
        record = MetadataRecord(*record)
    if not isinstance(record, MetadataRecord):
        raise TypeError(
            f"record {position} is a {type(record).__name__}; pass MetadataRecord(id, values)"
        )
    if not isinstance(record.id, str) or not record.id:
        raise ValueError(f"record {position} has no id; every record needs a non-empty str id")
    if not isinstance(record.values, Mapping) or not record.values:
        raise ValueError(f"record {position} ({record.id!r}) has no values to write")
    return record


_ERROR_ID_KEYS = ("visitorId", "accountId", "id")
_ERROR_TEXT_KEYS = ("error", "message", "reason", "detail")


_OUTCOME_KEYS = ("total", "updated", "failed", "missing", "errors")


def _outcome(
    index: int,
    batch: tuple[MetadataRecord, ...],
    body: Any,
    response: httpx.Response | None = None,
) -> BatchOutcome:
    # An answer that is not Pendo's {total, updated, failed, missing, errors} object cannot
    # confirm any write: refuse it (the push logs the batch unconfirmed and resends it)
    # rather than read every record as updated.
    problem = None
    if not isinstance(body, Mapping):
        problem = f"is a {type(body).__name__}, not an object"
    elif not any(key in body for key in _OUTCOME_KEYS):
        problem = f"has none of {', '.join(_OUTCOME_KEYS)}"
    else:
        wrong = [k for k in ("missing", "errors") if not isinstance(body.get(k) or [], list)]
        if wrong:
            problem = f"has {wrong[0]!r} as a {type(body[wrong[0]]).__name__}, not a list"
    if problem is not None:
        raise ServerError(
            f"the bulk write answer {problem}; which records were written is unknown",
            status=response.status_code if response is not None else None,
            method="POST",
            url=str(response.request.url.copy_with(query=None)) if response is not None else None,
            service="pendo",
            hint="Nothing of this batch is counted as written; a re-run sends it again.",
        )
    raw = body
    sent = [r.id for r in batch]
    missing = tuple(str(m) for m in raw.get("missing") or ())
    failed: dict[str, str] = {
        m: "missing: no such id (pass create=True to create it)" for m in missing
    }
    loose: list[Any] = []
    sent_set = set(sent)
    for err in raw.get("errors") or ():
        err_id = None
        reason = str(err)
        if isinstance(err, Mapping):
            err_id = next((err[k] for k in _ERROR_ID_KEYS if err.get(k) is not None), None)
            reason = next((str(err[k]) for k in _ERROR_TEXT_KEYS if err.get(k)), reason)
            if err.get("field"):
                reason = f"{err['field']}: {reason}"
        elif isinstance(err, str) and err in sent_set:
            err_id, reason = err, "error"
        if err_id is not None and str(err_id) in sent_set:
            failed[str(err_id)] = reason
        else:
            loose.append(err)
    updated = tuple(i for i in dict.fromkeys(sent) if i not in failed)
    total = raw.get("total")
    return BatchOutcome(
        index=index,
        records=batch,
        updated_ids=updated,
        failed=failed,
        missing=missing,
        total=total if isinstance(total, int) else len(batch),
        raw=raw,
        unattributed_errors=tuple(loose),
    )
