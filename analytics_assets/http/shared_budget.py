"""Amplitude's budgets shared by every process that uses the key: in one SQLite file on a
host, or in one Postgres database across hosts.

Dagster's multiprocess executor runs each step in a new process and each run in its own, so
a budget kept in memory starts afresh with every step: a backfill of many steps each spending
"its" 60 cohort requests per 10 minutes earns 429s. :class:`SharedBudget` keeps the same
ledger as :class:`~analytics_assets.http.limits.CostBudget` (sliding window per family,
``max_concurrent`` and ``max_concurrent_cost``, a pause of the whole family after a 429) in
storage every process opens, so the window, the in-flight counts and the pause hold across
steps, runs and, with Postgres, hosts.

The budget arithmetic lives once, in :class:`SharedBudget`; a :class:`BudgetLedger` is only
storage: it runs a function in one transaction that no other process's transaction on the
same family interleaves with, and answers a few questions about the rows
(:class:`LedgerSession`). Two backends, chosen by :func:`ledger_at` from the location:

* a path: :class:`SQLiteLedger`. Check-and-reserve is one ``BEGIN IMMEDIATE`` transaction:
  two processes cannot both take the last unit. WAL mode, ``synchronous=NORMAL``: a
  reservation costs well under a millisecond. The file must sit on a local disk (WAL needs
  shared memory; not NFS). A lease stores its process id and host; leases of dead processes
  on this host are reclaimed.
* a ``postgresql://`` URL: :class:`~analytics_assets.http.ledger_postgres.PostgresLedger`
  (psycopg 3), for several hosts; a lease lives as long as the database session that took
  it (see that module).

Common to both:

* Times are wall-clock (``time.time``): monotonic clocks are not comparable across processes
  (across hosts, keep the clocks in sync with NTP, as Amplitude's windows assume anyway).
* A cost counts from when the request starts until ``window`` after it *ends* (a lease's
  ``ended`` is stamped at release), so the client's view is never more generous than the
  server's: no separate :class:`~analytics_assets.amplitude.metering.Settlement` is
  needed on top (``settles_at_release``).
* Leases whose holder is dead, or older than ``max_lease_age``, are treated as ended when
  the next acquirer looks, so a killed step never holds a slot for good.
* There is no cross-process notify: a request waiting for a concurrency slot polls every
  ``poll`` seconds; one waiting for the window sleeps until enough cost leaves it.

Rows are keyed by ``scope`` (a fingerprint of the project, never its key) and family name.

The same ledger also keeps *records*: one small text value per (scope, name), read and
rewritten in one transaction (:meth:`BudgetLedger.update_record`). Pendo's
:class:`~analytics_assets.http.limits.RateFinder` keeps the rate it learned and its
schedule in one (:class:`LedgerRateStore`), so every step of a backfill starts from what
was learned and all of them together pace at it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import sys
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from analytics_assets.http.budget_checks import check_budget_settings, check_cost
from analytics_assets.http.errors import ConfigurationError
from analytics_assets.http.limits import RateState
from analytics_assets.http.transport import redact_url

__all__ = [
    "BudgetLedger",
    "LedgerRateStore",
    "LedgerSession",
    "OpenLease",
    "SQLiteLedger",
    "SharedBudget",
    "is_ledger_url",
    "ledger_at",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
T = TypeVar("T")

# Float slack, as in limits.py.
_EPS = 1e-9

_URL = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_ledger_url(location: str | Path) -> bool:
    """Whether ``location`` names a database server (``postgresql://…``) rather than a file.

    Any other ``scheme://`` raises :class:`ConfigurationError` instead of becoming a
    strange relative path."""
    if not isinstance(location, str):
        return False
    found = _URL.match(location)
    if found is None:
        return False
    if found.group(1).lower() in POSTGRES_SCHEMES:
        return True
    raise ConfigurationError(
        f"the rate budget ledger {redact_url(location.strip())} is not a supported URL",
        hint="Use a SQLite file path, a postgresql:// URL, or 'memory'.",
    )


# -- the storage interface -------------------------------------------------------------------


@dataclass(frozen=True)
class OpenLease:
    """A lease in flight, and the backend's verdict on its holder."""

    id: int
    started: float
    holder: str  # for the log: "pid@host"
    dead: bool  # the process (or its database session) that took it is gone


class LedgerSession(ABC):
    """The rows of one (scope, family) inside one transaction of a :class:`BudgetLedger`.

    Only storage: what counts, what waits and what is reclaimed is decided by
    :class:`SharedBudget`, the same for every backend."""

    @abstractmethod
    def open_leases(self) -> list[OpenLease]:
        """The family's leases in flight (no ``ended`` yet)."""

    @abstractmethod
    def end(self, lease: int, at: float) -> None:
        """Stamp a lease's end (it keeps counting until a window after ``at``)."""

    @abstractmethod
    def delete(self, lease: int) -> None:
        """Forget a lease (budgets without a window keep no history)."""

    @abstractmethod
    def drop_ended(self, before: float | None) -> None:
        """Delete the family's ended leases, those that ended at or before ``before``
        (``None``: every ended one)."""

    @abstractmethod
    def totals(self) -> tuple[int, float, float]:
        """(leases in flight, their cost, the cost of every lease kept)."""

    @abstractmethod
    def ended_costs(self) -> Iterable[tuple[float, float]]:
        """(ended, cost) of the family's ended leases, oldest end first."""

    @abstractmethod
    def paused_until(self) -> float | None:
        """Until when a 429 paused the family, if it ever did."""

    @abstractmethod
    def extend_pause(self, until: float) -> None:
        """Pause the family until ``until`` unless it is paused longer already."""

    @abstractmethod
    def add(self, cost: float, started: float) -> int:
        """Record a lease in flight taken now by this process; its id (never reused)."""


class BudgetLedger(ABC):
    """Storage for :class:`SharedBudget`: one per location and process (:func:`ledger_at`),
    safe to use from several threads."""

    #: Where it is, safe to print (a path, or a URL without its password).
    location: str
    #: The storage's own errors: a release that meets one is retried later, not raised.
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        _LEDGERS.add(self)

    @abstractmethod
    def run(self, scope: str, family: str, work: Callable[[LedgerSession], T]) -> T:
        """``work`` in one transaction that no other transaction on the same (scope, family)
        interleaves with, in any process using this ledger; its result once committed."""

    def update_record(
        self, scope: str, name: str, work: Callable[[str | None], tuple[str, T]]
    ) -> T:
        """``work(the record's text, or None if there is none) -> (new text, result)`` in one
        transaction that no other update of the same (scope, name) interleaves with, in any
        process using this ledger; ``result`` once committed."""
        raise NotImplementedError(f"{type(self).__name__} keeps no records")

    @abstractmethod
    def close(self) -> None:
        """Close this process's connection (the next use opens a new one)."""

    @abstractmethod
    def _after_fork(self) -> None:
        """In a forked child: drop the parent's connection without closing it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


# -- SQLite ----------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lease (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a release finds its own row
        scope TEXT NOT NULL,
        family TEXT NOT NULL,
        cost REAL NOT NULL,
        started REAL NOT NULL,  -- wall time the request was let through
        ended REAL,             -- NULL while in flight; the release time after
        pid INTEGER NOT NULL,
        host TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS lease_family ON lease (scope, family, ended)",
    """CREATE TABLE IF NOT EXISTS pause (
        scope TEXT NOT NULL,
        family TEXT NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (scope, family)
    )""",
    """CREATE TABLE IF NOT EXISTS record (  -- e.g. the rate Pendo's limiter learned
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        updated REAL NOT NULL,  -- wall time of the last change, for people reading it
        PRIMARY KEY (scope, name)
    )""",
)


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host is alive (a zombie counts as alive until reaped)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True
    return True


class _SQLiteSession(LedgerSession):
    def __init__(self, db: sqlite3.Connection, key: tuple[str, str], host: str) -> None:
        self.db = db
        self.key = key
        self.host = host

    def open_leases(self) -> list[OpenLease]:
        rows = self.db.execute(
            "SELECT id, pid, host, started FROM lease "
            "WHERE scope = ? AND family = ? AND ended IS NULL",
            self.key,
        ).fetchall()
        # A PID means something on its own host only: others' leases wait for max_lease_age.
        return [
            OpenLease(lease, started, f"{pid}@{host}", host == self.host and not _pid_alive(pid))
            for lease, pid, host, started in rows
        ]

    def end(self, lease: int, at: float) -> None:
        self.db.execute("UPDATE lease SET ended = ? WHERE id = ?", (at, lease))

    def delete(self, lease: int) -> None:
        self.db.execute("DELETE FROM lease WHERE id = ?", (lease,))

    def drop_ended(self, before: float | None) -> None:
        if before is None:
            self.db.execute(
                "DELETE FROM lease WHERE scope = ? AND family = ? AND ended IS NOT NULL",
                self.key,
            )
        else:
            self.db.execute(
                "DELETE FROM lease WHERE scope = ? AND family = ? AND ended <= ?",
                (*self.key, before),
            )

    def totals(self) -> tuple[int, float, float]:
        count, held, spent = self.db.execute(
            "SELECT count(*) FILTER (WHERE ended IS NULL), "
            "coalesce(sum(cost) FILTER (WHERE ended IS NULL), 0), coalesce(sum(cost), 0) "
            "FROM lease WHERE scope = ? AND family = ?",
            self.key,
        ).fetchone()
        return int(count), float(held), float(spent)

    def ended_costs(self) -> Iterable[tuple[float, float]]:
        return self.db.execute(
            "SELECT ended, cost FROM lease WHERE scope = ? AND family = ? AND ended IS NOT NULL "
            "ORDER BY ended",
            self.key,
        )

    def paused_until(self) -> float | None:
        row = self.db.execute(
            "SELECT until FROM pause WHERE scope = ? AND family = ?", self.key
        ).fetchone()
        return row[0] if row else None

    def extend_pause(self, until: float) -> None:
        self.db.execute(
            "INSERT INTO pause (scope, family, until) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, family) DO UPDATE SET until = max(until, excluded.until)",
            (*self.key, until),
        )

    def add(self, cost: float, started: float) -> int:
        lease = self.db.execute(
            "INSERT INTO lease (scope, family, cost, started, pid, host) VALUES (?, ?, ?, ?, ?, ?)",
            (*self.key, cost, started, os.getpid(), self.host),
        ).lastrowid
        assert lease is not None
        return lease


class SQLiteLedger(BudgetLedger):
    """One SQLite file of leases and pauses; one connection per process, used under a lock.

    Share one object per file and process (:func:`ledger_at`). ``busy_timeout`` is how long
    a transaction waits for another process's to finish before failing.
    """

    errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.location = str(self.path)
        self.busy_timeout = busy_timeout
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _after_fork(self) -> None:
        # A connection (and a lock) must not be used across fork: the child opens its own.
        self._lock = threading.Lock()
        if self._conn is not None:
            _INHERITED.append(self._conn)  # never closed: closing could disturb the parent
        self._conn = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            if self._pid == os.getpid():
                return self._conn
            _INHERITED.append(self._conn)  # forked without the hook: leave it alone
            self._conn = None
        try:
            self._conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"cannot use the rate budget ledger {self.path}: {exc}",
                hint=(
                    "Point it at a writable file on a local disk (AMPLITUDE_BUDGET_LEDGER), "
                    "a postgresql:// URL to share it across hosts, or 'memory' to keep the "
                    "budgets per process."
                ),
            ) from exc
        self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            deadline = time.monotonic() + self.busy_timeout
            while True:  # switching to WAL takes a moment's exclusive lock on a new file
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def run(self, scope: str, family: str, work: Callable[[LedgerSession], T]) -> T:
        # BEGIN IMMEDIATE takes the file's write lock: every family waits, which at well
        # under a millisecond per transaction costs nothing worth a finer lock.
        with self.transaction() as db:
            return work(_SQLiteSession(db, (scope, family), self.host))

    def update_record(
        self, scope: str, name: str, work: Callable[[str | None], tuple[str, T]]
    ) -> T:
        with self.transaction() as db:
            row = db.execute(
                "SELECT value FROM record WHERE scope = ? AND name = ?", (scope, name)
            ).fetchone()
            old = row[0] if row else None
            new, result = work(old)
            if new != old:
                db.execute(
                    "INSERT INTO record (scope, name, value, updated) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (scope, name) DO UPDATE "
                    "SET value = excluded.value, updated = excluded.updated",
                    (scope, name, new, time.time()),
                )
            return result

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: no other process writes in between."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


_LEDGERS: weakref.WeakSet[BudgetLedger] = weakref.WeakSet()
_INHERITED: list[object] = []  # connections of a parent process, kept from being finalized
_BY_LOCATION: dict[str, BudgetLedger] = {}
_BY_LOCATION_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _BY_LOCATION_LOCK
    _BY_LOCATION_LOCK = threading.Lock()
    for ledger in list(_LEDGERS):
        ledger._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def ledger_at(location: str | Path) -> BudgetLedger:
    """The process's one ledger for ``location``: a ``postgresql://`` URL (shared across
    hosts) or the path of a SQLite file (shared on this host)."""
    if is_ledger_url(location):
        from analytics_assets.http.ledger_postgres import PostgresLedger

        key = str(location).strip()
        factory: Callable[[], BudgetLedger] = lambda: PostgresLedger(key)  # noqa: E731
    else:
        key = str(Path(location).resolve())
        factory = lambda: SQLiteLedger(key)  # noqa: E731
    with _BY_LOCATION_LOCK:
        found = _BY_LOCATION.get(key)
        if found is None:
            found = _BY_LOCATION[key] = factory()
        return found


class MemoryRecords:
    """Records as :meth:`BudgetLedger.update_record` keeps them, in this process only (for
    the ``memory`` ledger)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], str] = {}

    def update_record(
        self, scope: str, name: str, work: Callable[[str | None], tuple[str, T]]
    ) -> T:
        with self._lock:
            new, result = work(self._values.get((scope, name)))
            self._values[scope, name] = new
            return result


