"""Client-side limits: wait before sending instead of earning a 429.

The limiters here are per process; ``shared_budget.py`` keeps a windowed budget in a
SQLite file shared by every process on the host (Amplitude's budgets use it, see
``amplitude/costs.py``): a Dagster backfill runs each step in a new process, and Dagster's
concurrency pools cap how many steps run at once but carry no time window between them.
:class:`RateFinder` (Pendo) keeps its state in a :class:`RateStore`: in memory, or in that
same ledger (``shared_budget.LedgerRateStore``) so every process paces on one schedule.

Every limiter takes an injectable ``clock`` (monotonic seconds) and ``sleep`` so tests can run
hours of simulated time in microseconds.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from typing import Literal, Protocol, TypeVar, runtime_checkable

from analytics_assets.http.budget_checks import check_budget_settings, check_cost

__all__ = [
    "AUTO",
    "AdaptiveTokenBucket",
    "CompositeLimiter",
    "CostBudget",
    "Limiter",
    "MemoryRateStore",
    "RateFinder",
    "RateSettings",
    "RateState",
    "RateStore",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
T = TypeVar("T")

# Float slack: a waiter that slept "exactly" until a deadline may wake a few ulps early.
_EPS = 1e-9
# RateFinder: round trips a process must have seen before the least of them is taken for
# the path's own (its first answers are slow: cold code paths, a new connection).
_RTT_SAMPLES = 4


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


# -- the rate finder (Pendo) -------------------------------------------------------------------

#: ``RateFinder(AUTO)``: no configured rate; start low and find the server's.
AUTO: Literal["auto"] = "auto"


@dataclass(frozen=True)
class RateSettings:
    """How :class:`RateFinder` searches for the server's rate and holds just under it.

    The defaults were tuned against the sandbox's token bucket (``bench/pendo_client_bench.py``,
    table in ``bench/README.md``); each is a share of a rate, a count or seconds of sending.
    """

    #: After a 429, restart at this share of the rate that earned it ...
    backoff: float = 0.9
    #: ... and climb back towards this share of it (the ceiling), where it holds.
    hold: float = 0.97
    #: When the first rate tried, or a restart twice in a row, is refused at once, it is
    #: far too fast: the search drops to this share (once in a row: ``backoff`` squared).
    search: float = 0.5
    #: Time constant of the climb from the restart rate to the hold (seconds of sending):
    #: fast far below the ceiling, slow close to it.
    approach_seconds: float = 2.0
    #: Seconds of sending at the hold without a 429 before probing above it ...
    quiet_seconds: float = 30.0
    #: ... at rate x (1 + probe t²) after t more seconds: +1 % at 10 s, +9 % at 30 s.
    probe: float = 1e-4
    #: "auto" with nothing learned yet starts here (requests/s) ...
    auto_start: float = 2.0
    #: ... and doubles every this many seconds of sending until the first 429.
    doubling_seconds: float = 0.5
    #: "Refused at once": within this many requests of the start or of the last cut.
    quick_sends: int = 8
    #: Once this many requests in a row went through, the search is over: from then on a
    #: 429 right after a cut is taken for noise (a late request, on a server without
    #: burst), and only ever backs off by ``backoff``.
    settle_sends: int = 40
    #: A request sent after this long a silence (or 1.5 intervals at our rate, if longer)
    #: found the server's bucket refilled: its 429 says nothing about our rate (a storm,
    #: another client of the key) and cuts nothing. The server is taken to allow at least
    #: one request per ``idle_gap``.
    idle_gap: float = 1.0
    #: The rate that earned a 429 is the average over about this many seconds of sending
    #: (never above the paced rate): a server with a burst refuses only after the rate
    #: has been above its own for a while, so the rate at that moment overshoots.
    window_seconds: float = 1.0
    #: Never slower than this (requests/s), whatever the 429s say.
    min_rate: float = 0.1
    #: Cuts in a row with no answer between them that this limiter makes at most. Finding
    #: a rate takes one or two (a configured 4x is refused again right after the first
    #: cut); a server that refuses everything (a storm without Retry-After, a spent
    #: quota window) would otherwise halve the rate at every retry down to ``min_rate``,
    #: and the ledger would hand that collapsed rate to the next runs.
    unanswered_cuts: int = 2
    #: After this long without a request, probing above the hold starts over.
    forget_seconds: float = 300.0
    #: An answer slower than the fastest recent one may delay the next request (see
    #: ``on_success``): this limiter's own next request, for any delay; and, when the
    #: delay is above this share of an interval, whichever limiter sharing the state sends
    #: next (one more write to the store).
    lag_threshold: float = 0.05
    #: The rate that earned a 429 is never taken below this share of the paced rate: a
    #: server without burst refuses as soon as the paced rate crosses its own, when the
    #: average still lags well below it.
    floor_share: float = 0.97

    def __post_init__(self) -> None:
        for name in ("backoff", "hold", "search", "floor_share"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"RateSettings.{name} must be in (0, 1]")
        if self.backoff > self.hold:
            raise ValueError("RateSettings.backoff must not exceed hold")
        for name in (
            "approach_seconds",
            "quiet_seconds",
            "auto_start",
            "doubling_seconds",
            "idle_gap",
            "window_seconds",
            "min_rate",
            "forget_seconds",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"RateSettings.{name} must be a finite number above 0")
        if self.unanswered_cuts < 1:
            raise ValueError("RateSettings.unanswered_cuts must be at least 1")
        if min(self.probe, self.quick_sends, self.settle_sends, self.lag_threshold) < 0:
            raise ValueError(
                "RateSettings.probe, quick_sends, settle_sends and lag_threshold must be >= 0"
            )


@dataclass
class RateState:
    """What a :class:`RateFinder` has learned and its schedule: one per key and server,
    shared by every limiter using the same :class:`RateStore`.

    An *epoch* starts at every cut: the rate then follows :meth:`RateFinder.law` from
    ``start`` as ``elapsed`` (seconds of sending since the cut) grows. Times are the
    limiter's clock (wall time when the store is shared between processes)."""

    start: float  # the rate the epoch started at (requests/s)
    ceiling: float | None = None  # the rate that earned the last 429; None: none yet
    epoch: int = 0
    sent: int = 0  # requests sent in this epoch (by every limiter sharing the state)
    elapsed: float = 0.0  # seconds of sending in this epoch (idle time does not count)
    next_at: float = 0.0  # the schedule: when the next request is due (GCRA)
    paused_until: float = 0.0  # Retry-After: nothing is sent before this
    last_sent: float = 0.0
    # The recent rate: the paced gaps between requests and their count, both decayed
    # with `window_seconds`.
    span: float = 0.0
    gaps: float = 0.0
    throttled: int = 0  # 429s seen, by every limiter sharing the state
    quick: bool = False  # the last cut came within quick_sends of the one before
    settled: bool = False  # an epoch reached settle_sends: the search is over
    learned_at: float = 0.0  # when the ceiling was last set
    # The server has refused us: it may have no burst to absorb a request that arrives
    # late-then-early, so slow answers delay the next one.
    lag_guard: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RateState:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        # Fields a newer or older version wrote and this one does not know are dropped.
        return cls(**{k: v for k, v in data.items() if k in known})


