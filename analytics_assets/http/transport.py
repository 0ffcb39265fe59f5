"""The one HTTP transport every API client sends through.

It owns a pooled ``httpx.Client`` and adds what each endpoint would otherwise re-implement:
client-side limits (see ``limits.py``), retries with exponential backoff and full jitter,
``Retry-After``, a total retry-time budget, streamed bodies (``consume``, ``download``) that
survive dropped connections, JSON answers (``request_json``, ``get_json``) whose damaged
bodies (HTML, empty, cut short) are retried like dropped connections, typed errors with the
server's message and a next step, statistics, and secret redaction in every log line and
error. There is one retry loop (``_send`` plus ``consume`` around it); clients add none of
their own.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import html
import itertools
import json as jsonlib
import logging
import math
import os
import random
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

import httpx
import orjson

from analytics_assets.http.errors import (
    STATUS_HINTS,
    ApiError,
    AuthenticationError,
    ConfigurationError,
    DamagedResponseError,
    RateLimitedError,
    StreamInterruptedError,
    TransportError,
    error_class_for_status,
)
from analytics_assets.http.limits import Limiter

__all__ = [
    "DamagedBodyError",
    "JsonAnswer",
    "Redactor",
    "Secret",
    "StatsSnapshot",
    "Transport",
    "TransportConfig",
    "TransportStats",
    "is_transport_fault",
    "json_body_problem",
    "parse_retry_after",
    "redact",
    "redact_url",
    "reveal",
    "server_message",
    "stream_to_file",
]

logger = logging.getLogger("analytics_assets.http")

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Statuses that mean "not processed": safe to resend even a non-idempotent request.
_NOT_PROCESSED_STATUSES = frozenset({429, 503})
# Failures raised before any byte of the request could reach the server.
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
# Our own mistakes or configuration: resending cannot help.
_NEVER_RETRY_ERRORS: tuple[type[Exception], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)
T = TypeVar("T")
# How much of an error body we read from a streamed response for its message.
_ERROR_BODY_CAP = 64 * 1024
_MAX_URL_IN_TEXT = 300


# --- secrets and redaction -----------------------------------------------------------------


class Secret:
    """A string that never shows itself: ``repr``/``str`` give ``***``, ``.get()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        self._value = value.get() if isinstance(value, Secret) else str(value)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def reveal(value: str | Secret) -> str:
    """The plain value of a ``Secret`` or ``str``."""
    return value.get() if isinstance(value, Secret) else value


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_MIN_SECRET_LEN = 4
_SECRET_QUERY_KEY = re.compile(r"key|secret|token|passw|auth|sig|credential", re.IGNORECASE)


class Redactor:
    """Replaces every configured secret with ``***`` in any text.

    Each secret is also matched URL-encoded and base64-encoded, alone and joined with every
    other secret as ``a:b`` (the HTTP Basic form), case-insensitively (percent-escapes vary in
    case; over-redacting costs nothing). ``extra`` are literal strings to hide as they are,
    such as a ready-made Basic-auth token. Strings shorter than 4 characters are not
    credentials and are ignored: hiding every "a" would make all text unreadable.
    """

    def __init__(self, secrets: Iterable[str | Secret] = (), *, extra: Iterable[str] = ()) -> None:
        values = sorted({v for v in map(reveal, secrets) if len(v) >= _MIN_SECRET_LEN})
        needles = {e for e in extra if len(e) >= _MIN_SECRET_LEN}
        for v in values:
            needles |= {v, quote(v, safe=""), quote_plus(v), _b64(v), _b64(f"{v}:"), _b64(f":{v}")}
        for a, b in itertools.permutations(values, 2):
            needles.add(_b64(f"{a}:{b}"))
        # Longest first, so a secret is never half-replaced by a shorter one inside it.
        alternatives = "|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True))
        self._pattern = re.compile(alternatives, re.IGNORECASE) if needles else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern else text

    def contains_secret(self, text: str) -> bool:
        return bool(self._pattern and self._pattern.search(text))

    def url(self, url: str | httpx.URL) -> str:
        return redact_url(url, self)

    def __repr__(self) -> str:
        return "Redactor(***)"


def redact(text: str, secrets: Iterable[str | Secret]) -> str:
    """``text`` with every secret (raw, URL-encoded, base64/Basic forms) replaced by ``***``."""
    return Redactor(secrets)(text)


def redact_url(url: str | httpx.URL, redactor: Redactor | None = None) -> str:
    """A URL safe to show: no user-info, secret-looking query values (``api_key``, ``secret``,
    ``token``…) replaced by ``***``, configured secrets removed, at most 300 characters."""
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    pieces = []
    for piece in parts.query.split("&") if parts.query else ():
        key, sep, _ = piece.partition("=")
        pieces.append(
            f"{key}=***" if sep and _SECRET_QUERY_KEY.search(unquote_plus(key)) else piece
        )
    text = urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), ""))
    if redactor is not None:
        text = redactor(text)
    return text if len(text) <= _MAX_URL_IN_TEXT else text[: _MAX_URL_IN_TEXT - 1] + "…"


# httpx logs every request URL at INFO; a secret passed in a query string would leak there.
# One filter on the third-party loggers (installed once, process-wide) applies the redactors
# of every open Transport.
_LIVE_REDACTORS: weakref.WeakSet[Redactor] = weakref.WeakSet()
_REDACTORS_LOCK = threading.Lock()
_FILTERED_LOGGERS = ("httpx", "httpcore", logger.name)


