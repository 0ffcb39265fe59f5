"""How the Amplitude client draws on the shared budgets: metering and settlement.

``CostBudget`` stamps a cost when the request *starts*; Amplitude stamps it when the query
*arrives*, a few milliseconds later. At the edge of a sliding window that difference is a
429: the client sees the old cost leave its window and sends, while the server still holds
it for those few milliseconds. :class:`Settlement` closes the gap by keeping a second ledger
stamped when each response *ends* (never earlier than the server's stamp) and waiting on it
before the budget proper, so the client's view is never more generous than the server's.
One settlement per budget object, shared by every client that shares the budgets.

Budgets kept in a shared ledger (:class:`~.shared_budget.SharedBudget`) already stamp each
cost at release, across processes; they get no settlement here (``settles_at_release``),
which would only count every cost twice within this process.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from analytics_assets.http.limits import CompositeLimiter, CostBudget, Limiter

__all__ = ["MeteredLimiter", "Settlement", "settlement_for"]

# Float slack, as in limits.py.
_EPS = 1e-9


class Settlement:
    """A window ledger stamped at release: in-flight costs count as spent now."""

    def __init__(
        self,
        capacity: float,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.capacity = capacity
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._ledger: deque[tuple[float, float]] = deque()
        self._spent = 0.0
        self._in_flight = 0.0

    def _prune(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._ledger and self._ledger[0][0] <= horizon:
            self._spent -= self._ledger.popleft()[1]
        if not self._ledger:
            self._spent = 0.0

    def reserve(self, cost: float) -> float:
        """Wait until ``cost`` fits; return the seconds waited. Pair with ``settle``."""
        start = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                self._prune(now)
                need = self._spent + self._in_flight + cost - self.capacity
                if need <= _EPS:
                    self._in_flight += cost
                    return now - start
                wait = self.window_seconds  # in-flight costs only: poll again a window later
                freed = 0.0
                for stamp, spent in self._ledger:
                    freed += spent
                    if freed + _EPS >= need:
                        wait = stamp + self.window_seconds - now
                        break
                wait = min(wait, max(self.window_seconds / 20, 0.001))
            self._sleep(max(wait, 0.001))

    def settle(self, cost: float) -> None:
        """The request ended: stamp its cost now."""
        with self._lock:
            self._in_flight = max(0.0, self._in_flight - cost)
            now = self._clock()
            self._ledger.append((now, cost))
            self._spent += cost

    def cancel(self, cost: float) -> None:
        """The request was never sent: give the reservation back."""
        with self._lock:
            self._in_flight = max(0.0, self._in_flight - cost)


_SETTLEMENTS: weakref.WeakKeyDictionary[Any, Settlement] = weakref.WeakKeyDictionary()
_SETTLEMENTS_LOCK = threading.Lock()


def _window_budget(limiter: Limiter) -> CostBudget | None:
    if getattr(limiter, "settles_at_release", False):
        return None  # its own ledger stamps costs at release: a settlement would add nothing
    if isinstance(limiter, CostBudget):
        return limiter if limiter.capacity is not None else None
    if isinstance(limiter, CompositeLimiter):
        for member in limiter.limiters:
            found = _window_budget(member)
            if found is not None:
                return found
    return None


def settlement_for(
    limiter: Limiter, *, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Settlement | None:
    """The settlement shared by every client of this limiter (None: no window budget)."""
    budget = _window_budget(limiter)
    if budget is None or budget.capacity is None:
        return None
    with _SETTLEMENTS_LOCK:
        found = _SETTLEMENTS.get(budget)
        if found is None:
            found = _SETTLEMENTS[budget] = Settlement(
                budget.capacity, budget.window_seconds, clock=clock, sleep=sleep
            )
        return found


class MeteredLimiter:
    """A family's limiter as the client uses it: settlement first, then the budget proper,
    and every cost let through added to the client's ``cost_spent``."""

    def __init__(
        self,
        inner: Limiter,
        family: str,
        charge: Callable[[str, float], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.family = family
        self._charge = charge
        self._settlement = settlement_for(inner, clock=clock, sleep=sleep)

    def acquire(self, cost: float = 1) -> float:
        settlement = self._settlement
        if settlement is not None and cost > settlement.capacity:
            settlement = None  # can never run: let the budget raise its clear ValueError
        waited = settlement.reserve(cost) if settlement is not None else 0.0
        try:
            waited += self.inner.acquire(cost)
        except BaseException:
            if settlement is not None:
                settlement.cancel(cost)
            raise
        self._charge(self.family, cost)
        return waited

    def release(self, cost: float = 1) -> None:
        self.inner.release(cost)
        if self._settlement:
            self._settlement.settle(cost)

    def on_throttled(self, retry_after: float | None) -> None:
        self.inner.on_throttled(retry_after)

    def on_success(self) -> None:
        self.inner.on_success()

    def __repr__(self) -> str:
        return f"MeteredLimiter({self.family!r}, {self.inner!r})"
