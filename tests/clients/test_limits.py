"""Client-side limiters (on a fake clock unless threads are the point); Amplitude's cost model."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from analytics_assets.amplitude.costs import (
    amplitude_budgets,
    amplitude_days,
    amplitude_query_cost,
    taxonomy_cost,
)
from analytics_assets.http import AdaptiveTokenBucket, CompositeLimiter, CostBudget, Limiter
from analytics_assets.http.limits import (
    MemoryRateStore,
    RateFinder,
    RateSettings,
    RateState,
)

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


# --- rate finder (Pendo) -----------------------------------------------------------------------


def finder(clock, rate=20.0, **kwargs) -> RateFinder:
    return RateFinder(rate, clock=clock, sleep=clock.sleep, **kwargs)


def send(limiter, n: int) -> None:
    """n requests back to back, as a client that keeps the limiter busy."""
    for _ in range(n):
        limiter.acquire()
        limiter.on_success()


def test_rate_finder_holds_a_configured_rate_until_refused(fake_clock):
    f = finder(fake_clock, rate=10)
    start = fake_clock()
    send(f, 101)
    assert fake_clock() - start == pytest.approx(10.0, abs=1e-6)
    assert f.waited_seconds == pytest.approx(10.0, abs=1e-6)
    assert (f.rate, f.ceiling) == (10, None)  # a configured rate is its own cap


def test_rate_finder_allows_its_burst_then_paces(fake_clock):
    f = finder(fake_clock, rate=4, burst=5)
    waits = [f.acquire() for _ in range(7)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert waits[5:] == [pytest.approx(0.25), pytest.approx(0.25)]
    with pytest.raises(ValueError, match="burst"):
        f.acquire(6)


def test_a_429_sets_the_ceiling_and_the_rate_climbs_back_just_under_it(fake_clock):
    f = finder(fake_clock, rate=40)
    send(f, 50)  # 40/s held for over a second: the rate that earns the 429 is 40
    f.on_throttled(None)
    assert f.ceiling == pytest.approx(40)
    assert f.rate == pytest.approx(36)  # backoff: 90 % of the rate that earned it
    rates = []
    for _ in range(20):  # 20 x 1 s of sending
        send(f, int(f.rate))
        rates.append(f.rate)
    assert rates == sorted(rates)  # climbs, ever more slowly ...
    assert rates[-1] == pytest.approx(0.97 * 40, rel=1e-3)  # ... to the hold, not above
    assert rates[1] - rates[0] > 10 * (rates[-1] - rates[-2])


def test_after_a_quiet_hold_it_probes_above_slowly(fake_clock):
    settings = RateSettings()
    f = finder(fake_clock, rate="auto", settings=settings)
    f.store.update(lambda state: (RateState(start=72, ceiling=80), None))  # learned: 80/s
    hold = settings.hold * 80
    probed = []
    while f.state().elapsed < settings.quiet_seconds + 20:
        send(f, 10)
        above = f.state().elapsed - settings.quiet_seconds
        if above <= 0:
            assert f.rate <= hold
        else:
            probed.append((above, f.rate))
    assert all(rate <= hold * (1 + settings.probe * t * t) + 1e-6 for t, rate in probed)
    assert probed[0][1] == pytest.approx(hold, rel=1e-3)  # slowly at first ...
    assert probed[-1][1] == pytest.approx(hold * 1.04, rel=0.01)  # ... +4 % after 20 s


def test_a_restart_refused_at_once_searches_lower(fake_clock):
    f = finder(fake_clock, rate=80)
    send(f, 2)
    f.on_throttled(None)  # the configured rate, refused at once: search
    assert (f.ceiling, f.rate) == (80, 40)
    send(f, 2)
    f.on_throttled(None)  # and again at once
    assert f.ceiling == pytest.approx(40, rel=0.05)  # the rate climbs from 40 at once
    assert f.rate == pytest.approx(0.5 * f.ceiling)
    send(f, 30)
    f.on_throttled(None)  # after a while: just under
    assert f.rate == pytest.approx(0.9 * f.ceiling)


def test_a_429_right_after_a_restart_backs_off_a_little_more_until_settled(fake_clock):
    # While searching: a restart refused at once (once) goes a little lower, not to half.
    f = finder(fake_clock, rate=20)
    send(f, 20)
    f.on_throttled(None)
    send(f, 3)
    f.on_throttled(None)
    assert f.rate == pytest.approx(0.81 * f.ceiling, rel=0.01)
    # Once settled (settle_sends requests in a row went through), it is taken for noise,
    # a late request on a server without burst: the usual backoff, no more.
    g = finder(fake_clock, rate=20)
    send(g, RateSettings().settle_sends)
    g.on_throttled(None)
    for _ in range(3):
        send(g, 3)
        g.on_throttled(None)
        assert g.rate == pytest.approx(0.9 * g.ceiling, rel=0.01)


def learned(clock, ceiling=40.0, **state) -> RateFinder:
    """A finder configured at twice the server's rate that has learned its ceiling."""
    f = finder(clock, rate=2 * ceiling)
    start = RateSettings().backoff * ceiling
    f.store.update(lambda _: (RateState(start=start, ceiling=ceiling, settled=True, **state), None))
    return f


