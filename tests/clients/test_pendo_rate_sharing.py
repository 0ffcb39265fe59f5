"""The rate Pendo's limiter learns, shared through the budget ledger (a SQLite file; a
database of a real Postgres server, from tests/postgres_server.py): two limiters on one
ledger act as two processes on a fake wall clock, then real processes share one."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics_assets.http.ledger_postgres import RECORDS
from analytics_assets.http.limits import RateFinder, RateSettings, RateState
from analytics_assets.http.shared_budget import LedgerRateStore, SharedBudget, ledger_at

ROOT = Path(__file__).resolve().parents[2]
SCOPE = "0123456789abcdef"  # a fingerprint, as the resource makes (rate_scope)


class WallClock:
    """Wall time (the ledger's) that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


def limiter(ledger: str, clock: WallClock, rate: float | str = 80.0, scope: str = SCOPE):
    """A limiter on the ledger; two calls with the same arguments act as two processes."""
    store = LedgerRateStore(ledger, scope, "pendo.rate")
    return RateFinder(rate, store=store, clock=clock, sleep=clock.sleep, name="pendo")


def send(f: RateFinder, n: int) -> None:
    for _ in range(n):
        f.acquire()
        f.on_success()


def test_a_second_process_starts_from_the_rate_the_first_learned(ledger, clock):
    first = limiter(ledger, clock)
    send(first, 2)
    first.on_throttled(None)  # 80/s refused at once: searching
    send(first, 40)
    first.on_throttled(None)  # refused after a while, on the climb back: the ceiling
    assert first.ceiling is not None and 40 < first.ceiling < 80
    second = limiter(ledger, clock)  # a new step of the backfill
    assert second.state() == first.state()
    send(second, 1)
    assert second.rate == pytest.approx(first.rate) and second.rate < first.ceiling
    assert second.ceiling == first.ceiling


def test_processes_pace_on_one_schedule_and_share_a_pause(ledger, clock):
    a, b = limiter(ledger, clock, rate=10), limiter(ledger, clock, rate=10)
    start = clock()
    for _ in range(10):
        a.acquire()
        b.acquire()
    assert clock() - start == pytest.approx(1.9)  # 20 requests at 10/s together, not 20/s
    a.on_throttled(3)
    assert b.acquire() == pytest.approx(3.0)  # a's 429 pauses b
    assert b.rate == a.rate == 9  # and a's cut is b's


def test_keys_and_servers_learn_apart(ledger, clock):
    mine, theirs = limiter(ledger, clock), limiter(ledger, clock, scope="fedcba9876543210")
    send(mine, 2)
    mine.on_throttled(None)
    send(theirs, 1)
    assert (mine.rate, theirs.rate, theirs.ceiling) == (40, 80, None)


def test_the_record_leaves_the_budgets_alone(ledger, clock):
    budget = SharedBudget(ledger, "cohorts", 3, 10.0, scope=SCOPE, clock=clock, sleep=clock.sleep)
    finder = limiter(ledger, clock)
    first_end = clock()
    for _ in range(3):
        budget.acquire(1)
        budget.release(1)
        send(finder, 1)
    assert budget.spent_in_window() == 3
    # The window, as without the record: until 10 s after the first request ended.
    expected = first_end + 10.0 - clock()
    assert budget.acquire(1) == pytest.approx(expected)
    assert finder.state().sent == 3


def test_a_damaged_record_is_learned_afresh(tmp_path, clock, caplog):
    path = tmp_path / "budgets.sqlite"
    finder = limiter(str(path), clock)
    send(finder, 1)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE record SET value = 'not json'")
    with caplog.at_level(logging.WARNING):
        send(limiter(str(path), clock), 1)
    assert "unreadable state" in caplog.text
    assert RateState.from_json(_record(path)).sent == 1


def test_a_ledger_file_from_before_records_gets_the_table(tmp_path, clock):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the budgets' tables only, as older versions made
        db.execute("CREATE TABLE pause (scope TEXT, family TEXT, until REAL)")
    send(limiter(str(path), clock), 3)
    assert RateState.from_json(_record(path)).sent == 3


def test_a_postgres_ledger_from_before_records_gets_the_table(postgres_server, clock):
    import psycopg

    url = postgres_server.new_database("old")
    SharedBudget(url, "cohorts", 3, 10.0, clock=clock, sleep=clock.sleep).acquire(1)
    ledger_at(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {RECORDS}")
    try:
        send(limiter(url, clock), 2)
        with psycopg.connect(url) as conn:
            row = conn.execute(f"SELECT scope, name, value FROM {RECORDS}").fetchone()
        assert row is not None and row[:2] == (SCOPE, "pendo.rate")
        assert RateState.from_json(row[2]).sent == 2
    finally:
        ledger_at(url).close()


def _record(path: Path) -> str:
    with sqlite3.connect(path) as db:
        (value,) = db.execute("SELECT value FROM record").fetchone()
    return value


# --- real processes ------------------------------------------------------------------------------

_WORKER = """
import json, sys, time
from analytics_assets.http.limits import RateFinder
from analytics_assets.http.shared_budget import LedgerRateStore
ledger, scope, start_at, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
finder = RateFinder(80.0, store=LedgerRateStore(ledger, scope, "pendo.rate"), name="pendo")
time.sleep(max(0.0, start_at - time.time()))  # both processes start together
times, rates = [], []
for _ in range(count):
    finder.acquire()
    times.append(time.time())
    rates.append(finder.rate)
    finder.on_success()
print(json.dumps({"times": times, "rates": rates}))
"""


def test_two_processes_start_from_the_learned_rate_and_send_at_it_together(ledger):
    learned = RateState(start=38.8, ceiling=40.0, epoch=3)  # held at 97 % of 40: 38.8/s
    LedgerRateStore(ledger, SCOPE, "pendo.rate").update(lambda state: (learned, None))
    count = 40
    start_at = time.time() + 4.0  # room for both interpreters to start
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [ledger, SCOPE, repr(start_at), str(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, *args], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        reports.append(json.loads(out))
    hold = RateSettings().hold * 40
    for report in reports:
        # Configured at 80/s, each starts at the learned rate instead of rediscovering it.
        assert all(rate == pytest.approx(hold, rel=0.01) for rate in report["rates"])
    merged = sorted(t for report in reports for t in report["times"])
    # Together at the learned rate (80 requests take ~2 s), not each at it (~1 s) ...
    assert (merged[-1] - merged[0]) >= 0.85 * (2 * count - 1) / hold
    # ... and interleaved: neither waited for the other to finish.
    first, second = (report["times"] for report in reports)
    assert first[0] < second[-1] and second[0] < first[-1]
    state = LedgerRateStore(ledger, SCOPE, "pendo.rate").update(lambda s: (s, s))
    assert state is not None and state.sent == 2 * count and state.ceiling == 40.0
