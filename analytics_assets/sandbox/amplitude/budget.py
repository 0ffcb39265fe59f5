"""The Dashboard REST cost model and the per-project gates (contract §3).

``cost = days × conditions × query_type_cost``:

* ``conditions`` = segments (at least the implicit "all users" one) + the conditions
  inside them (property filters, cohorts, "who performed") + 4 per group-by (``g``);
  the docs' example: 1 segment + 1 condition + 2 group-bys = 10.
* ``query_type_cost``: segmentation = events (+4 per group-by inside each event);
  funnel = steps × 2 (+4 per group-by per event); retention = 8; sessions = 4; else 1.
  A 30-day 3-step funnel with that segment: 30 × 10 × 6 = 1800.

Spending is charged against a sliding window of ``dashboard_cost_per_hour`` (window
``3600 × window_scale`` seconds) per project. One concurrency pool of
``dashboard_concurrency`` slots is shared by every Dashboard REST query, the Export API
and the cohort downloads: the docs put cohort download in the pool explicitly; for the
export they say nothing, and we count it too (INFERRED, conservative) so that a client
that keeps one per-project semaphore(5) around every Basic-auth call never earns a 429.
User search and user activity have their own pool (10) and their own 360/hour budget.

Amp-B (cohorts, users search/activity) uses :class:`QueryGates` through
``tenant.gates``: ``admission = tenant.gates.admit_dashboard(cost)`` (or
``admit_lookup()``, ``admit_export()``); if ``not admission.allowed`` return
``admission.response()``; otherwise call ``admission.release()`` when done (idempotent,
safe from a streaming body's ``finally``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

from analytics_assets.sandbox.config import AmplitudeLimits
from analytics_assets.sandbox.limits import ConcurrencyGate, Decision, SlidingWindowBudget

# The docs also cap the cost of queries running at the same time ("concurrent cost
# ≤ 1000"). A query alone in flight always runs (otherwise the docs' own 1800 example
# could never run); a query that would push the in-flight cost past the cap is refused
# with the concurrency message, which is what the third-party "Exceeded concurrent limit
# with query of cost 415" log suggests.
CONCURRENT_COST_LIMIT = 1000

QUERY_TYPE_COST = {"retention": 8, "sessions": 4}


def conditions_count(segments: Sequence[Sequence[Any]] | None, group_bys: int) -> int:
    """Segments + conditions inside them + 4 per group-by (the docs' reading)."""
    segs = list(segments or [])
    n_segments = max(1, len(segs))
    inner = sum(len(seg) for seg in segs)
    return n_segments + inner + 4 * group_bys


def segmentation_type_cost(events: Sequence[dict[str, Any]]) -> int:
    """One per event, plus 4 per group-by inside each event."""
    return sum(1 + 4 * len(e.get("group_by") or []) for e in events) or 1


def funnel_type_cost(steps: Sequence[dict[str, Any]]) -> int:
    """Steps × 2, plus 4 per group-by per event."""
    return 2 * len(steps) + sum(4 * len(e.get("group_by") or []) for e in steps)


def query_cost(days: int, conditions: int, type_cost: int) -> int:
    return max(1, days) * max(1, conditions) * max(1, type_cost)


def error_body(status: int, details: str, kind: str = "unspecified") -> dict[str, Any]:
    """The Basic-auth APIs' error envelope."""
    message = "Unspecified Error" if kind == "unspecified" else "Invalid request"
    return {
        "error": {
            "http_code": status,
            "type": kind,
            "message": message,
            "metadata": {"details": details},
        }
    }


@dataclass
class Admission:
    """The answer of a gate: allowed (remember to ``release``) or refused with a 429."""

    allowed: bool
    cost: int
    details: str = ""
    retry_after: float = 0.0
    retry_after_header: bool = False
    _release: Callable[[], None] | None = None
    _released: bool = field(default=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self) -> None:
        with self._lock:
            if self._released or self._release is None:
                return
            self._released = True
        self._release()

    def response(self) -> JSONResponse:
        headers = {}
        if self.retry_after_header:
            headers["Retry-After"] = str(max(1, int(self.retry_after + 0.999)))
        return JSONResponse(error_body(429, self.details), status_code=429, headers=headers)


class QueryGates:
    """One project's Dashboard budget and concurrency pools."""

    def __init__(self, limits: AmplitudeLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        hour = 3600.0 * limits.window_scale
        self.dashboard_budget = SlidingWindowBudget(limits.dashboard_cost_per_hour, hour, clock)
        self.dashboard_gate = ConcurrencyGate(limits.dashboard_concurrency)
        self.lookup_budget = SlidingWindowBudget(limits.user_lookup_per_hour, hour, clock)
        self.lookup_gate = ConcurrencyGate(limits.user_lookup_concurrency)
        self.concurrent_cost_limit = getattr(
            limits, "dashboard_concurrent_cost", CONCURRENT_COST_LIMIT
        )
        # Seconds each Dashboard query holds its slot before answering; set through
        # POST /_sandbox/amplitude/slow so tests can fill the pool deterministically
        # (fault latency runs before the handler, so it would not hold a slot).
        self.query_delay_seconds = 0.0
        self._cost_lock = threading.Lock()
        self._in_flight_cost = 0
        self.refused_rate = 0
        self.refused_concurrency = 0

    def _refuse(self, cost: int, decision: Decision, what: str) -> Admission:
        if what == "rate":
            self.refused_rate += 1
        else:
            self.refused_concurrency += 1
        return Admission(
            False,
            cost,
            f"Too Many Requests: Exceeded {what} limit with query of cost {cost}",
            decision.retry_after,
            self.limits.retry_after_header,
        )

    def admit_dashboard(self, cost: int, charge: bool = True) -> Admission:
        """A Dashboard REST query (or cohort download when ``charge`` is False)."""
        entered = self.dashboard_gate.enter()
        if not entered.allowed:
            return self._refuse(cost, entered, "concurrent")
        with self._cost_lock:
            over = (
                self._in_flight_cost > 0
                and self._in_flight_cost + cost > self.concurrent_cost_limit
            )
            if not over:
                self._in_flight_cost += cost
        if over:
            self.dashboard_gate.leave()
            return self._refuse(cost, Decision(False, 1.0), "concurrent")
        if charge:
            spent = self.dashboard_budget.try_spend(cost)
            if not spent.allowed:
                self._leave_dashboard(cost)
                return self._refuse(cost, spent, "rate")
        return Admission(True, cost, _release=lambda: self._leave_dashboard(cost))

    def _leave_dashboard(self, cost: int) -> None:
        with self._cost_lock:
            self._in_flight_cost = max(0, self._in_flight_cost - cost)
        self.dashboard_gate.leave()

    def admit_export(self) -> Admission:
        """The Export API takes a slot of the Dashboard pool (see the module docstring)."""
        return self.admit_dashboard(1, charge=False)

    def admit_lookup(self) -> Admission:
        """User search / user activity: their own pool of 10 and 360 queries per hour."""
        entered = self.lookup_gate.enter()
        if not entered.allowed:
            return self._refuse(1, entered, "concurrent")
        spent = self.lookup_budget.try_spend(1)
        if not spent.allowed:
            self.lookup_gate.leave()
            return self._refuse(1, spent, "rate")
        return Admission(True, 1, _release=self.lookup_gate.leave)

    def describe(self) -> dict[str, Any]:
        return {
            "dashboard_cost_spent": self.dashboard_budget.spent(),
            "dashboard_cost_per_window": self.dashboard_budget.capacity,
            "dashboard_in_flight": self.dashboard_gate.in_flight,
            "dashboard_peak": self.dashboard_gate.peak,
            "refused_rate": self.refused_rate,
            "refused_concurrency": self.refused_concurrency,
            "lookup_in_flight": self.lookup_gate.in_flight,
            "lookup_spent": self.lookup_budget.spent(),
        }