def test_a_429_while_probing_sets_the_ceiling_at_the_paced_rate(fake_clock):
    # Probing above the hold the rate barely moves: the paced rate is what the server
    # refused. The average trails it by the client's own delays (here each request goes
    # 10 % of an interval late); taking it would put the hold a few % lower at each probe.
    f = learned(fake_clock, elapsed=45.0)
    for _ in range(100):
        f.acquire()
        fake_clock.sleep(1.1 / f.rate)
        f.on_success()
    f.acquire()  # this one is refused
    paced = f.rate
    state = f.state()
    assert paced > RateSettings().hold * 40  # probing
    assert state.gaps / state.span < 0.93 * paced  # the average trails
    f.on_throttled(None)
    assert f.ceiling == pytest.approx(paced, rel=0.005)


def test_429s_of_requests_in_flight_before_a_cut_count_once(fake_clock):
    f = finder(fake_clock, rate=40)
    send(f, 50)
    # Two requests in flight on two threads, both answered 429.
    a, b = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    with a, b:
        a.submit(f.acquire).result()
        b.submit(f.acquire).result()
        a.submit(f.on_throttled, None).result()
        after_first = f.rate
        b.submit(f.on_throttled, None).result()
    assert f.rate == after_first == pytest.approx(36)
    assert (f.throttled, f.cuts) == (2, 1)
    assert f.state().throttled == 2


def test_retry_after_pauses_everyone_without_cutting_to_the_floor(fake_clock):
    f = finder(fake_clock, rate=40)
    send(f, 50)
    f.on_throttled(5)
    assert f.acquire() == pytest.approx(5.0)  # the pause, then straight on
    assert f.rate == pytest.approx(36)  # one cut, not a collapse
    waits = [f.acquire() for _ in range(3)]
    assert waits == [pytest.approx(1 / f.rate, rel=0.05)] * 3


def test_a_429_after_a_silence_says_nothing_about_our_rate(fake_clock):
    f = finder(fake_clock, rate=40)
    send(f, 50)
    fake_clock.sleep(5)  # idle: the server's bucket is full again
    f.acquire()
    f.on_throttled(2)  # a storm, or another client of the key: pause, but no cut
    assert (f.rate, f.ceiling, f.cuts) == (40, None, 0)
    assert f.acquire() == pytest.approx(2.0)
    f.on_throttled(2)  # the first request after the pause refused too: still no cut
    assert (f.rate, f.cuts) == (40, 0)


def test_a_storm_without_retry_after_does_not_collapse_the_rate(fake_clock):
    """A server refusing everything (no Retry-After) earns two cuts, not one per retry:
    the rate stays where finding it would leave it, and the ledger keeps that."""
    f = finder(fake_clock, rate=40)
    send(f, 100)
    for _ in range(12):  # each retry after a short backoff, all refused
        f.acquire()
        f.on_throttled(None)
        fake_clock.sleep(0.3)
    assert f.cuts == 2
    assert f.rate >= 40 * 0.5 * 0.5
    assert f.state().start == f.rate
    send(f, 1)  # an answer: cuts count again
    f.acquire()
    f.on_throttled(None)
    assert f.cuts == 3


def test_auto_starts_low_and_doubles_until_the_first_429(fake_clock):
    settings = RateSettings()
    f = finder(fake_clock, rate="auto")
    assert f.auto and f.rate == settings.auto_start
    start = fake_clock()
    while fake_clock() - start < 2.0:
        send(f, 1)
    # 2 s of sending: about 4 doublings (every 0.5 s; the first gap is not counted).
    assert 2 * 2**3 <= f.rate < 2 * 2**4.5
    ramped = f.rate
    send(f, 20)
    f.on_throttled(None)
    assert f.ceiling == pytest.approx(f.state().ceiling)
    assert ramped < f.ceiling  # the paced rate that earned it
    # It restarts at 90 % of it, or at the recent average if lower (that lags a ramp).
    assert f.rate <= 0.9 * f.ceiling + 1e-9


