"""Client-side limits: wait before sending instead of earning a 429.

The limiters here are per process. Amplitude's windowed budgets can instead be kept in a
SQLite file shared by every process on the host (``amplitude_budgets(ledger_path=...)``, see
``shared_budget.py``): a Dagster backfill runs each step in a new process, and Dagster's
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
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .budget_checks import check_budget_settings, check_cost
from .shared_budget import SharedBudget, ledger_at

__all__ = [
    "AdaptiveTokenBucket",
    "CompositeLimiter",
    "CostBudget",
    "Limiter",
    "amplitude_budgets",
    "amplitude_days",
    "amplitude_query_cost",
    "taxonomy_cost",
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


# --- Amplitude cost model -----------------------------------------------------------------

_SEGMENTATION_KINDS = {"segmentation", "event_segmentation", "events_segmentation"}
_FUNNEL_KINDS = {"funnel", "funnels"}
_RETENTION_KINDS = {"retention"}
_SESSION_KINDS = {"sessions", "session", "user_sessions", "sessions_length", "sessions_average"}


def amplitude_query_cost(
    kind: str,
    *,
    days: int,
    events: int = 1,
    segments: int = 0,
    conditions: int = 0,
    group_bys: int = 0,
    steps: int = 0,
    event_group_bys: int = 0,
) -> int:
    """Cost of one Dashboard REST query under Amplitude's documented model.

    ``cost = days × conditions_total × query_type_cost`` where

    * ``conditions_total = max(1, segments + conditions) + 4 × group_bys``: ``segments`` are the
      segments in ``s``, ``conditions`` the conditions inside them (cohort, where, "who
      performed"), ``group_bys`` the segment-level group-bys (``g``/``g2``); event property
      filters do not count. Without any segment the implicit "all users" segment counts as 1.
    * ``query_type_cost``: segmentation = ``events`` + 4 × ``event_group_bys``; funnel =
      ``steps`` × 2 + 4 × ``event_group_bys``; retention = 8; sessions = 4; anything else = 1.

    Where the contract is ambiguous: it says group-bys count 4 in the conditions *and* +4 per
    group-by per event in the type cost, yet its worked example (1 segment + 1 condition + 2
    group-bys = 10 conditions; 30-day 3-step funnel = 30 × 10 × 6 = 1800) adds nothing to the
    funnel's type cost for those group-bys. The reading that reproduces the example: segment
    group-bys (``g``) count only as conditions, and the "+4 per event" applies only to group-bys
    inside the event definitions (``e={"group_by": [...]}``), passed here as
    ``event_group_bys`` (the total over all events). "Days" counts calendar days of the range,
    inclusive (see :func:`amplitude_days`), whatever the interval.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if min(events, segments, conditions, group_bys, steps, event_group_bys) < 0:
        raise ValueError("counts must not be negative")
    conditions_total = max(1, segments + conditions) + 4 * group_bys
    k = kind.strip().lower().replace("-", "_").replace(" ", "_")
    if k in _SEGMENTATION_KINDS:
        if events < 1:
            raise ValueError("a segmentation query needs at least one event")
        type_cost = events + 4 * event_group_bys
    elif k in _FUNNEL_KINDS:
        if steps < 1:
            raise ValueError("a funnel query needs steps >= 1")
        type_cost = steps * 2 + 4 * event_group_bys
    elif k in _RETENTION_KINDS:
        type_cost = 8
    elif k in _SESSION_KINDS:
        type_cost = 4
    else:
        type_cost = 1
    return days * conditions_total * type_cost


def _as_date(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"expected an Amplitude date YYYYMMDD, got {value!r}") from None


def amplitude_days(start: str | date, end: str | date) -> int:
    """Days in an Amplitude ``start``/``end`` range (``YYYYMMDD``, both inclusive)."""
    d0, d1 = _as_date(start), _as_date(end)
    if d1 < d0:
        raise ValueError(f"end {d1:%Y%m%d} is before start {d0:%Y%m%d}")
    return (d1 - d0).days + 1


def taxonomy_cost(method: str) -> int:
    """Taxonomy API cost of one request: GET 1, writes (POST/PUT/DELETE) 2."""
    return 1 if method.upper() in {"GET", "HEAD"} else 2


def amplitude_budgets(
    window_scale: float = 1.0,
    *,
    throttle_pause: float | None = None,
    clock: Clock | None = None,
    sleep: Sleep = time.sleep,
    ledger_path: str | Path | None = None,
    ledger_scope: str = "default",
) -> dict[str, Limiter]:
    """Fresh limiters for one Amplitude project, one per family of endpoints.

    ``window_scale`` multiplies every window and, unless ``throttle_pause`` is given, the
    30 s pause after a 429 without ``Retry-After`` (tests use e.g. 0.001). Create them once
    per process and share them across clients and threads.

    With ``ledger_path`` the budgets are :class:`~.shared_budget.SharedBudget` objects kept in
    that SQLite file, shared with every other process that opens it with the same
    ``ledger_scope`` (a fingerprint of the project, never its key); ``clock`` then defaults
    to wall-clock time. Without it they are in-memory :class:`CostBudget` objects (monotonic).

    * ``dashboard``: 108,000 cost/hour, concurrent cost <= 1,000 (read as "in flight at the
      same time"; the docs also say "within five minutes"), and one of the 5 REST slots.
    * ``user_lookup``: user search and activity, 360 queries/hour and 10 concurrent (own pool).
    * ``cohorts``: 60 requests per 10 minutes and 4 parallel, sharing the 5 REST slots.
    * ``export``: no documented rate; shares the 5 REST slots (an inference) and pauses on 429.
    * ``taxonomy``: 7,200 cost/hour, concurrent cost <= 4; pass ``cost=taxonomy_cost(method)``.
    * ``profile``: 600 requests/minute (per organisation).
    """
    if window_scale <= 0:
        raise ValueError(f"window_scale must be > 0, got {window_scale}")
    s = window_scale
    pause = 30.0 * s if throttle_pause is None else throttle_pause

    if ledger_path is None:
        kw: dict[str, Any] = {
            "clock": clock or time.monotonic,
            "sleep": sleep,
            "throttle_pause": pause,
        }

        def budget(family: str, *args: Any, **extra: Any) -> Any:
            return CostBudget(*args, name=f"amplitude.{family}", **kw, **extra)

    else:
        ledger = ledger_at(ledger_path)
        kw = {"clock": clock or time.time, "sleep": sleep, "throttle_pause": pause}

        def budget(family: str, *args: Any, **extra: Any) -> Any:
            return SharedBudget(
                ledger, family, *args, scope=ledger_scope, name=f"amplitude.{family}", **kw, **extra
            )

    # The 5 concurrent Dashboard REST requests are shared by charts and cohort downloads.
    # A 429 on one family must not pause the others, so the shared slots never pause.
    rest_slots = budget("rest_slots", None, 3600 * s, max_concurrent=5, pause_on_throttle=False)

    def with_slots(family_budget: Any) -> Limiter:
        return CompositeLimiter([family_budget, rest_slots], name=family_budget.name)

    return {
        "dashboard": with_slots(budget("dashboard", 108_000, 3600 * s, max_concurrent_cost=1000)),
        "user_lookup": budget("user_lookup", 360, 3600 * s, max_concurrent=10),
        "cohorts": with_slots(budget("cohorts", 60, 600 * s, max_concurrent=4)),
        "export": with_slots(budget("export", None, 3600 * s)),
        "taxonomy": budget("taxonomy", 7200, 3600 * s, max_concurrent_cost=4),
        "profile": budget("profile", 600, 60 * s),
    }
