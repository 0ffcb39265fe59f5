"""The Amplitude client's budgets over real HTTP: it waits for budget instead of earning 429s,
never runs more than 5 Dashboard queries at once, and charges what the server charges; with
its budgets in memory, and in a shared ledger on either backend (SQLite, Postgres)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from analytics_assets.amplitude.client import AmplitudeClient
from analytics_assets.amplitude.costs import amplitude_budgets
from analytics_assets.http.limits import CompositeLimiter, CostBudget
from analytics_assets.http.shared_budget import SharedBudget, ledger_at
from analytics_assets.sandbox.config import AmplitudeLimits, SandboxConfig
from analytics_assets.sandbox.server import SandboxServer

NOW = datetime(2026, 6, 18, 12, tzinfo=UTC)
END = NOW.date() - timedelta(days=1)
# Every window shrinks: the Dashboard "hour" lasts 3.6 s.
SCALE = 0.001
BUDGET = 3000  # cost per (scaled) hour, on both sides


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def ledger(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str | None]:
    """Where the client's budgets live: in memory (``None``), or in a shared ledger."""
    if request.param == "memory":
        yield None
        return
    if request.param == "sqlite":
        location = str(tmp_path_factory.mktemp("ledger") / "budgets.sqlite")
    else:
        location = request.getfixturevalue("postgres_server").new_database("client")
    yield location
    ledger_at(location).close()


@pytest.fixture(scope="module")
def sandbox(ledger: str | None) -> Iterator[SandboxServer]:
    # One per ledger: the server's windows must start empty for each.
    limits = AmplitudeLimits(
        window_scale=SCALE, processing_lag_hours=0, dashboard_cost_per_hour=BUDGET
    )
    with SandboxServer(SandboxConfig(seed=7, now=NOW, amplitude_limits=limits)) as server:
        yield server


def small_budgets(ledger: str | None = None, scope: str = "default") -> dict:
    """amplitude_budgets(SCALE) with the Dashboard capacity lowered to the sandbox's, in
    memory or in ``ledger`` (under ``scope``: one per test, as the in-memory ones are)."""
    budgets = amplitude_budgets(SCALE, ledger_path=ledger, ledger_scope=scope)
    rest_slots = budgets["dashboard"].limiters[-1]  # the 5 REST slots shared with cohorts
    settings = {
        "max_concurrent_cost": 1000,
        "name": "small.dashboard",
        "throttle_pause": 30 * SCALE,
    }
    dashboard = (
        CostBudget(BUDGET, 3600 * SCALE, **settings)
        if ledger is None
        else SharedBudget(ledger, "dashboard", BUDGET, 3600 * SCALE, scope=scope, **settings)
    )
    budgets["dashboard"] = CompositeLimiter([dashboard, rest_slots], name="small.dashboard")
    return budgets


def make_client(sandbox: SandboxServer, budgets: dict) -> AmplitudeClient:
    keys = sandbox.config.amplitude_keys["us"]
    return AmplitudeClient(
        keys.api_key,
        keys.secret_key,
        base_url=sandbox.urls.amplitude("us"),
        budgets=budgets,
        max_retry_time=60,
    )


def state(sandbox: SandboxServer) -> dict:
    return httpx.get(f"{sandbox.urls.control()}/limits").json()["amplitude"]["us"]


def throttled(sandbox: SandboxServer) -> int:
    return httpx.get(f"{sandbox.urls.control()}/counters").json()["by_status"].get("429", 0)


def test_a_burst_over_the_budget_waits_instead_of_earning_429s(
    sandbox: SandboxServer, ledger: str | None
) -> None:
    before = throttled(sandbox)
    events = ["Page Viewed", "Search Performed", "Session Start"]
    # 30 queries × 30 days × (1 + 4 for the group-by) = 4,500: 1.5 budgets.
    queries = [
        (events[i % 3], END - timedelta(days=29 + i % 5), END - timedelta(days=i % 5))
        for i in range(30)
    ]
    budgets = small_budgets(ledger, scope="burst")
    with make_client(sandbox, budgets) as client, ThreadPoolExecutor(8) as pool:
        start = client.stats.snapshot()
        results = list(
            pool.map(lambda q: client.segmentation(q[0], q[1], q[2], group_by="country"), queries)
        )
        spent = client.stats.delta(start)
        assert client.cost_spent["dashboard"] == 30 * 150
    assert all(results)
    assert throttled(sandbox) == before, "the client earned 429s instead of waiting"
    assert spent.throttled == 0 and spent.retries == 0
    # The third of the workload above the budget had to wait for the window to slide.
    assert spent.limiter_wait_seconds > 3600 * SCALE * 0.3