def guarded(clock, rate=10.0) -> RateFinder:
    """A finder that has met a server without burst (see the next tests)."""
    f = finder(clock, rate=rate)
    f.store.update(lambda state: (RateState(start=rate, lag_guard=True), None))
    return f


def send_with_round_trip(f: RateFinder, clock, rtt: float, n: int) -> None:
    """n requests, each answered after ``rtt`` seconds."""
    for _ in range(n):
        f.acquire()
        clock.sleep(rtt)
        f.on_success()


def test_a_new_process_counts_its_first_round_trips_whole(fake_clock):
    # A new process's first answer is its slowest (cold code paths, a new connection):
    # taken for the path's own round trip, it would hide that it arrived late. Until a
    # few round trips are known, the whole of one counts as lag.
    f = guarded(fake_clock)
    f.acquire()
    sent = fake_clock()
    fake_clock.sleep(0.005)
    f.on_success()
    f.acquire()
    assert fake_clock() - sent == pytest.approx(0.005 + 0.1)


def test_a_slow_answer_delays_the_next_request_by_its_lag(fake_clock):
    # A server without burst refuses two requests that arrive closer than its interval: an
    # answer 30 ms slower than usual most likely arrived 30 ms late, so the next request
    # keeps its interval from there.
    f = guarded(fake_clock)
    for _ in range(5):
        f.acquire()
        fake_clock.sleep(0.002)  # the usual round trip
        f.on_success()
    f.acquire()
    sent = fake_clock()
    fake_clock.sleep(0.032)  # 30 ms of lag
    f.on_success()
    f.acquire()
    assert fake_clock() - sent == pytest.approx(0.1 + 0.030)
    f.on_success()  # answered at once: no lag, no write
    waits = [f.acquire() for _ in range(3)]
    assert waits == [pytest.approx(0.1)] * 3  # back on the schedule, with no catch-up


def test_lags_count_only_once_the_server_refused_us(fake_clock):
    # Before any 429, nothing says the server has no burst to absorb a late arrival: a
    # late answer costs no wait. After one, every late answer delays the next request.
    f = finder(fake_clock, rate=40)
    for rtt in [0.002] * 5 + [0.020]:  # the last answer 18 ms late
        f.acquire()
        fake_clock.sleep(rtt)
        f.on_success()
    assert f.state().lag_guard is False
    assert f.acquire() == pytest.approx(0.025 - 0.020)  # on the schedule
    f.on_throttled(None)
    assert f.state().lag_guard is True
    f.acquire()
    interval = 1 / f.rate
    sent = fake_clock()
    fake_clock.sleep(0.020)
    f.on_success()
    f.acquire()
    # Its lag, then an interval less half the hold's margin over the ceiling's interval.
    least = (interval + 1 / 40) / 2
    assert fake_clock() - sent == pytest.approx(0.018 + least, rel=0.01)


def test_small_lags_fit_in_the_holds_margin(fake_clock):
    # Held at 97 % of a 40/s ceiling: 25.8 ms between requests where the server needs
    # 25 ms. Half that margin (0.4 ms) absorbs a lag; the rest of a lag delays the next.
    f = learned(fake_clock, elapsed=20.0, lag_guard=True)
    for _ in range(5):
        f.acquire()
        fake_clock.sleep(0.002)
        f.on_success()
    interval = 1 / f.rate
    assert interval == pytest.approx(1 / (0.97 * 40), rel=1e-3)
    least = (interval + 1 / 40) / 2
    for lag, wait in [(0.0003, interval), (0.003, 0.003 + least)]:
        f.acquire()
        sent = fake_clock()
        fake_clock.sleep(0.002 + lag)
        f.on_success()
        f.acquire()
        assert fake_clock() - sent == pytest.approx(wait, abs=1e-6)
        fake_clock.sleep(0.002)
        f.on_success()


