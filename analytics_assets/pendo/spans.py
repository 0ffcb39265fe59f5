"""How many days one Pendo aggregation of a daily asset asks, learned per asset.

Pendo stops an aggregation after 5 minutes (408) or 4 GB of answer (``pendo.md``). A range
that runs into a cap costs its whole first try, up to those 5 minutes, before the step asks
it in halves (``assets._fetch_halving``): 10 of the 55 minutes of the 30-day backfill at
scale 1000 in ``bench/README.md``. So each asset remembers two things, in the ledger that
already shares Pendo's learned rate (every step, run and, with Postgres, host sees them):

* how long a day of it took: the last aggregation that went through without a retry, less
  the limiter's and the backoff's waits. A range is cut so that its chunks are expected to
  take at most half the time cap (the client's read timeout, if that is shorter): a day's
  cost varies with the weekday and the subscription's growth, so half leaves room.
* the fewest days a cap has stopped. No later chunk asks more than half of that: the size
  cap (rows, bytes) is not a matter of time, so the time alone would walk back into it.

Both are forgotten ``FORGET_AFTER`` after they were learned, so that one slow afternoon on
Pendo's side does not narrow every range for good. Narrower chunks cost more requests (one
each), which the rate limiter paces; a chunk that runs into a cap costs minutes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Pendo's documented runtime cap of one aggregation (pendo.md: "limited to five minutes").
TIME_CAP_SECONDS = 300.0
# The share of the cap a chunk is sized to take.
TARGET_SHARE = 0.5
# A week: longer than a backfill and its reruns, short enough to recover from a slow day.
FORGET_AFTER = 7 * 86_400.0
RECORD = "pendo.spans"


class Records(Protocol):
    """Where the spans live: :meth:`BudgetLedger.update_record`'s contract (one small text
    value per scope and name, read and rewritten in one transaction)."""

    def update_record(
        self, scope: str, name: str, work: Callable[[str | None], tuple[str, T]]
    ) -> T: ...


@dataclass(frozen=True)
class Learned:
    """What one asset's aggregations taught (wall times, seconds)."""

    seconds_per_day: float | None = None
    seconds_learned: float = 0.0
    capped_days: int | None = None  # the fewest days a cap stopped
    capped_learned: float = 0.0

    def current(self, now: float) -> Learned:
        """Without what is older than ``FORGET_AFTER``."""
        fresh = self
        if fresh.seconds_per_day is not None and now - fresh.seconds_learned > FORGET_AFTER:
            fresh = replace(fresh, seconds_per_day=None, seconds_learned=0.0)
        if fresh.capped_days is not None and now - fresh.capped_learned > FORGET_AFTER:
            fresh = replace(fresh, capped_days=None, capped_learned=0.0)
        return fresh

    def days(self, most: int, time_cap: float) -> int:
        """Days per aggregation: at most ``most``, at least 1."""
        return max(1, min(most, self.by_cap(most), self.by_time(most, time_cap)))

    def by_cap(self, most: int) -> int:
        """Half the fewest days a cap stopped (``most`` if none did)."""
        return most if self.capped_days is None else self.capped_days // 2

    def by_time(self, most: int, time_cap: float) -> int:
        """The days expected to take ``TARGET_SHARE`` of ``time_cap`` (``most`` if unknown)."""
        if not self.seconds_per_day:
            return most
        return math.floor(TARGET_SHARE * time_cap / self.seconds_per_day)


class AggregationSpans:
    """The days per aggregation of one asset (``asset``) of one key and server (``scope``,
    the rate's fingerprint), kept in ``records``. Thread-safe as the records are."""

    def __init__(
        self,
        records: Records,
        scope: str,
        asset: str,
        *,
        time_cap: float = TIME_CAP_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records, self.scope, self.asset = records, scope, asset
        self.time_cap = min(TIME_CAP_SECONDS, time_cap)
        self.clock = clock

    def learned(self) -> Learned:
        """What is known now (nothing new is learned; stale entries are dropped)."""
        return self._update(lambda learned: learned)

    def days(self, most: int) -> int:
        """How many consecutive days to ask in one aggregation, at most ``most``."""
        return self.learned().days(most, self.time_cap)

    def why(self, most: int) -> str:
        """Why :meth:`days` asks fewer than ``most`` (empty if it does not)."""
        learned = self.learned()
        width = learned.days(most, self.time_cap)
        if width >= most:
            return ""
        by_cap, by_time = learned.by_cap(most), learned.by_time(most, self.time_cap)
        if by_cap <= by_time:
            why = f"Pendo's cap stopped a range of {learned.capped_days} days"
        else:
            why = (
                f"a day took {learned.seconds_per_day:.1f} s and a chunk is sized to take at "
                f"most {TARGET_SHARE * self.time_cap:.0f} s"
            )
        days = "1 day" if width == 1 else f"{width} days"
        return f"{days} per aggregation, not {most}: {why}"

    def took(self, days: int, seconds: float) -> None:
        """An aggregation of ``days`` went through in ``seconds`` (no retry, waits left
        out)."""
        if days < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        now = self.clock()
        self._update(
            lambda learned: replace(learned, seconds_per_day=seconds / days, seconds_learned=now)
        )

    def capped(self, days: int) -> None:
        """A cap stopped an aggregation of ``days``."""
        now = self.clock()

        def narrower(learned: Learned) -> Learned:
            if learned.capped_days is not None and learned.capped_days <= days:
                return learned
            return replace(learned, capped_days=days, capped_learned=now)

        self._update(narrower)

    @contextmanager
    def timing(self, stats: Any, days: int) -> Iterator[None]:
        """Around one aggregation of ``days``: :meth:`took` if it went through without a
        retry (``stats``: the client's ``TransportStats``; its limiter and backoff waits are
        left out). Nothing is learned from one that raised."""
        before = stats.snapshot()
        start = time.monotonic()
        yield
        elapsed = time.monotonic() - start
        spent = stats.delta(before)
        if spent.retries == 0:
            waited = spent.limiter_wait_seconds + spent.backoff_sleep_seconds
            self.took(days, max(0.0, elapsed - waited))

    def _update(self, change: Callable[[Learned], Learned]) -> Learned:
        now = self.clock()

        def work(text: str | None) -> tuple[str, Learned]:
            every = _read(text)
            # Forget what is stale for every asset, so the record stays small.
            every = {
                name: fresh
                for name, learned in every.items()
                if (fresh := learned.current(now)) != Learned()
            }
            mine = change(every.get(self.asset, Learned()).current(now))
            if mine != Learned():
                every[self.asset] = mine
            else:
                every.pop(self.asset, None)
            return _write(every), mine

        return self.records.update_record(self.scope, RECORD, work)


def _read(text: str | None) -> dict[str, Learned]:
    if not text:
        return {}
    try:
        return {name: Learned(**fields) for name, fields in json.loads(text).items()}
    except (ValueError, TypeError, AttributeError) as exc:  # damaged by hand: learn afresh
        logger.warning("unreadable %s record (%s); starting afresh", RECORD, exc)
        return {}


def _write(every: dict[str, Learned]) -> str:
    return json.dumps({name: asdict(learned) for name, learned in sorted(every.items())})
