"""RateFinder against a simulated server, in simulated time (milliseconds per simulated hour).

The server is the sandbox's token bucket (``sandbox/limits.py``: ``R`` requests/s, burst 1 or
2, ``Retry-After`` rounded up to whole seconds) on the same fake clock as the client; a
request reaches it after a network delay (fixed, or seeded jitter calibrated on the real
sandbox: the old AIMD bucket scores here what ``bench/README.md`` measured). The client is
one thread doing what the transport does: acquire, send, report the answer to the limiter,
sleep ``Retry-After`` and send again after a 429.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from analytics_assets.http.limits import (
    AdaptiveTokenBucket,
    Limiter,
    MemoryRateStore,
    RateFinder,
)
from analytics_assets.sandbox.limits import TokenBucket

R = 20.0


class SimClock:
    """Monotonic time that moves when someone sleeps (a few microseconds late, as a real
    sleep is) or when the simulation says so."""

    def __init__(self, rng: random.Random | None, start: float) -> None:
        self.now = start
        self.rng = rng

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        late = self.rng.expovariate(1 / 0.15e-3) if self.rng else 0.0
        self.now += max(0.0, seconds) + late


@dataclass
class Network:
    """One-way delay to the server: ``base`` plus, with a seed, exponential jitter and rare
    spikes (a busy machine's scheduler)."""

    base: float = 1e-3
    seed: int | None = None
    jitter: float = 0.4e-3
    spike_p: float = 0.01
    spike: tuple[float, float] = (2e-3, 12e-3)
    rng: random.Random | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed) if self.seed is not None else None

    def delay(self) -> float:
        if self.rng is None:
            return self.base
        extra = self.rng.expovariate(1 / self.jitter)
        if self.rng.random() < self.spike_p:
            extra += self.rng.uniform(*self.spike)
        return self.base + extra


@dataclass
class Outcome:
    completed: int = 0
    requests: int = 0
    throttled: int = 0
    # (time, completed, requests, throttled) every simulated second, for windows
    marks: list[tuple[float, int, int, int]] = field(default_factory=list)

    def window(self, start: float, end: float) -> tuple[float, float]:
        """(share of R sustained, share of requests answered 429) between two times."""
        a = min(self.marks, key=lambda m: abs(m[0] - start))
        b = min(self.marks, key=lambda m: abs(m[0] - end))
        done, sent, refused = b[1] - a[1], b[2] - a[2], b[3] - a[3]
        return done / (b[0] - a[0]) / R, refused / sent if sent else 0.0