def test_never_more_than_five_queries_in_flight(sandbox: SandboxServer, ledger: str | None) -> None:
    control = sandbox.urls.control()
    # Each query holds its server slot 0.2 s, so many threads pile up at once.
    httpx.post(f"{control}/amplitude/slow", json={"seconds": 0.2, "region": "us"})
    before = throttled(sandbox)
    peak_client = 0
    in_flight = 0
    lock = threading.Lock()
    try:
        with make_client(sandbox, small_budgets(ledger, scope="five")) as client:

            def one(i: int) -> None:
                nonlocal peak_client, in_flight
                with lock:
                    in_flight += 1
                    peak_client = max(peak_client, in_flight)
                try:
                    client.active_users(END - timedelta(days=i % 3), END)
                finally:
                    with lock:
                        in_flight -= 1

            with ThreadPoolExecutor(16) as pool:
                list(pool.map(one, range(24)))
    finally:
        httpx.post(f"{control}/amplitude/slow", json={"seconds": 0, "region": "us"})
    assert peak_client > 5  # the callers really did ask for more at once
    assert state(sandbox)["dashboard_peak"] == 5
    assert throttled(sandbox) == before


@pytest.fixture(scope="module")
def hour_sandbox() -> Iterator[SandboxServer]:
    """A real hour: nothing leaves the server's ledger during a test."""
    limits = AmplitudeLimits(processing_lag_hours=0)
    with SandboxServer(SandboxConfig(seed=7, now=NOW, amplitude_limits=limits)) as server:
        yield server


def test_client_cost_model_matches_the_server(hour_sandbox: SandboxServer) -> None:
    """What the client charges its ledger equals what the server charges its budget."""
    sandbox = hour_sandbox
    segment = [{"prop": "country", "op": "is", "values": ["United States"]}]
    start = END - timedelta(days=6)
    calls = [
        lambda c: c.active_users(start, END),
        lambda c: c.active_users(start, END, metric="new", group_by="country", segments=segment),
        lambda c: c.events_list(),
        lambda c: c.segmentation("Page Viewed", start, END, group_by=["country", "platform"]),
        lambda c: c.segmentation(
            {"event_type": "Page Viewed", "group_by": [{"type": "user", "value": "platform"}]},
            start,
            END,
            segments=segment,
            second_event="Search Performed",
        ),
        lambda c: c.funnel(
            ["Session Start", "Page Viewed", "Report Exported"], start, END, group_by="country"
        ),
        lambda c: c.retention("_new", "_all", start, END, segments=segment),
        lambda c: c.revenue_ltv(start, END, 2),
    ]
    with make_client(sandbox, amplitude_budgets()) as client:
        for call in calls:
            server_before = state(sandbox)["dashboard_cost_spent"]
            client_before = client.cost_spent["dashboard"]
            call(client)
            charged = client.cost_spent["dashboard"] - client_before
            assert charged == state(sandbox)["dashboard_cost_spent"] - server_before > 0


def test_saved_chart_cost_is_learned_from_the_server(
    sandbox: SandboxServer, ledger: str | None
) -> None:
    budgets = amplitude_budgets(SCALE, ledger_path=ledger, ledger_scope="chart")
    with make_client(sandbox, budgets) as client:
        client.chart_results("fnl3stp")
        first = client.cost_spent["dashboard"]
        client.chart_results("fnl3stp")
        assert client.cost_spent["dashboard"] == 2 * first
        assert first == 30 * 1 * 6  # 30 days, one segment, 3 steps × 2