def test_a_small_lag_delays_only_this_limiters_next_request_and_costs_no_write(fake_clock):
    # 4 ms of lag: under lag_threshold (5 % of the 100 ms interval), yet more than the 3 %
    # margin of the hold under a server without burst: this limiter's next request keeps
    # it, read from memory in the same update as the send (no write of its own) ...
    store = MemoryRateStore()
    f = guarded(fake_clock)
    f.store = store
    store.update(lambda state: (RateState(start=10.0, lag_guard=True), None))
    send_with_round_trip(f, fake_clock, 0.002, 4)
    f.acquire()
    sent = fake_clock()
    fake_clock.sleep(0.006)
    writes = []
    update = store.update
    store.update = lambda work: writes.append(1) or update(work)  # type: ignore[method-assign]
    f.on_success()
    assert writes == []
    store.update = update  # type: ignore[method-assign]
    f.acquire()
    assert fake_clock() - sent == pytest.approx(0.1 + 0.004)
    # ... while another limiter sharing the state does not see it (a large lag is written
    # for it: see the test above).
    g = finder(fake_clock, rate=10.0, store=store)
    fake_clock.sleep(0.002)
    f.on_success()
    f.acquire()
    sent = fake_clock()
    fake_clock.sleep(0.006)
    f.on_success()
    g.acquire()
    assert fake_clock() - sent == pytest.approx(0.1)


def test_a_lag_after_a_later_send_changes_nothing(fake_clock):
    f = guarded(fake_clock)
    for _ in range(3):  # the usual round trip: 2 ms
        f.acquire()
        fake_clock.sleep(0.002)
        f.on_success()
    # Two threads: A's answer is slow, but B sent after A: B's answer decides for B.
    a = ThreadPoolExecutor(1)
    with a:
        a.submit(f.acquire).result()
        f.acquire()  # B, on this thread
        b_sent = fake_clock()
        after_b = f.state().next_at
        fake_clock.sleep(0.5)
        a.submit(f.on_success).result()
        assert f.state().next_at == after_b
        f.on_success()  # B's own answer, 0.5 s late: that delays the next request
        assert f.acquire() == pytest.approx(b_sent + 0.498 + 0.1 - (b_sent + 0.5))


def test_an_idle_or_slow_client_neither_ramps_nor_probes(fake_clock):
    f = finder(fake_clock, rate="auto")
    for _ in range(20):
        f.acquire()
        fake_clock.sleep(3)  # a slow caller: one request every 3 s
    assert f.rate == RateSettings().auto_start
    assert f.state().elapsed == 0


def test_the_floor_and_the_cap_hold(fake_clock):
    f = finder(fake_clock, rate=10, settings=RateSettings(min_rate=1.0))
    for _ in range(12):  # refused at once, again and again
        send(f, 2)
        f.on_throttled(None)
    assert f.rate == 1.0
    g = finder(fake_clock, rate=5)
    g.store.update(lambda state: (RateState(start=50, ceiling=60), None))  # learned: 60/s
    send(g, 3)
    assert g.rate == 5  # the user's cap
    assert g.ceiling == 60


def test_a_learned_state_is_where_a_new_limiter_starts(fake_clock):
    store = MemoryRateStore()
    first = finder(fake_clock, rate=80, store=store)
    send(first, 50)
    first.on_throttled(None)
    send(first, 400)  # settled under the ceiling
    second = finder(fake_clock, rate=80, store=store)
    send(second, 1)
    assert second.rate == pytest.approx(first.rate, rel=0.02)
    assert second.rate < 80 and second.ceiling == first.ceiling
    # One schedule: the two together keep the rate.
    start = fake_clock()
    for _ in range(30):
        first.acquire()
        second.acquire()
    assert 60 / (fake_clock() - start) == pytest.approx(second.rate, rel=0.05)


def test_rate_state_round_trips_and_ignores_unknown_fields():
    state = RateState(start=3.5, ceiling=7.0, epoch=2, next_at=12.5)
    assert RateState.from_json(state.to_json()) == state
    assert RateState.from_json('{"start": 2, "from_a_newer_version": 1}') == RateState(start=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 0}, "rate must be a number above 0 or 'auto'"),
        ({"rate": math.inf}, "rate must be a number above 0 or 'auto'"),
        ({"rate": "fast"}, "rate must be a number above 0 or 'auto'"),
        ({"burst": 0}, "burst must be >= 1"),
    ],
)
def test_rate_finder_refuses_impossible_settings(fake_clock, kwargs, match):
    kwargs.setdefault("rate", 5)
    with pytest.raises(ValueError, match=match):
        RateFinder(clock=fake_clock, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hold": 1.2},
        {"backoff": 0.99, "hold": 0.97},
        {"approach_seconds": 0},
        {"probe": -1},
        {"floor_share": 0},
        {"lag_threshold": -0.1},
    ],
)
def test_rate_settings_are_checked(kwargs):
    with pytest.raises(ValueError, match="RateSettings"):
        RateSettings(**kwargs)


def test_rate_finder_satisfies_the_protocol(fake_clock):
    assert isinstance(finder(fake_clock), Limiter)


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
