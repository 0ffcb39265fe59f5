"""Client-side limiters (on a fake clock unless threads are the point); Amplitude's cost model."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from analytics_assets.amplitude.costs import (
    amplitude_budgets,
    amplitude_days,
    amplitude_query_cost,
    taxonomy_cost,
)
from analytics_assets.http import AdaptiveTokenBucket, CompositeLimiter, CostBudget, Limiter

# --- token bucket ------------------------------------------------------------------------------


def bucket(clock, **kwargs) -> AdaptiveTokenBucket:
    kwargs.setdefault("rate", 10)
    return AdaptiveTokenBucket(clock=clock, sleep=clock.sleep, **kwargs)


def test_token_bucket_holds_its_rate(fake_clock):
    b = bucket(fake_clock, rate=10, burst=1)
    start = fake_clock()
    for _ in range(101):
        b.acquire()
    assert fake_clock() - start == pytest.approx(10.0, abs=1e-6)
    assert b.waited_seconds == pytest.approx(10.0, abs=1e-6)


def test_token_bucket_allows_its_burst_then_paces(fake_clock):
    b = bucket(fake_clock, rate=4, burst=5)
    waits = [b.acquire() for _ in range(7)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert waits[5:] == [pytest.approx(0.25), pytest.approx(0.25)]


def test_token_bucket_refuses_a_cost_above_its_burst(fake_clock):
    with pytest.raises(ValueError, match="burst"):
        bucket(fake_clock, burst=2).acquire(3)


def test_429_halves_the_rate_down_to_the_floor(fake_clock):
    b = bucket(fake_clock, rate=8, min_rate=1, decrease_cooldown=1.0)
    rates = []
    for _ in range(5):
        b.on_throttled(None)
        rates.append(b.rate)
        fake_clock.sleep(1.0)
    assert rates == [4, 2, 1, 1, 1]


def test_a_burst_of_429s_counts_once(fake_clock):
    b = bucket(fake_clock, rate=8, decrease_cooldown=1.0)
    for _ in range(5):  # five in-flight requests throttled at the same moment
        b.on_throttled(None)
    assert b.rate == 4


def test_halved_rate_is_what_acquire_enforces(fake_clock):
    b = bucket(fake_clock, rate=10, burst=1)
    b.acquire()
    b.on_throttled(None)  # now 5/s, bucket drained
    start = fake_clock()
    for _ in range(5):
        b.acquire()
    assert fake_clock() - start == pytest.approx(1.0, abs=1e-6)


def test_retry_after_pauses_every_acquirer(fake_clock):
    b = bucket(fake_clock, rate=100, burst=10)
    b.on_throttled(30)
    # The pause, then one token at the halved rate: a drained bucket restarts gently.
    assert b.acquire() == pytest.approx(30.0 + 1 / 50)


def test_rate_recovers_additively_after_successes(fake_clock):
    b = bucket(fake_clock, rate=10, min_rate=1, increase=2, recover_after=3)
    b.on_throttled(None)
    assert b.rate == 5
    rates = []
    for _ in range(12):
        b.on_success()
        rates.append(b.rate)
    assert rates == [5, 5, 7, 7, 7, 9, 9, 9, 10, 10, 10, 10]


def test_a_429_resets_the_recovery_count(fake_clock):
    b = bucket(fake_clock, rate=10, increase=1, recover_after=3, decrease_cooldown=0)
    b.on_throttled(None)
    b.on_success()
    b.on_success()
    b.on_throttled(None)
    b.on_success()
    b.on_success()
    assert b.rate == 2.5


# --- cost budget -------------------------------------------------------------------------------


def budget(clock, capacity=100, window=10, **kwargs) -> CostBudget:
    return CostBudget(capacity, window, clock=clock, sleep=clock.sleep, **kwargs)


def test_cost_budget_waits_instead_of_exceeding_its_window(fake_clock):
    b = budget(fake_clock, capacity=100, window=10)
    assert b.acquire(60) == 0
    fake_clock.sleep(4)
    assert b.acquire(30) == 0
    assert b.spent_in_window() == 90
    # 60 + 30 + 50 > 100: wait until the first 60 leaves the window (t = 10).
    assert b.acquire(50) == pytest.approx(6.0)
    assert b.spent_in_window() == 80
    assert b.waited_seconds == pytest.approx(6.0)


def test_cost_budget_never_exceeds_capacity_over_a_long_run(fake_clock):
    b = budget(fake_clock, capacity=100, window=60)
    log: list[tuple[float, float]] = []
    for i in range(300):
        cost = 1 + (i * 7) % 30
        b.acquire(cost)
        b.release(cost)
        log.append((fake_clock(), cost))
    for t, _ in log:
        in_window = sum(c for s, c in log if t - 60 < s <= t)
        assert in_window <= 100


def test_a_cost_above_capacity_is_refused_with_advice(fake_clock):
    with pytest.raises(ValueError, match="can never run.*narrow it"):
        budget(fake_clock, capacity=100).acquire(101)


def test_throttle_pauses_the_family(fake_clock):
    b = budget(fake_clock, throttle_pause=30)
    b.on_throttled(None)
    assert b.acquire(1) == pytest.approx(30)
    b.on_throttled(5)
    assert b.acquire(1) == pytest.approx(5)


def test_concurrency_cap_with_real_threads():
    b = CostBudget(None, 60, max_concurrent=3)
    lock = threading.Lock()
    active = peak = 0

    def work() -> None:
        nonlocal active, peak
        b.acquire()
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        b.release()

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert peak == 3
    assert b.in_flight == 0


def test_concurrent_cost_cap_lets_an_oversized_query_run_alone(fake_clock):
    b = budget(fake_clock, capacity=100_000, window=3600, max_concurrent_cost=1000)
    b.acquire(1800)  # bigger than the cap: allowed only because nothing else is in flight
    acquired = threading.Event()

    def second() -> None:
        b.acquire(10)
        acquired.set()

    t = threading.Thread(target=second)
    t.start()
    assert not acquired.wait(0.05)  # blocked behind the big one
    b.release(1800)
    assert acquired.wait(2)
    t.join()


def test_composite_acquires_all_and_releases_on_failure(fake_clock):
    slots = budget(fake_clock, capacity=None, max_concurrent=2)
    window = budget(fake_clock, capacity=10)
    both = CompositeLimiter([slots, window])
    both.acquire(4)
    assert (slots.in_flight, window.in_flight, window.spent_in_window()) == (1, 1, 4)
    with pytest.raises(ValueError):
        both.acquire(11)  # the window refuses: the slot taken first is given back
    assert slots.in_flight == 1
    both.release(4)
    assert (slots.in_flight, window.in_flight) == (0, 0)
    both.on_throttled(2)
    assert window.acquire(1) == pytest.approx(2)


def test_limiters_satisfy_the_protocol(fake_clock):
    for limiter in (bucket(fake_clock), budget(fake_clock), CompositeLimiter([])):
        assert isinstance(limiter, Limiter)


# --- Amplitude cost model ----------------------------------------------------------------------


def test_cost_docs_example_funnel():
    # 1 segment + 1 condition + 2 group-bys = 10 conditions; 30 days x 10 x (3 steps x 2) = 1800
    cost = amplitude_query_cost("funnel", days=30, segments=1, conditions=1, group_bys=2, steps=3)
    assert cost == 1800


@pytest.mark.parametrize(
    ("kind", "kwargs", "expected"),
    [
        ("segmentation", {"days": 1}, 1),
        ("segmentation", {"days": 7, "events": 2}, 14),
        ("segmentation", {"days": 1, "events": 2, "event_group_bys": 1}, 6),
        ("segmentation", {"days": 1, "group_bys": 1}, 5),
        ("funnels", {"days": 1, "steps": 2, "event_group_bys": 1}, 8),
        ("retention", {"days": 10, "segments": 2}, 160),
        ("sessions", {"days": 3}, 12),
        ("users", {"days": 31}, 31),
        ("Event Segmentation", {"days": 2, "events": 3}, 6),
    ],
)
def test_cost_formula(kind, kwargs, expected):
    assert amplitude_query_cost(kind, **kwargs) == expected


def test_cost_rejects_impossible_queries():
    with pytest.raises(ValueError):
        amplitude_query_cost("funnel", days=1)
    with pytest.raises(ValueError):
        amplitude_query_cost("users", days=0)


def test_days_are_inclusive():
    assert amplitude_days("20260101", "20260101") == 1
    assert amplitude_days("20260101", "20260131") == 31
    assert amplitude_days(date(2024, 2, 1), "20240301") == 30  # leap year
    with pytest.raises(ValueError, match="before start"):
        amplitude_days("20260102", "20260101")
    with pytest.raises(ValueError, match="YYYYMMDD"):
        amplitude_days("2026-01-01", "20260102")


def test_taxonomy_cost():
    assert (taxonomy_cost("get"), taxonomy_cost("POST"), taxonomy_cost("PUT")) == (1, 2, 2)


# --- Amplitude presets -------------------------------------------------------------------------


def test_amplitude_budgets_families_and_scaled_windows(fake_clock):
    budgets = amplitude_budgets(window_scale=0.001, clock=fake_clock, sleep=fake_clock.sleep)
    assert set(budgets) == {"dashboard", "user_lookup", "cohorts", "export", "taxonomy", "profile"}
    profile = budgets["profile"]
    for _ in range(600):
        profile.acquire(1)
        profile.release(1)
    # the 601st waits for the (scaled) one-minute window to move on
    assert profile.acquire(1) == pytest.approx(0.06)


def test_dashboard_and_cohorts_share_five_rest_slots(fake_clock):
    budgets = amplitude_budgets(clock=fake_clock, sleep=fake_clock.sleep)
    for _ in range(3):
        budgets["dashboard"].acquire(10)
    for _ in range(2):
        budgets["cohorts"].acquire(1)
    blocked = threading.Event()
    done = threading.Event()

    def sixth() -> None:
        blocked.set()
        budgets["cohorts"].acquire(1)
        done.set()

    t = threading.Thread(target=sixth)
    t.start()
    blocked.wait(1)
    assert not done.wait(0.05)  # all 5 REST slots are taken
    budgets["dashboard"].release(10)
    assert done.wait(2)
    t.join()


def test_amplitude_budgets_throttle_pause_can_be_set(fake_clock):
    budgets = amplitude_budgets(throttle_pause=2, clock=fake_clock, sleep=fake_clock.sleep)
    budgets["profile"].on_throttled(None)
    assert budgets["profile"].acquire(1) == pytest.approx(2)


def test_a_cohort_429_does_not_pause_dashboard_queries(fake_clock):
    budgets = amplitude_budgets(clock=fake_clock, sleep=fake_clock.sleep)
    budgets["cohorts"].on_throttled(None)
    assert budgets["dashboard"].acquire(5) == 0
    assert budgets["cohorts"].acquire(1) == pytest.approx(30)


def test_user_lookup_allows_ten_in_flight_and_360_per_hour(fake_clock):
    lookup = amplitude_budgets(clock=fake_clock, sleep=fake_clock.sleep)["user_lookup"]
    assert isinstance(lookup, CostBudget)
    assert (lookup.max_concurrent, lookup.capacity, lookup.window_seconds) == (10, 360, 3600)
