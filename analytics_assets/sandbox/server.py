"""Assemble the sandbox's ASGI app and run it on loopback (in a thread or in the foreground)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from analytics_assets.sandbox.config import SandboxConfig
from analytics_assets.sandbox.control import control_routes
from analytics_assets.sandbox.faults import SandboxMiddleware
from analytics_assets.sandbox.state import SandboxState


def build_app(config: SandboxConfig | None = None) -> tuple[Starlette, SandboxState]:
    """The whole sandbox as one Starlette app, and the state behind it."""
    # Imported here so that each half stays a leaf module of the sandbox.
    from analytics_assets.sandbox.amplitude.routes import build_amplitude
    from analytics_assets.sandbox.pendo.routes import build_pendo

    state = SandboxState(config or SandboxConfig())
    for half in (build_pendo(state), build_amplitude(state)):
        state.halves[half.name] = half

    routes: list[BaseRoute] = [Mount("/_sandbox", routes=control_routes(state))]
    # Region prefixes first: "/eu/api/v1/..." must not be taken by a root route.
    regions = sorted({r for half in state.halves.values() for r in half.regions} - {"us"})
    for region in regions:
        region_routes = [
            route
            for half in state.halves.values()
            if region in half.regions
            for route in half.routes(region)
        ]
        routes.append(Mount(f"/{region}", routes=region_routes))
    for half in state.halves.values():
        if "us" in half.regions:
            routes.extend(half.routes("us"))

    app = Starlette(routes=routes)
    app.add_middleware(SandboxMiddleware, plan=state.faults, counters=state.counters)
    app.state.sandbox = state
    return app, state


@dataclass(frozen=True)
class SandboxUrls:
    """Where each emulated host lives on this server."""

    base: str

    def pendo(self, region: str = "us") -> str:
        return self.base if region == "us" else f"{self.base}/{region}"

    def amplitude(self, region: str = "us") -> str:
        return self.base if region == "us" else f"{self.base}/{region}"

    def control(self) -> str:
        return f"{self.base}/_sandbox"


class SandboxServer:
    """A sandbox running in a background thread; a context manager for tests.

    >>> with SandboxServer(SandboxConfig(seed=1)) as sandbox:
    ...     sandbox.urls.pendo("eu")
    """

    def __init__(self, config: SandboxConfig | None = None, log_level: str = "warning") -> None:
        self.config = config or SandboxConfig()
        self.app, self.state = build_app(self.config)
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port: int | None = None

    @property
    def urls(self) -> SandboxUrls:
        if self.port is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        return SandboxUrls(f"http://{self.config.host}:{self.port}")

    def start(self, timeout: float = 20.0) -> SandboxServer:
        # Bind first so the port is known (and ours) before uvicorn starts serving.
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only then,
        # and without it Nagle adds ~40 ms to small responses.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        sock.listen(2048)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(config: SandboxConfig, log_level: str = "info") -> None:
    """Run the sandbox in the foreground until interrupted (the CLI's ``sandbox``)."""
    app, _ = build_app(config)
    uvicorn.run(
        app, host=config.host, port=config.port or 8765, log_level=log_level, access_log=False
    )