# -- the budget --------------------------------------------------------------------------------


class SharedBudget:
    """:class:`~analytics_assets.http.limits.CostBudget`'s semantics in a
    :class:`BudgetLedger`, shared by every process (and thread) that opens the same one.

    ``acquire(cost)`` waits until the cost of the family's leases that are in flight or ended
    less than ``window_seconds`` ago, plus ``cost``, fits in ``capacity`` (``None``: only the
    concurrency caps), fewer than ``max_concurrent`` leases are in flight and their cost plus
    ``cost`` stays within ``max_concurrent_cost`` (a single larger cost runs alone). A single
    cost above ``capacity`` raises ``ValueError``. After a 429 the family pauses, in every
    process, for ``Retry-After`` or ``throttle_pause`` seconds.
    """

    #: A cost is stamped when its request ends: no in-memory settlement is needed on top.
    settles_at_release = True

    def __init__(
        self,
        ledger: BudgetLedger | str | Path,
        family: str,
        capacity: float | None,
        window_seconds: float,
        max_concurrent: int | None = None,
        *,
        scope: str = "default",
        max_concurrent_cost: float | None = None,
        throttle_pause: float = 30.0,
        pause_on_throttle: bool = True,
        max_lease_age: float = 2 * 3600.0,
        poll: float = 0.05,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        name: str | None = None,
    ) -> None:
        name = name or f"shared.{family}"
        check_budget_settings(name, capacity, window_seconds, max_concurrent)
        if poll <= 0 or max_lease_age <= 0:
            raise ValueError(f"{name}: poll and max_lease_age must be > 0")
        self.ledger = ledger if isinstance(ledger, BudgetLedger) else ledger_at(ledger)
        self.family = family
        self.scope = scope
        self.name = name
        self.capacity = capacity
        self.window_seconds = window_seconds
        self.max_concurrent = max_concurrent
        self.max_concurrent_cost = max_concurrent_cost
        self.throttle_pause = throttle_pause
        self.pause_on_throttle = pause_on_throttle
        self.max_lease_age = max_lease_age
        self.poll = poll
        self._clock = clock
        self._sleep = sleep
        self._own_lock = threading.Lock()
        self._own: dict[float, list[int]] = {}  # this object's leases in flight, by cost
        self._unreleased: list[int] = []  # releases that failed; retried on the next call
        self._waited = 0.0
        self.throttled = 0

    def _run(self, work: Callable[[LedgerSession], T]) -> T:
        return self.ledger.run(self.scope, self.family, work)

    # -- reading

    @property
    def waited_seconds(self) -> float:
        """Total seconds this object's acquirers have waited (by the injected clock)."""
        return self._waited

    @property
    def in_flight(self) -> int:
        """Leases of this family in flight, in every process."""

        def count(db: LedgerSession) -> int:
            self._tidy(db, self._clock())
            return db.totals()[0]

        return self._run(count)

    def spent_in_window(self) -> float:
        """Cost counted within the current window: in flight, or ended less than a window ago."""

        def spent(db: LedgerSession) -> float:
            self._tidy(db, self._clock())
            return db.totals()[2]

        return self._run(spent)

    # -- the arithmetic, inside a transaction (one code path for every backend)

    def _tidy(self, db: LedgerSession, now: float) -> None:
        """End the leases of dead or ancient holders, drop what left the window."""
        if self._unreleased:
            with self._own_lock:
                pending, self._unreleased = self._unreleased, []
            for lease in pending:
                self._end(db, lease, now)
        for lease in db.open_leases():
            if lease.started < now - self.max_lease_age:
                ended = lease.started + self.max_lease_age
            elif lease.dead:
                ended = now  # it may have reached the server: it counts a window from now
            else:
                continue
            logger.debug("%s: lease %s of %s reclaimed", self.name, lease.id, lease.holder)
            db.end(lease.id, ended)
        if self.capacity is None:
            db.drop_ended(None)
        else:
            db.drop_ended(now - self.window_seconds + _EPS)

    def _slots_full(self, count: int, held: float, cost: float) -> bool:
        if self.max_concurrent is not None and count >= self.max_concurrent:
            return True
        limit = self.max_concurrent_cost
        return limit is not None and count > 0 and held + cost > limit

    def _time_wait(self, db: LedgerSession, now: float, cost: float, spent: float) -> float:
        until = db.paused_until()
        wait = until - now if until is not None else 0.0
        if self.capacity is None:
            return wait
        need = spent + cost - self.capacity
        if need <= _EPS:
            return wait
        freed = 0.0
        for stamp, ended_cost in db.ended_costs():  # oldest first: when enough expire we fit
            freed += ended_cost
            if freed + _EPS >= need:
                return max(wait, stamp + self.window_seconds - now)
        # Only costs still in flight would make room: none leaves before a window from now.
        return max(wait, self.window_seconds)

    def _end(self, db: LedgerSession, lease: int, now: float) -> None:
        if self.capacity is None:
            db.delete(lease)
        else:
            db.end(lease, now)

    def _try_acquire(self, db: LedgerSession, cost: float) -> tuple[int | None, float, float]:
        """(lease or None, seconds to wait before looking again, now)."""
        now = self._clock()
        self._tidy(db, now)
        count, held, spent = db.totals()
        if self._slots_full(count, held, cost):
            return None, self.poll, now  # no notify across processes: look again shortly
        wait = self._time_wait(db, now, cost, spent)
        if wait > _EPS:
            return None, wait, now
        return db.add(cost, now), 0.0, now

    # -- the Limiter protocol

    def acquire(self, cost: float = 1) -> float:
        check_cost(self.name, cost, self.capacity, self.window_seconds)
        start = self._clock()
        while True:
            lease, wait, now = self._run(lambda db: self._try_acquire(db, cost))
            if lease is not None:
                with self._own_lock:
                    self._own.setdefault(cost, []).append(lease)
                waited = max(0.0, now - start)
                self._waited += waited
                return waited
            self._sleep(wait)

    def release(self, cost: float = 1) -> None:
        with self._own_lock:
            leases = self._own.get(cost) or next((v for v in self._own.values() if v), None)
            if not leases:
                return  # nothing of ours in flight
            lease = leases.pop(0)
        try:
            self._run(lambda db: self._end(db, lease, self._clock()))
        except (ConfigurationError, *self.ledger.errors) as exc:
            # Counted as in flight until a later call of ours ends it, or its holder is
            # found dead.
            logger.warning("%s: could not record the end of a request (%s)", self.name, exc)
            with self._own_lock:
                self._unreleased.append(lease)

    def on_throttled(self, retry_after: float | None) -> None:
        self.throttled += 1
        if not self.pause_on_throttle:
            return
        pause = retry_after if retry_after is not None else self.throttle_pause
        self._run(lambda db: db.extend_pause(self._clock() + pause))

    def on_success(self) -> None:
        """A window ledger has nothing to learn from a success."""

    def __repr__(self) -> str:
        return (
            f"SharedBudget({self.name!r}, capacity={self.capacity}, "
            f"window={self.window_seconds:g}s, max_concurrent={self.max_concurrent}, "
            f"max_concurrent_cost={self.max_concurrent_cost}, ledger={self.ledger.location!r})"
        )


