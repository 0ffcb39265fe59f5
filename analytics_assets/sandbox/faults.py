"""Fault injection and request counters, as ASGI middleware around the whole sandbox.

A fault rule says what goes wrong (a 5xx, a 429 burst, added latency, a connection
dropped mid-body, a truncated body, an intermediary's HTML error page, a damaged 200
answer), for which requests (service, method, path pattern), how often (probability)
and for how long (a count or a duration). Rules are set at start
(``SandboxConfig.faults``) or at run time through ``POST /_sandbox/faults``. The
counters record every answer as the client saw it, faults included, so tests assert on
what actually crossed the wire.

Kinds: ``error`` (the service's own error body with ``status``), ``throttle`` (429,
optional ``retry_after``), ``latency`` (``latency_seconds`` before answering), ``drop``
(the connection closes after ``fraction`` of the body), ``truncate`` (the body cut to
``fraction``, Content-Length fixed up to match), ``html`` (an intermediary's HTML error
page with ``status``, e.g. a proxy's 404, 502 or 503, the API never reached) and
``damage`` (a 200 answer's body replaced as ``damage`` says: ``html``, a captive
portal's page; ``empty``; ``cut``, cut to ``fraction`` with a matching Content-Length;
answers other than 200 pass unchanged), and ``duplicate`` (the request delivered to
the API twice, as a proxy that re-sends after a lost upstream answer does: a write is
applied twice, the client sees the second answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL_PREFIX = "/_sandbox"
FAULT_KINDS = ("error", "throttle", "latency", "drop", "truncate", "html", "damage", "duplicate")
DAMAGE_KINDS = ("html", "empty", "cut")


class DroppedConnection(Exception):
    """Raised inside the ASGI app to make the server abort a response mid-body."""


class _QuietDrops(logging.Filter):
    # A dropped connection is staged on purpose; its traceback is noise in the logs.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def service_of(path: str) -> str:
    """Which emulated service a path belongs to (region prefixes allowed)."""
    if path.startswith(CONTROL_PREFIX):
        return "control"
    return "pendo" if "/api/v1/" in path else "amplitude"


@dataclass
class FaultRule:
    """One kind of failure, for the requests it matches."""

    kind: str
    probability: float = 1.0
    count: int | None = None
    duration_seconds: float | None = None
    service: str | None = None
    method: str | None = None
    path: str = ""
    status: int = 503
    latency_seconds: float = 0.0
    retry_after: float | None = None
    # drop/truncate (and damage "cut"): the share of the body (or of its first chunk) sent.
    fraction: float = 0.5
    # damage: what a 200 answer's body becomes (see DAMAGE_KINDS).
    damage: str = "html"
    id: int = 0
    created: float = field(default_factory=time.monotonic)
    applied: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError("fraction must be in [0, 1)")
        if self.damage not in DAMAGE_KINDS:
            raise ValueError(f"unknown damage {self.damage!r}; use one of {DAMAGE_KINDS}")
        re.compile(self.path)

    def expired(self, now: float) -> bool:
        if self.count is not None and self.applied >= self.count:
            return True
        return self.duration_seconds is not None and now - self.created > self.duration_seconds

    def matches(self, method: str, path: str) -> bool:
        if self.service and service_of(path) != self.service:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path or re.search(self.path, path) is not None

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("created")
        return data


class FaultPlan:
    """The active fault rules; thread-safe, seeded so a test's faults are reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._next_id = 1

    def add(self, spec: dict[str, Any]) -> FaultRule:
        allowed = {
            f for f in FaultRule.__dataclass_fields__ if f not in {"id", "created", "applied"}
        }
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        rule = FaultRule(**spec)
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.public() for rule in self._rules]

    def pick(self, method: str, path: str) -> list[FaultRule]:
        """The rules that fire for this request (at most one of each kind)."""
        now = time.monotonic()
        fired: dict[str, FaultRule] = {}
        with self._lock:
            self._rules = [rule for rule in self._rules if not rule.expired(now)]
            for rule in self._rules:
                if rule.kind in fired or not rule.matches(method, path):
                    continue
                if self._random.random() < rule.probability:
                    rule.applied += 1
                    fired[rule.kind] = rule
        return list(fired.values())


