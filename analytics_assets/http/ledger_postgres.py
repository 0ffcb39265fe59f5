"""The rate budget ledger in Postgres, shared by every process on every host (psycopg 3).

Chosen by a ``postgresql://`` URL as the ledger (``AMPLITUDE_BUDGET_LEDGER``). The budget
arithmetic is :class:`~analytics_assets.http.shared_budget.SharedBudget`'s, the same as
with SQLite; this module only stores rows and serializes transactions.

Three tables (created on first use, in the connection's ``search_path``: put
``?options=-csearch_path%3Dmy_schema`` in the URL to choose the schema):

* ``rate_budget_family`` (scope, family, paused_until): one row per family. Every
  transaction on a family starts with ``SELECT … FOR UPDATE`` of its row, which serializes
  check-and-reserve per family (others never wait for it) and holds the 429 pause.
* ``rate_budget_lease``: one row per request in flight or ended less than a window ago, as
  in SQLite, plus ``holder``: the key of a session-level advisory lock.
* ``rate_budget_record`` (scope, name, value): small shared values such as the rate
  Pendo's limiter learned (:meth:`PostgresLedger.update_record`); each update locks its
  row (``SELECT … FOR UPDATE``), so updates of one record never interleave.

**Dead leases.** A PID means nothing on another host, so each process's connection takes a
session-level advisory lock on a random 62-bit ``holder`` key when it opens, and stamps it
on the leases it takes. Postgres releases that lock the moment the session ends: when the
process exits or is killed (its socket closes), when its host dies or drops off the network
(TCP keepalives, set to about 1 minute here), or when the connection is lost. An acquirer
asks ``pg_try_advisory_xact_lock(holder)`` for each lease in flight: if it gets the lock,
the holder is gone and the lease is reclaimed (it counts a window from then, as a dead
process's does in SQLite). We chose this over heartbeats because it needs no background
thread (a step busy in native code, or paused by the OS, cannot miss a beat and lose its
slots) and no timeout to tune: the database already knows which sessions are alive. The
cost: a process whose connection drops loses its leases early (they are treated as ended,
which may briefly let one more request in), and session-level locks need a direct
connection or a pgbouncer in *session* mode, not transaction mode. ``max_lease_age`` still
caps every lease.

Connection failures are raised as :class:`~analytics_assets.http.errors.ConfigurationError`
with the URL redacted (the password never reaches a log or an exception); a connection lost
between transactions is reopened once and the transaction run again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from analytics_assets.http.errors import ConfigurationError
from analytics_assets.http.shared_budget import _INHERITED, BudgetLedger, LedgerSession, OpenLease
from analytics_assets.http.transport import redact_url

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresLedger"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

LEASES = "rate_budget_lease"
FAMILIES = "rate_budget_family"
RECORDS = "rate_budget_record"

_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {FAMILIES} (
        scope text NOT NULL,
        family text NOT NULL,
        paused_until double precision,  -- wall time a 429 paused the family until
        PRIMARY KEY (scope, family)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {LEASES} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused
        scope text NOT NULL,
        family text NOT NULL,
        cost double precision NOT NULL,
        started double precision NOT NULL,  -- wall time the request was let through
        ended double precision,             -- NULL while in flight; the release time after
        holder bigint NOT NULL,  -- advisory lock held by the session that took it
        pid integer NOT NULL,    -- pid and host: for people reading the table
        host text NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {LEASES}_family ON {LEASES} (scope, family, ended)",
    f"""CREATE TABLE IF NOT EXISTS {RECORDS} (
        scope text NOT NULL,
        name text NOT NULL,
        value text,                -- NULL until the first update writes it
        updated double precision,  -- wall time of the last change, for people reading it
        PRIMARY KEY (scope, name)
    )""",
)
# Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: one creator at a
# time. Two-key advisory locks never meet the one-key holder locks.
_SCHEMA_LOCK = (0x62756467, 0x6C656467)  # "budg", "ledg"

_HOST = socket.gethostname()

APPLICATION_NAME = "analytics_assets budget ledger"
# libpq settings applied unless the URL sets them. The keepalives let each side notice a
# vanished peer in about a minute instead of the kernel's two hours.
_CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "application_name": APPLICATION_NAME,
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
_SESSION_SETTINGS = (
    # The server side of the keepalives: how soon a dead host's session (and its advisory
    # lock, and so its leases) is let go.
    "SET tcp_keepalives_idle = 30",
    "SET tcp_keepalives_interval = 10",
    "SET tcp_keepalives_count = 3",
    # A process stopped mid-transaction must not hold its family's row for ever.
    "SET idle_in_transaction_session_timeout = '60s'",
)


def _secrets_in(url: str) -> list[str]:
    """The password of a URL as it may appear in an error message, longest first."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [
            value
            for key, value in parse_qsl(parts.query)
            if "pass" in key.lower() or "key" in key.lower()
        ]
    except ValueError:
        pass
    return sorted({s for s in found if s}, key=len, reverse=True)