# -- a rate finder's state ---------------------------------------------------------------------


class LedgerRateStore:
    """A :class:`~analytics_assets.http.limits.RateFinder`'s state as a record of a
    :class:`BudgetLedger`: shared by every process (and host, with Postgres) that opens it
    with the same ``scope`` (a fingerprint of the key and server, never the key).

    Every request reads and rewrites it in one transaction (well under a millisecond in
    SQLite; one round trip to Postgres), as :class:`SharedBudget`'s leases do; the state
    holds wall times, so the limiter uses ``time.time``."""

    shared = True

    def __init__(self, ledger: BudgetLedger | str | Path, scope: str, name: str = "rate") -> None:
        self.ledger = ledger if isinstance(ledger, BudgetLedger) else ledger_at(ledger)
        self.scope = scope
        self.name = name
        self.location = self.ledger.location

    def update(self, work: Callable[[RateState | None], tuple[RateState, T]]) -> T:
        def step(text: str | None) -> tuple[str, T]:
            old = None
            if text:
                try:
                    old = RateState.from_json(text)
                except (ValueError, TypeError) as exc:  # damaged by hand: learn afresh
                    logger.warning("%r: unreadable state (%s); starting afresh", self, exc)
            state, result = work(old)
            return state.to_json(), result

        return self.ledger.update_record(self.scope, self.name, step)

    def __repr__(self) -> str:
        return f"LedgerRateStore({self.location!r}, {self.name!r})"