class RequestCounters:
    """Counts of answers per (method, path, status), as the client saw them."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._faults: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._counts[(method, path, status)] += 1

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faults.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rows = [
                {"method": m, "path": p, "status": s, "count": n}
                for (m, p, s), n in sorted(self._counts.items())
            ]
            by_status: Counter[int] = Counter()
            for (_, _, status), n in self._counts.items():
                by_status[status] += n
            return {
                "requests": rows,
                "total": sum(self._counts.values()),
                "by_status": {str(k): v for k, v in sorted(by_status.items())},
                "faults": dict(self._faults),
            }

    def count(
        self, *, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        """Sum of answers matching the given method, path (regex) and status."""
        with self._lock:
            return sum(
                n
                for (m, p, s), n in self._counts.items()
                if (method is None or m == method)
                and (path is None or re.search(path, p))
                and (status is None or s == status)
            )


def _amplitude_error(status: int, details: str) -> bytes:
    """Amplitude's error envelope for the Basic-auth APIs (see the contract, section 0)."""
    error = {"http_code": status, "type": "unspecified", "message": "Unspecified Error",
             "metadata": {"details": details}}  # fmt: skip
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def _fault_body(service: str, status: int) -> tuple[bytes, str]:
    if service == "amplitude":
        return _amplitude_error(status, "Injected fault"), "application/json"
    if status == 503:
        # Pendo sits behind a WAF whose 503s are HTML pages, not JSON.
        return b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html"
    return b"Internal Server Error", "text/plain; charset=utf-8"