class RateStore(Protocol):
    """Where a :class:`RateFinder` keeps its :class:`RateState`.

    ``update(work)`` runs ``work(state or None) -> (new state, result)`` so that no other
    update of the same state interleaves (a lock, or a database transaction) and returns
    ``result``. ``shared``: other processes see the state (its times must be wall time)."""

    shared: bool
    location: str

    def update(self, work: Callable[[RateState | None], tuple[RateState, T]]) -> T: ...


class MemoryRateStore:
    """A :class:`RateState` in this process only (a lock around it)."""

    shared = False
    location = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: RateState | None = None

    def update(self, work: Callable[[RateState | None], tuple[RateState, T]]) -> T:
        with self._lock:
            self._state, result = work(self._state)
            return result


@dataclass(frozen=True)
class _Ticket:
    """What one request was sent under, for judging the 429 it may earn."""

    epoch: int
    rate: float  # the rate that would earn its 429: see _take
    recent: float  # the average rate over the last window_seconds (or the paced rate)
    gap: float  # seconds since the request before it
    sent: float  # when it was let through (the limiter's clock)
    interval: float  # seconds per request at the paced rate
    # The least gap after it, should it arrive late: halfway from ours down to the
    # ceiling's interval (about what the server allows, since it refused the ceiling).
    least: float


