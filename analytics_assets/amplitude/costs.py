"""Amplitude's documented cost model and the budgets of one project, per endpoint family."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from analytics_assets.http.limits import Clock, CompositeLimiter, CostBudget, Limiter, Sleep
from analytics_assets.http.shared_budget import SharedBudget, ledger_at

__all__ = ["amplitude_budgets", "amplitude_days", "amplitude_query_cost", "taxonomy_cost"]

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
    that ledger (a SQLite file, shared on this host, or a ``postgresql://`` URL, shared
    across hosts: :func:`~.shared_budget.ledger_at` chooses), shared with every other process
    that opens it with the same ``ledger_scope`` (a fingerprint of the project, never its
    key); ``clock`` then defaults to wall-clock time. Without it they are in-memory
    :class:`CostBudget` objects (monotonic).

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
