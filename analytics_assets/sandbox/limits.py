"""The sandbox's limits layer: what the real services enforce, answered without blocking.

Servers do not wait for budget; they refuse. Each limiter here answers "go" or
"refused, try again in N seconds" at once, and counts what it refused, so tests can
assert that a client never earned a 429. Both halves of the sandbox use these.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class Decision:
    """The outcome of asking a limiter: allowed, or refused with a wait hint."""

    allowed: bool
    retry_after: float = 0.0
    reason: str = ""


ALLOW = Decision(True)


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()
        self.refused = 0

    def try_take(self, tokens: float = 1.0) -> Decision:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= tokens:
                self._tokens -= tokens
                return ALLOW
            self.refused += 1
            wait = (tokens - self._tokens) / self.rate
            return Decision(False, wait, f"rate above {self.rate:g} requests per second")


class SlidingWindowBudget:
    """A cost budget over a sliding window (Amplitude's cost per hour, requests per 10 min)."""

    def __init__(
        self, capacity: float, window_seconds: float, clock: Clock = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.window = window_seconds
        self._clock = clock
        self._spent: deque[tuple[float, float]] = deque()
        self._total = 0.0
        self._lock = threading.Lock()
        self.refused = 0

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.window:
            self._total -= self._spent.popleft()[1]

    def spent(self) -> float:
        with self._lock:
            self._expire(self._clock())
            return self._total

    def try_spend(self, cost: float) -> Decision:
        with self._lock:
            now = self._clock()
            self._expire(now)
            if self._total + cost <= self.capacity:
                self._spent.append((now, cost))
                self._total += cost
                return ALLOW
            self.refused += 1
            # Wait until enough old spending has left the window.
            need = self._total + cost - self.capacity
            freed, wait = 0.0, self.window
            for stamp, spent in self._spent:
                freed += spent
                if freed >= need:
                    wait = stamp + self.window - now
                    break
            return Decision(False, max(wait, 0.0), f"cost {cost:g} exceeds the remaining budget")


class ConcurrencyGate:
    """At most ``limit`` requests in flight; ``enter`` refuses instead of queueing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self.refused = 0
        self._lock = threading.Lock()

    def enter(self) -> Decision:
        with self._lock:
            if self.in_flight >= self.limit:
                self.refused += 1
                return Decision(False, 1.0, f"more than {self.limit} concurrent requests")
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return ALLOW

    def leave(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)


class KeyedLimiters:
    """One limiter per key (per integration key, per device id), created on demand."""

    def __init__(self, factory: Callable[[], TokenBucket | SlidingWindowBudget]) -> None:
        self._factory = factory
        self._limiters: dict[str, TokenBucket | SlidingWindowBudget] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> TokenBucket | SlidingWindowBudget:
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = self._factory()
            return limiter

    def refused(self) -> int:
        with self._lock:
            return sum(limiter.refused for limiter in self._limiters.values())
