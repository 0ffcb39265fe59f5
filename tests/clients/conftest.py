"""Fixtures for the client tests: a scripted real HTTP server and a fake clock."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
# tests/ has no __init__.py: put this folder (for `from scripted_server import ...`) and the
# repository root (for `analytics_assets`) on the import path.
for _path in (_HERE, _HERE.parents[1]):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from scripted_server import ScriptedServer  # noqa: E402


class FakeClock:
    """Monotonic time that moves only when someone sleeps; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def _server_process() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def server(_server_process: ScriptedServer) -> Iterator[ScriptedServer]:
    """The shared server with an empty script and no recorded requests."""
    _server_process.reset()
    yield _server_process
    _server_process.reset()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh budget ledger on each backend: a SQLite file, or a new database of the
    session's Postgres server (only the Postgres runs need the server)."""
    from analytics_assets.http.shared_budget import ledger_at

    if request.param == "sqlite":
        location = str(tmp_path / "budgets.sqlite")
    else:
        location = request.getfixturevalue("postgres_server").new_database("ledger")
    yield location
    ledger_at(location).close()
