"""Fixtures of the alert tests: a real local webhook receiver, a log collector."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@dataclass
class WebhookReceiver:
    """A tiny HTTP endpoint: answers ``fail_next`` requests with ``fail_status``, then 200."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    fail_status: int = 503
    delay_seconds: float = 0.0

    def reset(self) -> None:
        self.received.clear()
        self.attempts = 0
        self.fail_next = 0
        self.fail_status = 503
        self.delay_seconds = 0.0

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for message in self.received for alert in message.get("alerts", [])]


def _app(receiver: WebhookReceiver) -> Starlette:
    async def hook(request: Request):
        receiver.attempts += 1
        body = await request.json()  # read first: a client that times out leaves no error
        if receiver.delay_seconds:
            await asyncio.sleep(receiver.delay_seconds)
        if receiver.fail_next > 0:
            receiver.fail_next -= 1
            return PlainTextResponse("unavailable", status_code=receiver.fail_status)
        receiver.received.append(body)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/hooks/{token}", hook, methods=["POST"])])


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(_app(receiver), log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the webhook receiver did not start"
        time.sleep(0.01)
    # The path carries a token, as a Slack webhook URL does: it must never be logged.
    receiver.url = f"http://127.0.0.1:{port}/hooks/T0KEN-SECRET-123"
    yield receiver
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def webhook(_receiver_server: WebhookReceiver) -> Iterator[WebhookReceiver]:
    _receiver_server.reset()
    yield _receiver_server
    _receiver_server.reset()


class Lines:
    """A logger that keeps every line (info/warning/error), like ``context.log``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.lines.append(("error", msg))

    def debug(self, msg: str) -> None:
        self.lines.append(("debug", msg))

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


@pytest.fixture
def lines() -> Lines:
    return Lines()