# Secret-looking query values inside free text, e.g. a presigned S3 link's X-Amz-Signature
# in httpx's "HTTP Request: GET <url>" line after a redirect.
_SECRET_QUERY_IN_TEXT = re.compile(
    r"([?&][^=&\s\"']*(?:key|secret|token|passw|auth|sig|credential)[^=&\s\"']*=)[^&\s\"']*",
    re.IGNORECASE,
)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        with _REDACTORS_LOCK:
            redactors = list(_LIVE_REDACTORS)
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is the logging module's business, not ours
            return True
        clean = _SECRET_QUERY_IN_TEXT.sub(r"\1***", text)
        for redactor in redactors:
            clean = redactor(clean)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_REDACTING_FILTER = _RedactingFilter()


def _register_redactor(redactor: Redactor) -> None:
    with _REDACTORS_LOCK:
        _LIVE_REDACTORS.add(redactor)
        for name in _FILTERED_LOGGERS:
            target = logging.getLogger(name)
            if _REDACTING_FILTER not in target.filters:
                target.addFilter(_REDACTING_FILTER)


def _unregister_redactor(redactor: Redactor) -> None:
    with _REDACTORS_LOCK:
        _LIVE_REDACTORS.discard(redactor)


# --- response helpers ----------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    ``now`` is the wall-clock time (epoch seconds) to measure an HTTP-date against.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_HTML_SKIP = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]+>")
# Amplitude ingestion puts what to fix beside its `error` string.
_AMPLITUDE_DETAIL_KEYS = (
    "missing_field",
    "events_with_invalid_fields",
    "events_with_missing_fields",
    "events_with_invalid_id_lengths",
)


