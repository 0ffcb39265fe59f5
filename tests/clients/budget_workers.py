"""Worker processes for test_shared_budget.py (spawned: importable, no pytest needed).

``ledger`` is whatever the test's ledger is: a SQLite path or a ``postgresql://`` URL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from analytics_assets.http.shared_budget import SharedBudget


def spend(
    ledger: str, out: str, settings: dict, acquires: int, hold: float, cost: float = 1
) -> None:
    """Acquire ``acquires`` times, hold each lease ``hold`` s; write (acquired, released)."""
    budget = SharedBudget(ledger, **settings)
    spans = []
    for _ in range(acquires):
        budget.acquire(cost)
        acquired = time.time()  # after the ledger's stamp
        time.sleep(hold)
        released = time.time()  # before the ledger's end stamp
        budget.release(cost)
        spans.append((acquired, released))
    Path(out).write_text(json.dumps({"pid": os.getpid(), "spans": spans}))


def die_holding(ledger: str, settings: dict, throttled: dict | None = None) -> None:
    """Take a lease and exit without releasing it (as a killed step would); optionally
    meet a 429 on another family first."""
    if throttled is not None:
        SharedBudget(ledger, **throttled).on_throttled(None)
    SharedBudget(ledger, **settings).acquire(1)
    os._exit(0)  # no cleanup of any kind


def hold_until_killed(ledger: str, settings: dict, ready: str) -> None:
    """Take a lease, say so by creating ``ready``, and stay alive holding it."""
    SharedBudget(ledger, **settings).acquire(1)
    Path(ready).write_text(str(os.getpid()))
    while True:
        time.sleep(1)