_REASONS = {
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def html_error_page(status: int) -> bytes:
    """The error page a reverse proxy (nginx's stock page) sends when the API is not reached."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


#: What a captive portal or a misrouted proxy answers with 200 instead of the API's JSON.
PORTAL_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head>"
    b"<body><h1>Sign in to continue</h1><p>Your session has expired.</p></body></html>"
)


def _throttle_body(service: str) -> tuple[bytes, str]:
    if service == "amplitude":
        details = "Too Many Requests: Exceeded rate limit with query of cost 1"
        return _amplitude_error(429, details), "application/json"
    return b"Too Many Requests", "text/plain; charset=utf-8"


class SandboxMiddleware:
    """Counts every answer and applies the fault plan to every non-control request."""

    def __init__(self, app: ASGIApp, plan: FaultPlan, counters: RequestCounters) -> None:
        self.app = app
        self.plan = plan
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        status_seen = 500

        async def counting_send(message: Message) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
            await send(message)

        try:
            if path.startswith(CONTROL_PREFIX):
                await self.app(scope, receive, counting_send)
                return
            await self._with_faults(scope, receive, counting_send, method, path)
        finally:
            if not path.startswith(CONTROL_PREFIX):
                self.counters.record(method, path, status_seen)

    async def _with_faults(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        fired = {rule.kind: rule for rule in self.plan.pick(method, path)}
        for kind in fired:
            self.counters.record_fault(kind)
        service = service_of(path)
        if "latency" in fired:
            await asyncio.sleep(fired["latency"].latency_seconds)
        if "throttle" in fired:
            rule = fired["throttle"]
            body, ctype = _throttle_body(service)
            headers = [(b"content-type", ctype.encode())]
            if rule.retry_after is not None:
                headers.append((b"retry-after", str(max(1, round(rule.retry_after))).encode()))
            await _respond(send, 429, body, headers)
            return
        if "error" in fired:
            body, ctype = _fault_body(service, fired["error"].status)
            await _respond(send, fired["error"].status, body, [(b"content-type", ctype.encode())])
            return
        if "html" in fired:
            status = fired["html"].status
            headers = [(b"content-type", b"text/html")]
            await _respond(send, status, html_error_page(status), headers)
            return
        if "duplicate" in fired:
            # The first delivery's answer is lost on the way back; the second is answered.
            request = await _read_request(receive)
            await self.app(scope, _replay(request, None), _discard)
            receive = _replay(request, receive)
        if "drop" in fired:
            await self.app(scope, receive, _dropping_send(send, fired["drop"].fraction))
            return
        if "truncate" in fired:
            await self.app(scope, receive, _truncating_send(send, fired["truncate"].fraction))
            return
        if "damage" in fired:
            rule = fired["damage"]
            await self.app(scope, receive, _damaging_send(send, rule.damage, rule.fraction))
            return
        await self.app(scope, receive, send)


async def _read_request(receive: Receive) -> list[Message]:
    """Every message of a request's body, so it can be delivered more than once."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], then: Receive | None) -> Receive:
    """A ``receive`` that gives ``messages`` again, then waits on ``then`` (the client's
    own, for disconnects) or, for a delivery whose answer is discarded, forever."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def _discard(message: Message) -> None:
    """The ``send`` of a delivery whose answer never reaches the client."""


async def _respond(send: Send, status: int, body: bytes, headers: list) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _dropping_send(send: Send, fraction: float) -> Send:
    """Pass the headers, then part of the first body chunk, then abort the connection."""

    async def dropping(message: Message) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            cut = body[: int(len(body) * fraction)]
            if cut:
                await send({"type": "http.response.body", "body": cut, "more_body": True})
            raise DroppedConnection("sandbox fault: connection dropped mid-body")
        await send(message)

    return dropping


def _truncating_send(send: Send, fraction: float) -> Send:
    """Answer with a body cut short but complete on the wire (Content-Length matches).

    The cut is a share of the whole body when it comes in one chunk, else of the
    first chunk of a streamed body; whatever the app sends after the cut is ignored.
    """
    state: dict[str, Any] = {"start": None, "done": False, "buffer": b"", "limit": None}

    async def truncating(message: Message) -> None:
        if state["done"]:
            return
        if message["type"] == "http.response.start":
            state["start"] = message
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if state["limit"] is None:
            state["limit"] = int(len(body) * fraction)
        state["buffer"] += body
        if more and len(state["buffer"]) < state["limit"]:
            return
        cut = state["buffer"][: state["limit"]]
        start = state["start"]
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": cut})
        state["done"] = True

    return truncating


_BODY_HEADERS = (b"content-length", b"content-type", b"content-encoding")


def _damaging_send(send: Send, damage: str, fraction: float) -> Send:
    """Replace a 200 answer's body, complete on the wire (Content-Length matches): a
    captive portal's HTML page, an empty body, or the body cut to ``fraction``. Other
    statuses pass unchanged. The whole body is gathered first (the answers this is meant
    for are JSON documents; a streamed file is gathered too)."""
    state: dict[str, Any] = {"start": None, "buffer": b"", "pass": False}

    async def damaging(message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                state["pass"] = True
                await send(message)
            else:
                state["start"] = message
            return
        if state["pass"]:
            await send(message)
            return
        if state["start"] is None:
            return  # already answered: whatever the app still sends is ignored
        state["buffer"] += message.get("body", b"")
        if message.get("more_body", False):
            return
        whole = state["buffer"]
        # A cut body keeps its headers (an encoded body stays encoded, and breaks on
        # decoding); a replaced one is a page of its own.
        replaced = (b"content-length",) if damage == "cut" else _BODY_HEADERS
        headers = [(k, v) for k, v in state["start"]["headers"] if k.lower() not in replaced]
        if damage == "html":
            body = PORTAL_PAGE
            headers.append((b"content-type", b"text/html; charset=utf-8"))
        elif damage == "empty":
            body = b""
        else:
            body = whole[: int(len(whole) * fraction)]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**state["start"], "headers": headers})
        await send({"type": "http.response.body", "body": body})
        state["start"] = None

    return damaging
