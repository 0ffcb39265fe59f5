"""PendoResource's rate: a number or "auto", the limiter it builds, and the ledger it shares
what it learns through (by default Amplitude's, which tests/conftest.py points at a fresh
file per session)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.amplitude import resource as amplitude_resource
from analytics_assets.http.ledger_postgres import PostgresLedger
from analytics_assets.http.limits import MemoryRateStore, RateFinder, RateSettings
from analytics_assets.http.shared_budget import LedgerRateStore, ledger_at
from analytics_assets.pendo.connection import PendoConnectionFields
from analytics_assets.pendo.resource import PendoResource, rate_scope, rate_setting
from analytics_assets.sandbox.config import PendoLimits, SandboxConfig
from analytics_assets.sandbox.server import SandboxServer

KEY = "rate-test-integration-key-0123456789.us"
READ_KEY = "sandbox-pendo-us-read-key"


def resource(**kwargs) -> PendoResource:
    kwargs.setdefault("integration_key", KEY)
    kwargs.setdefault("budget_ledger", "memory")
    return PendoResource(**kwargs)


@pytest.mark.parametrize(
    ("given", "rate"),
    [("auto", "auto"), (" AUTO ", "auto"), (5, 5.0), (2.5, 2.5), ("7", 7.0)],
)
def test_the_rate_is_a_number_or_auto(given, rate):
    res = resource(rate_per_second=given)
    assert res.rate_per_second == rate
    limiter = res.get_client().limiter
    assert isinstance(limiter, RateFinder) and limiter.name == "pendo"
    if rate == "auto":
        assert limiter.auto and limiter.rate == RateSettings().auto_start
    else:
        assert not limiter.auto and limiter.cap == rate


@pytest.mark.parametrize("given", [0, -1, float("inf"), float("nan"), True, "fast", KEY])
def test_impossible_rates_are_refused(given):
    with pytest.raises(ValueError, match="finite number above 0 or 'auto'"):
        resource(rate_per_second=given)
    with pytest.raises(ValueError) as info:
        rate_setting(given)
    assert KEY not in str(info.value)  # the check's own words never echo text


def test_connection_fields_take_auto_and_rendered_numbers():
    fields = PendoConnectionFields(rate_per_second="auto", budget_ledger=" ")
    assert (fields.rate_per_second, fields.budget_ledger) == ("auto", None)
    made = fields.pendo_resource("PENDO_KEY")
    assert (made.rate_per_second, made.budget_ledger) == ("auto", None)
    # A YAML template renders text: "5" is the number 5.
    assert PendoConnectionFields(rate_per_second="5").rate_per_second == 5.0
    ledger = PendoConnectionFields(budget_ledger="memory").pendo_resource("PENDO_KEY")
    assert ledger.budget_ledger == "memory"
    with pytest.raises(ValueError, match="finite number above 0 or 'auto'") as info:
        PendoConnectionFields(rate_per_second=KEY)  # a key pasted into the wrong field
    assert KEY not in str(info.value)


def test_the_default_ledger_is_amplitudes():
    store = resource(budget_ledger=None).limiter().store
    assert isinstance(store, LedgerRateStore)
    expected = Path(amplitude_resource.DEFAULT_BUDGET_LEDGER).resolve()
    assert store.ledger is ledger_at(expected)
    assert resource(budget_ledger="  ").limiter().store.location == str(expected)


def test_the_shipped_default_is_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # tests/conftest.py points the default at the session's own file: restore the shipped one.
    monkeypatch.setattr(
        amplitude_resource, "DEFAULT_BUDGET_LEDGER", "data/amplitude-budgets.sqlite"
    )
    store = resource(budget_ledger=None).limiter().store
    assert store.location == str(tmp_path / "data" / "amplitude-budgets.sqlite")


def test_memory_keeps_one_state_per_key_and_server_in_the_process():
    a, b = resource().limiter(), resource().limiter()
    assert isinstance(a.store, MemoryRateStore) and a.store is b.store
    assert resource(base_url="http://127.0.0.1:9").limiter().store is not a.store
    assert resource(integration_key="another-key").limiter().store is not a.store


def test_the_rate_is_keyed_by_a_fingerprint_of_key_and_server(tmp_path):
    scope = rate_scope(KEY, "us", None)
    assert len(scope) == 16 and KEY not in scope
    assert scope == rate_scope(KEY, "us", "https://app.pendo.io/")  # the us host itself
    assert scope != rate_scope(KEY, "eu", None)
    assert scope != rate_scope(KEY, "us", "http://127.0.0.1:8080")
    assert scope != rate_scope("another-key", "us", None)
    path = tmp_path / "budgets.sqlite"
    limiter = resource(budget_ledger=str(path)).limiter()
    limiter.state()  # written on first use
    ledger_at(path).close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert scope.encode() in stored and KEY.encode() not in stored


def test_a_postgres_url_shares_it_across_hosts(postgres_server):
    url = postgres_server.new_database("pendo_rate", password="pg-Secret-77")
    try:
        limiter = resource(budget_ledger=f" {url} ").limiter()
        assert isinstance(limiter.store, LedgerRateStore)
        assert isinstance(limiter.store.ledger, PostgresLedger)
        assert "pg-Secret-77" not in repr(limiter) + repr(limiter.store)
        limiter.acquire()
        assert resource(budget_ledger=url).limiter().state().sent == 1
    finally:
        ledger_at(url).close()


# --- against the sandbox -------------------------------------------------------------------------

R = 10.0


@pytest.fixture(scope="module")
def limited_sandbox():
    limits = PendoLimits(rate=R, burst=2)
    config = SandboxConfig(seed=7, now=datetime(2024, 6, 15, 12, tzinfo=UTC), pendo_limits=limits)
    with SandboxServer(config) as server:
        yield server


def test_auto_finds_the_servers_rate_and_the_next_step_starts_from_it(limited_sandbox, tmp_path):
    ledger = str(tmp_path / "budgets.sqlite")
    url = limited_sandbox.urls.pendo()
    first = PendoResource(
        integration_key=READ_KEY, base_url=url, rate_per_second="auto", budget_ledger=ledger
    )
    with first.get_client() as client:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            client.verify_token(refresh=True)
        stats = client.stats.snapshot()
        learned = client.limiter.state()
    assert stats.throttled <= 4 and stats.throttled / stats.requests_sent < 0.05
    assert learned.ceiling is not None and 0.8 * R <= learned.ceiling <= 1.5 * R

    # The next step of a backfill (a new resource and client: a new process would read
    # the same file) starts at the learned rate, not at auto's cautious start.
    second = PendoResource(
        integration_key=READ_KEY, base_url=url, rate_per_second="auto", budget_ledger=ledger
    )
    with second.get_client() as client:
        client.verify_token(refresh=True)
        assert isinstance(client.limiter, RateFinder)
        assert client.limiter.rate > 0.7 * R > RateSettings().auto_start
        assert client.limiter.ceiling is not None


def test_auto_through_dagster(limited_sandbox, tmp_path):
    seen: dict[str, object] = {}

    @dg.asset
    def token(pendo: PendoResource) -> None:
        with pendo.session() as client:
            seen["valid"] = client.verify_token().valid
            seen["limiter"] = client.limiter

    pendo = PendoResource(
        integration_key=READ_KEY,
        base_url=limited_sandbox.urls.pendo(),
        rate_per_second="auto",
        budget_ledger=str(tmp_path / "budgets.sqlite"),
    )
    assert dg.materialize([token], resources={"pendo": pendo}).success
    assert seen["valid"] is True
    assert isinstance(seen["limiter"], RateFinder) and seen["limiter"].auto
