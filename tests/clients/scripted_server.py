"""A tiny real HTTP server whose answers each test scripts in advance.

A Starlette app served by uvicorn (h11) on 127.0.0.1 with a free port, in a background thread.
Each request takes the next action from the script:

* ``Reply(status, headers, body, delay)`` or a tuple ``(status, headers, body)``; a ``dict`` or
  ``list`` body is sent as JSON;
* ``"drop"`` or ``Drop(body, declared_length)``: send headers with a ``Content-Length`` larger
  than the body, send the partial body, then close the connection;
* ``"sleep:N"``: wait N seconds, then answer ``200 slow``.

When the script is empty the server answers ``418`` (not a retried status), so a test that
sends more requests than it scripted fails loudly. Every request is recorded (method, path,
query, headers, body) in ``server.requests``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["Drop", "RecordedRequest", "Reply", "ScriptedServer"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | dict[str, Any] | list[Any] = b""
    delay: float = 0.0


@dataclass
class Drop:
    body: bytes = b"partial body "
    declared_length: int | None = None  # default: len(body) + 1000


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


Action = Reply | Drop | tuple[int, dict[str, str], Any] | str


def _parse(action: Action) -> Reply | Drop:
    if isinstance(action, (Reply, Drop)):
        return action
    if isinstance(action, tuple):
        status, headers, body = action
        return Reply(status, dict(headers or {}), body)
    if action == "drop":
        return Drop()
    if isinstance(action, str) and action.startswith("sleep:"):
        return Reply(200, {}, b"slow", delay=float(action.split(":", 1)[1]))
    raise ValueError(f"unknown scripted action {action!r}")


class _DropResponse(Response):
    """Headers promising more than is sent, part of the body, then the connection closes."""

    def __init__(self, drop: Drop) -> None:
        super().__init__()
        self.drop = drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = self.drop.declared_length or len(self.drop.body) + 1000
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(declared).encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.drop.body, "more_body": True})
        # Returning with the response incomplete makes uvicorn close the connection.


class ScriptedServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply | Drop] = deque()
        self.requests: list[RecordedRequest] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=_METHODS)])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- scripting

    def script(self, *actions: Action) -> None:
        with self._lock:
            self._script.extend(_parse(a) for a in actions)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    request.url.path,
                    request.url.query,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                )
            )
            action = self._script.popleft() if self._script else None
        if action is None:
            return Response(b"scripted server: no action left", status_code=418)
        if isinstance(action, Drop):
            return _DropResponse(action)
        if action.delay:
            await asyncio.sleep(action.delay)
        payload = action.body
        headers = dict(action.headers)
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            headers.setdefault("content-type", "application/json")
        elif isinstance(payload, str):
            payload = payload.encode()
        return Response(payload, status_code=action.status, headers=headers)

    # -- lifecycle

    def start(self) -> ScriptedServer:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when
        # the listening socket says TCP, and without it every response waits ~40 ms (Nagle
        # against delayed ACK) between its headers and its body.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http="h11",
            loop="asyncio",
            ws="none",
            lifespan="off",
            log_config=None,  # leave the process's logging alone
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("scripted server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