class RateFinder:
    """Thread-safe (and, with a shared store, process-safe) limiter that finds the rate a
    server allows and holds just under it, for Pendo, which publishes none.

    ``rate``: the most the user allows (requests/s; the rate starts there), or ``"auto"``:
    start at ``settings.auto_start`` and double every ``doubling_seconds`` of sending
    until the first 429. The state (:class:`RateState`) lives in ``store``: in memory by
    default, or in the budget ledger (``shared_budget.LedgerRateStore``) so that every
    step of a backfill, on every host using the ledger, starts from what was learned and
    paces on the same schedule: together they send at the learned rate.

    On a 429 that our rate earned (see below) the rate that earned it becomes the
    *ceiling*: the average rate over the last second of sending, or if higher
    ``floor_share`` (97 %) of the paced rate, or the paced rate of a second of sending
    before (at the hold or probing, where the rate barely moves, that is the paced rate:
    the average trails it by the client's own delays); while ramping, the paced rate,
    which an average cannot follow. The rate restarts at ``backoff`` (90 %) of it
    (or at the recent average, if lower) and climbs towards ``hold`` (97 %) of it, quickly
    at first and ever more slowly (``approach_seconds``). After ``quiet_seconds`` of sending
    there without a 429 it probes above, slowly at first (``probe``), in case the server
    allows more. While it is still searching (until ``settle_sends`` requests in a row go
    through), a rate refused within ``quick_sends`` requests is far too fast: if it was the
    first rate tried (say, a configured 4x the server's) or the second restart in a row,
    the rate drops to ``search`` (half) of it; otherwise to ``backoff`` squared.

    Not cuts: a 429 for a request sent before the last cut (in flight then: the cut already
    answered it), and one for a request sent after a silence (``idle_gap``: the server's
    bucket was full: a storm, or another client of the same key), and one after
    ``unanswered_cuts`` cuts of this limiter with no answer between them (the server
    refuses everything: a storm, a spent quota). ``Retry-After`` pauses
    every acquirer until then and costs no more than the pause: pacing resumes at the (cut)
    rate when it ends.

    On a server without burst a request that arrived late gets the next one refused
    (they arrive closer than its interval). Once the server has refused us (``lag_guard``),
    an answer slower than the fastest recent one by ``lag`` most likely arrived that
    much late: the next request goes no earlier than ``lag`` plus an interval after it,
    less half of the hold's margin over the ceiling's interval (small lags cost nothing;
    the other half is left for the next request's own jitter). Paced plain at 97 % of
    such a server's rate, a few ms of jitter earn 1-2 % of 429s; so guarded, about none
    (``bench/README.md``). The delay is kept in memory for this limiter's next request;
    one above ``lag_threshold`` of an interval is also written to the store.

    The schedule is a GCRA (a token bucket of ``burst`` requests); seconds of sending
    (``elapsed``) advance only while the limiter is what holds requests back, so an idle
    or slow client neither ramps nor probes on rates it has not tried.
    """

    def __init__(
        self,
        rate: float | Literal["auto"] | None = AUTO,
        burst: int = 1,
        *,
        settings: RateSettings | None = None,
        store: RateStore | None = None,
        clock: Clock | None = None,
        sleep: Sleep = time.sleep,
        name: str = "rate-finder",
    ) -> None:
        if rate is None or rate == AUTO:
            self.cap = math.inf
        elif isinstance(rate, str) or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{name}: rate must be a number above 0 or 'auto', got {rate!r}")
        else:
            self.cap = float(rate)
        if burst < 1:
            raise ValueError(f"{name}: burst must be >= 1, got {burst}")
        self.name = name
        self.burst = burst
        self.settings = settings or RateSettings()
        self.store: RateStore = store if store is not None else MemoryRateStore()
        # Shared states hold times other processes compare: wall time, not monotonic.
        self._clock = clock or (time.time if self.store.shared else time.monotonic)
        self._sleep = sleep
        self._floor = min(self.settings.min_rate, self.cap)
        self._local = threading.local()
        # Recent round trips: the shortest is the path's own; the rest of one is lag.
        self._rtts: deque[float] = deque(maxlen=64)
        self._rtt_lock = threading.Lock()
        self._lag_guard = False  # the state's, as last seen
        # (when this limiter's last request was sent, not before when its successor may go)
        self._held: tuple[float, float] | None = None
        self._rate = self.settings.auto_start if self.auto else self.cap
        self._ceiling: float | None = None
        self._waited = 0.0
        self.throttled = 0  # 429s this object saw
        self.cuts = 0  # of which cut the rate
        self._unanswered = 0  # this limiter's cuts since its last answer

    @property
    def auto(self) -> bool:
        return math.isinf(self.cap)

    @property
    def rate(self) -> float:
        """The rate the last request was paced at (requests/s)."""
        return self._rate

    @property
    def ceiling(self) -> float | None:
        """The rate that earned the last 429, as last seen (None: none yet)."""
        return self._ceiling

    @property
    def waited_seconds(self) -> float:
        """Total seconds this object's acquirers have waited."""
        return self._waited

    def state(self) -> RateState:
        """A copy of the current state (read in the store)."""

        def read(state: RateState | None) -> tuple[RateState, RateState]:
            state = state or self._fresh()
            return state, RateState(**asdict(state))

        return self.store.update(read)

    # -- the law

    def _fresh(self) -> RateState:
        return RateState(start=self.settings.auto_start if self.auto else self.cap)

    def law(self, state: RateState, elapsed: float | None = None) -> float:
        """The rate the state allows (after ``elapsed`` seconds of sending in its epoch:
        by default the state's), before this limiter's cap and floor."""
        s = self.settings
        elapsed = state.elapsed if elapsed is None else elapsed
        if state.ceiling is None:
            # Nothing refused yet: ramp (a configured rate is its own cap from the start).
            return state.start * 2 ** min(elapsed / s.doubling_seconds, 64)
        hold = s.hold * state.ceiling
        rate = hold - (hold - state.start) * math.exp(-elapsed / s.approach_seconds)
        above = elapsed - s.quiet_seconds
        if above > 0:
            rate *= 1 + s.probe * above * above
        return rate

    def _silence(self, rate: float) -> float:
        """A gap after which the server's bucket holds a request for us again: its rate is
        taken to be at least 1/idle_gap, and it let through at least our rate before."""
        return max(self.settings.idle_gap, 1.5 / rate)

    def _paced(self, state: RateState, elapsed: float | None = None) -> float:
        return max(self._floor, min(self.cap, self.law(state, elapsed)))

    def _take(
        self, state: RateState | None, cost: float
    ) -> tuple[RateState, tuple[float, float, float | None]]:
        """(state, (seconds to wait, the paced rate, the ceiling)): a wait of 0 means the
        request was let through."""
        state = state or self._fresh()
        s = self.settings
        now = self._clock()
        self._lag_guard = state.lag_guard
        if state.last_sent and now - state.last_sent > s.forget_seconds:
            state.elapsed = min(state.elapsed, s.quiet_seconds)  # probe afresh
        rate = self._paced(state)
        if state.paused_until > now:
            return state, (state.paused_until - now, rate, state.ceiling)
        interval = cost / rate
        due = max(state.next_at, now)
        early = due - (self.burst - cost) / rate - now  # GCRA: a bucket of `burst`
        held = self._held
        if held is not None and held[0] == state.last_sent:
            # This limiter's last answer came late, and nothing was sent since: see on_success.
            early = max(early, held[1] - now)
        if early > _EPS:
            return state, (early, rate, state.ceiling)
        gap = now - state.last_sent if state.last_sent else math.inf
        decay = math.exp(-gap / s.window_seconds)
        state.span *= decay
        state.gaps *= decay
        # Only while we are what holds requests back (not after a pause, a retry's backoff
        # or a slow caller) does a gap measure our rate, and count as sending time.
        if gap <= 2 * interval:
            state.elapsed += interval
            state.span += gap
            state.gaps += 1
        recent = min(rate, state.gaps / state.span) if state.span > 0 else rate
        # While ramping (nothing refused yet) the rate grows too fast for the average to
        # keep up: the paced rate is the better guess of the ceiling then. After, the
        # average, but never far below the paced rate (floor_share), nor below the paced
        # rate of window_seconds of sending ago: at the hold or probing above it the rate
        # barely moves, and the paced rate is what the server refused (the average trails
        # it by the client's own delays: late wake-ups, late answers), the unit the law
        # paces in.
        least = interval
        if state.ceiling is not None and cost / state.ceiling < interval:
            least = (interval + cost / state.ceiling) / 2
        if state.ceiling is None:
            earned = rate
        else:
            before = self._paced(state, max(0.0, state.elapsed - s.window_seconds))
            earned = max(recent, s.floor_share * rate, min(rate, before))
        self._local.ticket = _Ticket(state.epoch, earned, recent, gap, now, interval, least)
        state.next_at = due + interval
        state.last_sent = now
        state.sent += 1
        state.settled = state.settled or state.sent >= s.settle_sends
        return state, (0.0, rate, state.ceiling)

    def _throttled(
        self,
        state: RateState | None,
        retry_after: float | None,
        ticket: _Ticket | None,
        unanswered: int = 0,
    ) -> tuple[RateState, tuple[str, float | None, float]]:
        """(state, (what happened, for the log; the ceiling; the rate now))."""
        state = state or self._fresh()
        s = self.settings
        now = self._clock()
        state.throttled += 1
        if ticket is None:  # not sent through this limiter's acquire: judge it as current
            rate = self._paced(state)
            ticket = _Ticket(state.epoch, rate, rate, 0.0, now, 1 / rate, 1 / rate)
        verdict = ""
        if ticket.epoch != state.epoch:
            verdict = "sent before the last cut"
        elif ticket.gap >= self._silence(ticket.rate):
            verdict = "sent after a silence: not our rate"
        elif unanswered >= s.unanswered_cuts:
            verdict = f"{unanswered} cuts and no answer since: refusing everything, not our rate"
        else:
            quick = state.sent <= s.quick_sends and not state.settled
            if quick and (state.ceiling is None or state.quick):
                # The first rate tried, or a restart refused twice in a row: far too fast.
                factor, why = s.search, " (still too fast: searching lower)"
            elif quick:
                # Once: only a little lower. On a server without burst, one request that
                # arrived late looks the same.
                factor, why = s.backoff * s.backoff, " (refused at once: a little lower)"
            else:
                factor, why = s.backoff, ""
            state.quick = quick
            # Once the server has refused us, late answers delay the next request (see
            # on_success): on a server without burst, every late arrival makes a 429 at
            # any rate within a few % of its own.
            state.lag_guard = True
            state.ceiling = ticket.rate
            # Never restart above the recent average: after a ramp it lags the paced rate,
            # and the climb back from there crosses the server's rate gently.
            state.start = max(self._floor, min(ticket.rate * factor, ticket.recent))
            state.epoch += 1
            state.sent = 0
            state.elapsed = 0.0
            state.span = state.gaps = 0.0  # the average is of this epoch's rate only
            state.learned_at = now
            state.next_at = max(state.next_at, state.last_sent + 1 / state.start)
            verdict = f"ceiling {ticket.rate:.3g}/s, restarting at {state.start:.3g}/s{why}"
        if retry_after is not None and retry_after > 0:
            state.paused_until = max(state.paused_until, now + retry_after)
            # Paused time earns no burst: pacing resumes from the end of the pause.
            rate = self._paced(state)
            state.next_at = max(state.next_at, state.paused_until + (self.burst - 1) / rate)
        return state, (verdict, state.ceiling, self._paced(state))

    # -- the Limiter protocol

    def acquire(self, cost: float = 1) -> float:
        if cost > self.burst:
            raise ValueError(f"{self.name}: cost {cost} exceeds the burst size {self.burst}")
        start = self._clock()
        while True:
            wait, rate, ceiling = self.store.update(lambda state: self._take(state, cost))
            self._rate, self._ceiling = rate, ceiling
            if wait <= 0:
                waited = max(0.0, self._clock() - start)
                self._waited += waited
                return waited
            # Sleep outside the store, then look again: a pause or a cut may come meanwhile.
            self._sleep(max(wait, _EPS))

    def release(self, cost: float = 1) -> None:
        """Nothing to give back: a request's place in the schedule is spent when sent."""

    def on_throttled(self, retry_after: float | None) -> None:
        self.throttled += 1
        ticket: _Ticket | None = getattr(self._local, "ticket", None)
        self._local.ticket = None
        unanswered = self._unanswered
        verdict, self._ceiling, self._rate = self.store.update(
            lambda state: self._throttled(state, retry_after, ticket, unanswered)
        )
        if verdict.startswith("ceiling"):
            self.cuts += 1
            self._unanswered += 1
            logger.info("%s: 429: %s", self.name, verdict)
        else:
            logger.debug("%s: 429 (%s)", self.name, verdict or "no cut")

    def on_success(self) -> None:
        self._unanswered = 0
        ticket: _Ticket | None = getattr(self._local, "ticket", None)
        self._local.ticket = None
        if ticket is None:
            return
        rtt = self._clock() - ticket.sent
        with self._rtt_lock:
            self._rtts.append(rtt)
            # Until a few are known, the whole round trip counts as lag: a new process's
            # first answer is the slowest, and taken for the path's own it would hide
            # that it arrived late (the next request, on time, is then refused).
            floor = min(self._rtts) if len(self._rtts) >= _RTT_SAMPLES else 0.0
            lag = rtt - floor
        # A slow answer most likely arrived late too (a busy server or network): the next
        # request keeps its interval from that late arrival, or a server without burst
        # sees the two closer than its rate allows. Only once the server has refused us
        # (lag_guard): until then nothing says it lacks a burst to absorb the lag, and the
        # wait would cost throughput.
        # The next request goes no earlier than ``least`` after the late arrival: half of
        # the hold's margin under the ceiling's interval absorbs the start of a lag, the
        # other half stays for the next request's own jitter (and the part of this one's
        # lag the round trip does not show). Every lag counts (a few ms make a 429):
        # this limiter's own next request keeps it at no cost (_take reads _held); only
        # a delay above lag_threshold of an interval is worth a write to the store, for
        # whichever limiter sharing it sends next.
        delay = lag - (ticket.interval - ticket.least)
        if self._lag_guard and delay > 0:
            self._held = (ticket.sent, ticket.sent + lag + ticket.least)
            if delay > self.settings.lag_threshold * ticket.interval:
                self.store.update(lambda state: self._lagged(state, ticket, lag))

    def _lagged(
        self, state: RateState | None, ticket: _Ticket, lag: float
    ) -> tuple[RateState, None]:
        state = state or self._fresh()
        if state.last_sent == ticket.sent:  # nothing sent since: its successor is next
            state.next_at = max(state.next_at, ticket.sent + lag + ticket.least)
        return state, None

    def __repr__(self) -> str:
        cap = "auto" if self.auto else f"{self.cap:g}"
        return (
            f"RateFinder({self.name!r}, rate={self._rate:.3g}/s, cap={cap}, "
            f"store={self.store.location!r})"
        )


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