class _PostgresSession(LedgerSession):
    """One family's rows, its ``rate_budget_family`` row locked by this transaction."""

    def __init__(self, conn: psycopg.Connection[Any], key: tuple[str, str], holder: int) -> None:
        self.conn = conn
        self.key = key
        self.holder = holder
        self._paused: float | None = None

    def lock_family(self) -> None:
        select = f"SELECT paused_until FROM {FAMILIES} WHERE scope = %s AND family = %s FOR UPDATE"
        row = self.conn.execute(select, self.key).fetchone()
        if row is None:  # the family's first use: create its row, then wait for it like all
            self.conn.execute(
                f"INSERT INTO {FAMILIES} (scope, family) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                self.key,
            )
            row = self.conn.execute(select, self.key).fetchone()
            assert row is not None
        self._paused = row[0]

    def open_leases(self) -> list[OpenLease]:
        # Getting a holder's lock proves its session is gone (ours is re-entrant: skip it);
        # the transaction keeps the lock until it ends, which harms no one.
        rows = self.conn.execute(
            "SELECT id, started, pid, host, CASE WHEN holder = %s THEN false "
            f"ELSE pg_try_advisory_xact_lock(holder) END FROM {LEASES} "
            "WHERE scope = %s AND family = %s AND ended IS NULL",
            (self.holder, *self.key),
        ).fetchall()
        return [
            OpenLease(lease, started, f"{pid}@{host}", dead)
            for lease, started, pid, host, dead in rows
        ]

    def end(self, lease: int, at: float) -> None:
        self.conn.execute(f"UPDATE {LEASES} SET ended = %s WHERE id = %s", (float(at), lease))

    def delete(self, lease: int) -> None:
        self.conn.execute(f"DELETE FROM {LEASES} WHERE id = %s", (lease,))

    def drop_ended(self, before: float | None) -> None:
        if before is None:
            self.conn.execute(
                f"DELETE FROM {LEASES} WHERE scope = %s AND family = %s AND ended IS NOT NULL",
                self.key,
            )
        else:
            self.conn.execute(
                f"DELETE FROM {LEASES} WHERE scope = %s AND family = %s AND ended <= %s",
                (*self.key, float(before)),
            )

    def totals(self) -> tuple[int, float, float]:
        row = self.conn.execute(
            "SELECT count(*) FILTER (WHERE ended IS NULL), "
            "coalesce(sum(cost) FILTER (WHERE ended IS NULL), 0), coalesce(sum(cost), 0) "
            f"FROM {LEASES} WHERE scope = %s AND family = %s",
            self.key,
        ).fetchone()
        assert row is not None
        return int(row[0]), float(row[1]), float(row[2])

    def ended_costs(self) -> Iterable[tuple[float, float]]:
        return self.conn.execute(
            f"SELECT ended, cost FROM {LEASES} "
            "WHERE scope = %s AND family = %s AND ended IS NOT NULL ORDER BY ended",
            self.key,
        ).fetchall()

    def paused_until(self) -> float | None:
        return self._paused

    def extend_pause(self, until: float) -> None:
        # GREATEST ignores NULL: a first pause simply sets it.
        self.conn.execute(
            f"UPDATE {FAMILIES} SET paused_until = GREATEST(paused_until, %s) "
            "WHERE scope = %s AND family = %s",
            (float(until), *self.key),
        )
        self._paused = until if self._paused is None else max(self._paused, until)

    def add(self, cost: float, started: float) -> int:
        row = self.conn.execute(
            f"INSERT INTO {LEASES} (scope, family, cost, started, holder, pid, host) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (*self.key, float(cost), float(started), self.holder, os.getpid(), _HOST),
        ).fetchone()
        assert row is not None
        return int(row[0])


