"""Client-side limits: wait before sending instead of earning a 429.

The limiters here are per process; ``shared_budget.py`` keeps a windowed budget in a
SQLite file shared by every process on the host (Amplitude's budgets use it, see
``amplitude/costs.py``): a Dagster backfill runs each step in a new process, and Dagster's
concurrency pools cap how many steps run at once but carry no time window between them.

Every limiter takes an injectable ``clock`` (monotonic seconds) and ``sleep`` so tests can run
hours of simulated time in microseconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from analytics_assets.http.budget_checks import check_budget_settings, check_cost

__all__ = [
    "AdaptiveTokenBucket",
    "CompositeLimiter",
    "CostBudget",
    "Limiter",
]

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Float slack: a waiter that slept "exactly" until a deadline may wake a few ulps early.
_EPS = 1e-9


@runtime_checkable
class Limiter(Protocol):
    """What the transport calls around each attempt.

    ``acquire(cost)`` blocks until the request may be sent and returns the seconds waited;
    ``release(cost)`` is called once per ``acquire`` when the response is done (after the body
    for streamed responses), with the same cost; ``on_throttled(retry_after)`` on every 429;
    ``on_success()`` on every other response below 500.
    """

    def acquire(self, cost: float = 1) -> float: ...

    def release(self, cost: float = 1) -> None: ...

    def on_throttled(self, retry_after: float | None) -> None: ...

    def on_success(self) -> None: ...


class AdaptiveTokenBucket:
    """Thread-safe token bucket whose rate adapts to 429s (AIMD), for Pendo.

    Pendo publishes no rate limit, so the configured ``rate`` (requests/s) is a ceiling we
    start at. On a 429 the rate is halved (at most once per ``decrease_cooldown`` seconds, so a
    burst of 429s from requests already in flight counts as one signal), never below
    ``min_rate``, the bucket is drained, and a ``Retry-After`` pauses every acquirer until then.
    After ``recover_after`` consecutive successes the rate grows by ``increase`` back towards
    ``rate``.

    Hand-written rather than ``pyrate-limiter``: that library enforces fixed rates and has no
    notion of feedback (halving on 429, additive recovery, a server-imposed pause), which is the
    whole point here; the bucket itself is twenty lines.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        min_rate: float | None = None,
        *,
        increase: float | None = None,
        recover_after: int = 10,
        decrease_factor: float = 0.5,
        decrease_cooldown: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        name: str = "token-bucket",
    ) -> None:
        if rate <= 0:
            raise ValueError(f"{name}: rate must be > 0 requests/s, got {rate}")
        if burst < 1:
            raise ValueError(f"{name}: burst must be >= 1, got {burst}")
        min_rate = rate / 32 if min_rate is None else min_rate
        if not 0 < min_rate <= rate:
            raise ValueError(f"{name}: min_rate must be in (0, rate], got {min_rate}")
        if not 0 < decrease_factor < 1:
            raise ValueError(f"{name}: decrease_factor must be in (0, 1), got {decrease_factor}")
        self.name = name
        self.max_rate = float(rate)
        self.min_rate = float(min_rate)
        self.burst = burst
        self.increase = increase if increase is not None else max(rate / 10, min_rate)
        self.recover_after = max(1, recover_after)
        self.decrease_factor = decrease_factor
        self.decrease_cooldown = decrease_cooldown
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = float(rate)
        self._tokens = float(burst)
        self._last = clock()
        self._paused_until = -math.inf
        self._last_decrease = -math.inf
        self._successes = 0
        self._waited = 0.0
        self.throttled = 0

    @property
    def rate(self) -> float:
        """The current (possibly reduced) rate in requests per second."""
        return self._rate

    @property
    def waited_seconds(self) -> float:
        """Total seconds acquirers have waited on this bucket."""
        return self._waited

    def _refill(self, now: float) -> None:
        # Time spent paused earns no tokens: after a Retry-After we restart gently.
        start = max(self._last, self._paused_until)
        if now > start:
            self._tokens = min(self.burst, self._tokens + (now - start) * self._rate)
        self._last = now

    def acquire(self, cost: float = 1) -> float:
        if cost > self.burst:
            raise ValueError(f"{self.name}: cost {cost} exceeds the burst size {self.burst}")
        start = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                self._refill(now)
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._tokens + _EPS >= cost:
                    self._tokens -= cost
                    waited = now - start
                    self._waited += waited
                    return waited
                else:
                    wait = (cost - self._tokens) / self._rate
            # Sleep outside the lock, then re-check: the rate or a pause may have changed.
            self._sleep(max(wait, _EPS))

    def release(self, cost: float = 1) -> None:
        """Nothing to give back: tokens are spent when sent."""

    def on_throttled(self, retry_after: float | None) -> None:
        with self._lock:
            now = self._clock()
            self._refill(now)
            self.throttled += 1
            if now - self._last_decrease >= self.decrease_cooldown:
                self._rate = max(self.min_rate, self._rate * self.decrease_factor)
                self._last_decrease = now
            self._tokens = min(self._tokens, 0.0)
            self._successes = 0
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + retry_after)

    def on_success(self) -> None:
        with self._lock:
            if self._rate >= self.max_rate:
                return
            self._successes += 1
            if self._successes >= self.recover_after:
                self._refill(self._clock())
                self._rate = min(self.max_rate, self._rate + self.increase)
                self._successes = 0

    def __repr__(self) -> str:
        return f"AdaptiveTokenBucket({self.name!r}, rate={self._rate:g}/{self.max_rate:g} per s)"


