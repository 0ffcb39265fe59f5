"""The sandbox's shared core: the company, staged changes, faults, counters, control API."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import numpy as np
import pytest

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.company import Company
from analytics_assets.sandbox.world import LateEvents, World

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def core_sandbox():
    with SandboxServer(SandboxConfig(seed=3, now=NOW)) as server:
        yield server


def test_company_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    a, b, c = Company(seed=1), Company(seed=1), Company(seed=2)
    day = date(2026, 11, 17)
    assert a.n_visitors == b.n_visitors
    assert np.array_equal(a.activity(day).num_events, b.activity(day).num_events)
    assert not np.array_equal(a.account_size, c.account_size)


def test_company_scales_to_a_hundred_thousand_accounts_without_holding_events() -> None:
    big = Company(seed=1, scale=1000)
    assert big.n_accounts == 100_000
    assert big.n_visitors > 500_000
    # Entities are arrays; nothing per visitor is a Python object.
    assert big.visitor_account.nbytes < 8 * big.n_visitors


def test_weekends_are_quieter_and_dst_days_have_25_hours() -> None:
    company = Company(seed=5, scale=5)
    weekday = company.activity(date(2026, 11, 18)).num_events.sum()
    sunday = company.activity(date(2026, 11, 15)).num_events.sum()
    assert sunday < weekday / 2
    act = company.activity(date(2026, 11, 1))  # DST ends in New York
    assert act.end_ms - act.start_ms == 25 * 3_600_000


def test_staged_quiet_account_drops_only_that_accounts_rows() -> None:
    company = Company(seed=4)
    world = World(company, lambda: int(NOW.timestamp() * 1000))
    day = date(2026, 11, 17)
    before = world.activity(day)
    account = int(company.visitor_account[before.visitor[0]])
    world.stage_account_quiet(account, 0)
    after = world.activity(day)
    mine = company.visitor_account[after.visitor] == account
    assert not mine.any()
    others_before = (company.visitor_account[before.visitor] != account).sum()
    assert after.visitor.size == others_before
    # Children still point at rows that exist.
    assert after.feature_parent.max() < after.visitor.size


def test_late_events_appear_only_after_they_arrive() -> None:
    company = Company(seed=4)
    now = int(NOW.timestamp() * 1000)
    world = World(company, lambda: now)
    day = date(2026, 11, 16)
    start, _ = company.day_bounds(day)
    total = world.activity(day).num_events.sum()
    world.stage_late_events(
        LateEvents(visitor=3, hour_ms=start + 9 * 3_600_000, num_events=40, arrived_ms=now + 1)
    )
    assert world.activity(day).num_events.sum() == total
    assert world.activity(day, as_of_ms=now + 1).num_events.sum() == total + 40


def test_fault_rules_count_limited_and_counted(core_sandbox) -> None:
    control = core_sandbox.urls.control()
    httpx.delete(f"{control}/faults")
    httpx.post(f"{control}/counters/reset")
    rule = {"kind": "error", "status": 502, "count": 2, "path": "^/api/v1/token"}
    assert httpx.post(f"{control}/faults", json=rule).status_code == 200
    url = f"{core_sandbox.urls.pendo()}/api/v1/token/verify"
    statuses = [httpx.get(url).status_code for _ in range(3)]
    assert statuses[:2] == [502, 502]
    assert statuses[2] != 502
    counters = httpx.get(f"{control}/counters").json()
    assert counters["faults"] == {"error": 2}
    assert counters["by_status"]["502"] == 2


def test_fault_spec_with_unknown_field_is_rejected_with_the_reason(core_sandbox) -> None:
    response = httpx.post(f"{core_sandbox.urls.control()}/faults", json={"kind": "eror"})
    assert response.status_code == 400
    assert "unknown fault kind" in response.json()["error"]


def test_dropped_connection_and_truncated_body(core_sandbox) -> None:
    control = core_sandbox.urls.control()
    httpx.delete(f"{control}/faults")
    info_url = f"{core_sandbox.urls.pendo()}/api/v1/token/verify"
    httpx.post(f"{control}/faults", json={"kind": "drop", "count": 1, "path": "token"})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(info_url, headers={"x-pendo-integration-key": "sandbox-pendo-us-read-key"})
    full = httpx.get(info_url, headers={"x-pendo-integration-key": "sandbox-pendo-us-read-key"})
    httpx.post(
        f"{control}/faults", json={"kind": "truncate", "count": 1, "path": "token", "fraction": 0.5}
    )
    cut = httpx.get(info_url, headers={"x-pendo-integration-key": "sandbox-pendo-us-read-key"})
    assert cut.status_code == full.status_code
    assert len(cut.content) == len(full.content) // 2
    assert full.content.startswith(cut.content)


def test_stage_rejects_unknown_ids_with_a_clear_message(core_sandbox) -> None:
    response = httpx.post(
        f"{core_sandbox.urls.control()}/stage",
        json={"action": "account_quiet", "account_id": "nope"},
    )
    assert response.status_code == 400
    assert "unknown account_id" in response.json()["error"]


def test_clock_can_be_frozen_and_read(core_sandbox) -> None:
    control = core_sandbox.urls.control()
    assert httpx.get(f"{control}/clock").json()["now_ms"] == int(NOW.timestamp() * 1000)