class PostgresLedger(BudgetLedger):
    """Leases and pauses in a Postgres database; one connection per process, used under a
    lock. Share one object per URL and process (:func:`~.shared_budget.ledger_at`).

    ``lock_timeout`` is how long a transaction waits for another's lock on its family
    before failing (SQLite's ``busy_timeout``)."""

    def __init__(self, url: str, *, lock_timeout: float = 30.0) -> None:
        super().__init__()
        self._url = url  # holds the password: never printed, logged or raised
        self.location = redact_url(url)
        self._secrets = _secrets_in(url)
        self.lock_timeout = lock_timeout
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                f"the rate budget ledger {self.location} needs psycopg, which is not installed",
                hint='Install it with: pip install "analytics_assets[postgres]"',
            ) from None
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = 0
        self._holder = 0

    # -- connection

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _after_fork(self) -> None:
        # The parent's connection is the parent's (closing it would end the parent's
        # session and its advisory lock): the child opens its own, with its own holder key.
        self._lock = threading.Lock()
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None:
            if self._pid == os.getpid() and not self._conn.closed:
                return self._conn
            if self._pid != os.getpid():
                _INHERITED.append(self._conn)  # forked without the hook: leave it alone
            self._conn = None
        try:
            self._conn = self._open()
        except (OSError, self._psycopg.Error) as exc:
            failure = f"{type(exc).__name__}: {self._scrub(str(exc)).strip()}"
        else:
            failure = None
        if failure is not None:
            # Raised outside the handler, so the driver's exception is neither the cause nor
            # the context: its message may quote the URL it could not parse.
            raise ConfigurationError(
                f"cannot use the rate budget ledger {self.location}: {failure}",
                hint=(
                    "Check AMPLITUDE_BUDGET_LEDGER (the resource's budget_ledger): the server "
                    "must be reachable and the user allowed to create two tables in its "
                    "schema; or use a SQLite file, or 'memory' to keep the budgets per process."
                ),
            )
        self._pid = os.getpid()
        return self._conn

    def _open(self) -> psycopg.Connection[Any]:
        psycopg = self._psycopg
        given = psycopg.conninfo.conninfo_to_dict(self._url)
        extra = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given}
        conn = psycopg.connect(self._url, autocommit=True, **extra)
        try:
            for statement in (
                *_SESSION_SETTINGS,
                f"SET lock_timeout = '{int(self.lock_timeout * 1000)}ms'",
            ):
                conn.execute(statement)
            self._holder = secrets.randbits(62) + 1
            # Held for the whole session: while it is, our leases are alive.
            conn.execute("SELECT pg_advisory_lock(%s)", (self._holder,))
            ready = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL "
                "AND to_regclass(%s) IS NOT NULL",
                (LEASES, FAMILIES, RECORDS),  # a ledger from before records: add theirs
            ).fetchone()
            if not (ready and ready[0]):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _SCHEMA_LOCK)
                    for statement in _SCHEMA:
                        conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(self._psycopg.Error):
                self._conn.close()
        self._conn = None

    # -- the BudgetLedger interface

    def run(self, scope: str, family: str, work: Callable[[LedgerSession], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                conn = self._connect()
                committing = False
                try:
                    with conn.transaction():
                        session = _PostgresSession(conn, (scope, family), self._holder)
                        session.lock_family()
                        result = work(session)
                        committing = True
                    return result
                except self._psycopg.OperationalError:
                    if not conn.broken:
                        raise  # a lock timeout, say: the connection is fine
                    self._drop()
                    # Nothing was committed unless the COMMIT itself was cut off: then run
                    # nothing twice (a lease could be taken twice).
                    if committing or attempt == 2:
                        raise
                    logger.warning(
                        "rate budget ledger %s: connection lost; reconnecting", self.location
                    )
        raise AssertionError("unreachable")

    def update_record(
        self, scope: str, name: str, work: Callable[[str | None], tuple[str, T]]
    ) -> T:
        key = (scope, name)
        select = f"SELECT value FROM {RECORDS} WHERE scope = %s AND name = %s FOR UPDATE"

        def transact(conn: psycopg.Connection[Any]) -> T:
            row = conn.execute(select, key).fetchone()
            if row is None:  # the record's first use: create its row, then lock it like all
                conn.execute(
                    f"INSERT INTO {RECORDS} (scope, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    key,
                )
                row = conn.execute(select, key).fetchone()
                assert row is not None
            new, result = work(row[0])
            if new != row[0]:
                conn.execute(
                    f"UPDATE {RECORDS} SET value = %s, updated = %s WHERE scope = %s AND name = %s",
                    (new, time.time(), *key),
                )
            return result

        return self._in_transaction(transact)

    def _in_transaction(self, transact: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``transact(connection)`` in one transaction, reconnecting once as :meth:`run`
        does (a separate copy, so the budgets' path stays as it was)."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connect()
                committing = False
                try:
                    with conn.transaction():
                        result = transact(conn)
                        committing = True
                    return result
                except self._psycopg.OperationalError:
                    if not conn.broken:
                        raise
                    self._drop()
                    if committing or attempt == 2:
                        raise
                    logger.warning(
                        "rate budget ledger %s: connection lost; reconnecting", self.location
                    )
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close this process's connection: its leases in flight are then reclaimable."""
        with self._lock:
            self._drop()
