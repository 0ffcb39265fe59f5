"""Fixtures of the sandbox tests: servers on loopback with a frozen clock, and clients.

The session ``sandbox`` is shared by every test: leave the ``us`` region's activity as
generated (stage data changes in another region, write metadata only to ids your test
owns) so tests that compare with the generated company stay true. A test that needs
other limits or settings asks ``sandbox_factory`` for a server of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sandbox_clock import NOW

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.company import Company

SEED = 7
KEY_HEADER = "x-pendo-integration-key"


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """The tests' configuration: fixed seed and clock, anything else overridden."""
    return SandboxConfig(**{"seed": SEED, "now": NOW, **overrides})


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """The shared sandbox (seed 7, scale 1, now = 2026-11-18T15:00Z)."""
    with SandboxServer(sandbox_config()) as server:
        yield server


@pytest.fixture(scope="session")
def us_company(sandbox: SandboxServer) -> Company:
    """The shared sandbox's US company, generated apart from the server: the independent
    expectation (its activity is what the server's unstaged US world serves)."""
    cfg = sandbox.config
    return Company(cfg.seed, cfg.scale, "us", cfg.pendo_timezone)


@pytest.fixture(scope="session")
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """``sandbox_factory(name, **config)``: a started server, one per name per session."""
    servers: dict[str, SandboxServer] = {}

    def start(name: str, **overrides: Any) -> SandboxServer:
        if name not in servers:
            servers[name] = SandboxServer(sandbox_config(**overrides)).start()
        return servers[name]

    yield start
    for server in servers.values():
        server.stop()


def _pendo_client(
    server: SandboxServer,
    region: str = "us",
    key: str | None = "read",
) -> httpx.Client:
    """An httpx client on a region's Pendo base URL; ``key`` "read", "write", a literal
    key, or None for no key header."""
    headers = {}
    if key is not None:
        keys = server.config.pendo_keys[region]
        headers[KEY_HEADER] = {"read": keys.read, "write": keys.write}.get(key, key)
    return httpx.Client(base_url=server.urls.pendo(region), headers=headers, timeout=60)


@pytest.fixture
def pendo_client_for() -> Iterator[Callable[..., httpx.Client]]:
    """``pendo_client_for(server, region="us", key="read")``: clients closed after the test."""
    clients: list[httpx.Client] = []

    def make(server: SandboxServer, region: str = "us", key: str | None = "read") -> httpx.Client:
        clients.append(_pendo_client(server, region, key))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def pendo(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """Client of the shared sandbox's US Pendo with the read-only key."""
    with _pendo_client(sandbox) as client:
        yield client


@pytest.fixture
def pendo_writer(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """Client of the shared sandbox's US Pendo with the read-write key."""
    with _pendo_client(sandbox, key="write") as client:
        yield client


@pytest.fixture
def control(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """Client of the shared sandbox's control API (``/_sandbox``)."""
    with httpx.Client(base_url=sandbox.urls.control(), timeout=30) as client:
        yield client


def _body(pipeline: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return {"response": {"mimeType": "application/json"}, "request": {"pipeline": list(pipeline)}}


@pytest.fixture
def aggregate(pendo: httpx.Client) -> Callable[..., dict[str, Any]]:
    """``aggregate(*steps, client=None)`` -> the 200 body ``{"startTime", "results"}``."""

    def run(*pipeline: dict[str, Any], client: httpx.Client | None = None) -> dict[str, Any]:
        response = (client or pendo).post("/api/v1/aggregation", json=_body(pipeline))
        assert response.status_code == 200, response.text
        return response.json()

    return run
