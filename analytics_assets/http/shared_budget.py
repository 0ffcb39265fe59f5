"""Amplitude's budgets shared by every process on a host, kept in one SQLite file.

Dagster's multiprocess executor runs each step in a new process and each run in its own, so
a budget kept in memory starts afresh with every step: a backfill of many steps each spending
"its" 60 cohort requests per 10 minutes earns 429s. :class:`SharedBudget` keeps the same
ledger as :class:`~analytics_assets.http.limits.CostBudget` (sliding window per family,
``max_concurrent`` and ``max_concurrent_cost``, a pause of the whole family after a 429) in
a SQLite file every process opens, so the window, the in-flight counts and the pause hold
across steps and runs.

* Check-and-reserve is one ``BEGIN IMMEDIATE`` transaction: two processes cannot both take
  the last unit. WAL mode, ``synchronous=NORMAL``: a reservation costs well under a
  millisecond. The file must sit on a local disk (WAL needs shared memory; not NFS).
* Times are wall-clock (``time.time``): monotonic clocks are not comparable across processes.
* A cost counts from when the request starts until ``window`` after it *ends* (a lease's
  ``ended`` is stamped at release), so the client's view is never more generous than the
  server's: no separate :class:`~analytics_assets.amplitude.metering.Settlement` is
  needed on top (``settles_at_release``).
* A lease stores its process id and host name. Leases of dead processes on this host, or
  older than ``max_lease_age``, are treated as ended when the next acquirer looks, so a
  killed step never holds a slot for good.
* There is no cross-process notify: a request waiting for a concurrency slot polls every
  ``poll`` seconds; one waiting for the window sleeps until enough cost leaves it.

Rows are keyed by ``scope`` (a fingerprint of the project, never its key) and family name.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from analytics_assets.http.budget_checks import check_budget_settings, check_cost
from analytics_assets.http.errors import ConfigurationError

__all__ = ["BudgetLedger", "SharedBudget", "ledger_at"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Float slack, as in limits.py.
_EPS = 1e-9

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


class BudgetLedger:
    """One SQLite file of leases and pauses; one connection per process, used under a lock.

    Share one object per file and process (:func:`ledger_at`). ``busy_timeout`` is how long
    a transaction waits for another process's to finish before failing.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        _LEDGERS.add(self)

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
                    "or set it to 'memory' to keep the budgets per process."
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

    def __repr__(self) -> str:
        return f"BudgetLedger({str(self.path)!r})"


_LEDGERS: weakref.WeakSet[BudgetLedger] = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []
_BY_PATH: dict[str, BudgetLedger] = {}
_BY_PATH_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _BY_PATH_LOCK
    _BY_PATH_LOCK = threading.Lock()
    for ledger in list(_LEDGERS):
        ledger._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def ledger_at(path: str | Path) -> BudgetLedger:
    """The process's one :class:`BudgetLedger` for the file at ``path``."""
    key = str(Path(path).resolve())
    with _BY_PATH_LOCK:
        found = _BY_PATH.get(key)
        if found is None:
            found = _BY_PATH[key] = BudgetLedger(key)
        return found


