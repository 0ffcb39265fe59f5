"""The days one Pendo aggregation of an asset asks (``pendo.spans``), learned from what its
aggregations took and from the caps they met, and shared through the budget ledger (a
SQLite file; a database of a real Postgres server) as the learned rate is."""

from __future__ import annotations

import json

import pytest

from analytics_assets.http.shared_budget import MemoryRecords, ledger_at
from analytics_assets.http.transport import TransportStats
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.pendo.spans import (
    FORGET_AFTER,
    RECORD,
    TARGET_SHARE,
    TIME_CAP_SECONDS,
    AggregationSpans,
    Learned,
)

SCOPE = "0123456789abcdef"
NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def spans(records, clock: Clock, asset: str = "feature_daily_usage", **kw) -> AggregationSpans:
    return AggregationSpans(records, SCOPE, asset, clock=clock, **kw)


def test_nothing_learned_asks_the_most(clock):
    assert spans(MemoryRecords(), clock).days(30) == 30
    assert spans(MemoryRecords(), clock).why(30) == ""


def test_a_chunk_is_sized_to_half_the_time_cap(clock):
    memory = spans(MemoryRecords(), clock)
    memory.took(days=15, seconds=150.0)  # 10 s a day: 150 s of the 300 s cap fit 15 days
    assert memory.days(30) == 15
    memory.took(days=1, seconds=40.0)  # the last aggregation counts: 40 s a day
    assert memory.days(30) == 3
    assert "3 days per aggregation, not 30: a day took 40.0 s" in memory.why(30)
    memory.took(days=1, seconds=400.0)  # slower than the cap itself: still a day at a time
    assert memory.days(30) == 1
    memory.took(days=7, seconds=0.7)  # cheap: the most allowed
    assert memory.days(30) == 30


def test_a_read_timeout_shorter_than_pendos_cap_is_the_cap(clock):
    assert spans(MemoryRecords(), clock, time_cap=60.0).time_cap == 60.0
    assert spans(MemoryRecords(), clock, time_cap=600.0).time_cap == TIME_CAP_SECONDS
    short = spans(MemoryRecords(), clock, time_cap=60.0)
    short.took(days=1, seconds=10.0)
    assert short.days(30) == int(TARGET_SHARE * 60 / 10)


def test_a_cap_halves_the_chunks_whatever_the_time_says(clock):
    """A size cap (413) is not a matter of time: a fast range that met it stays halved."""
    memory = spans(MemoryRecords(), clock)
    memory.capped(30)
    assert memory.days(30) == 15
    assert "Pendo's cap stopped a range of 30 days" in memory.why(30)
    memory.took(days=15, seconds=1.0)  # fast, yet no wider than half of what failed
    assert memory.days(30) == 15
    memory.capped(15)
    assert memory.days(30) == 7
    memory.capped(30)  # a wider range failing again teaches nothing new
    assert memory.learned().capped_days == 15
    memory.capped(1)
    assert memory.days(30) == 1


def test_what_was_learned_is_forgotten_after_a_week(clock):
    memory = spans(MemoryRecords(), clock)
    memory.capped(30)
    clock.now += FORGET_AFTER / 2
    memory.took(days=1, seconds=50.0)
    assert memory.days(30) == 3
    clock.now += FORGET_AFTER / 2 + 1  # the cap is old, the time is not
    assert memory.learned() == Learned(seconds_per_day=50.0, seconds_learned=NOW + FORGET_AFTER / 2)
    clock.now += FORGET_AFTER
    assert memory.learned() == Learned()
    assert memory.days(30) == 30


def test_timing_leaves_out_the_waits_and_learns_nothing_from_a_retry_or_an_error(clock):
    stats = TransportStats("pendo")
    memory = spans(MemoryRecords(), clock)
    with memory.timing(stats, days=2):
        stats.add(limiter_wait_seconds=1000.0)  # waiting for the rate is not Pendo's time
    learned = memory.learned().seconds_per_day
    assert learned is not None and learned < 1.0
    clock.now += 1
    with memory.timing(stats, days=2):
        stats.add(retries=1)
    assert memory.learned().seconds_per_day == learned
    with pytest.raises(RuntimeError), memory.timing(stats, days=2):
        raise RuntimeError("the aggregation failed")
    assert memory.learned().seconds_per_day == learned


def test_assets_learn_apart_and_processes_share_them(ledger, clock):
    """Two instances on one ledger act as two processes (two steps of a backfill)."""
    first = spans(ledger_at(ledger), clock)
    first.capped(30)
    second_step = spans(ledger_at(ledger), clock)
    assert second_step.days(30) == 15
    assert spans(ledger_at(ledger), clock, asset="page_daily_usage").days(30) == 30
    other_key = AggregationSpans(ledger_at(ledger), "fedcba9876543210", "feature_daily_usage")
    assert other_key.days(30) == 30


def test_the_record_keeps_only_what_is_fresh(ledger, clock):
    spans(ledger_at(ledger), clock, asset="old").capped(8)
    clock.now += FORGET_AFTER + 1
    spans(ledger_at(ledger), clock, asset="new").took(days=2, seconds=20.0)
    text = ledger_at(ledger).update_record(SCOPE, RECORD, lambda text: (text or "", text))
    assert set(json.loads(text)) == {"new"}


def test_a_damaged_record_is_learned_afresh(tmp_path, clock, caplog):
    ledger = ledger_at(tmp_path / "budgets.sqlite")
    ledger.update_record(SCOPE, RECORD, lambda _: ("{not json", None))
    memory = spans(ledger, clock)
    assert memory.days(30) == 30
    assert "unreadable pendo.spans record" in caplog.text
    memory.capped(4)
    assert memory.days(30) == 2
    ledger.close()


def test_the_resource_shares_spans_as_it_shares_the_rate(tmp_path):
    """Same key and server: same spans; the read timeout bounds the time cap."""
    where = str(tmp_path / "budgets.sqlite")
    resource = PendoResource(
        integration_key="k", base_url="http://127.0.0.1:1", budget_ledger=where, read_timeout=60
    )
    resource.spans("feature_daily_usage").capped(10)
    again = PendoResource(integration_key="k", base_url="http://127.0.0.1:1", budget_ledger=where)
    assert again.spans("feature_daily_usage").days(30) == 5
    assert resource.spans("x").time_cap == 60.0
    elsewhere = PendoResource(
        integration_key="k", base_url="http://127.0.0.1:2", budget_ledger=where
    )
    assert elsewhere.spans("feature_daily_usage").days(30) == 30
    in_memory = PendoResource(integration_key="k", base_url="http://m", budget_ledger="memory")
    in_memory.spans("a").capped(2)
    assert in_memory.spans("a").days(30) == 1
    ledger_at(where).close()
