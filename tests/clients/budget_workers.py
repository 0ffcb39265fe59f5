"""Worker processes for test_shared_budget.py (spawned: importable, no pytest needed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from analytics_assets.http.shared_budget import SharedBudget


def spend(ledger: str, out: str, settings: dict, acquires: int, hold: float) -> None:
    """Acquire ``acquires`` times, hold each lease ``hold`` s; write (acquired, released)."""
    budget = SharedBudget(ledger, **settings)
    spans = []
    for _ in range(acquires):
        budget.acquire(1)
        acquired = time.time()  # after the ledger's stamp
        time.sleep(hold)
        released = time.time()  # before the ledger's end stamp
        budget.release(1)
        spans.append((acquired, released))
    Path(out).write_text(json.dumps({"pid": os.getpid(), "spans": spans}))


def die_holding(ledger: str, settings: dict, throttled: dict | None = None) -> None:
    """Take a lease and exit without releasing it (as a killed step would); optionally
    meet a 429 on another family first."""
    if throttled is not None:
        SharedBudget(ledger, **throttled).on_throttled(None)
    SharedBudget(ledger, **settings).acquire(1)
    os._exit(0)  # no cleanup of any kind