def simulate(
    make: Callable[[SimClock], Limiter],
    *,
    burst: int = 2,
    seconds: float = 120.0,
    network: Network | None = None,
    retry_after: bool = True,
    storm: tuple[float, float] | None = None,
    start: float = 1000.0,
) -> tuple[Outcome, Limiter]:
    """One client against the server for ``seconds`` from the clock's ``start``; ``storm``:
    (from, to) seconds during which every request is refused (Retry-After 2 s) whatever
    the rate."""
    network = network or Network()
    clock = SimClock(network.rng, start)
    limiter = make(clock)
    server = TokenBucket(R, burst, clock=clock)
    start = clock.now
    out = Outcome()
    next_mark = start
    while clock.now < start + seconds:
        while clock.now >= next_mark:
            out.marks.append((next_mark - start, out.completed, out.requests, out.throttled))
            next_mark += 1.0
        limiter.acquire()
        out.requests += 1
        sent = clock.now
        clock.now = sent + network.delay()  # the server decides on arrival
        decision = server.try_take()
        if storm and storm[0] <= sent - start < storm[1]:
            decision = type(decision)(False, 2.0, "storm")
        clock.now += 0.3e-3 + network.delay()  # served, and the answer travels back
        if decision.allowed:
            limiter.on_success()
            out.completed += 1
            continue
        out.throttled += 1
        wait = max(1, -(-decision.retry_after // 1))  # whole seconds, as the sandbox
        limiter.on_throttled(wait if retry_after else None)
        clock.sleep(wait if retry_after else 0.5)  # the transport's own wait
    out.marks.append((clock.now - start, out.completed, out.requests, out.throttled))
    return out, limiter


def finder(share: float | str, store: MemoryRateStore | None = None):
    rate = "auto" if share == "auto" else share * R
    return lambda clock: RateFinder(rate, store=store, clock=clock, sleep=clock.sleep)


def aimd(share: float):
    return lambda clock: AdaptiveTokenBucket(share * R, 1, clock=clock, sleep=clock.sleep)


SHARES = [1.0, 1.5, 4.0, "auto"]


@pytest.mark.parametrize("burst", [1, 2])
@pytest.mark.parametrize("share", SHARES)
def test_converges_to_the_servers_rate_and_holds_it(burst, share):
    out, limiter = simulate(finder(share), burst=burst, seconds=300)
    sustained, refused = out.window(0, 300)
    assert sustained >= 0.90, f"{sustained:.1%} of R"
    assert refused < 0.01, f"{refused:.2%} 429s"
    # Once learned it holds: from the first minute on, close to R, hardly a 429 (the slow
    # probe above the hold earns one every minute or so).
    assert out.window(60, 300)[0] >= 0.93
    assert out.marks[-1][3] - out.marks[60][3] <= 5
    assert isinstance(limiter, RateFinder)
    if out.throttled:  # at R with a burst to spare, the server may never refuse
        assert limiter.ceiling is not None and 0.9 * R <= limiter.ceiling <= 1.1 * R


@pytest.mark.parametrize("burst", [1, 2])
def test_a_rate_below_the_servers_is_simply_held(burst):
    out, limiter = simulate(finder(0.5), burst=burst, seconds=60)
    assert out.throttled == 0
    assert out.window(0, 60)[0] == pytest.approx(0.5, abs=0.01)
    assert limiter.rate == 0.5 * R


@pytest.mark.parametrize("share", SHARES)
def test_with_jitter_it_holds_90_percent_with_under_1_percent_429s(share):
    # Burst 2, arrival times jittered as on the real (noisy) machine: the benchmark's case.
    outs = [
        simulate(finder(share), burst=2, seconds=300, network=Network(seed=seed))[0]
        for seed in range(3)
    ]
    for out in outs:
        sustained, refused = out.window(0, 300)
        assert sustained >= 0.90 and refused < 0.01, (sustained, refused)
        # A configured rate above the server's does not keep earning 429s once learned:
        # at most the slow probe's one every half minute or more.
        assert out.marks[-1][3] - out.marks[60][3] <= 8


@pytest.mark.parametrize("share", SHARES)
def test_a_server_without_burst_is_held_too_and_far_better_than_halving(share):
    # Burst 1 with jitter: the server refuses any request that arrives less than 1/R after
    # the one before, so a request that arrived late gets the next one refused. The finder
    # keeps each interval from a late answer (see RateFinder.on_success) and so meets the
    # target here too; AIMD keeps collapsing.
    def run(make: Callable[[SimClock], Limiter], seed: int) -> tuple[float, float]:
        return simulate(make, burst=1, seconds=300, network=Network(seed=seed))[0].window(0, 300)

    new = [run(finder(share), seed) for seed in (0, 1, 2)]
    for sustained, refused in new:
        assert sustained >= 0.90 and refused < 0.01, (sustained, refused)
    if share != "auto":  # AIMD needs a number
        old = [run(aimd(share), seed) for seed in (0, 1)]
        for (new_share, new_429), (old_share, old_429) in zip(new, old, strict=False):
            assert new_share >= 1.3 * old_share
            assert new_429 < 0.01 < old_429


@pytest.mark.parametrize("share", SHARES)
def test_late_arrivals_do_not_ratchet_the_ceiling_down(share):
    # Burst 1 under harsher jitter (plain pacing at 0.95 R earns ~4 % 429s here; the real
    # sandbox on a loaded machine, 3.4 %). Every late answer delays the next request, and
    # a probe's 429 sets the ceiling at the paced rate: the ceiling stays at R instead of
    # sliding a few % lower at each 429, and the rate held with it.
    for seed in range(3):
        network = Network(seed=seed, jitter=0.8e-3, spike_p=0.03)
        out, limiter = simulate(finder(share), burst=1, seconds=300, network=network)
        assert isinstance(limiter, RateFinder) and limiter.ceiling is not None
        assert limiter.ceiling >= 0.99 * R
        assert out.window(60, 300)[0] >= 0.905
        assert out.marks[-1][3] - out.marks[60][3] <= 6


def test_retry_after_storm_is_a_pause_not_a_collapse():
    # 10 s in which the server refuses everything (Retry-After 2 s), whatever the rate.
    out, limiter = simulate(finder(1.5), burst=2, seconds=90, storm=(30, 40))
    assert out.window(0, 30)[0] >= 0.85
    assert out.window(10, 30)[0] >= 0.93
    assert out.window(45, 90)[0] >= 0.93  # straight back to the learned rate
    assert isinstance(limiter, RateFinder) and limiter.cuts <= 3 + 1  # one for the storm


@pytest.mark.parametrize("share", [1.5, 4.0, "auto"])
def test_without_retry_after_it_still_converges(share):
    out, _ = simulate(finder(share), burst=2, seconds=120, retry_after=False)
    sustained, refused = out.window(0, 120)
    assert sustained >= 0.90 and refused < 0.01


@pytest.mark.parametrize("share", [1.5, 4.0, "auto"])
def test_a_second_step_starts_from_the_learned_rate(share):
    store = MemoryRateStore()  # the ledger's record, in memory
    first, _ = simulate(finder(share, store), burst=2, seconds=60, network=Network(seed=1))
    out, limiter = simulate(
        finder(share, store), burst=2, seconds=60, network=Network(seed=2), start=1100.0
    )
    assert first.throttled >= 2  # the first step paid for the discovery ...
    # ... the next does not: near the learned rate from its first seconds, and at most
    # the slow probe's 429s.
    assert out.window(0, 5)[0] >= max(0.75, first.window(0, 5)[0] + 0.2)
    assert out.window(0, 60)[0] >= 0.95 and out.throttled <= 2
    assert isinstance(limiter, RateFinder) and limiter.cuts <= 2