class SharedBudget:
    """:class:`~analytics_assets.http.limits.CostBudget`'s semantics in a
    :class:`BudgetLedger`, shared by every process (and thread) that opens the same file.

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

    # -- reading

    @property
    def waited_seconds(self) -> float:
        """Total seconds this object's acquirers have waited (by the injected clock)."""
        return self._waited

    @property
    def in_flight(self) -> int:
        """Leases of this family in flight, in every process."""
        with self.ledger.transaction() as db:
            self._tidy(db, self._clock())
            return self._flight(db)[0]

    def spent_in_window(self) -> float:
        """Cost counted within the current window: in flight, or ended less than a window ago."""
        with self.ledger.transaction() as db:
            self._tidy(db, self._clock())
            return self._spent(db)

    # -- the ledger, inside a transaction

    def _key(self) -> tuple[str, str]:
        return (self.scope, self.family)

    def _tidy(self, db: sqlite3.Connection, now: float) -> None:
        """End the leases of dead or ancient holders, drop what left the window."""
        if self._unreleased:
            with self._own_lock:
                pending, self._unreleased = self._unreleased, []
            for lease in pending:
                self._end(db, lease, now)
        rows = db.execute(
            "SELECT id, pid, host, started FROM lease "
            "WHERE scope = ? AND family = ? AND ended IS NULL",
            self._key(),
        ).fetchall()
        for lease, pid, host, started in rows:
            if started < now - self.max_lease_age:
                ended = started + self.max_lease_age
            elif host == self.ledger.host and not _pid_alive(pid):
                ended = now  # it may have reached the server: it counts a window from now
            else:
                continue
            logger.debug("%s: lease %s of process %s@%s reclaimed", self.name, lease, pid, host)
            db.execute("UPDATE lease SET ended = ? WHERE id = ?", (ended, lease))
        if self.capacity is None:
            db.execute(
                "DELETE FROM lease WHERE scope = ? AND family = ? AND ended IS NOT NULL",
                self._key(),
            )
        else:
            db.execute(
                "DELETE FROM lease WHERE scope = ? AND family = ? AND ended <= ?",
                (*self._key(), now - self.window_seconds + _EPS),
            )

    def _flight(self, db: sqlite3.Connection) -> tuple[int, float]:
        count, cost = db.execute(
            "SELECT count(*), coalesce(sum(cost), 0) FROM lease "
            "WHERE scope = ? AND family = ? AND ended IS NULL",
            self._key(),
        ).fetchone()
        return int(count), float(cost)

    def _spent(self, db: sqlite3.Connection) -> float:
        (spent,) = db.execute(
            "SELECT coalesce(sum(cost), 0) FROM lease WHERE scope = ? AND family = ?",
            self._key(),
        ).fetchone()
        return float(spent)

    def _slots_full(self, count: int, held: float, cost: float) -> bool:
        if self.max_concurrent is not None and count >= self.max_concurrent:
            return True
        limit = self.max_concurrent_cost
        return limit is not None and count > 0 and held + cost > limit

    def _time_wait(self, db: sqlite3.Connection, now: float, cost: float) -> float:
        row = db.execute(
            "SELECT until FROM pause WHERE scope = ? AND family = ?", self._key()
        ).fetchone()
        wait = row[0] - now if row else 0.0
        if self.capacity is None:
            return wait
        need = self._spent(db) + cost - self.capacity
        if need <= _EPS:
            return wait
        freed = 0.0
        ended = db.execute(
            "SELECT ended, cost FROM lease WHERE scope = ? AND family = ? AND ended IS NOT NULL "
            "ORDER BY ended",
            self._key(),
        )
        for stamp, spent in ended:  # oldest first: when enough of them expire we fit
            freed += spent
            if freed + _EPS >= need:
                return max(wait, stamp + self.window_seconds - now)
        # Only costs still in flight would make room: none leaves before a window from now.
        return max(wait, self.window_seconds)

    def _end(self, db: sqlite3.Connection, lease: int, now: float) -> None:
        if self.capacity is None:
            db.execute("DELETE FROM lease WHERE id = ?", (lease,))
        else:
            db.execute("UPDATE lease SET ended = ? WHERE id = ?", (now, lease))

    # -- the Limiter protocol

    def acquire(self, cost: float = 1) -> float:
        check_cost(self.name, cost, self.capacity, self.window_seconds)
        start = self._clock()
        while True:
            lease: int | None = None
            with self.ledger.transaction() as db:
                now = self._clock()
                self._tidy(db, now)
                count, held = self._flight(db)
                if self._slots_full(count, held, cost):
                    wait = self.poll  # no notify across processes: look again shortly
                else:
                    wait = self._time_wait(db, now, cost)
                    if wait <= _EPS:
                        lease = db.execute(
                            "INSERT INTO lease (scope, family, cost, started, pid, host) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (*self._key(), cost, now, os.getpid(), self.ledger.host),
                        ).lastrowid
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
            with self.ledger.transaction() as db:
                self._end(db, lease, self._clock())
        except sqlite3.Error as exc:
            # Counted as in flight until a later call of ours ends it, or this process exits.
            logger.warning("%s: could not record the end of a request (%s)", self.name, exc)
            with self._own_lock:
                self._unreleased.append(lease)

    def on_throttled(self, retry_after: float | None) -> None:
        self.throttled += 1
        if not self.pause_on_throttle:
            return
        pause = retry_after if retry_after is not None else self.throttle_pause
        with self.ledger.transaction() as db:
            db.execute(
                "INSERT INTO pause (scope, family, until) VALUES (?, ?, ?) "
                "ON CONFLICT (scope, family) DO UPDATE SET until = max(until, excluded.until)",
                (*self._key(), self._clock() + pause),
            )

    def on_success(self) -> None:
        """A window ledger has nothing to learn from a success."""

    def __repr__(self) -> str:
        return (
            f"SharedBudget({self.name!r}, capacity={self.capacity}, "
            f"window={self.window_seconds:g}s, max_concurrent={self.max_concurrent}, "
            f"max_concurrent_cost={self.max_concurrent_cost}, ledger={str(self.ledger.path)!r})"
        )