class CostBudget:
    """Thread-safe sliding-window cost ledger with concurrency caps, for Amplitude.

    ``acquire(cost)`` blocks until the cost spent in the last ``window_seconds`` plus ``cost``
    fits in ``capacity`` (``None``: no window budget, only the concurrency caps), fewer than
    ``max_concurrent`` requests are in flight, and the in-flight cost plus ``cost`` stays within
    ``max_concurrent_cost``. A single cost above ``capacity`` can never run and raises
    ``ValueError``; a single cost above ``max_concurrent_cost`` is let through when nothing else
    is in flight (the docs show such queries, e.g. a funnel costing 1,800).

    A cost is charged when the request starts. On a 429 the whole family pauses for the
    server's ``Retry-After`` or ``throttle_pause`` seconds: the server sees other clients of the
    same project that this ledger does not.
    """

    def __init__(
        self,
        capacity: float | None,
        window_seconds: float,
        max_concurrent: int | None = None,
        *,
        max_concurrent_cost: float | None = None,
        throttle_pause: float = 30.0,
        pause_on_throttle: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        name: str = "cost-budget",
    ) -> None:
        check_budget_settings(name, capacity, window_seconds, max_concurrent)
        self.name = name
        self.capacity = capacity
        self.window_seconds = window_seconds
        self.max_concurrent = max_concurrent
        self.max_concurrent_cost = max_concurrent_cost
        self.throttle_pause = throttle_pause
        self.pause_on_throttle = pause_on_throttle
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._ledger: deque[tuple[float, float]] = deque()
        self._spent = 0.0
        self._in_flight = 0
        self._in_flight_cost = 0.0
        self._paused_until = -math.inf
        self._waited = 0.0
        self.throttled = 0

    @property
    def waited_seconds(self) -> float:
        """Total seconds acquirers have waited on this budget (by the injected clock)."""
        return self._waited

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def spent_in_window(self) -> float:
        """Cost charged within the current window."""
        with self._cond:
            self._prune(self._clock())
            return self._spent

    def _prune(self, now: float) -> None:
        horizon = now - self.window_seconds + _EPS
        while self._ledger and self._ledger[0][0] <= horizon:
            self._spent -= self._ledger.popleft()[1]
        if not self._ledger:
            self._spent = 0.0  # drop float drift

    def _slots_full(self, cost: float) -> bool:
        if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
            return True
        limit = self.max_concurrent_cost
        return limit is not None and self._in_flight > 0 and self._in_flight_cost + cost > limit

    def _time_wait(self, now: float, cost: float) -> float:
        wait = self._paused_until - now
        if self.capacity is not None and self._spent + cost > self.capacity + _EPS:
            need = self._spent + cost - self.capacity
            freed = 0.0
            for t, c in self._ledger:  # oldest first: when enough of them expire we fit
                freed += c
                if freed + _EPS >= need:
                    wait = max(wait, t + self.window_seconds - now)
                    break
        return wait

    def acquire(self, cost: float = 1) -> float:
        check_cost(self.name, cost, self.capacity, self.window_seconds)
        start = self._clock()
        while True:
            with self._cond:
                now = self._clock()
                self._prune(now)
                if self._slots_full(cost):
                    # Woken by release(); the timeout only guards against a lost notify.
                    self._cond.wait(timeout=1.0)
                    continue
                wait = self._time_wait(now, cost)
                if wait <= _EPS:
                    if self.capacity is not None:
                        self._ledger.append((now, cost))
                        self._spent += cost
                    self._in_flight += 1
                    self._in_flight_cost += cost
                    waited = now - start
                    self._waited += waited
                    return waited
            self._sleep(wait)

    def release(self, cost: float = 1) -> None:
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)
            self._in_flight_cost = max(0.0, self._in_flight_cost - cost)
            self._cond.notify_all()

    def on_throttled(self, retry_after: float | None) -> None:
        with self._cond:
            self.throttled += 1
            if self.pause_on_throttle:
                pause = retry_after if retry_after is not None else self.throttle_pause
                self._paused_until = max(self._paused_until, self._clock() + pause)

    def on_success(self) -> None:
        """A window ledger has nothing to learn from a success."""

    def __repr__(self) -> str:
        return (
            f"CostBudget({self.name!r}, capacity={self.capacity}, window={self.window_seconds:g}s, "
            f"max_concurrent={self.max_concurrent}, max_concurrent_cost={self.max_concurrent_cost})"
        )


class CompositeLimiter:
    """Several limiters acting as one: acquired in order, released in reverse.

    Put the limiter most likely to block for long first, so a later one's slot is not held
    while waiting on it. Feedback (429s, successes) goes to every member.
    """

    def __init__(self, limiters: Iterable[Limiter], *, name: str = "composite") -> None:
        self.limiters: tuple[Limiter, ...] = tuple(limiters)
        self.name = name

    def acquire(self, cost: float = 1) -> float:
        waited = 0.0
        acquired: list[Limiter] = []
        try:
            for limiter in self.limiters:
                waited += limiter.acquire(cost)
                acquired.append(limiter)
        except BaseException:
            for limiter in reversed(acquired):
                limiter.release(cost)
            raise
        return waited

    def release(self, cost: float = 1) -> None:
        for limiter in reversed(self.limiters):
            limiter.release(cost)

    def on_throttled(self, retry_after: float | None) -> None:
        for limiter in self.limiters:
            limiter.on_throttled(retry_after)

    def on_success(self) -> None:
        for limiter in self.limiters:
            limiter.on_success()

    def __repr__(self) -> str:
        return f"CompositeLimiter({self.name!r}, {list(self.limiters)!r})"