def _json_message(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if isinstance(err, dict):  # Amplitude Basic-auth APIs: {"error": {"message", "metadata"}}
        metadata = err.get("metadata")
        details = metadata.get("details") if isinstance(metadata, dict) else None
        message = err.get("message")
        if message == "Unspecified Error":  # Amplitude's placeholder: the details say it all
            message = None
        parts = [p for p in (message, details) if isinstance(p, str) and p]
        if parts:
            return ": ".join(parts)
    if isinstance(err, str) and err:  # Amplitude ingestion: {"code": 400, "error": "..."}
        extras = {k: obj[k] for k in _AMPLITUDE_DETAIL_KEYS if obj.get(k)}
        return f"{err} {jsonlib.dumps(extras, separators=(',', ':'))}" if extras else err
    errors = obj.get("errors")  # Amplitude taxonomy: {"success": false, "errors": [{"message"}]}
    if isinstance(errors, list) and errors:
        return "; ".join(
            str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors
        )
    for key in ("message", "detail", "error_description"):
        if isinstance(obj.get(key), str) and obj[key]:
            return obj[key]
    return None


def server_message(body: bytes, content_type: str | None = None) -> str | None:
    """The human part of an error body: JSON error fields, plain text, or HTML text."""
    text = body[:_ERROR_BODY_CAP].decode("utf-8", "replace").strip()
    if not text:
        return None
    if text[0] in "{[":
        try:
            obj = jsonlib.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the stack
            pass
        else:
            message = _json_message(obj)
            if message and message.strip():  # only spaces says nothing: the whole body does
                return message
            return jsonlib.dumps(obj, separators=(",", ":"))
    if "html" in (content_type or "").lower() or text.startswith("<"):
        text = html.unescape(_HTML_TAG.sub(" ", _HTML_SKIP.sub(" ", text)))
    return " ".join(text.split()) or None


# --- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters of a transport at one moment (or the difference between two moments)."""

    service: str
    requests_sent: int = 0
    responses_by_status: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    retries: int = 0
    throttled: int = 0
    transport_errors: int = 0
    limiter_wait_seconds: float = 0.0
    backoff_sleep_seconds: float = 0.0
    bytes_received: int = 0

    def _combine(self, other: StatsSnapshot, sign: int) -> StatsSnapshot:
        statuses = dict(self.responses_by_status)
        for code, n in other.responses_by_status.items():
            statuses[code] = statuses.get(code, 0) + sign * n
        counters = {
            f.name: getattr(self, f.name) + sign * getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("service", "responses_by_status")
        }
        return StatsSnapshot(
            service=self.service,
            responses_by_status=MappingProxyType({c: n for c, n in statuses.items() if n}),
            **counters,
        )

    def minus(self, earlier: StatsSnapshot) -> StatsSnapshot:
        """What happened between ``earlier`` and this snapshot."""
        return self._combine(earlier, -1)

    def plus(self, other: StatsSnapshot) -> StatsSnapshot:
        """Both counts summed (e.g. a client's several transports), under this service name."""
        return self._combine(other, 1)

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["responses_by_status"] = dict(self.responses_by_status)
        return data

    def summary(self) -> str:
        """One line for a step's log, e.g. ``pendo: 12 requests (200×11, 429×1), 1 retry…``."""
        statuses = ", ".join(f"{c}×{n}" for c, n in sorted(self.responses_by_status.items()))
        return (
            f"{self.service}: {self.requests_sent} requests ({statuses or 'no responses'}), "
            f"{self.retries} retries, {self.throttled} throttled (429), "
            f"{self.transport_errors} transport errors, "
            f"waited {self.limiter_wait_seconds:.1f} s for limits, "
            f"slept {self.backoff_sleep_seconds:.1f} s in backoff, "
            f"{self.bytes_received / 1e6:.2f} MB received"
        )


class TransportStats:
    """Thread-safe counters of one transport; read with ``snapshot()`` and ``delta(since)``."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts: dict[str, float] = dict.fromkeys(
                (
                    "requests_sent",
                    "retries",
                    "throttled",
                    "transport_errors",
                    "limiter_wait_seconds",
                    "backoff_sleep_seconds",
                    "bytes_received",
                ),
                0,
            )
            self._statuses: dict[int, int] = {}

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._counts[name] += amount

    def add_status(self, status: int) -> None:
        with self._lock:
            self._statuses[status] = self._statuses.get(status, 0) + 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            c = dict(self._counts)
            statuses = MappingProxyType(dict(self._statuses))
        return StatsSnapshot(
            service=self.service,
            requests_sent=int(c["requests_sent"]),
            responses_by_status=statuses,
            retries=int(c["retries"]),
            throttled=int(c["throttled"]),
            transport_errors=int(c["transport_errors"]),
            limiter_wait_seconds=c["limiter_wait_seconds"],
            backoff_sleep_seconds=c["backoff_sleep_seconds"],
            bytes_received=int(c["bytes_received"]),
        )

    def delta(self, since: StatsSnapshot) -> StatsSnapshot:
        """What happened after the snapshot ``since``."""
        return self.snapshot().minus(since)

    def summary(self) -> str:
        return self.snapshot().summary()

    def __repr__(self) -> str:
        return f"TransportStats({self.snapshot()!r})"


# --- configuration -------------------------------------------------------------------------

Classify403 = Callable[[httpx.Request, httpx.Response], type[ApiError]]


@dataclass(frozen=True)
class TransportConfig:
    """How to reach one service. Fields holding secrets are left out of ``repr``.

    Values in ``default_headers`` and ``auth`` may be :class:`Secret`; those are redacted
    automatically, as are the ``secrets`` listed. ``classify_403`` decides what a 403 means
    for this service (default: :class:`AuthenticationError`).

    ``max_attempts`` counts every send of one call, the first included. ``max_retry_time``
    caps the seconds one call may spend from its first send to its last retry; time spent
    waiting on a limiter is pacing, not retrying, and is not counted. Backoff before retry
    ``n`` (1-based) sleeps ``uniform(0, min(backoff_max, backoff_base * 2 ** (n - 1)))``
    unless the server sent ``Retry-After``.
    """

    base_url: str
    service: str
    default_headers: Mapping[str, str | Secret] = field(default_factory=dict, repr=False)
    auth: httpx.Auth | tuple[str | Secret, str | Secret] | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    write_timeout: float = 60.0
    pool_timeout: float = 30.0
    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    max_retry_time: float = 300.0
    secrets: tuple[str | Secret, ...] = field(default=(), repr=False)
    user_agent: str = "analytics-assets/0.1 (python-httpx)"
    max_connections: int = 10
    max_keepalive_connections: int = 10
    # Below the common 5 s server idle timeout (uvicorn, many load balancers), so we do not
    # reuse a connection the server is closing: that fails in ways a POST cannot retry.
    keepalive_expiry: float = 4.0
    follow_redirects: bool = True
    trust_env: bool = True
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    classify_403: Classify403 | None = field(default=None, repr=False)

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` for a config that cannot work."""
        problems = []
        try:
            url: httpx.URL | None = httpx.URL(self.base_url) if self.base_url else None
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            problems.append(
                f"base_url must be an absolute http(s) URL, got {redact_url(self.base_url)!r}"
            )
        if not self.service:
            problems.append("service must be named")
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 seconds")
        if self.max_attempts < 1:
            problems.append("max_attempts must be >= 1")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.max_retry_time < 0:
            problems.append("backoff_base, backoff_max and max_retry_time must be >= 0")
        for name, value in self.default_headers.items():
            if not reveal(value):
                problems.append(f"header {name!r} is empty: is its key set?")
        if isinstance(self.auth, tuple) and not all(reveal(v) for v in self.auth):
            problems.append("auth has an empty user name or password: are the keys set?")
        if problems:
            raise ConfigurationError("; ".join(problems), service=self.service or None)


# --- the transport -------------------------------------------------------------------------


def _full_jitter(cap: float) -> float:
    return random.uniform(0.0, cap)


class DamagedBodyError(Exception):
    """A body that arrived but is not what was asked for: shorter than its
    ``Content-Length``, HTML or an empty body where JSON was expected, JSON cut short (a
    proxy can cut a body and fix up ``Content-Length`` to match).

    A transport fault like a dropped connection (:func:`is_transport_fault`): the request is
    sent again within the same attempts and budget. Its text says what came back, already
    redacted, and never holds more than a short excerpt of the body; ``hint`` is the next
    step the final error gives if every attempt ends like this.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


# Next steps for a damaged body: cut short on the way, or another party's page instead.
CUT_SHORT_HINT = (
    "The answer was cut short or garbled on the way (a dropped connection or a proxy); run "
    "the job again, and if it keeps happening check the network and proxies between this "
    "host and the API."
)
FOREIGN_PAGE_HINT = (
    "Something other than the API answered: a proxy, gateway or captive portal between this "
    "host and the API, or base_url points at a web page instead of the API host. Check "
    "base_url and any proxy; if it was passing, run the job again."
)


def is_transport_fault(exc: BaseException) -> bool:
    """True for a body that broke in transit (dropped connection, read timeout…) or arrived
    damaged (:class:`DamagedBodyError`): the default ``retryable`` of
    :meth:`Transport.consume`."""
    return isinstance(exc, httpx.TransportError | DamagedBodyError)


class _IncompleteBody(DamagedBodyError):
    """A body that ended cleanly but shorter than its ``Content-Length`` said."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint=CUT_SHORT_HINT)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DamagedBodyError):
        return str(exc)  # already says what happened ("truncated body: …")
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# What a JSON text may start with (after whitespace): anything else is another format.
_JSON_STARTS = frozenset(b'{["-0123456789tfn')
_EXCERPT_CHARS = 80


@dataclass(frozen=True)
class JsonAnswer:
    """A JSON answer of :meth:`Transport.request_json`: ``status``, the parsed ``data``
    (None for an empty answer where allowed, or an expected error status whose body is not
    JSON) and the read, closed ``response`` (headers, request, ``content``)."""

    status: int
    data: Any
    response: httpx.Response = field(repr=False)


def json_body_problem(body: bytes, content_type: str | None) -> tuple[Any, str | None]:
    """``(value, None)`` when ``body`` is a JSON text, else ``(None, what is wrong)``.

    What is wrong is said the way a person would check it: an empty body, HTML where JSON
    was expected (with the page's own words), JSON cut short after N bytes (a body cut on
    the way whose length still matches its ``Content-Length``), JSON damaged at a byte, or
    another format. A body that parses is accepted whatever its content type says:
    Amplitude labels some answers oddly (``/identify`` sends ``success`` as ``text/html``),
    so the label only names what came back.
    """
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError as exc:
        error = exc
    kind = (content_type or "").split(";")[0].strip().lower() or "no content type"
    size = f"{len(body):,} bytes"
    text = body.strip()
    if not text:
        return None, f"an empty body where JSON was expected ({kind})"
    if "html" in kind or text[:1] == b"<":
        words = server_message(body, "text/html") or ""
        if len(words) > _EXCERPT_CHARS:
            words = words[: _EXCERPT_CHARS - 1] + "…"
        said = f': "{words}"' if words else ""
        return None, f"HTML where JSON was expected ({kind}, {size}{said})"
    if text[0] in _JSON_STARTS:
        if error.pos >= len(body.rstrip()):
            return None, f"JSON cut short after {size} ({kind})"
        return None, f"JSON damaged at byte {error.pos:,} of {size} ({error.msg}; {kind})"
    words = " ".join(text[:_EXCERPT_CHARS].decode("utf-8", "replace").split())
    return None, f'a body that is not JSON where JSON was expected ({kind}, {size}: "{words}")'


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class _Call:
    """One logical request: its attempts and its retry-time budget."""

    def __init__(
        self,
        transport: Transport,
        method: str,
        url: str,
        build: dict[str, Any],
        *,
        idempotent: bool,
        limiter: Limiter | None,
        cost: float,
    ) -> None:
        self.t = transport
        self.method = method
        self.url = url
        self.build = build
        self.idempotent = idempotent
        self.limiter = limiter
        self.cost = cost
        self.expected: tuple[int, ...] = ()  # statuses returned instead of raised
        # An iterator body is consumed by the first attempt and cannot be sent again.
        content = build.get("content")
        self.replayable = content is None or isinstance(content, (bytes, str))
        self.attempts = 0
        self.limiter_wait = 0.0
        self.start = transport._clock()
        self.safe_url = ""
        self.stop_reason = ""

    def plan_retry(self, retry_after: float | None) -> float | None:
        """Seconds to sleep before the next attempt, or None to give up (reason kept).

        Time waiting on a limiter is pacing, not retrying, so it does not use up the budget.
        """
        cfg = self.t.config
        if not self.replayable:
            self.stop_reason = "the request body is a stream and cannot be sent twice"
            return None
        if self.attempts >= cfg.max_attempts:
            self.stop_reason = f"gave up after {self.attempts} attempts"
            return None
        remaining = cfg.max_retry_time - (self.t._clock() - self.start - self.limiter_wait)
        if retry_after is not None:
            if retry_after > remaining:
                # Sleeping would only end in the same error later: fail now, say why.
                self.stop_reason = (
                    f"Retry-After of {retry_after:g} s exceeds the remaining retry budget of "
                    f"{max(remaining, 0):.0f} s"
                )
                return None
            return retry_after
        if remaining <= 0:
            self.stop_reason = f"retry time budget of {cfg.max_retry_time:g} s used up"
            return None
        cap = min(cfg.backoff_max, cfg.backoff_base * 2 ** (self.attempts - 1))
        return min(self.t._jitter(cap), remaining)


class _TrackedStream(httpx.SyncByteStream):
    """Wraps a streamed body: counts bytes and releases the limiter slot once, on close."""

    def __init__(
        self,
        inner: httpx.SyncByteStream,
        on_bytes: Callable[[int], None],
        on_close: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._on_bytes = on_bytes
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._on_bytes(len(chunk))
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._inner.close()
        finally:
            self._on_close()


def stream_to_file(
    response: httpx.Response,
    dest: Path,
    *,
    chunk_size: int = 1 << 20,
    check: Callable[[Path], None] | None = None,
) -> int:
    """Write a streamed response's body to ``dest``; return the bytes written.

    The body goes to a temporary file beside ``dest``, renamed over it only when whole: a
    body shorter than its ``Content-Length`` raises :class:`DamagedBodyError`, and
    ``check(tmp)`` (if given) may refuse it; on any failure nothing is left behind. The
    response is closed (connection and limiter slot freed) before ``check`` runs. The
    ``read`` of :meth:`Transport.download` and of clients that stream a file through
    :meth:`Transport.consume` themselves (a redirect to follow by hand).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")
    written = 0
    try:
        with tmp.open("wb") as fh:
            for chunk in response.iter_bytes(chunk_size):
                fh.write(chunk)
                written += len(chunk)
        response.close()  # frees the connection and the limiter slot before `check`
        # Content-Length counts the bytes on the wire, before any Content-Encoding.
        declared = response.headers.get("content-length", "")
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        received = response.num_bytes_downloaded if encoded else written
        if declared.isdigit() and received != int(declared):
            raise _IncompleteBody(f"truncated body: {received} of {declared} bytes")
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)  # nothing left after a failure (no-op on success)
    return written


class Transport:
    """One pooled HTTP/1.1 client for one service, safe to share between threads.

    ``sleep``, ``clock`` (monotonic), ``wall_clock`` (epoch, for HTTP-date ``Retry-After``) and
    ``jitter`` (``cap -> seconds``, default uniform in [0, cap]) are injectable for tests;
    ``http_transport`` replaces the network (e.g. ``httpx.MockTransport``).
    """

    def __init__(
        self,
        config: TransportConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[float], float] = _full_jitter,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.service = config.service
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._jitter = jitter
        self.stats = TransportStats(config.service)

        secrets: list[str | Secret] = list(config.secrets)
        secrets += [v for v in config.default_headers.values() if isinstance(v, Secret)]
        extra: list[str] = []
        auth = config.auth
        if isinstance(auth, tuple):
            secrets += list(auth)
            auth = httpx.BasicAuth(reveal(auth[0]), reveal(auth[1]))
        elif isinstance(auth, httpx.BasicAuth):
            # The only place httpx keeps the credentials is the ready-made header.
            token = getattr(auth, "_auth_header", "")
            extra += [token, token.partition(" ")[2]]
        self._redactor = Redactor(secrets, extra=extra)
        _register_redactor(self._redactor)

        headers = {"User-Agent": config.user_agent}
        headers |= {name: reveal(value) for name, value in config.default_headers.items()}
        self._base_origin = _origin(httpx.URL(config.base_url))
        self._client = httpx.Client(
            base_url=config.base_url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.write_timeout,
                pool=config.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_keepalive_connections,
                keepalive_expiry=config.keepalive_expiry,
            ),
            http1=True,
            http2=False,
            follow_redirects=config.follow_redirects,
            trust_env=config.trust_env,
            transport=http_transport,
            event_hooks={"request": [self._guard_origin]},
        )

    # -- redaction

    def redact(self, text: str) -> str:
        """``text`` with this transport's secrets replaced by ``***``."""
        return self._redactor(text)

    def redact_url(self, url: str | httpx.URL) -> str:
        return redact_url(url, self._redactor)

    def _guard_origin(self, request: httpx.Request) -> None:
        # Runs for every hop, redirects included (httpx only strips Authorization). A request
        # to another origin (an S3 link, a redirect) must not carry our keys in any header.
        if _origin(request.url) == self._base_origin:
            return
        for name in list(request.headers.keys()):
            lowered = name.lower()
            if lowered in ("authorization", "proxy-authorization", "cookie") or (
                lowered != "host" and self._redactor.contains_secret(request.headers[name])
            ):
                del request.headers[name]

    # -- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        limiter: Limiter | None = None,
        cost: float = 1,
        stream: bool = False,
        timeout: float | httpx.Timeout | None = None,
        expected: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send a request with limits and retries; return the response or raise an ApiError.

        ``path`` is relative to ``base_url`` (an absolute URL also works; our secret headers are
        then stripped if it is another origin). ``timeout`` as a number sets the read timeout
        for this call (connect/write/pool stay as configured); an ``httpx.Timeout`` sets all.
        Responses below 400, and those whose status is in ``expected`` (e.g. ``(404,)`` where
        404 means "no data"), are returned; others raise after any retries.
        With ``stream=True`` the body is left unread: read it with ``iter_bytes``/``iter_raw``
        and close the response (``with contextlib.closing(transport.request(..., stream=True))
        as r:``); the limiter slot is held until then, and retries cover only getting the
        status line and headers (:meth:`consume` also retries a body that breaks).

        Retries (429, 408, 5xx, timeouts, connection errors) follow ``idempotent``, which
        defaults to True for GET/HEAD/PUT/DELETE and False for POST: a non-idempotent request
        is retried only when the server provably did not process it (see ``_send``).
        """
        call = self._call(
            method, path, params, json, data, content, headers, idempotent, limiter, cost, timeout
        )
        call.expected = tuple(expected)
        return self._send(call, stream=stream)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def download(
        self,
        method: str,
        path: str,
        dest: Path | str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        limiter: Limiter | None = None,
        cost: float = 1,
        timeout: float | httpx.Timeout | None = None,
        chunk_size: int = 1 << 20,
        check: Callable[[Path], None] | None = None,
        check_retryable: Callable[[BaseException], bool] | None = None,
        expected: tuple[int, ...] = (),
        on_expected: Callable[[httpx.Response], None] | None = None,
    ) -> int:
        """Stream a response body to ``dest`` in chunks; return the bytes written.

        The body goes to a temporary file beside ``dest`` that is renamed over it only when
        complete; a dropped connection or a body shorter than its ``Content-Length`` restarts
        the whole download (idempotent requests only), within the same attempts and
        retry-time budget. Content-Encoding is decoded; the file holds what ``iter_bytes``
        yields. Error statuses raise as in :meth:`request` (nothing is written).

        ``check``, if given, is called with the complete temporary file before it replaces
        ``dest`` (e.g. "is this a whole zip?"). An exception it raises for which
        ``check_retryable`` is true (the file was damaged on the way) downloads it again in
        the same loop, like a dropped connection; any other propagates. Either way no file
        is left behind.

        An answer whose status is in ``expected`` is not written: ``on_expected(response)``
        gets it unread and says what it means by raising. A retryable exception (a
        :class:`DamagedBodyError`, or one ``check_retryable`` accepts: say, an intermediary's
        error page where the service's own answer was expected) sends the request again in
        the same loop; any other propagates to the caller (say, the service's own "no data"
        answer). If it returns, nothing is written and 0 is returned.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)

        def write(response: httpx.Response) -> Iterator[int]:
            if response.status_code in expected and on_expected is not None:
                on_expected(response)
                yield 0
                return
            yield stream_to_file(response, dest, chunk_size=chunk_size, check=check)

        def fault(exc: BaseException) -> bool:
            return is_transport_fault(exc) or (check_retryable is not None and check_retryable(exc))

        items = self.consume(
            method,
            path,
            write,
            retryable=fault,
            params=params,
            json=json,
            data=data,
            headers=headers,
            idempotent=idempotent,
            limiter=limiter,
            cost=cost,
            timeout=timeout,
            expected=expected if on_expected is not None else (),
        )
        with contextlib.closing(items):  # finish the generator now, not when it is collected
            return next(items)  # `write` yields once, after the file is in place

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        limiter: Limiter | None = None,
        cost: float = 1,
        timeout: float | httpx.Timeout | None = None,
        expected: tuple[int, ...] = (),
        allow_empty: bool = False,
    ) -> JsonAnswer:
        """Send a request whose answer is JSON; return it parsed, as a :class:`JsonAnswer`.

        A success answer (2xx) whose body is not JSON (HTML from a proxy or captive portal,
        an empty body, JSON cut short with a ``Content-Length`` that matches the cut) is a
        :class:`DamagedBodyError`: the request is sent again in the one retry loop of
        :meth:`consume`, like a dropped connection (same attempts, backoff, budget, stats
        and idempotency rule). When the retries run out, :class:`DamagedResponseError` says
        what the last body was ("HTML where JSON was expected …", "JSON cut short after N
        bytes …"), redacted. ``allow_empty`` accepts an empty body or 204 as ``data=None``
        (writes that answer nothing). An answer with a status in ``expected`` is returned
        with ``data`` parsed when it is JSON, else None: its caller reads it as an error.
        A redirect (when the transport does not follow them) raises :class:`ApiError`.
        """
        merged = {"Accept": "application/json", **(headers or {})}

        def read(response: httpx.Response) -> Iterator[JsonAnswer]:
            status = response.status_code
            if 300 <= status < 400:
                location = response.headers.get("location", "")
                raise ApiError(
                    f"unexpected redirect (HTTP {status})"
                    + (f" to {self.redact_url(location)}" if location else ""),
                    status=status,
                    method=response.request.method,
                    url=self.redact_url(response.request.url),
                    service=self.service,
                    hint="Check base_url: the API host itself answers, it does not redirect.",
                )
            body = response.read()
            content_type = response.headers.get("content-type")
            if status >= 400 or (allow_empty and (status == 204 or not body.strip())):
                value, _ = json_body_problem(body, content_type) if body.strip() else (None, "")
                yield JsonAnswer(status, value, response)
                return
            value, problem = json_body_problem(body, content_type)
            if problem is not None:
                # JSON that broke off is the right host's answer cut on the way; anything
                # else came from someone else (or base_url points at a web page).
                cut = problem.startswith(("JSON", "an empty body"))
                raise DamagedBodyError(
                    self.redact(f"{problem}, HTTP {status}"),
                    hint=CUT_SHORT_HINT if cut else FOREIGN_PAGE_HINT,
                )
            yield JsonAnswer(status, value, response)

        answers = self.consume(
            method,
            path,
            read,
            params=params,
            json=json,
            data=data,
            content=content,
            headers=merged,
            idempotent=idempotent,
            limiter=limiter,
            cost=cost,
            timeout=timeout,
            expected=expected,
        )
        with contextlib.closing(answers):
            return next(answers)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        """The parsed JSON of a GET (see :meth:`request_json`)."""
        return self.request_json("GET", path, **kwargs).data

    def consume(
        self,
        method: str,
        path: str,
        read: Callable[[httpx.Response], Iterable[T]],
        *,
        retryable: Callable[[BaseException], bool] = is_transport_fault,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        limiter: Limiter | None = None,
        cost: float = 1,
        timeout: float | httpx.Timeout | None = None,
        expected: tuple[int, ...] = (),
    ) -> Iterator[T]:
        """Send a request, stream its body through ``read`` and yield what ``read`` yields,
        retrying the whole request-and-read in the one retry loop of :meth:`request`.

        ``read(response)`` gets the unread streamed response (status below 400 or in
        ``expected``) and yields items as it parses them; the transport closes the response
        afterwards. When ``read`` raises an exception that ``retryable`` accepts (default:
        :func:`is_transport_fault`, a body that broke in transit; a parser may add its own
        errors for a damaged body) **before it has yielded anything**, the request is sent
        again: the same attempt count, backoff with full jitter, retry-time budget, stats
        (one ``transport_errors`` and one ``retries`` per fault) and idempotency rule as a
        dropped connection in :meth:`request` (a 429's ``Retry-After`` met on the way is
        honoured as usual). A reader that must not show a partial result holds its items
        back until it has enough (or all) of them. Once an item was yielded, resending would
        hand it out twice, so the fault raises :class:`StreamInterruptedError` with
        ``items_yielded`` instead; so does running out of attempts or time
        (``items_yielded=0``, ``reason`` saying why). Any other exception from ``read``
        propagates as it is, without a resend.

        Lazy: nothing is sent until the first item is asked for, and the retry-time budget
        starts then.
        """
        call = self._call(
            method, path, params, json, data, content, headers, idempotent, limiter, cost, timeout
        )
        call.expected = tuple(expected)
        while True:
            response = self._send(call, stream=True)
            items = 0
            failure: BaseException  # set by the only way out of the loop that is not a return
            with contextlib.closing(response):
                parts: Iterator[T] | None = None
                try:
                    while True:
                        # Only `read`'s own progress is judged; an exception thrown in at the
                        # `yield` below (by our consumer) is not a fault of the body.
                        try:
                            if parts is None:
                                parts = iter(read(response))
                            item = next(parts)
                        except StopIteration:
                            return
                        except Exception as exc:
                            if not retryable(exc):
                                raise
                            failure = exc
                            break
                        items += 1
                        yield item
                finally:
                    close = getattr(parts, "close", None)
                    if close is not None:
                        close()  # a generator reader runs its own cleanup now, not at GC
            # The response is closed (limiter slot released) before any backoff sleep.
            self._after_broken_body(call, failure, items)

    def _after_broken_body(self, call: _Call, failure: BaseException, items: int) -> None:
        """Count a body that broke while being read; back off, or raise if it may not be
        resent (items already handed out, not idempotent, attempts or time used up)."""
        self.stats.add(transport_errors=1)
        detail = self.redact(_describe(failure))
        kwargs: dict[str, Any] = {
            "method": call.method,
            "url": call.safe_url,
            "service": self.service,
            "attempts": call.attempts,
            "detail": detail,
        }
        if items:
            raise StreamInterruptedError(
                f"the response broke after {items} items had been read ({detail}); not resent, "
                "because its first items would be handed out twice",
                items_yielded=items,
                **kwargs,
            ) from failure
        delay = None
        if not call.idempotent:
            call.stop_reason = (
                "not resent, because the server may already have processed this "
                f"{call.method} (pass idempotent=True if sending it twice is safe)"
            )
        elif isinstance(failure, _NEVER_RETRY_ERRORS):
            call.stop_reason = "not resent: this error would happen again"
        else:
            delay = call.plan_retry(None)
        if delay is None:
            if isinstance(failure, DamagedBodyError):
                # A damaged body is told apart from a broken connection: the fix differs.
                raise DamagedResponseError(
                    f"no complete response ({detail}); {call.stop_reason}",
                    reason=call.stop_reason,
                    hint=failure.hint,
                    **kwargs,
                ) from failure
            raise StreamInterruptedError(
                f"no complete response ({detail}); {call.stop_reason}",
                reason=call.stop_reason,
                **kwargs,
            ) from failure
        self._backoff(call, delay, detail)

    def _call(
        self,
        method: str,
        path: str,
        params: Any,
        json: Any,
        data: Any,
        content: Any,
        headers: Mapping[str, str] | None,
        idempotent: bool | None,
        limiter: Limiter | None,
        cost: float,
        timeout: float | httpx.Timeout | None,
    ) -> _Call:
        method = method.upper()
        build = {
            "params": params,
            "json": json,
            "data": data,
            "content": content,
            "headers": headers,
            "timeout": self._timeout(timeout),
        }
        return _Call(
            self,
            method,
            path,
            build,
            idempotent=method in _IDEMPOTENT_METHODS if idempotent is None else idempotent,
            limiter=limiter,
            cost=cost,
        )

    def _timeout(self, timeout: float | httpx.Timeout | None) -> Any:
        if timeout is None:
            return httpx.USE_CLIENT_DEFAULT
        if isinstance(timeout, httpx.Timeout):
            return timeout
        cfg = self.config
        return httpx.Timeout(
            connect=cfg.connect_timeout,
            read=float(timeout),
            write=cfg.write_timeout,
            pool=cfg.pool_timeout,
        )

    def _send(self, call: _Call, *, stream: bool) -> httpx.Response:
        """The retry loop.

        An explicit loop rather than tenacity: tenacity measures its delay budget with
        ``time.monotonic`` directly (no injectable clock), and every decision here needs the
        response itself (idempotency, Retry-After against the remaining budget, limiter
        feedback), which as tenacity callbacks would be longer and harder to follow.

        When may a request be sent again? An idempotent one (GET, PUT, DELETE, or a POST the
        caller marks idempotent: Pendo aggregations are reads, Pendo metadata writes set
        absolute values, Amplitude ingestion dedupes on insert_id) after any retryable failure.
        A non-idempotent one only when the server provably did not process it: the connection
        was never made (connect error/timeout, pool timeout), or the server answered 429 or
        503, both of which mean "not processed". After a read timeout, a dropped connection or
        a 500/502/504 the server may already have acted, and resending could apply it twice.
        """
        while True:
            call.attempts += 1
            request = self._client.build_request(call.method, call.url, **call.build)
            if not call.safe_url:
                call.safe_url = self.redact_url(request.url)
            if call.limiter is not None:
                waited = call.limiter.acquire(call.cost)
                call.limiter_wait += waited
                self.stats.add(limiter_wait_seconds=waited)
            self.stats.add(requests_sent=1)
            t0 = self._clock()
            error_body = b""
            try:
                response = self._client.send(request, stream=True)
                try:
                    ok = response.status_code < 400 or response.status_code in call.expected
                    if not stream:
                        response.read()
                    elif not ok:
                        error_body = self._read_capped(response)
                except BaseException:
                    response.close()
                    raise
            except httpx.RequestError as exc:
                self._release(call)
                self._log_attempt(call, f"{type(exc).__name__}", t0, logging.DEBUG)
                delay = self._plan_after_exception(call, exc)
                self._backoff(call, delay, f"{type(exc).__name__}: {exc}")
                continue
            except BaseException:
                self._release(call)
                raise

            status = response.status_code
            self.stats.add_status(status)
            if not stream:
                self.stats.add(bytes_received=response.num_bytes_downloaded)
            self._log_attempt(call, str(status), t0, logging.DEBUG)
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._wall_clock())
            if status == 429:
                self.stats.add(throttled=1)
            if call.limiter is not None:
                if status == 429:
                    call.limiter.on_throttled(retry_after)
                elif status < 500:
                    call.limiter.on_success()

            if ok:
                if stream:
                    response.stream = _TrackedStream(
                        response.stream,  # type: ignore[arg-type]
                        lambda n: self.stats.add(bytes_received=n),
                        lambda: self._release(call),
                    )
                else:
                    self._release(call)
                return response

            self._release(call)
            body = response.content if not stream else error_body
            retryable = status in self.config.retry_statuses and (
                call.idempotent or status in _NOT_PROCESSED_STATUSES
            )
            delay = call.plan_retry(retry_after) if retryable else None
            if delay is None:
                raise self._status_error(call, request, response, body, retry_after)
            self._backoff(call, delay, f"HTTP {status}")

    @staticmethod
    def _read_capped(response: httpx.Response) -> bytes:
        """At most 64 KiB of a streamed error body (then closed): enough for its message."""
        parts: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= _ERROR_BODY_CAP:
                break
        response.close()
        return b"".join(parts)

    def _release(self, call: _Call) -> None:
        if call.limiter is not None:
            call.limiter.release(call.cost)

    def _plan_after_exception(self, call: _Call, exc: httpx.RequestError) -> float:
        self.stats.add(transport_errors=1)
        not_sent = isinstance(exc, _NOT_SENT_ERRORS)
        retryable = (
            isinstance(exc, httpx.TransportError)
            and not isinstance(exc, _NEVER_RETRY_ERRORS)
            and (call.idempotent or not_sent)
        )
        delay = call.plan_retry(None) if retryable else None
        if delay is not None:
            return delay
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.TransportError) and not call.idempotent and not not_sent:
            detail += (
                "; not resent, because the server may already have processed this "
                f"{call.method} (pass idempotent=True if sending it twice is safe)"
            )
        raise self._transport_error(call, detail) from exc

    def _transport_error(self, call: _Call, detail: str) -> TransportError:
        summary = f"no complete response ({self.redact(detail)})"
        if call.stop_reason:
            summary += f"; {call.stop_reason}"
        return TransportError(
            summary,
            method=call.method,
            url=call.safe_url,
            service=self.service,
            attempts=call.attempts,
        )

    def _status_error(
        self,
        call: _Call,
        request: httpx.Request,
        response: httpx.Response,
        body: bytes,
        retry_after: float | None,
    ) -> ApiError:
        status = response.status_code
        if status == 403:
            cls = (self.config.classify_403 or (lambda _req, _resp: AuthenticationError))(
                request, response
            )
        else:
            cls = error_class_for_status(status)
        message = server_message(body, response.headers.get("content-type"))
        summary = self.redact(f"HTTP {status} {response.reason_phrase}".rstrip())
        if call.stop_reason:  # set only when a retryable failure ran out of attempts or time
            summary += f"; {call.stop_reason}"
        kwargs: dict[str, Any] = {
            "status": status,
            "method": call.method,
            "url": call.safe_url,
            "service": self.service,
            "body_excerpt": self.redact(message) if message else None,
            "attempts": call.attempts,
            "hint": STATUS_HINTS.get(status),
        }
        if issubclass(cls, RateLimitedError):
            kwargs["retry_after"] = retry_after
        return cls(summary, **kwargs)

    def _backoff(self, call: _Call, delay: float, reason: str) -> None:
        logger.warning(
            "[%s] %s %s -> %s; retry %d/%d in %.2f s",
            self.service,
            call.method,
            call.safe_url,
            self.redact(reason),
            call.attempts + 1,
            self.config.max_attempts,
            delay,
        )
        self.stats.add(retries=1, backoff_sleep_seconds=delay)
        if delay > 0:
            self._sleep(delay)

    def _log_attempt(self, call: _Call, outcome: str, t0: float, level: int) -> None:
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "[%s] %s %s -> %s in %.3f s (attempt %d/%d)",
                self.service,
                call.method,
                call.safe_url,
                outcome,
                self._clock() - t0,
                call.attempts,
                self.config.max_attempts,
            )

    # -- lifecycle

    def close(self) -> None:
        self._client.close()
        _unregister_redactor(self._redactor)

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        base_url = self.redact_url(self.config.base_url)
        return f"Transport(service={self.service!r}, base_url={base_url!r})"
